package redisstream

import (
	"context"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lightsse/sse/ssebroker"

	"github.com/lightsse/sse/internal/leakcheck"
	"github.com/lightsse/sse/redisstream/internal/redistest"
	"github.com/redis/go-redis/v9"
)

// TestMain fails the run if any goroutine, of a Streams or of a go-redis
// client, outlives the tests. It silences go-redis's log of failovers, which
// the topology tests cause on purpose.
func TestMain(m *testing.M) {
	redis.SetLogger(quiet{})
	leakcheck.Main(m)
}

type quiet struct{}

func (quiet) Printf(context.Context, string, ...any) {}

// newClient returns a go-redis client of srv, closed when the test ends. It
// logs in as redistest.User, whose ACL is the least privilege that the
// package doc documents.
func newClient(t *testing.T, srv *redistest.Server) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{
		Addr:                  srv.Addr(),
		Username:              redistest.User,
		Password:              redistest.Password,
		ContextTimeoutEnabled: true,
		DialTimeout:           time.Second,
		ReadTimeout:           2 * time.Second,
		MaxRetries:            -1,
	})
	t.Cleanup(func() { c.Close() })
	return c
}

// newStreams returns a Streams on a client of its own (as another process
// would have), closed when the test ends, before its client.
func newStreams(t *testing.T, srv *redistest.Server, opts *Options) *Streams {
	t.Helper()
	s, err := New(newClient(t, srv), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func topic(t *testing.T, s *Streams, name string) *Topic {
	t.Helper()
	tp, err := s.Topic(name)
	if err != nil {
		t.Fatal(err)
	}
	return tp
}

func appendN(t *testing.T, tp *Topic, from, to int) []ssebroker.Position {
	t.Helper()
	var ps []ssebroker.Position
	for i := from; i <= to; i++ {
		p, err := tp.Append(t.Context(), wire(i))
		if err != nil {
			t.Fatalf("Append %d: %v", i, err)
		}
		ps = append(ps, p)
	}
	return ps
}

// wire returns the wire form of the test's event number n.
func wire(n int) []byte { return []byte("data: " + strconv.Itoa(n) + "\n\n") }

// number reads n back from wire(n).
func number(t testing.TB, w []byte) int {
	t.Helper()
	s, ok := strings.CutPrefix(string(w), "data: ")
	n, err := strconv.Atoi(strings.TrimSuffix(s, "\n\n"))
	if !ok || err != nil {
		t.Fatalf("unexpected wire %q", w)
	}
	return n
}

// numbersIn returns the numbers of the events that log holds in epoch, from
// its first, in order.
func numbersIn(t testing.TB, log ssebroker.Log, epoch string) []int {
	t.Helper()
	wires, _, err := log.ReadAfter(t.Context(), ssebroker.Position{Epoch: epoch}, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	var got []int
	for _, w := range wires {
		got = append(got, number(t, w))
	}
	return got
}

var epochShape = regexp.MustCompile(`^[0-9a-f]{16}$`)

func TestAppendAndReadAfter(t *testing.T) {
	srv := redistest.Start(t)
	tp := topic(t, newStreams(t, srv, nil), "room")
	ps := appendN(t, tp, 1, 3)
	epoch := ps[0].Epoch
	if !epochShape.MatchString(epoch) {
		t.Fatalf("epoch %q is not 16 lowercase hex digits", epoch)
	}
	for i, p := range ps {
		if p != (ssebroker.Position{Epoch: epoch, Offset: uint64(i + 1)}) {
			t.Errorf("Append %d: Position %v, want %s-%d", i+1, p, epoch, i+1)
		}
	}
	head := ssebroker.Position{Epoch: epoch, Offset: 3}
	for _, tt := range []struct {
		name  string
		after ssebroker.Position
		want  []int
	}{
		{"from the start", ssebroker.Position{Epoch: epoch}, []int{1, 2, 3}},
		{"after the first", ssebroker.Position{Epoch: epoch, Offset: 1}, []int{2, 3}},
		{"at the head", head, nil},
		{"past the head", ssebroker.Position{Epoch: epoch, Offset: 9}, nil},
		{"another epoch", ssebroker.Position{Epoch: "0123456789abcdef", Offset: 1}, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			wires, h, err := tp.ReadAfter(t.Context(), tt.after, 1<<20)
			if err != nil {
				t.Fatal(err)
			}
			if h != head {
				t.Errorf("head %v, want %v", h, head)
			}
			var got []int
			for _, w := range wires {
				got = append(got, number(t, w))
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("events %v, want %v", got, tt.want)
			}
		})
	}
}

// A reader follows a topic as a Broker does: it keeps the events in log
// order, fills a gap from ReadAfter, ignores repeats, and starts over on a
// new epoch. It records everything, for the test to check.
type reader struct {
	t  testing.TB
	tp *Topic

	mu     sync.Mutex
	epoch  string
	last   uint64
	got    []int              // the events, in the order received
	resets []string           // the epochs it started over in, after the first
	heads  int                // calls of deliver(head, nil)
	start  uint64             // the offset of the first head
	gaps   int                // gaps it filled with ReadAfter
	live   ssebroker.Position // where the last event deliver was handed was
	errs   []error
	change chan struct{} // closed and replaced at each change
}

func follow(t testing.TB, tp *Topic) (*reader, func()) {
	r := &reader{t: t, tp: tp, change: make(chan struct{})}
	stop := tp.Follow(r.deliver)
	t.Cleanup(stop)
	return r, stop
}

func (r *reader) deliver(pos ssebroker.Position, wire []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	defer func() {
		close(r.change)
		r.change = make(chan struct{})
	}()
	if !epochShape.MatchString(pos.Epoch) {
		r.errs = append(r.errs, fmt.Errorf("deliver(%v): bad epoch", pos))
		return
	}
	if wire == nil {
		if r.heads == 0 {
			r.start = pos.Offset
		}
		r.heads++
	} else if r.heads == 0 {
		r.errs = append(r.errs, fmt.Errorf("deliver(%v, event) before any deliver(head, nil)", pos))
	} else {
		r.live = pos
	}
	if pos.Epoch != r.epoch {
		if r.epoch != "" {
			r.resets = append(r.resets, pos.Epoch)
		}
		r.epoch, r.last = pos.Epoch, 0
		if wire == nil {
			r.last = pos.Offset // a new follower starts at the head
			return
		}
	}
	if pos.Offset <= r.last {
		return // a repeat
	}
	if want := pos.Offset; wire == nil || want > r.last+1 {
		// A gap: fill it from the log, up to pos (inclusive if it is
		// an event, since we have it).
		if wire != nil {
			want--
		}
		if want > r.last {
			r.gaps++
			r.fill(want)
		}
		if wire == nil {
			return
		}
		if r.last != pos.Offset-1 {
			return // the fill failed: the event would leave a gap
		}
	}
	r.got = append(r.got, number(r.t, wire))
	r.last = pos.Offset
}

// fill reads from the log the events after r.last up to offset to.
func (r *reader) fill(to uint64) {
	for r.last < to {
		wires, _, err := r.tp.ReadAfter(context.Background(), ssebroker.Position{Epoch: r.epoch, Offset: r.last}, 64<<10)
		if err != nil {
			r.errs = append(r.errs, fmt.Errorf("ReadAfter: %w", err))
			return
		}
		if len(wires) == 0 {
			r.errs = append(r.errs, fmt.Errorf("ReadAfter(%s-%d): gone", r.epoch, r.last))
			return
		}
		for _, w := range wires {
			if r.last == to {
				break
			}
			r.got = append(r.got, number(r.t, w))
			r.last++
		}
	}
}

// wait waits until cond, called under the reader's lock, holds; it fails
// the test after timeout.
func (r *reader) wait(what string, timeout time.Duration, cond func(r *reader) bool) {
	r.t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		r.mu.Lock()
		ok, change := cond(r), r.change
		r.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-change:
		case <-deadline.C:
			r.mu.Lock()
			defer r.mu.Unlock()
			r.t.Fatalf("waited %v for %s: epoch %s, last %d, %d events, %d heads, %d gaps, resets %v, errors %v",
				timeout, what, r.epoch, r.last, len(r.got), r.heads, r.gaps, r.resets, r.errs)
		}
	}
}

func (r *reader) started() bool { return r.heads > 0 }

func TestFollowDeliversAppends(t *testing.T) {
	srv := redistest.Start(t)
	s := newStreams(t, srv, nil)
	tp := topic(t, s, "room")
	appendN(t, tp, 1, 2) // before Follow: not delivered
	r, _ := follow(t, tp)
	r.wait("the head", 10*time.Second, (*reader).started)
	appendN(t, tp, 3, 5)
	r.wait("3 events", 10*time.Second, func(r *reader) bool { return len(r.got) == 3 })
	r.mu.Lock()
	defer r.mu.Unlock()
	if fmt.Sprint(r.got) != "[3 4 5]" || r.gaps != 0 || len(r.errs) > 0 {
		t.Errorf("got %v with %d gaps, errors %v; want [3 4 5] and no gap", r.got, r.gaps, r.errs)
	}
}

// checkLog fails the test unless r got exactly the events of the log from
// offset from+1 to its head, in order: no gap, no repeat, no reordering.
func (r *reader) checkLog(from uint64) {
	r.t.Helper()
	var want []int
	head := ssebroker.Position{}
	for pos := (ssebroker.Position{Epoch: r.epoch, Offset: from}); ; {
		wires, h, err := r.tp.ReadAfter(context.Background(), pos, 1<<20)
		if err != nil {
			r.t.Fatal(err)
		}
		head = h
		if len(wires) == 0 {
			break
		}
		for _, w := range wires {
			want = append(want, number(r.t, w))
		}
		pos.Offset += uint64(len(wires))
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if head.Epoch != r.epoch || r.last != head.Offset {
		r.t.Errorf("follower at %s-%d, log head %v", r.epoch, r.last, head)
	}
	if len(r.errs) > 0 {
		r.t.Errorf("follower errors: %v", r.errs)
	}
	if fmt.Sprint(r.got) != fmt.Sprint(want) {
		r.t.Errorf("follower got %d events, log holds %d after offset %d:\ngot  %v\nwant %v", len(r.got), len(want), from, clip(r.got), clip(want))
	}
}

func clip(s []int) string {
	if len(s) > 40 {
		return fmt.Sprint(s[:20], " ... ", s[len(s)-20:])
	}
	return fmt.Sprint(s)
}

func TestWireKeptExactly(t *testing.T) {
	srv := redistest.Start(t)
	tp := topic(t, newStreams(t, srv, nil), "exact")
	var mu sync.Mutex
	var fed [][]byte
	started := make(chan struct{})
	signal := sync.OnceFunc(func() { close(started) })
	stop := tp.Follow(func(pos ssebroker.Position, w []byte) {
		mu.Lock()
		defer mu.Unlock()
		if w == nil {
			signal()
			return
		}
		fed = append(fed, w)
	})
	defer stop()
	waitClosed(t, "the head", started)
	wires := []string{
		"event: a b\ndata: 1 2 3\ndata: \ndata: x\n\n",
		"id: 7 8\ndata: \u00e9\u65e5\U0001F600\n\n",
		"data: \n\n",
		"data: " + strings.Repeat("z", 100<<10) + "\n\n",
	}
	for _, w := range wires {
		if _, err := tp.Append(t.Context(), []byte(w)); err != nil {
			t.Fatal(err)
		}
	}
	read, _, err := tp.ReadAfter(t.Context(), ssebroker.Position{}, 1<<30)
	if err != nil || len(read) != 0 {
		t.Fatalf("ReadAfter of the zero Position: %d events, %v; want none (another epoch)", len(read), err)
	}
	head, err := tp.Head(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	read, _, err = tp.ReadAfter(t.Context(), ssebroker.Position{Epoch: head.Epoch}, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		mu.Lock()
		n := len(fed)
		mu.Unlock()
		if n == len(wires) || time.Now().After(deadline) {
			break
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for i, w := range wires {
		if i >= len(read) || string(read[i]) != w {
			t.Errorf("ReadAfter: event %d differs", i)
		}
		if i >= len(fed) || string(fed[i]) != w {
			t.Errorf("Follow: event %d differs", i)
		}
	}
}

func TestReadAfterStopsAtMax(t *testing.T) {
	srv := redistest.Start(t)
	tp := topic(t, newStreams(t, srv, nil), "room")
	ps := appendN(t, tp, 1, 9) // 9 bytes each
	wires, _, err := tp.ReadAfter(t.Context(), ssebroker.Position{Epoch: ps[0].Epoch}, 25)
	if err != nil {
		t.Fatal(err)
	}
	if len(wires) != 3 {
		t.Errorf("ReadAfter with max 25 returned %d events of 9 bytes, want 3 (27 bytes, the first to reach 25)", len(wires))
	}
	// Reads beyond one XRANGE page of the script (100 entries).
	appendN(t, tp, 10, 250)
	wires, _, err = tp.ReadAfter(t.Context(), ssebroker.Position{Epoch: ps[0].Epoch, Offset: 2}, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if len(wires) != 248 || number(t, wires[0]) != 3 || number(t, wires[247]) != 250 {
		t.Errorf("ReadAfter after 2: %d events, want 3 to 250", len(wires))
	}
}

func TestMaxLenTrims(t *testing.T) {
	srv := redistest.Start(t)
	tp := topic(t, newStreams(t, srv, &Options{MaxLen: 10}), "room")
	ps := appendN(t, tp, 1, 25)
	epoch := ps[0].Epoch
	wires, head, err := tp.ReadAfter(t.Context(), ssebroker.Position{Epoch: epoch, Offset: 15}, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if len(wires) != 10 || number(t, wires[0]) != 16 {
		t.Errorf("ReadAfter(15) with MaxLen 10 after 25 events: %d events, want 16 to 25", len(wires))
	}
	wires, head2, err := tp.ReadAfter(t.Context(), ssebroker.Position{Epoch: epoch, Offset: 14}, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if len(wires) != 0 || head2 != head || head.Offset != 25 {
		t.Errorf("ReadAfter(14): %d events, head %v; want none (event 15 trimmed), head %s-25", len(wires), head2, epoch)
	}
}

func TestEpochSharedAndKept(t *testing.T) {
	srv := redistest.Start(t)
	a := topic(t, newStreams(t, srv, nil), "room")
	b := topic(t, newStreams(t, srv, nil), "room")
	pa := appendN(t, a, 1, 2)
	pb := appendN(t, b, 3, 3)
	if pb[0] != (ssebroker.Position{Epoch: pa[0].Epoch, Offset: 3}) {
		t.Errorf("second instance appended at %v, want %s-3", pb[0], pa[0].Epoch)
	}
	// A Streams that starts later (a restarted instance) keeps the epoch.
	c := topic(t, newStreams(t, srv, nil), "room")
	if h, err := c.Head(t.Context()); err != nil || h != pb[0] {
		t.Errorf("a new instance's head: %v, %v; want %v", h, err, pb[0])
	}
}

func TestNewEpochWhenKeysLost(t *testing.T) {
	srv := redistest.Start(t)
	a := admin(t, srv)
	s := newStreams(t, srv, nil)
	tp := topic(t, s, "room")
	old := appendN(t, tp, 1, 3)[0].Epoch
	for _, lose := range []struct {
		name string
		do   func() error
	}{
		{"FLUSHALL", func() error { return a.FlushAll(t.Context()).Err() }},
		{"meta deleted (eviction, IdleTTL)", func() error { return a.Del(t.Context(), tp.keys[1]).Err() }},
	} {
		t.Run(lose.name, func(t *testing.T) {
			appendN(t, tp, 1, 3)
			if err := lose.do(); err != nil {
				t.Fatal(err)
			}
			p := appendN(t, tp, 4, 4)[0]
			if p.Epoch == old || p.Offset != 1 || !epochShape.MatchString(p.Epoch) {
				t.Errorf("first Append after losing the keys: %v, want a new epoch, offset 1", p)
			}
			wires, head, err := tp.ReadAfter(t.Context(), ssebroker.Position{Epoch: old, Offset: 1}, 1<<20)
			if err != nil || len(wires) != 0 || head != p {
				t.Errorf("ReadAfter in the old epoch: %d events, head %v, %v; want none, head %v", len(wires), head, err, p)
			}
			if n, err := a.XLen(t.Context(), tp.keys[0]).Result(); err != nil || n != 1 {
				t.Errorf("the stream holds %d entries, %v; want only the new epoch's one", n, err)
			}
			old = p.Epoch
		})
	}
}

// A Redis restarted from an older snapshot keeps the topic's epoch, and
// would give the lost offsets again, to other events. But a restarted Redis
// has a new replication id: the topic was numbered by another history, and
// the first Append after the restart starts a new epoch, whichever Streams
// makes it, even one that never saw the lost offsets. Until then, reads see
// what the snapshot holds: events the old history numbered.
func TestNewEpochWhenRedisRestarts(t *testing.T) {
	srv := redistest.Start(t)
	a := topic(t, newStreams(t, srv, nil), "a")
	old := appendN(t, a, 1, 3)[0].Epoch
	srv.Save()
	appendN(t, a, 4, 5)
	srv.Restart() // back to offset 3, in the same epoch
	blind := topic(t, newStreams(t, srv, nil), "a")
	if h, err := blind.Head(t.Context()); err != nil || h != (ssebroker.Position{Epoch: old, Offset: 3}) {
		t.Errorf("Head after the restart: %v, %v; want %s-3, what the snapshot holds", h, err, old)
	}
	p := appendN(t, blind, 6, 6)[0]
	if p.Epoch == old || p.Offset != 1 {
		t.Errorf("Append after the restart, by a Streams that never saw a-4: %v; want a new epoch, offset 1", p)
	}
	if h, err := a.Head(t.Context()); err != nil || h != p {
		t.Errorf("Head after that Append: %v, %v; want %v", h, err, p)
	}
	if got := numbersIn(t, a, p.Epoch); fmt.Sprint(got) != "[6]" {
		t.Errorf("the new epoch holds %v, want [6]: the old history's events are deleted", got)
	}
}

// A Redis that goes back in time in the same history (here, an older DUMP of
// the topic's keys RESTOREd) keeps the topic's epoch. A Streams that saw an
// offset Redis no longer holds, in an Append's reply or a read's head, starts
// a new epoch instead; one that never saw it cannot know.
func TestNewEpochWhenRedisGoesBack(t *testing.T) {
	srv := redistest.Start(t)
	adm := admin(t, srv)
	s := newStreams(t, srv, nil)
	a, b := topic(t, s, "a"), topic(t, s, "b")
	readsB := topic(t, newStreams(t, srv, nil), "b")
	oldA := appendN(t, a, 1, 3)[0].Epoch
	oldB := appendN(t, b, 1, 3)[0].Epoch
	dumps := make(map[string]string)
	for _, key := range append(append([]string{}, a.keys...), b.keys...) {
		d, err := adm.Dump(t.Context(), key).Result()
		if err != nil {
			t.Fatal(err)
		}
		dumps[key] = d
	}
	appendN(t, a, 4, 5)
	appendN(t, b, 4, 5)
	if h, err := readsB.Head(t.Context()); err != nil || h != (ssebroker.Position{Epoch: oldB, Offset: 5}) {
		t.Fatalf("Head of b: %v, %v; want %s-5", h, err, oldB)
	}
	for key, d := range dumps { // back to offset 3 of both topics, in the same epochs
		if err := adm.RestoreReplace(t.Context(), key, 0, d).Err(); err != nil {
			t.Fatal(err)
		}
	}
	blind := topic(t, newStreams(t, srv, nil), "a")
	if h, err := blind.Head(t.Context()); err != nil || h != (ssebroker.Position{Epoch: oldA, Offset: 3}) {
		t.Errorf("Head of a from a Streams that never saw a-4: %v, %v; want %s-3", h, err, oldA)
	}
	if p := appendN(t, a, 6, 6)[0]; p.Epoch == oldA || p.Offset != 1 {
		t.Errorf("Append to a by the Streams that saw a-5: %v; want a new epoch, offset 1", p)
	}
	h, err := readsB.Head(t.Context())
	if err != nil || h.Epoch == oldB || h.Offset != 0 {
		t.Errorf("Head of b by the Streams that saw b-5: %v, %v; want a new epoch, offset 0", h, err)
	}
	if n, err := adm.XLen(t.Context(), b.keys[0]).Result(); err != nil || n != 0 {
		t.Errorf("b's stream holds %d entries, %v; want none: they belong to the lost history", n, err)
	}
}

// A replica promoted to master (a failover) holds the history the old master
// had sent it, and perhaps not the newest events: replication is
// asynchronous, and the old master may even go on taking Appends (paused
// past the failover, then resumed; or a Sentinel failover, which does not
// stop it). So the new master's first Append, whichever Streams makes it,
// starts a new epoch: the same offsets never name two events. Until then,
// reads on it see the events the old master numbered, and sent it.
func TestNewEpochAfterPromotion(t *testing.T) {
	master := redistest.Start(t, "--repl-diskless-sync-delay", "0")
	replica := redistest.Start(t, "--replicaof", "127.0.0.1", fmt.Sprint(master.Port()))
	waitReplica(t, master) // its replication id is the one that numbers the topic
	onMaster := topic(t, newStreams(t, master, nil), "room")
	old := appendN(t, onMaster, 1, 3)[0].Epoch
	if n, err := admin(t, master).Wait(t.Context(), 1, 10*time.Second).Result(); err != nil || n != 1 {
		t.Fatalf("WAIT 1: %d, %v", n, err)
	}
	replica.Must("REPLICAOF", "NO", "ONE")
	onReplica := topic(t, newStreams(t, replica, nil), "room")
	r, _ := follow(t, onReplica)
	r.wait("the head", 10*time.Second, (*reader).started)
	if got := numbersIn(t, onReplica, old); fmt.Sprint(got) != "[1 2 3]" {
		t.Errorf("the promoted replica holds %v in the old epoch, want [1 2 3]", got)
	}
	// Both now take Appends: the old master goes on in its epoch, the new
	// one in its own.
	pm := appendN(t, onMaster, 4, 4)[0]
	pr := appendN(t, topic(t, newStreams(t, replica, nil), "room"), 104, 104)[0]
	if pm != (ssebroker.Position{Epoch: old, Offset: 4}) || pr.Epoch == old || pr.Offset != 1 {
		t.Errorf("Appends to the old master and to the promoted replica: %v and %v; want %s-4, and a new epoch at 1", pm, pr, old)
	}
	r.wait("the new epoch", 10*time.Second, func(r *reader) bool { return r.epoch == pr.Epoch && r.last == 1 })
	r.mu.Lock()
	if len(r.resets) != 1 {
		t.Errorf("the follower on the promoted replica had the resets %v, want one, to %s", r.resets, pr.Epoch)
	}
	r.mu.Unlock()
	wires, head, err := onReplica.ReadAfter(t.Context(), ssebroker.Position{Epoch: old, Offset: 1}, 1<<20)
	if err != nil || len(wires) != 0 || head != pr {
		t.Errorf("ReadAfter(%s-1) on the promoted replica: %d events, head %v, %v; want none, head %v", old, len(wires), head, err, pr)
	}
}

// Likewise for a Streams that only follows the topic: the head it reads once
// its Pub/Sub connection is back starts a new epoch, before any Append.
func TestFollowNewEpochWhenRedisGoesBack(t *testing.T) {
	srv := redistest.Start(t)
	pub := topic(t, newStreams(t, srv, nil), "room")
	r, _ := follow(t, topic(t, newStreams(t, srv, nil), "room"))
	r.wait("the head", 10*time.Second, (*reader).started)
	old := appendN(t, pub, 1, 3)[0].Epoch
	srv.Save()
	appendN(t, pub, 4, 5)
	r.wait("5 events", 10*time.Second, func(r *reader) bool { return len(r.got) == 5 })
	srv.Restart() // back to offset 3, in the same epoch
	r.wait("a new epoch", 10*time.Second, func(r *reader) bool { return len(r.resets) == 1 })
	r.mu.Lock()
	epoch := r.epoch
	r.mu.Unlock()
	if h, err := pub.Head(t.Context()); err != nil || h != (ssebroker.Position{Epoch: epoch, Offset: 0}) || epoch == old {
		t.Errorf("Head after the follower's new epoch: %v, %v; want %s-0, a new epoch", h, err, epoch)
	}
}

func TestIdleTTL(t *testing.T) {
	srv := redistest.Start(t)
	a := admin(t, srv)
	s := newStreams(t, srv, &Options{IdleTTL: time.Hour})
	tp := topic(t, s, "room")
	appendN(t, tp, 1, 1)
	for _, key := range tp.keys {
		ttl, err := a.PTTL(t.Context(), key).Result()
		if err != nil || ttl <= 59*time.Minute || ttl > time.Hour {
			t.Errorf("PTTL %s = %v, %v; want about an hour", key, ttl, err)
		}
	}
	plain := newStreams(t, srv, nil)
	tp2 := topic(t, plain, "other")
	appendN(t, tp2, 1, 1)
	for _, key := range tp2.keys {
		if ttl, err := a.PTTL(t.Context(), key).Result(); err != nil || ttl != -1 {
			t.Errorf("without IdleTTL, PTTL %s = %v, %v; want none (-1)", key, ttl, err)
		}
	}
}

// A read of a topic nobody has appended to gives it an epoch, in a meta
// hash that expires (after IdleTTL or an hour, whichever is longer), so
// that reads of made-up topics do not fill Redis; an Append makes it last
// as any topic's keys do.
func TestReadMakesNoLastingKey(t *testing.T) {
	srv := redistest.Start(t)
	a := admin(t, srv)
	for _, tt := range []struct {
		idle, want time.Duration
	}{
		{0, time.Hour},
		{time.Minute, time.Hour},
		{2 * time.Hour, 2 * time.Hour},
	} {
		t.Run(fmt.Sprint("IdleTTL ", tt.idle), func(t *testing.T) {
			s := newStreams(t, srv, &Options{IdleTTL: tt.idle})
			for i, read := range []func(tp *Topic) error{
				func(tp *Topic) error { _, err := tp.Head(t.Context()); return err },
				func(tp *Topic) error {
					_, _, err := tp.ReadAfter(t.Context(), ssebroker.Position{Epoch: "0123456789abcdef", Offset: 3}, 1)
					return err
				},
			} {
				tp := topic(t, s, fmt.Sprint("read-", tt.idle, "-", i))
				if err := read(tp); err != nil {
					t.Fatal(err)
				}
				ttl, err := a.PTTL(t.Context(), tp.keys[1]).Result()
				if err != nil || ttl <= tt.want-time.Minute || ttl > tt.want {
					t.Errorf("read %d: PTTL of the meta hash = %v, %v; want about %v", i, ttl, err, tt.want)
				}
				if n, err := a.Exists(t.Context(), tp.keys[0]).Result(); err != nil || n != 0 {
					t.Errorf("read %d: the stream exists (%d, %v)", i, n, err)
				}
			}
			tp := topic(t, s, fmt.Sprint("read-", tt.idle, "-0"))
			appendN(t, tp, 1, 1)
			for _, key := range tp.keys {
				ttl, err := a.PTTL(t.Context(), key).Result()
				if tt.idle == 0 && (err != nil || ttl != -1) {
					t.Errorf("after an Append, PTTL %s = %v, %v; want none (-1)", key, ttl, err)
				}
				if tt.idle > 0 && (err != nil || ttl <= tt.idle-time.Second || ttl > tt.idle) {
					t.Errorf("after an Append, PTTL %s = %v, %v; want IdleTTL, %v", key, ttl, err, tt.idle)
				}
			}
		})
	}
}

func TestTopicNames(t *testing.T) {
	client := redis.NewClient(&redis.Options{})
	defer client.Close()
	s, err := New(client, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, name := range []string{"room", "user:42", "a b", "日本", strings.Repeat("x", MaxTopicLen)} {
		tp, err := s.Topic(name)
		if err != nil {
			t.Errorf("Topic(%q): %v", name, err)
			continue
		}
		if want := "sse:{" + name + "}:log"; tp.keys[0] != want {
			t.Errorf("Topic(%q) stream key %q, want %q", name, tp.keys[0], want)
		}
	}
	for _, name := range []string{"", "a{b", "a}b", "{x}", "a\nb", "a\x00b", "\xff", strings.Repeat("x", MaxTopicLen+1)} {
		if _, err := s.Topic(name); !errors.Is(err, ErrInvalidTopic) {
			t.Errorf("Topic(%q): %v, want ErrInvalidTopic", name, err)
		}
	}
}

func TestNewRefusesOptions(t *testing.T) {
	client := redis.NewClient(&redis.Options{})
	defer client.Close()
	for _, o := range []Options{
		{Prefix: "a{b}:"},
		{MaxLen: -1},
		{Timeout: -time.Second},
		{IdleTTL: -time.Second},
		{IdleTTL: time.Microsecond},
		{MaxEventBytes: -1},
	} {
		if s, err := New(client, &o); !errors.Is(err, ErrInvalidOptions) {
			t.Errorf("New(%+v): %v, want ErrInvalidOptions", o, err)
			if s != nil {
				s.Close()
			}
		}
	}
	for _, c := range []redis.UniversalClient{nil, (*redis.Client)(nil), (*redis.ClusterClient)(nil)} {
		if s, err := New(c, nil); !errors.Is(err, ErrInvalidOptions) {
			t.Errorf("New(%#v, nil): %v, want ErrInvalidOptions", c, err)
			if s != nil {
				s.Close()
			}
		}
	}
}

func TestClosed(t *testing.T) {
	srv := redistest.Start(t)
	s := newStreams(t, srv, nil)
	tp := topic(t, s, "room")
	r, _ := follow(t, tp)
	r.wait("the head", 10*time.Second, (*reader).started)
	s.Close()
	if _, err := tp.Append(t.Context(), wire(1)); !errors.Is(err, ErrClosed) {
		t.Errorf("Append after Close: %v, want ErrClosed", err)
	}
	if _, _, err := tp.ReadAfter(t.Context(), ssebroker.Position{}, 1); !errors.Is(err, ErrClosed) {
		t.Errorf("ReadAfter after Close: %v, want ErrClosed", err)
	}
	called := false
	stop := tp.Follow(func(ssebroker.Position, []byte) { called = true })
	stop()
	if called {
		t.Error("Follow after Close called deliver")
	}
	s.Close() // again: no effect
}

// Another client's XADD to a topic's stream, with an automatic id (a
// timestamp) or one of its own, leaves an entry past the topic's head, which
// the next Append's id would have to follow. The Append deletes such entries,
// which are none of the topic's events, and goes on in the same epoch.
func TestForeignEntriesRemoved(t *testing.T) {
	srv := redistest.Start(t)
	a := admin(t, srv)
	tp := topic(t, newStreams(t, srv, nil), "room")
	epoch := appendN(t, tp, 1, 2)[0].Epoch
	for i, id := range []string{"*", "4-0", "99-0"} {
		if err := a.XAdd(t.Context(), &redis.XAddArgs{Stream: tp.keys[0], ID: id, Values: []string{"x", "y"}}).Err(); err != nil {
			t.Fatal(err)
		}
		n := 3 + i
		p, err := tp.Append(t.Context(), wire(n))
		if err != nil || p != (ssebroker.Position{Epoch: epoch, Offset: uint64(n)}) {
			t.Fatalf("Append after another client's XADD %s: %v, %v; want %s-%d", id, p, err, epoch, n)
		}
	}
	if got := numbersIn(t, tp, epoch); fmt.Sprint(got) != "[1 2 3 4 5]" {
		t.Errorf("the log holds %v, want [1 2 3 4 5]", got)
	}
	if n, err := a.XLen(t.Context(), tp.keys[0]).Result(); err != nil || n != 5 {
		t.Errorf("the stream holds %d entries, %v; want only the topic's 5", n, err)
	}
}

func TestEventTooLargeRefused(t *testing.T) {
	srv := redistest.Start(t)
	tp := topic(t, newStreams(t, srv, &Options{MaxEventBytes: 100}), "room")
	epoch := appendN(t, tp, 1, 1)[0].Epoch
	if p, err := tp.Append(t.Context(), []byte("data: "+strings.Repeat("x", 93)+"\n\n")); !errors.Is(err, ErrEventTooLarge) {
		t.Errorf("Append of 101 bytes with MaxEventBytes 100: %v, %v; want ErrEventTooLarge", p, err)
	}
	if p, err := tp.Append(t.Context(), []byte("data: "+strings.Repeat("x", 92)+"\n\n")); err != nil || p.Offset != 2 {
		t.Errorf("Append of 100 bytes with MaxEventBytes 100: %v, %v; want offset 2", p, err)
	}
	if h, err := tp.Head(t.Context()); err != nil || h != (ssebroker.Position{Epoch: epoch, Offset: 2}) {
		t.Errorf("Head %v, %v; want %s-2: the event refused is not in the log", h, err, epoch)
	}
}

// A followed topic whose keys are deleted (eviction, IdleTTL, by hand) while
// its feed stays up gets a new epoch at the next Append; the follower reads
// it, and starts over there.
func TestFollowTopicDeleted(t *testing.T) {
	srv := redistest.Start(t)
	tp := topic(t, newStreams(t, srv, nil), "room")
	r, _ := follow(t, tp)
	r.wait("the head", 10*time.Second, (*reader).started)
	pub := topic(t, newStreams(t, srv, nil), "room")
	old := appendN(t, pub, 1, 3)[0].Epoch
	r.wait("3 events", 10*time.Second, func(r *reader) bool { return len(r.got) == 3 })
	if err := admin(t, srv).Del(t.Context(), tp.keys...).Err(); err != nil {
		t.Fatal(err)
	}
	p := appendN(t, pub, 4, 5)[0]
	if p.Epoch == old || p.Offset != 1 {
		t.Fatalf("Append after the keys were deleted: %v, want a new epoch at 1", p)
	}
	r.wait("the new epoch's events", 10*time.Second, func(r *reader) bool { return r.epoch == p.Epoch && r.last == 2 })
	appendN(t, pub, 6, 6)
	r.wait("event 6", 10*time.Second, func(r *reader) bool { return r.last == 3 })
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.resets) != 1 || len(r.errs) > 0 {
		t.Errorf("resets %v, errors %v; want one reset, no error", r.resets, r.errs)
	}
}

// The package doc shows the ACL that every test's Streams logs in with.
func TestACLDocumented(t *testing.T) {
	src, err := os.ReadFile("redisstream.go")
	if err != nil {
		t.Fatal(err)
	}
	var doc []string
	in := false
	for _, line := range strings.Split(string(src), "\n") {
		switch {
		case strings.HasPrefix(line, "//\tACL SETUSER "):
			in = true
		case in && !strings.HasPrefix(line, "//\t  "):
			in = false
		}
		if in {
			doc = append(doc, strings.Fields(strings.TrimPrefix(line, "//"))...)
		}
	}
	want := append(strings.Fields("ACL SETUSER sse on >secret"), strings.Fields(redistest.ACL)...)
	if strings.Join(doc, " ") != strings.Join(want, " ") {
		t.Errorf("the package doc's ACL:\n%s\nthe tests' (redistest.ACL):\n%s", strings.Join(doc, " "), strings.Join(want, " "))
	}
}
