// Package redisstream keeps the history of sse Brokers in Redis Streams, so
// that Brokers in several processes serve one stream: every event published
// on any of them reaches the clients of all, in one order, with the same id,
// and a client that reconnects to any of them resumes where it left off.
//
// One Streams serves a whole process; each topic is an [ssebroker.Log]:
//
//	client := redis.NewUniversalClient(&redis.UniversalOptions{
//		Addrs:                 []string{"127.0.0.1:6379"},
//		ContextTimeoutEnabled: true,
//	})
//	streams, err := redisstream.New(client, nil)
//	...
//	defer streams.Close()
//	room, err := streams.Topic("room:42")
//	...
//	broker, err := ssebroker.New(&ssebroker.Options{Log: room})
//
// Behind a load balancer, the balancer decides what a client sees when an
// instance goes away: DEPLOY.md, beside this package, says what a proxy
// must do (nginx, httputil.ReverseProxy), and what health checks and
// deploys mean for open streams.
//
// # Redis deployments
//
// A Streams works on one Redis node, on a master and its replicas watched
// by Sentinels, and on a Redis Cluster, Redis 7.0 or later, each through its
// go-redis client; go-redis's URL parsers make each from one string:
//
//	// One node: redis.ParseURL("rediss://sse:secret@redis.example.com:6380/0")
//	client := redis.NewClient(&redis.Options{Addr: "10.0.0.5:6379",
//		Username: "sse", Password: "secret", ContextTimeoutEnabled: true})
//
//	// Sentinel: redis.ParseFailoverURL("redis://10.0.0.7:26379?master_name=mymaster&" +
//	//	"addr=10.0.0.8:26379&addr=10.0.0.9:26379&username=sse&password=secret")
//	client := redis.NewFailoverClient(&redis.FailoverOptions{MasterName: "mymaster",
//		SentinelAddrs: []string{"10.0.0.7:26379", "10.0.0.8:26379", "10.0.0.9:26379"},
//		Username: "sse", Password: "secret", ContextTimeoutEnabled: true})
//
//	// Cluster, any of its nodes: redis.ParseClusterURL("redis://sse:secret@10.0.0.5:7000?addr=10.0.0.6:7000")
//	client := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{"10.0.0.5:7000", "10.0.0.6:7000"},
//		Username: "sse", Password: "secret", ContextTimeoutEnabled: true, ReadTimeout: time.Second})
//
// (examples/chat takes any of these strings as its -redis flag.) With
// Sentinel, use the client that talks to the master only, as above: reads
// must see the Appends before them, which a replica may not have yet (so
// not RouteByLatency, RouteRandomly nor ReplicaOnly). In a URL for Sentinel,
// a user and password before the host are the Sentinels'; the master's go
// in the username and password parameters. In a Cluster, a node that stops
// answering holds up go-redis's reload of its map of the slots for its
// ReadTimeout: keep that short (a second). ContextTimeoutEnabled lets
// Options.Timeout bound every command.
//
// A failover of any kind costs each client one reset (see Epochs); with
// MinReplicas, an Append succeeds only once replicas have it. A Sentinel
// failover that an operator asks for (SENTINEL FAILOVER) does not stop the
// old master: until go-redis moves to the new one, Appends go on there, and
// are lost, unseen by clients that had already moved. Set
// min-replicas-to-write 1 on the masters (with two replicas each, so that
// losing one does not stop writes): the old master then refuses them
// (NOREPLICAS) once its replica has left it, and the Streams sends them
// again, to the new master.
//
// # Security
//
// The least privilege a Streams needs, with the default Prefix, is this
// (one line; the module's tests run as a user with exactly these rules):
//
//	ACL SETUSER sse on >secret resetkeys ~sse:* resetchannels &sse:* -@all
//	  +evalsha +eval +info +hmget +hset +del +xadd +xtrim +xrange +xdel +xsetid
//	  +pexpire +persist +publish +wait +subscribe +unsubscribe +ping
//	  +cluster|slots
//
// Every key and channel it uses begins with the prefix. The commands: those
// its scripts run (INFO reads the server's replication id: see Epochs),
// EVALSHA and EVAL (when Redis has lost its script cache), XRANGE and HMGET
// for its followers' reads, WAIT (MinReplicas), its Pub/Sub connection's
// SUBSCRIBE, UNSUBSCRIBE and PING (a liveness check), and CLUSTER SLOTS, with
// which go-redis learns a Cluster's slots. HELLO and AUTH, with which it logs
// in, need no rule; it also sends CLIENT SETINFO, and carries on when that is
// refused. Sentinels have users of their own
// (FailoverOptions.SentinelUsername). A user allowed to PUBLISH on a topic's
// channel, and no more, can make the Streams that follow it read the topic,
// and nothing else (see How it works); one allowed to write its keys can
// rewrite its history.
//
// For TLS, give the client a TLSConfig (Options, FailoverOptions and
// ClusterOptions each take one), or use a rediss:// URL, with Redis
// listening on its tls-port; Sentinel's own connections take
// FailoverOptions.TLSConfig too.
//
// # How it works
//
// Each topic has two keys, which share a Redis Cluster hash slot: a stream
// ("<prefix>{<topic>}:log") holding the topic's most recent events, and a
// hash ("<prefix>{<topic>}:meta") holding its epoch and its last offset.
// Append runs one Lua script that gives each event the topic's next offset,
// adds it to the stream with that offset as its id ("<offset>-0"), trims the
// stream to MaxLen events, and PUBLISHes the events to the topic's channel
// ("<prefix>{<topic>}:live"), all in one atomic step. Appends that arrive
// together share one round trip: one pipeline, and one script call per
// topic.
//
// Each Streams holds one Pub/Sub connection, whatever the number of topics,
// and subscribes to a topic's channel only while some Follow of that topic
// is running. A topic that no one follows in a process costs that process
// nothing. A message on the channel is only a hint that the topic has new
// events: the Streams reads them from the stream (XRANGE after the last
// event it handed over, and HMGET of the meta hash) before it hands them to
// its followers, so a client allowed to PUBLISH on the channel, but not to
// write the keys, can make it read, and nothing more. (The messages hold the
// events too, for Streams of earlier versions.)
//
// While it follows something, a Streams checks every second that its Pub/Sub
// connection gets what the master publishes: a script PUBLISHes a token to a
// channel of its own ("<prefix>probe:<random>"), which its connection must
// receive. After a Sentinel failover, go-redis moves its command connections
// to the new master but leaves the Pub/Sub connection where it was: on the
// old master, still running, which gets nothing more until the Sentinels
// make it a replica (10 s or more). Nor does a connection to a node that
// stopped answering get anything. When the check fails, the Streams opens a
// new connection (go-redis dials the master), subscribes again, and reads
// the head of every followed topic, so its followers catch up.
//
// # Epochs
//
// A topic's epoch is drawn at random (64 bits from crypto/rand) by the first
// Append, Follow or ReadAfter that finds none in Redis, and kept in Redis.
// Within an epoch, each offset names one event for good; so the topic
// starts a new epoch whenever its history may have been lost, or forked:
//
//   - when its keys are gone (a Redis restarted without persistence,
//     FLUSHALL, eviction, IdleTTL);
//   - when the Redis that runs an Append is not the one that numbered the
//     topic's events. The topic's meta hash records the replication id
//     (master_replid) of the master that last numbered it, and Redis draws a
//     new one at every start, at every promotion of a replica, and when a
//     master without a replica gets its first one. So after a
//     restart, whatever the persistence, and after a failover of any kind
//     (Sentinel or Cluster, a crash, a pause, or an operator's), the first
//     Append to each topic starts a new epoch. A promoted replica holds only
//     what the old master had sent it (replication is asynchronous), and an
//     old master paused past the failover and resumed may number more
//     events, in the old epoch, before it learns that it was demoted: in a
//     new epoch, no offset names two events. Until that Append, reads (and
//     Follow) see the events the old master numbered and sent, which are
//     its own. A reshard that moves a topic's slot to another master of a
//     Cluster starts a new epoch too: to the script, a move looks like a
//     failover;
//   - when Redis has gone back in time within one history, keeping the epoch
//     but not the newest events (a RESTORE of an older DUMP).
//
// Clients holding an id of the old epoch then get a reset from their Broker,
// and reload: after a restart or a failover, every client of every topic
// gets one reset, where without it a client could resume after an offset
// whose event was lost, and miss events in silence.
//
// Redis gone back in time within one history is found out only by a Streams
// that saw the lost offsets. Each keeps, for every topic it appends to, reads
// or follows, the newest Position it has seen (its high-water mark) in the
// replies of Redis, and its next script call on the topic that finds the
// topic's offset below the mark, in the same epoch, starts a new epoch. A
// Streams that never saw the lost offsets cannot know.
//
// # Failures
//
// Append and ReadAfter return within Options.Timeout (or their context's
// deadline, if sooner) with an error when Redis does not answer. An Append
// that fails may still take effect: a command sent before Redis stopped
// answering can run when it resumes. So a Streams never lets go-redis send
// a command again after a timeout or a broken connection (the client's
// MaxRetries): an Append run twice would be two events. go-redis retries a
// pipeline whole, and reads share pipelines with Appends, so reads are not
// retried by go-redis either: a ReadAfter that fails returns its error (the
// Broker asks again), and Follow reads the head again itself.
//
// What Redis provably did not run, a Streams sends again itself, every
// 100 ms until the call's deadline: a call that found no connection (a
// Redis restarting, a dead master before its replica takes over), and one
// that Redis refused before running it (CLUSTERDOWN, TRYAGAIN, MOVED or
// ASK past go-redis's redirects, READONLY from a master demoted to
// replica, LOADING, MASTERDOWN, BUSY). After any failed round trip on a
// Cluster it has go-redis reload its map of the slots (ReloadState), which
// go-redis otherwise does every minute, or on a MOVED reply that a dead
// master never sends: so Appends to a failed master's topics resume within
// moments of its replica's promotion, not a minute later.
//
// While the Pub/Sub connection is down, Follow retries; once Redis answers
// again it tells each follower where the log's head is, and the Broker
// catches up from the log.
//
// Use Redis 7.0 or later (the scripts use XSETID's MAXDELETEDID).
package redisstream

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/lightsse/sse/ssebroker"

	"github.com/redis/go-redis/v9"
)

// Defaults used when Options leaves a field zero.
const (
	DefaultPrefix        = "sse:"
	DefaultMaxLen        = 1000
	DefaultTimeout       = 2 * time.Second
	DefaultMaxEventBytes = 8 << 20
)

// MaxTopicLen is the longest topic name, in bytes.
const MaxTopicLen = 256

// Errors that errors.Is can match.
var (
	// ErrClosed is returned by the methods of a Streams, and of its Topics,
	// after Close.
	ErrClosed = errors.New("redisstream: closed")
	// ErrTimeout is returned by Append and ReadAfter when Redis has not
	// answered within Options.Timeout. An Append that timed out may still
	// take effect.
	ErrTimeout = errors.New("redisstream: Redis did not answer in time")
	// ErrInvalidTopic is returned by Topic for a name it refuses.
	ErrInvalidTopic = errors.New("redisstream: invalid topic name")
	// ErrInvalidOptions is returned by New for a nil client, and for
	// Options it refuses.
	ErrInvalidOptions = errors.New("redisstream: invalid options")
	// ErrEventTooLarge is returned by Append for an event over
	// Options.MaxEventBytes; nothing is sent to Redis.
	ErrEventTooLarge = errors.New("redisstream: event too large")
	// ErrNotReplicated is returned by Append, with Options.MinReplicas set,
	// when fewer replicas than that acknowledged the event before the
	// call's deadline. The event is in the master's log, and its
	// followers may have had it; but a failover now could lose it.
	ErrNotReplicated = errors.New("redisstream: event not acknowledged by enough replicas")
)

// Options configure a Streams. A nil *Options, and any zero field, means the
// default.
type Options struct {
	// Prefix begins every key and channel name (DefaultPrefix, "sse:").
	// It must not contain '{' or '}', which would change the keys' hash slot.
	Prefix string
	// MaxLen bounds each topic's log: it keeps the topic's MaxLen most
	// recent events (DefaultMaxLen, 1000). A client whose Last-Event-ID is
	// older gets a reset. Redis needs about MaxLen × (1.1 × the mean
	// encoded size of an event + 40 bytes) for each topic, measured on
	// Redis 7.0 (docs/several-instances.md, "Sizing Redis").
	MaxLen int
	// IdleTTL, if above 0, deletes a topic's keys after that long without
	// an Append (at least 1 ms). The next Append or read starts a new epoch,
	// so clients that come back with an id from before get a reset. Use it
	// when topics are many and short-lived (one per user, say); 0 keeps
	// every topic that has had an Append until its keys are deleted.
	//
	// A topic that has only been read (ReadAfter, Head, Follow), never
	// appended to, has only its epoch in Redis, which is deleted after
	// IdleTTL or an hour, whichever is longer, even when IdleTTL is 0: reads
	// of topics that no one appends to do not fill Redis.
	IdleTTL time.Duration
	// Timeout bounds each Append and ReadAfter, and each read of the head
	// that Follow makes (DefaultTimeout, 2 s). A call whose context ends
	// sooner returns sooner.
	//
	// A call that times out returns, but the command it sent to Redis may
	// still be under way: with a client made with ContextTimeoutEnabled,
	// go-redis also gives up on it after Timeout; otherwise only after the
	// client's ReadTimeout.
	Timeout time.Duration
	// MaxEventBytes bounds the wire form of one event (DefaultMaxEventBytes,
	// 8 MiB): Append refuses a larger one with ErrEventTooLarge, before
	// sending anything. Redis refuses a string over its proto-max-bulk-len
	// (512 MB by default) by dropping the connection; and a Pub/Sub message
	// over client-output-buffer-limit pubsub (32 MB by default, hard)
	// disconnects every follower. Keep MaxEventBytes under both. An event
	// over 1 MiB travels to Redis in a round trip of its own, so that should
	// Redis refuse it, it fails no other call.
	MaxEventBytes int
	// MinReplicas, if above 0, makes Append wait until that many replicas
	// of the topic's master have the event: after the scripts of a round
	// trip, the Streams sends WAIT MinReplicas <ms> on the same connection
	// (per master, in a Cluster), with most of the time left before the
	// round trip's deadline. An Append whose event fewer replicas
	// acknowledged returns ErrNotReplicated. So an Append that succeeded
	// survives a failover to any of those replicas; one that failed may
	// have been published, and lost. The reads that share the round trip
	// wait for the WAIT too. In a Cluster, an Append to a slot that is
	// being migrated waits (ASK is sent again, until the deadline) until
	// its keys have moved. It costs Appends per second: see RESULTS.md.
	MinReplicas int
}

// A Streams connects the Brokers of one process to the topics kept in one
// Redis deployment (a single node, Sentinel or Cluster). Make one per process
// with New, and one Topic for each topic. Its methods, and those of its
// Topics, are safe for concurrent use.
//
// A Streams runs a fixed number of goroutines, whatever the number of
// topics: the callers, two, that send Appends and reads to Redis, and, once
// something is followed, one that reads the Pub/Sub connection and one
// that hands events to followers. Close ends them all.
type Streams struct {
	client  redis.UniversalClient
	prefix  string
	maxLen  int
	ttlMS   int64
	timeout time.Duration
	maxWire int  // Options.MaxEventBytes
	wait    int  // Options.MinReplicas
	cluster bool // client is a *redis.ClusterClient

	ctx    context.Context // ends at Close
	cancel context.CancelFunc
	wg     sync.WaitGroup // every goroutine of the Streams

	calls calls  // commands waiting for a round trip to Redis
	subs  *feeds // followers and the Pub/Sub connection
	marks marks  // the newest Position seen of each topic

	closeOnce sync.Once
}

// New returns a Streams that keeps its topics in the Redis that client
// reaches. The client stays the caller's: Close does not close it, and it
// must stay open until Close has returned.
//
// For Timeout to bound every Redis command, and for Close to return
// quickly while Redis does not answer, make the client with
// ContextTimeoutEnabled: true.
//
// New returns ErrInvalidOptions for a nil client, a Prefix with '{' or
// '}', a negative MaxLen, Timeout, IdleTTL, MaxEventBytes or MinReplicas,
// or an IdleTTL under a millisecond.
func New(client redis.UniversalClient, opts *Options) (*Streams, error) {
	if v := reflect.ValueOf(client); client == nil || v.Kind() == reflect.Pointer && v.IsNil() {
		return nil, fmt.Errorf("%w: nil client", ErrInvalidOptions)
	}
	var o Options
	if opts != nil {
		o = *opts
	}
	switch {
	case strings.ContainsAny(o.Prefix, "{}"):
		return nil, fmt.Errorf("%w: Prefix %q contains '{' or '}'", ErrInvalidOptions, o.Prefix)
	case o.MaxLen < 0:
		return nil, fmt.Errorf("%w: MaxLen %d is negative", ErrInvalidOptions, o.MaxLen)
	case o.Timeout < 0:
		return nil, fmt.Errorf("%w: Timeout %v is negative", ErrInvalidOptions, o.Timeout)
	case o.IdleTTL < 0 || o.IdleTTL > 0 && o.IdleTTL < time.Millisecond:
		return nil, fmt.Errorf("%w: IdleTTL %v is negative or under 1 ms", ErrInvalidOptions, o.IdleTTL)
	case o.MaxEventBytes < 0:
		return nil, fmt.Errorf("%w: MaxEventBytes %d is negative", ErrInvalidOptions, o.MaxEventBytes)
	case o.MinReplicas < 0:
		return nil, fmt.Errorf("%w: MinReplicas %d is negative", ErrInvalidOptions, o.MinReplicas)
	}
	if o.Prefix == "" {
		o.Prefix = DefaultPrefix
	}
	if o.MaxLen == 0 {
		o.MaxLen = DefaultMaxLen
	}
	if o.Timeout == 0 {
		o.Timeout = DefaultTimeout
	}
	if o.MaxEventBytes == 0 {
		o.MaxEventBytes = DefaultMaxEventBytes
	}
	s := &Streams{
		client:  client,
		prefix:  o.Prefix,
		maxLen:  o.MaxLen,
		ttlMS:   o.IdleTTL.Milliseconds(),
		timeout: o.Timeout,
		maxWire: o.MaxEventBytes,
		wait:    o.MinReplicas,
	}
	_, s.cluster = client.(*redis.ClusterClient)
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.calls.init()
	for range callers {
		s.wg.Add(1)
		go s.call()
	}
	s.subs = newFeeds(s)
	return s, nil
}

// Close stops every Follow of the Streams' topics (no deliver call is made
// after Close returns), fails the Appends and reads waiting for Redis with
// ErrClosed, unsubscribes, and returns once every goroutine of the Streams
// has ended. It does not close the Redis client. It always returns nil, and
// is safe to call more than once.
//
// Close waits for a deliver call under way to return: calling it from
// deliver, or while holding something deliver waits for, never returns.
func (s *Streams) Close() error {
	s.closeOnce.Do(func() {
		s.cancel()
		s.calls.close()
		s.subs.close()
		s.wg.Wait()
	})
	return nil
}

// Topic returns the log of one topic, for use as an ssebroker.Options.Log.
// Topics of one name are interchangeable: they share the same keys.
//
// It returns ErrInvalidTopic for a name that is empty, longer than
// MaxTopicLen bytes, not valid UTF-8, or that contains '{' or '}' (which
// would change its keys' hash slot) or a control character.
func (s *Streams) Topic(name string) (*Topic, error) {
	if err := checkTopic(name); err != nil {
		return nil, err
	}
	base := s.prefix + "{" + name + "}:"
	return &Topic{s: s, name: name, keys: []string{base + "log", base + "meta"}, channel: base + "live"}, nil
}

func checkTopic(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("%w: empty", ErrInvalidTopic)
	case len(name) > MaxTopicLen:
		return fmt.Errorf("%w: %d bytes, over MaxTopicLen", ErrInvalidTopic, len(name))
	case !utf8.ValidString(name):
		return fmt.Errorf("%w: %q is not valid UTF-8", ErrInvalidTopic, name)
	case strings.ContainsAny(name, "{}"):
		return fmt.Errorf("%w: %q contains '{' or '}'", ErrInvalidTopic, name)
	case strings.IndexFunc(name, isControl) >= 0:
		return fmt.Errorf("%w: %q contains a control character", ErrInvalidTopic, name)
	}
	return nil
}

func isControl(r rune) bool { return r < 0x20 || r >= 0x7f && r < 0xa0 }

// A Topic is the log of one topic: an [ssebroker.Log] kept in Redis. Make one with
// Streams.Topic; a Topic stops working when its Streams closes.
type Topic struct {
	s       *Streams
	name    string
	keys    []string // the stream, then the meta hash
	channel string   // where Append publishes
}

var _ ssebroker.Log = (*Topic)(nil)

// Append adds wire to the topic's log as its newest event, and publishes it
// to every process that follows the topic, in one atomic step, and returns
// the event's Position. Appends that arrive together, for any topics of the
// Streams, share one round trip to Redis. An Append to a topic with no
// epoch, or whose history is found lost (see Epochs), starts a new epoch
// at offset 1.
//
// It returns ErrEventTooLarge for an event over Options.MaxEventBytes,
// sending nothing; ErrNotReplicated, with Options.MinReplicas, for an event
// that too few replicas acknowledged; ErrTimeout when Redis has not
// answered within Options.Timeout, the context's error when ctx ends first, ErrClosed after
// Close, and Redis's error otherwise. After an error other than
// ErrEventTooLarge the event may or may not be in the log: a command Redis
// received but had not answered (a paused server, a lost connection) can
// still take effect.
//
// Append does not modify wire, and keeps it only until it returns, with
// one exception: after an error, a round trip that was already sending
// wire to Redis when Append gave up may still read it, until that round
// trip ends (one that had not begun leaves the event out). So do not
// modify wire after an error; the Broker never does.
func (t *Topic) Append(ctx context.Context, wire []byte) (ssebroker.Position, error) {
	if len(wire) > t.s.maxWire {
		return ssebroker.Position{}, fmt.Errorf("%w: %d bytes, over MaxEventBytes (%d)", ErrEventTooLarge, len(wire), t.s.maxWire)
	}
	c := &call{topic: t, kind: appendCall, wire: wire}
	if err := t.s.do(ctx, c); err != nil {
		return ssebroker.Position{}, err
	}
	return c.head, nil
}

// ReadAfter returns the events of the topic that follow after, in order and
// without a gap, until they hold at least max bytes or reach the head; and
// the head, the Position of the topic's newest event. It returns no events
// when after is the head or past it, when after.Epoch is not the topic's
// epoch, or when the log no longer holds the event at after.Offset+1. A
// topic with no epoch yet, or whose history is found lost (see Epochs),
// gets a new one, with an empty log.
//
// It returns the same errors as Append, except that a failed ReadAfter
// changed nothing but, perhaps, the creation of the topic's epoch.
func (t *Topic) ReadAfter(ctx context.Context, after ssebroker.Position, limit int) ([][]byte, ssebroker.Position, error) {
	c := &call{topic: t, kind: readCall, after: after, max: limit}
	if err := t.s.do(ctx, c); err != nil {
		return nil, ssebroker.Position{}, err
	}
	return c.wires, c.head, nil
}

// Head returns the Position of the topic's newest event (Offset 0 if its
// epoch has none yet), giving the topic a new epoch as ReadAfter does. It
// returns the same errors as ReadAfter.
func (t *Topic) Head(ctx context.Context) (ssebroker.Position, error) {
	c := &call{topic: t, kind: headCall}
	if err := t.s.do(ctx, c); err != nil {
		return ssebroker.Position{}, err
	}
	return c.head, nil
}
