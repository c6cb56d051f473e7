package redisstream

import (
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lightsse/sse/internal/logtest"
	"github.com/lightsse/sse/ssebroker"

	"github.com/lightsse/sse/redisstream/internal/redistest"
	"github.com/redis/go-redis/v9"
)

// admin returns a client for the test's own commands to srv, as its default
// user, which may run any command; closed when the test ends.
func admin(t *testing.T, srv *redistest.Server) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: srv.Addr(), ContextTimeoutEnabled: true, MaxRetries: -1,
		DialTimeout: time.Second, ReadTimeout: 2 * time.Second})
	t.Cleanup(func() { c.Close() })
	return c
}

// A pipelineCounter counts the pipelines of scripts a client sends, and the
// commands in them (not those go-redis sends to set up a connection).
type pipelineCounter struct{ pipelines, cmds atomic.Int64 }

func (*pipelineCounter) DialHook(next redis.DialHook) redis.DialHook { return next }
func (*pipelineCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return next
}
func (p *pipelineCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if name := cmds[0].Name(); name == "evalsha" || name == "eval" {
			p.pipelines.Add(1)
			p.cmds.Add(int64(len(cmds)))
		}
		return next(ctx, cmds)
	}
}

func TestAppendsShareRoundTrips(t *testing.T) {
	srv := redistest.Start(t)
	client := newClient(t, srv)
	var count pipelineCounter
	client.AddHook(&count)
	s, err := New(client, &Options{Timeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	tops := []*Topic{topic(t, s, "a"), topic(t, s, "b"), topic(t, s, "c")}
	if _, err := topic(t, s, "warm-up").Append(t.Context(), logtest.Wire(0)); err != nil { // loads the script
		t.Fatal(err)
	}
	count.pipelines.Store(0)
	count.cmds.Store(0)
	// With Redis paused, the first calls wait in the callers' round trips
	// and every later one in the queue: when Redis resumes, those share one.
	s.calls.mu.Lock()
	taken0 := s.calls.taken
	s.calls.mu.Unlock()
	srv.Pause()
	const n = 300
	var wg sync.WaitGroup
	offsets := make([][]uint64, len(tops))
	var mu sync.Mutex
	for i := range n {
		wg.Go(func() {
			tp := tops[i%len(tops)]
			p, err := tp.Append(t.Context(), logtest.Wire(i))
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			offsets[i%len(tops)] = append(offsets[i%len(tops)], p.Offset)
			mu.Unlock()
		})
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		s.calls.mu.Lock()
		queued, taken := len(s.calls.queue), s.calls.taken-taken0
		s.calls.mu.Unlock()
		if queued+taken == n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d Appends queued", queued, n)
		}
	}
	srv.Resume()
	wg.Wait()
	// At most: one round trip per caller for the first arrivals, one for
	// the rest; one script call per topic in each.
	if p, c := count.pipelines.Load(), count.cmds.Load(); p > callers+1 || c > (callers+1)*int64(len(tops)) {
		t.Errorf("%d Appends to %d topics took %d pipelines of %d script calls in all; want at most %d and %d", n, len(tops), p, c, callers+1, (callers+1)*len(tops))
	}
	for i, offs := range offsets {
		seen := make(map[uint64]bool)
		for _, o := range offs {
			if o < 1 || o > n/3 || seen[o] {
				t.Errorf("topic %d: offset %d repeated or out of 1..%d", i, o, n/3)
			}
			seen[o] = true
		}
	}
}

func TestAppendFailsInTimeWhileRedisPaused(t *testing.T) {
	srv := redistest.Start(t)
	const timeout = 300 * time.Millisecond
	tp := topic(t, newStreams(t, srv, &Options{Timeout: timeout}), "room")
	logtest.AppendN(t, tp, 1, 1)
	srv.Pause()
	defer srv.Resume()
	for i := range 3 {
		start := time.Now()
		_, err := tp.Append(t.Context(), logtest.Wire(2+i))
		logtest.Within(t, "Append to a paused Redis", time.Since(start), timeout)
		if !errors.Is(err, ErrTimeout) {
			t.Errorf("Append to a paused Redis: %v, want ErrTimeout", err)
		}
	}
	start := time.Now()
	_, _, err := tp.ReadAfter(t.Context(), ssebroker.Position{}, 1)
	logtest.Within(t, "ReadAfter from a paused Redis", time.Since(start), timeout)
	if !errors.Is(err, ErrTimeout) {
		t.Errorf("ReadAfter from a paused Redis: %v, want ErrTimeout", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if _, err := tp.Append(ctx, logtest.Wire(9)); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Append with a context that ends first: %v, want context.DeadlineExceeded", err)
	}
}

func TestAppendFailsInTimeWhileRedisDown(t *testing.T) {
	srv := redistest.Start(t)
	const timeout = 300 * time.Millisecond
	tp := topic(t, newStreams(t, srv, &Options{Timeout: timeout}), "room")
	logtest.AppendN(t, tp, 1, 1)
	srv.Kill()
	for i := range 3 {
		start := time.Now()
		_, err := tp.Append(t.Context(), logtest.Wire(2+i))
		logtest.Within(t, "Append to a stopped Redis", time.Since(start), timeout)
		var op *net.OpError
		if !errors.Is(err, ErrTimeout) && !errors.As(err, &op) {
			t.Errorf("Append to a stopped Redis: %v, want ErrTimeout or a network error", err)
		}
	}
	srv.Restart()
	if _, err := tp.Append(t.Context(), logtest.Wire(5)); err != nil {
		t.Errorf("Append once Redis is back: %v", err)
	}
}

func TestFollowAcrossRedisRestart(t *testing.T) {
	srv := redistest.Start(t)
	s := newStreams(t, srv, nil)
	tp := topic(t, s, "room")
	r, _ := logtest.Follow(t, tp)
	r.Wait("the head", 10*time.Second, logtest.Started)
	first := logtest.AppendN(t, tp, 1, 3)[0].Epoch
	r.Wait("3 events", 10*time.Second, logtest.Got(3))
	srv.Restart() // empty: no persistence
	second := r.Wait("a new epoch", 20*time.Second, func(s *logtest.State) bool { return len(s.Resets) == 1 }).Epoch
	r.Forget() // the old epoch's events; the check below is of the new one
	if second == first {
		t.Fatalf("the epoch after a restart without persistence is still %s", first)
	}
	ps := logtest.AppendN(t, tp, 4, 6)
	if ps[0].Epoch != second || ps[0].Offset != 1 {
		t.Errorf("first Append after the restart: %v, want %s-1", ps[0], second)
	}
	r.Wait("3 more events", 10*time.Second, logtest.Got(3))
	r.CheckLog(0)
}

func TestFollowThroughPause(t *testing.T) {
	srv := redistest.Start(t)
	const timeout = 300 * time.Millisecond
	s := newStreams(t, srv, &Options{Timeout: timeout})
	tp := topic(t, s, "room")
	other := topic(t, newStreams(t, srv, &Options{Timeout: timeout}), "room")
	r, _ := logtest.Follow(t, tp)
	r.Wait("the head", 10*time.Second, logtest.Started)
	logtest.AppendN(t, other, 1, 3)
	r.Wait("3 events", 10*time.Second, logtest.Got(3))
	srv.Pause()
	if _, err := other.Append(t.Context(), logtest.Wire(4)); !errors.Is(err, ErrTimeout) {
		t.Errorf("Append while paused: %v, want ErrTimeout", err)
	}
	time.Sleep(time.Second)
	srv.Resume()
	logtest.AppendN(t, other, 5, 7)
	// The Append that timed out may or may not be in the log; whatever the
	// log holds, the follower has, in its order.
	r.Wait("event 7", 20*time.Second, func(s *logtest.State) bool { return len(s.Got) > 0 && s.Got[len(s.Got)-1] == 7 })
	r.CheckLog(0)
}

// Once every Follow of a topic has stopped, its Streams unsubscribes from
// the topic's channel, and from its probe channel.
func TestStopUnsubscribes(t *testing.T) {
	srv := redistest.Start(t)
	s := newStreams(t, srv, nil)
	tp := topic(t, s, "room")
	stop, _, _ := logtest.FollowCountingLate(t, tp)
	r, stopR := logtest.Follow(t, tp)
	r.Wait("the head", 10*time.Second, logtest.Started)
	stop()
	stopR()
	a := admin(t, srv)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		subs, err := a.PubSubNumSub(t.Context(), tp.channel).Result()
		if err != nil {
			t.Fatal(err)
		}
		probes, err := a.PubSubChannels(t.Context(), "sse:probe:*").Result()
		if err != nil {
			t.Fatal(err)
		}
		if subs[tp.channel] == 0 && len(probes) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d subscriptions to %s, and to the probe channels %v, left after every Follow stopped", subs[tp.channel], tp.channel, probes)
		}
	}
}

func TestManyTopicsFewFollowed(t *testing.T) {
	srv := redistest.Start(t)
	a := admin(t, srv)
	const topics, followed = 10000, 10
	before := runtime.NumGoroutine()
	s := newStreams(t, srv, nil)
	tops := make([]*Topic, topics)
	for i := range tops {
		tops[i] = topic(t, s, fmt.Sprint("user:", i))
	}
	var wg sync.WaitGroup
	for w := range 50 {
		wg.Go(func() {
			for i := w; i < topics; i += 50 {
				if _, err := tops[i].Append(context.Background(), logtest.Wire(i)); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	var readers []*logtest.Follower
	for _, tp := range tops[:followed] {
		r, _ := logtest.Follow(t, tp)
		readers = append(readers, r)
	}
	for _, r := range readers {
		r.Wait("the head", 10*time.Second, logtest.Started)
	}
	for i, tp := range tops[:followed] {
		logtest.AppendN(t, tp, 100000+i, 100000+i)
	}
	for i, r := range readers {
		r.Wait("its event", 10*time.Second, func(s *logtest.State) bool { return len(s.Got) == 1 && s.Got[0] == 100000+i })
	}
	// Goroutines: the callers, the loop and the reader, and go-redis's own
	// for the client (a few); none per topic.
	if n := runtime.NumGoroutine() - before; n > callers+2+8 {
		t.Errorf("%d goroutines more than before the Streams; want at most %d", n, callers+2+8)
	}
	chans, err := a.PubSubChannels(t.Context(), "sse:{*}:live").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(chans) != followed {
		t.Errorf("%d topics' channels subscribed, want %d (the followed topics)", len(chans), followed)
	}
	if probes, err := a.PubSubChannels(t.Context(), "sse:probe:*").Result(); err != nil || len(probes) != 1 {
		t.Errorf("probe channels subscribed: %v, %v; want the Streams' one", probes, err)
	}
	list, err := a.ClientList(t.Context()).Result()
	if err != nil {
		t.Fatal(err)
	}
	// Connections: the admin client's one, the Streams' pool (the pipelines
	// of the callers, which go-redis may have spread over a few) and its
	// Pub/Sub connection.
	if n := strings.Count(strings.TrimSpace(list), "\n") + 1; n > 1+callers+1+4 {
		t.Errorf("%d connections to Redis, want at most %d:\n%s", n, 1+callers+1+4, list)
	}
	t.Logf("after %d Appends to %d topics, %d followed: %d goroutines more, %d connections", topics, topics, followed,
		runtime.NumGoroutine()-before, strings.Count(strings.TrimSpace(list), "\n")+1)
}

// stop, called while the loop is in another follower's deliver, returns at
// once, and the stopped follower gets nothing after it.
func TestNoDeliverAfterStop(t *testing.T) {
	srv := redistest.Start(t)
	s := newStreams(t, srv, nil)
	logtest.NoDeliverAfterStop(t, topic(t, s, "room"), func() bool { return len(s.subs.inbox) > 0 })
}

// A Pub/Sub connection on which nothing, not even the answer to a PING, has
// come for pingAfter+pingTimeout is replaced: a peer lost without a reset
// (a dead host, a dropped route) would otherwise leave it dead for good.
func TestDeadConnectionReplaced(t *testing.T) {
	after, timeout := pingAfter, pingTimeout
	t.Cleanup(func() { pingAfter, pingTimeout = after, timeout }) // after the Streams has closed
	pingAfter, pingTimeout = 100*time.Millisecond, 200*time.Millisecond
	srv := redistest.Start(t)
	px := logtest.NewProxy(t, srv.Addr())
	client := redis.NewClient(&redis.Options{Addr: px.Addr(), ContextTimeoutEnabled: true, MaxRetries: -1,
		DialTimeout: time.Second, ReadTimeout: time.Second})
	t.Cleanup(func() { client.Close() })
	s, err := New(client, &Options{Timeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	r, _ := logtest.Follow(t, topic(t, s, "room"))
	r.Wait("the head", 10*time.Second, logtest.Started)
	px.Freeze() // every connection so far now carries nothing, and never closes
	pub := topic(t, newStreams(t, srv, nil), "room")
	logtest.AppendN(t, pub, 1, 3)
	r.Wait("3 events, on a new connection", 20*time.Second, logtest.Got(3))
	r.CheckLog(0)
}

// A connection whose answer to a PING waits in the inbox, unread because
// the loop was busy (a deliver that filled a gap, say), is alive: check
// does not replace it. The feeds here run no loop: the test is the loop.
func TestBusyLoopKeepsLiveConnection(t *testing.T) {
	srv := redistest.Start(t)
	s := newStreams(t, srv, nil)
	fs := newFeeds(s)
	t.Cleanup(func() {
		fs.close()
		_ = fs.ps.Close() // the latest: check may have replaced it
	})
	tp := topic(t, s, "room")
	fs.feeds[tp.channel] = &feed{topic: tp, confirmed: true, wait: s.timeout}
	fs.connect()
	gen := fs.gen
	fs.lastRead = time.Now().Add(-pingAfter - pingTimeout)
	fs.pingSent = time.Now().Add(-pingTimeout) // and the loop busy since
	fs.inbox <- item{gen: gen, msg: &redis.Pong{}}
	fs.check()
	if fs.gen != gen {
		t.Fatal("check replaced a connection whose PONG waited in the inbox")
	}
	// Likewise once the loop has handled anything read since the PING,
	// its answer or not (here a message for a topic no longer followed).
	<-fs.inbox
	fs.pingSent = time.Now().Add(-pingTimeout)
	fs.handle(item{gen: gen, msg: &redis.Message{Channel: "gone"}})
	fs.check()
	if fs.gen != gen {
		t.Error("check replaced a connection on which a message came after the PING")
	}
}

// An Append whose caller has given up (its timeout, its context) is left out
// of the round trip that takes it: its caller may be using wire again.
func TestAbandonedAppendNotSent(t *testing.T) {
	srv := redistest.Start(t)
	s := newStreams(t, srv, nil)
	tp := topic(t, s, "room")
	epoch := logtest.AppendN(t, tp, 1, 1)[0].Epoch
	newCall := func(n int) *call {
		return &call{topic: tp, kind: appendCall, wire: logtest.Wire(n), done: make(chan struct{}),
			deadline: time.Now().Add(s.timeout)}
	}
	gone, kept := newCall(2), newCall(3)
	gone.abandoned.Store(true)
	s.roundTrip([]*call{gone, kept})
	<-kept.done
	if kept.err != nil || kept.head != (ssebroker.Position{Epoch: epoch, Offset: 2}) {
		t.Errorf("the Append sent: %v, %v; want %s-2", kept.head, kept.err, epoch)
	}
	if got := logtest.NumbersIn(t, tp, epoch); fmt.Sprint(got) != "[1 3]" {
		t.Errorf("the log holds %v, want [1 3]: not the abandoned event 2", got)
	}
}

// An Append whose reply is lost is not sent again, even by a client that
// retries commands after a timeout (go-redis's default): Redis has run it,
// and a second run would be a second event.
func TestAppendNeverSentTwice(t *testing.T) {
	srv := redistest.Start(t)
	px := logtest.NewProxy(t, srv.Addr())
	client := redis.NewClient(&redis.Options{Addr: px.Addr(), ContextTimeoutEnabled: true,
		MaxRetries: 3, ReadTimeout: 200 * time.Millisecond}) // retries on
	t.Cleanup(func() { client.Close() })
	s, err := New(client, &Options{Timeout: 5 * time.Second}) // time enough for go-redis to retry
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	tp := topic(t, s, "room")
	logtest.AppendN(t, tp, 1, 1) // a connection, and the script loaded
	px.DropReplies()
	if p, err := tp.Append(t.Context(), logtest.Wire(2)); err == nil {
		t.Logf("Append whose reply was lost: %v (sent again?)", p)
	}
	direct := topic(t, newStreams(t, srv, nil), "room")
	head, err := direct.Head(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if got := logtest.NumbersIn(t, direct, head.Epoch); fmt.Sprint(got) != "[1 2]" {
		t.Errorf("the log holds %v, want [1 2]: event 2 once", got)
	}
}

// A Redis error reply on the Pub/Sub connection is no break: here an ACL
// refuses the channel of one topic, and the topics it allows go on, both
// when the refused SUBSCRIBE is the Streams' own and when it is go-redis's,
// which asks for every channel in one SUBSCRIBE after a reconnection and
// which Redis then refuses whole.
func TestRefusedChannelStopsNoOther(t *testing.T) {
	srv := redistest.Start(t)
	a := admin(t, srv)
	if err := a.Do(t.Context(), "ACL", "SETUSER", "app", "on", "nopass", "~*", "+@all",
		"resetchannels", "&sse:{ok}:*", "&sse:{gate}:*").Err(); err != nil {
		t.Fatal(err)
	}
	client := redis.NewClient(&redis.Options{Addr: srv.Addr(), Username: "app", Password: "any",
		ContextTimeoutEnabled: true, MaxRetries: -1, DialTimeout: time.Second, ReadTimeout: 2 * time.Second})
	t.Cleanup(func() { client.Close() })
	s, err := New(client, &Options{Timeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	// The gate holds up the loop in its first deliver, so that the Follows
	// of "ok" and "bad" reach it together, and are subscribed to together.
	blocked, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	stopGate := topic(t, s, "gate").Follow(func(ssebroker.Position, []byte) {
		once.Do(func() {
			close(blocked)
			<-release
		})
	})
	defer stopGate()
	<-blocked
	ok, _ := logtest.Follow(t, topic(t, s, "ok"))
	bad, _ := logtest.Follow(t, topic(t, s, "bad"))
	for queued := 0; queued < 2; time.Sleep(time.Millisecond) {
		s.subs.mu.Lock()
		queued = len(s.subs.reqs)
		s.subs.mu.Unlock()
	}
	close(release)
	ok.Wait("the head", 10*time.Second, logtest.Started)
	for deadline := time.Now().Add(10 * time.Second); s.subs.replyErrors.Load() == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no error reply in 10 s: the ACL refuses nothing?")
		}
	}
	pub := topic(t, newStreams(t, srv, nil), "ok")
	logtest.AppendN(t, pub, 1, 3)
	ok.Wait("3 events", 10*time.Second, logtest.Got(3))
	if err := a.ClientKillByFilter(t.Context(), "TYPE", "pubsub").Err(); err != nil {
		t.Fatal(err)
	}
	ok.Wait("a head after the reconnection", 10*time.Second, func(s *logtest.State) bool { return s.Heads >= 2 })
	logtest.AppendN(t, pub, 4, 6)
	ok.Wait("6 events", 10*time.Second, logtest.Got(6))
	ok.CheckLog(0)
	if n := bad.State().Heads; n != 0 {
		t.Errorf("the refused topic's follower got %d heads, want none", n)
	}
}

// An event too large for Redis (over its proto-max-bulk-len, here set to its
// least, 1 MB) makes Redis drop the connection it came on. It travels in a
// round trip of its own, so that it fails no other Append.
func TestLargeEventTravelsAlone(t *testing.T) {
	srv := redistest.Start(t, "--proto-max-bulk-len", "1mb")
	s := newStreams(t, srv, &Options{Timeout: 20 * time.Second})
	small1, big, small2 := topic(t, s, "a"), topic(t, s, "big"), topic(t, s, "b")
	logtest.AppendN(t, small1, 1, 1) // a connection, and the script loaded
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	appendAsync := func(tp *Topic, w []byte) {
		wg.Go(func() {
			_, err := tp.Append(t.Context(), w)
			if tp == big {
				if err == nil {
					t.Error("the event over proto-max-bulk-len was appended")
				}
				return
			}
			errs <- err
		})
	}
	// With Redis paused, the first Appends hold up the callers' round
	// trips, and the rest wait in the queue, in this order: a's, the large
	// one, b's.
	s.calls.mu.Lock()
	taken0 := s.calls.taken
	s.calls.mu.Unlock()
	srv.Pause()
	for i := range callers { // one round trip each
		appendAsync(small1, logtest.Wire(100+i))
		waitQueue(t, s, func(_, taken int) bool { return taken == taken0+i+1 })
	}
	base := 0
	for i := range 5 {
		appendAsync(small1, logtest.Wire(10+i))
	}
	waitQueue(t, s, func(queued, _ int) bool { return queued == base+5 })
	appendAsync(big, []byte("data: "+strings.Repeat("x", 2<<20)+"\n\n"))
	waitQueue(t, s, func(queued, _ int) bool { return queued == base+6 })
	for i := range 5 {
		appendAsync(small2, logtest.Wire(20+i))
	}
	waitQueue(t, s, func(queued, _ int) bool { return queued == base+11 })
	srv.Resume()
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("a small Append failed beside the large event: %v", err)
		}
	}
}

// waitQueue waits until cond holds of the calls waiting in s's queue and of
// those taken so far.
func waitQueue(t *testing.T, s *Streams, cond func(queued, taken int) bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		s.calls.mu.Lock()
		ok := cond(len(s.calls.queue), s.calls.taken)
		s.calls.mu.Unlock()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			s.calls.mu.Lock()
			defer s.calls.mu.Unlock()
			t.Fatalf("the queue is not as expected after 10 s: %d queued, %d taken", len(s.calls.queue), s.calls.taken)
		}
	}
}

// A Redis user allowed only to PUBLISH on a topic's channel, with no access
// to its keys, sends a message in the feed's format with a huge offset. The
// feed is no more than a hint: what a follower is handed comes from the
// stream, so the forged event reaches no follower, raises no high-water
// mark, and starts no epoch; the topic's events stay, and it goes on.
func TestForgedMessageIgnored(t *testing.T) {
	srv := redistest.Start(t)
	a := admin(t, srv)
	if err := a.Do(t.Context(), "ACL", "SETUSER", "mallory", "on", ">pw", "resetkeys", "resetchannels",
		"&sse:{room}:live", "-@all", "+publish", "+hello", "+auth").Err(); err != nil {
		t.Fatal(err)
	}
	mallory := redis.NewClient(&redis.Options{Addr: srv.Addr(), Username: "mallory", Password: "pw"})
	t.Cleanup(func() { mallory.Close() })
	s := newStreams(t, srv, nil)
	tp := topic(t, s, "room")
	r, _ := logtest.Follow(t, tp)
	r.Wait("the head", 10*time.Second, logtest.Started)
	epoch := logtest.AppendN(t, tp, 1, 3)[0].Epoch
	r.Wait("3 events", 10*time.Second, logtest.Got(3))
	forged := "data: 666\n\n"
	for _, first := range []string{"4", "1000000"} {
		msg := fmt.Sprintf("%s %s %d\n%s", epoch, first, len(forged), forged)
		if err := mallory.Publish(t.Context(), tp.channel, msg).Err(); err != nil {
			t.Fatal(err)
		}
	}
	other := topic(t, newStreams(t, srv, nil), "room")
	logtest.AppendN(t, other, 4, 4)
	r.Wait("event 4", 10*time.Second, func(s *logtest.State) bool { return s.Last >= 4 })
	if m := s.marks.get(tp.channel); m != (ssebroker.Position{Epoch: epoch, Offset: 4}) {
		t.Errorf("the follower's Streams has the mark %v, want %s-4", m, epoch)
	}
	if p := logtest.AppendN(t, tp, 5, 5)[0]; p != (ssebroker.Position{Epoch: epoch, Offset: 5}) {
		t.Errorf("Append after the forged messages: %v, want %s-5", p, epoch)
	}
	r.Wait("event 5", 10*time.Second, func(s *logtest.State) bool { return s.Last >= 5 })
	r.CheckLog(0)
	if s := r.State(); fmt.Sprint(s.Got) != "[1 2 3 4 5]" || len(s.Resets) != 0 {
		t.Errorf("the follower got %v, resets %v; want [1 2 3 4 5] and none", s.Got, s.Resets)
	}
}

// waitReplica waits until master's replica acknowledges its writes: a
// replica does so once its master has had its first ACK after the sync, up
// to a second later. (The master's replication id changes as its first
// replica syncs: a topic numbered before then starts a new epoch after.)
func waitReplica(t *testing.T, master *redistest.Server) {
	t.Helper()
	adm := admin(t, master)
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		adm.Set(t.Context(), "other", "x", 0)
		if n, _ := adm.Wait(t.Context(), 1, 100*time.Millisecond).Result(); n == 1 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the replica acknowledges nothing after 20 s")
		}
	}
}

// With MinReplicas, an Append succeeds once the replica has the event, and
// fails with ErrNotReplicated when it does not answer; the event is in the
// master's log all the same.
func TestMinReplicas(t *testing.T) {
	master := redistest.Start(t, "--repl-diskless-sync-delay", "0")
	replica := redistest.Start(t, "--replicaof", "127.0.0.1", fmt.Sprint(master.Port()))
	waitReplica(t, master)
	const timeout = 500 * time.Millisecond
	tp := topic(t, newStreams(t, master, &Options{MinReplicas: 1, Timeout: timeout}), "room")
	onReplica := admin(t, replica)
	for i := 1; i <= 3; i++ {
		p := logtest.AppendN(t, tp, i, i)[0]
		if n, err := onReplica.XLen(t.Context(), tp.keys[0]).Result(); err != nil || n != int64(i) {
			t.Errorf("after Append %v returned, the replica holds %d events, %v; want %d", p, n, err, i)
		}
	}
	replica.Pause()
	defer replica.Resume()
	start := time.Now()
	_, err := tp.Append(t.Context(), logtest.Wire(4))
	logtest.Within(t, "Append with the replica paused", time.Since(start), timeout)
	if !errors.Is(err, ErrNotReplicated) {
		t.Errorf("Append with the replica paused: %v, want ErrNotReplicated", err)
	}
	if h, err := tp.Head(t.Context()); err != nil || h.Offset != 4 {
		t.Errorf("Head %v, %v; want offset 4: the event is in the master's log", h, err)
	}
	wantTwo := topic(t, newStreams(t, master, &Options{MinReplicas: 2, Timeout: timeout}), "room")
	replica.Resume()
	if _, err := wantTwo.Append(t.Context(), logtest.Wire(5)); !errors.Is(err, ErrNotReplicated) {
		t.Errorf("Append with MinReplicas 2 and one replica: %v, want ErrNotReplicated", err)
	}
}

// Over TLS (a client with the TLSConfig that trusts the server's
// certificate), a Streams appends and follows as over TCP.
func TestTLS(t *testing.T) {
	srv, conf := redistest.StartTLS(t)
	newTLS := func() *redis.Client {
		c := redis.NewClient(&redis.Options{Addr: srv.Addr(), TLSConfig: conf,
			Username: redistest.User, Password: redistest.Password,
			ContextTimeoutEnabled: true, MaxRetries: -1, DialTimeout: time.Second, ReadTimeout: 2 * time.Second})
		t.Cleanup(func() { c.Close() })
		return c
	}
	r, _ := logtest.Follow(t, topic(t, streamsOn(t, newTLS(), nil), "room"))
	r.Wait("the head", 10*time.Second, logtest.Started)
	logtest.AppendN(t, topic(t, streamsOn(t, newTLS(), nil), "room"), 1, 3)
	r.Wait("3 events", 10*time.Second, logtest.Got(3))
	r.CheckLog(0)
	plain := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1, DialTimeout: time.Second, ReadTimeout: time.Second})
	defer plain.Close()
	if err := plain.Ping(t.Context()).Err(); err == nil {
		t.Error("a client without TLS was answered")
	}
}

// A Streams that follows again, after a while with nothing followed, keeps
// its Pub/Sub connection: the probe channel, unsubscribed meanwhile, is not
// taken for a node that stopped answering.
func TestProbeAfterIdle(t *testing.T) {
	srv := redistest.Start(t)
	s := newStreams(t, srv, nil)
	r, stop := logtest.Follow(t, topic(t, s, "room"))
	r.Wait("the head", 10*time.Second, logtest.Started)
	stop()
	time.Sleep(max(probeTimeout, s.timeout) + 500*time.Millisecond)
	r2, _ := logtest.Follow(t, topic(t, s, "room"))
	r2.Wait("the head", 10*time.Second, logtest.Started)
	logtest.AppendN(t, topic(t, s, "room"), 1, 1)
	r2.Wait("an event", 10*time.Second, logtest.Got(1))
	time.Sleep(probeEvery + probeTimeout) // a probe, answered
	if n := s.subs.replaced.Load(); n != 0 {
		t.Errorf("the Pub/Sub connection was replaced %d times, with Redis up", n)
	}
}
