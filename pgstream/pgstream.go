// Package pgstream keeps the history of sse Brokers in PostgreSQL, so that
// Brokers in several processes serve one stream, and so that an event can be
// published in the same transaction as the change it describes: it reaches
// clients if and only if that transaction commits, in commit order.
//
// One Streams serves a whole process; each topic is an [ssebroker.Log]:
//
//	pool, err := pgxpool.New(ctx, "postgres://app@db.internal/app")
//	...
//	err = pgstream.Migrate(ctx, pool, nil) // or run schema.sql in your migration tool
//	...
//	streams, err := pgstream.New(pool, nil)
//	...
//	defer streams.Close()
//	room, err := streams.Topic("room:42")
//	...
//	broker, err := ssebroker.New(&ssebroker.Options{Log: room})
//
// and, where the application changes its data:
//
//	tx, err := pool.Begin(ctx)
//	...
//	_, err = tx.Exec(ctx, "INSERT INTO messages ...")
//	...
//	_, err = room.PublishTx(ctx, tx, sse.Event{Type: "message", Data: text})
//	...
//	err = tx.Commit(ctx) // the event reaches the room's clients now, or never
//
// Broker.Publish keeps working: it appends in a transaction of its own.
//
// # How it works
//
// Two tables (see SchemaSQL) hold the topics and their events. A topic's row
// holds its epoch and head, the offset of its newest event. An Append
// updates the row, adding its events to head, and inserts them with the
// offsets it took, in one statement, then sends a notification; the row
// stays locked until the transaction ends. So a second transaction that
// appends to the topic waits until the first has committed (and takes the
// offsets after the first's) or rolled back (and takes the same offsets
// instead): offsets follow commit order, and no offset is left unused. A
// reader that sees an offset sees every one before it. (A sequence could not
// do this: it hands out numbers in the order transactions ask, and they
// commit in another, or not at all.)
//
// Appends made through Append that arrive together share one round trip
// and one transaction: one statement per topic, topics in the order of
// their names, so that two such transactions never wait for each other in
// a cycle.
//
// Each Streams holds one connection of its own, outside the pool, on which
// it LISTENs once something is followed, whatever the number of topics. A
// notification carries a topic's name, epoch and new head, and no event: it
// only wakes the processes that follow the topic, which read what is new
// from the table (through the pool), from the last event they handed over,
// and hand it to their Brokers. (So a NOTIFY from elsewhere, which any role
// that can connect may send, can wake a follower but never hand it an
// event.) PostgreSQL sends notifications once their
// transaction has committed, in commit order. (What a Streams appends
// itself through Append, its own followers get once the round trip has
// committed, without waiting for the notification.)
//
// # Retention
//
// Each topic keeps its Options.MaxLen newest events, none older than
// Options.MaxAge if set. Every Options.TrimInterval, one of the Streams
// that share the tables deletes the rest: for each topic, the events before
// the oldest it keeps, so that what is kept has no gap. Trimming takes no
// lock that an Append or a read waits for (a DELETE locks only the rows it
// deletes), and goes a hundred topics at a time, one DELETE each, along the
// primary key: topics with nothing to delete cost one index probe. A client
// whose Last-Event-ID is older than what is kept gets a reset from its
// Broker.
//
// # Connection poolers
//
// LISTEN needs a session: a connection that stays the same server session
// for as long as it is open. A pooler in transaction mode (PgBouncer with
// pool_mode = transaction, RDS Proxy, Supavisor in transaction mode) hands
// the next command to any server connection, so LISTEN there does nothing
// useful: notifications are lost, and followers only learn of new events by
// polling. Give New a pool that connects to PostgreSQL directly, or through
// a pooler in session mode (PgBouncer's pool_mode = session, its
// default). The pool may also go through a transaction-mode pooler if the
// listener does not: the listener connects with the pool's configuration,
// so point that pool at PostgreSQL or a session-mode port. (With
// PgBouncer before 1.21 in transaction mode, pgx's default prepared
// statements fail too: set the pool's DefaultQueryExecMode to
// pgx.QueryExecModeExec.)
//
// The listening connection sends a query after 5 s without a notification,
// to find a connection that died without a word; so an idle timeout longer
// than that (idle_session_timeout, a proxy's or a load balancer's) never
// ends it. Whatever ends it, the listener connects again, and its followers
// read what they missed.
//
// # Failures
//
// Append and ReadAfter return within Options.Timeout (or their context's
// deadline, if sooner) with an error when PostgreSQL does not answer. An
// Append whose commit was sent but not acknowledged (a lost connection, a
// crash at the wrong moment) may have taken effect: pgstream never sends it
// again, and reports the error. One that was acknowledged is committed:
// with synchronous_commit on (PostgreSQL's default), a crash loses nothing
// acknowledged.
//
// While the listening connection is down, Follow polls every
// Options.PollInterval, and reconnects; once it is back, it reads what it
// missed. A follower never skips an event: it is handed every event after
// the head it started at, or a new head where the topic's history was lost.
//
// # Epochs
//
// A topic's epoch is drawn at random (64 bits) when its row is made: by the
// first Append, ReadAfter, Head or Follow of a topic that has none. (So a
// read of a made-up name leaves a row of about 100 bytes: check names
// before a request picks a topic.) It changes only when the row is deleted
// (DELETE FROM sse_topics WHERE name = ..., by hand; its events are no
// longer read, since they belong to the row's id, and go at the next trim),
// so that clients with an id of the old history get a reset.
//
// A database that goes back in time keeps the epoch but not the newest
// events, and would give their offsets again, to other events: a restore
// from a backup to an earlier point, a failover to an asynchronous replica
// that lagged, or a crash with synchronous_commit off. pgstream cannot see
// that; after such an event, run NewEpochs, so that clients that hold an id
// of the lost events get a reset rather than miss the events that took
// their offsets.
package pgstream

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/lightsse/sse/ssebroker"
)

// Defaults used when Options leaves a field zero.
const (
	DefaultSchema       = "public"
	DefaultPrefix       = "sse_"
	DefaultMaxLen       = 1000
	DefaultTimeout      = 5 * time.Second
	DefaultPollInterval = time.Second
	DefaultTrimInterval = 10 * time.Second
)

// MaxTopicLen is the longest topic name, in bytes.
const MaxTopicLen = 256

// Errors that errors.Is can match.
var (
	// ErrClosed is returned by the methods of a Streams, and of its
	// Topics, after Close.
	ErrClosed = errors.New("pgstream: closed")
	// ErrTimeout is returned by Append and ReadAfter when PostgreSQL has
	// not answered within Options.Timeout. An Append that timed out may
	// still take effect.
	ErrTimeout = errors.New("pgstream: PostgreSQL did not answer in time")
	// ErrInvalidTopic is returned by Topic for a name it refuses.
	ErrInvalidTopic = errors.New("pgstream: invalid topic name")
	// ErrInvalidOptions is returned by New and Migrate for a nil pool,
	// and by New, SchemaSQL and Migrate for Options they refuse.
	ErrInvalidOptions = errors.New("pgstream: invalid options")
)

// Options configure a Streams, and name its tables. A nil *Options, and any
// zero field, means the default.
type Options struct {
	// Schema holds the tables (DefaultSchema, "public"). Any name
	// PostgreSQL takes (up to 63 bytes) but one with a '$' (the migration
	// quotes code with $$); it is quoted, so its case is kept.
	Schema string
	// Prefix begins the tables' names (DefaultPrefix, "sse_"): tables
	// <Prefix>topics and <Prefix>events. Lowercase letters, digits and
	// underscores, up to 40 bytes, not beginning with a digit.
	Prefix string
	// MaxLen: each topic keeps its MaxLen newest events (DefaultMaxLen,
	// 1000), and those older go at the next trim (see TrimInterval). A
	// client whose Last-Event-ID is older gets a reset. Below 0: no bound
	// by count.
	MaxLen int
	// MaxAge, if above 0, bounds the age of the events kept: those
	// appended longer ago go at the next trim, even among the MaxLen
	// newest. 0: no bound by age.
	MaxAge time.Duration
	// TrimInterval is how often a Streams deletes what MaxLen and MaxAge
	// no longer keep (DefaultTrimInterval, 10 s); one Streams of all those
	// that share the tables trims at a time. Below 0: never; call Trim
	// yourself (from a cron job, say).
	TrimInterval time.Duration
	// Timeout bounds each Append, ReadAfter and Head, and each read that
	// Follow makes (DefaultTimeout, 5 s). A call whose context ends sooner
	// returns sooner.
	Timeout time.Duration
	// PollInterval is how often Follow reads the topics it follows while
	// its listening connection is down (DefaultPollInterval, 1 s). While
	// down, the listener tries to connect again every PollInterval, or
	// every second if that is sooner.
	PollInterval time.Duration
}

func (opts *Options) withDefaults() (Options, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.Schema == "" {
		o.Schema = DefaultSchema
	}
	if o.Prefix == "" {
		o.Prefix = DefaultPrefix
	}
	switch {
	case len(o.Schema) > maxIdentifier || strings.ContainsAny(o.Schema, "\x00$") || !utf8.ValidString(o.Schema):
		return o, fmt.Errorf("%w: Schema %q: want up to 63 bytes of UTF-8, with no NUL and no '$'", ErrInvalidOptions, o.Schema)
	case !validPrefix(o.Prefix):
		return o, fmt.Errorf("%w: Prefix %q: want lowercase letters, digits and '_', up to 40 bytes, not beginning with a digit", ErrInvalidOptions, o.Prefix)
	case o.MaxAge < 0:
		return o, fmt.Errorf("%w: MaxAge %v is negative", ErrInvalidOptions, o.MaxAge)
	case o.Timeout < 0:
		return o, fmt.Errorf("%w: Timeout %v is negative", ErrInvalidOptions, o.Timeout)
	case o.PollInterval < 0:
		return o, fmt.Errorf("%w: PollInterval %v is negative", ErrInvalidOptions, o.PollInterval)
	}
	if o.MaxLen == 0 {
		o.MaxLen = DefaultMaxLen
	}
	if o.TrimInterval == 0 {
		o.TrimInterval = DefaultTrimInterval
	}
	if o.Timeout == 0 {
		o.Timeout = DefaultTimeout
	}
	if o.PollInterval == 0 {
		o.PollInterval = DefaultPollInterval
	}
	return o, nil
}

func validPrefix(p string) bool {
	if len(p) > 40 || p[0] >= '0' && p[0] <= '9' {
		return false
	}
	for i := 0; i < len(p); i++ {
		if c := p[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// A Streams connects the Brokers of one process to the topics kept in one
// PostgreSQL database. Make one per process with New, and one Topic for
// each topic. Its methods, and those of its Topics, are safe for concurrent
// use.
//
// A Streams runs a fixed number of goroutines, whatever the number of
// topics: the callers, two, that send Appends; the trimmer, unless
// TrimInterval is below 0; and, once something is followed, one that
// listens and one that reads and hands events to followers. It uses the
// pool's connections for its calls, a few at a time, and one connection of
// its own to listen. Close ends them all.
type Streams struct {
	pool *pgxpool.Pool
	n    names
	o    Options

	ctx    context.Context // ends at Close
	cancel context.CancelFunc
	wg     sync.WaitGroup // every goroutine of the Streams

	calls calls  // Appends waiting for a round trip
	subs  *feeds // followers, and the listening connection

	closeOnce sync.Once
}

// New returns a Streams that keeps its topics in the tables that opts
// names, in the database pool connects to. The tables must exist: run
// Migrate, or SchemaSQL's SQL, first. The pool stays the caller's: Close
// does not close it, and it must stay open until Close has returned. It
// must reach PostgreSQL directly or through a pooler in session mode (see
// Connection poolers).
//
// New returns ErrInvalidOptions for a nil pool, a Schema or Prefix it
// refuses (see Options), or a negative MaxAge, Timeout or PollInterval.
func New(pool *pgxpool.Pool, opts *Options) (*Streams, error) {
	if pool == nil {
		return nil, fmt.Errorf("%w: nil pool", ErrInvalidOptions)
	}
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	s := &Streams{pool: pool, n: newNames(o.Schema, o.Prefix), o: o}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.calls.init()
	for range callers {
		s.wg.Add(1)
		go s.call()
	}
	s.subs = newFeeds(s)
	if o.TrimInterval > 0 {
		s.wg.Add(1)
		go s.trimEvery(o.TrimInterval)
	}
	return s, nil
}

// Close stops every Follow of the Streams' topics (no deliver call is made
// after Close returns), fails the Appends waiting for their round trip with
// ErrClosed, closes the listening connection, and returns once every
// goroutine of the Streams has ended. It does not close the pool. It always
// returns nil, and is safe to call more than once.
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
// Topics of one name are interchangeable: they share the same row.
//
// It returns ErrInvalidTopic for a name that is empty, longer than
// MaxTopicLen bytes, not valid UTF-8, or that contains a control character.
func (s *Streams) Topic(name string) (*Topic, error) {
	if err := checkTopic(name); err != nil {
		return nil, err
	}
	return &Topic{s: s, name: name}, nil
}

func checkTopic(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("%w: empty", ErrInvalidTopic)
	case len(name) > MaxTopicLen:
		return fmt.Errorf("%w: %d bytes, over MaxTopicLen", ErrInvalidTopic, len(name))
	case !utf8.ValidString(name):
		return fmt.Errorf("%w: %q is not valid UTF-8", ErrInvalidTopic, name)
	case strings.IndexFunc(name, isControl) >= 0:
		return fmt.Errorf("%w: %q contains a control character", ErrInvalidTopic, name)
	}
	return nil
}

func isControl(r rune) bool { return r < 0x20 || r >= 0x7f && r < 0xa0 }

// A Topic is the log of one topic: an [ssebroker.Log] kept in PostgreSQL. Make
// one with Streams.Topic; a Topic stops working when its Streams closes.
type Topic struct {
	s    *Streams
	name string
}

var _ ssebroker.Log = (*Topic)(nil)

// Name returns the topic's name.
func (t *Topic) Name() string { return t.name }
