package pgstream

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lightsse/sse/ssebroker"
)

// A reader follows a topic as a Broker does: it keeps the events in log
// order, fills a gap from ReadAfter, ignores repeats, and starts over on a
// new epoch. It records everything, for the test to check.
type reader struct {
	t  testing.TB
	tp *Topic

	mu     sync.Mutex
	epoch  string
	last   uint64
	got    []int    // the events, in the order received
	resets []string // the epochs it started over in, after the first
	heads  int      // calls of deliver(head, nil)
	start  uint64   // the offset of the first head
	gaps   int      // gaps it filled with ReadAfter
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

// waitClosed waits until ch is closed; it fails the test after 10 s.
func waitClosed(t *testing.T, what string, ch <-chan struct{}) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatalf("waited 10 s for %s", what)
	}
}

func TestFollowDeliversAppends(t *testing.T) {
	url := newDB(t)
	tp := topic(t, newStreams(t, url, nil), "room")
	appendN(t, tp, 1, 2) // before Follow: not delivered
	r, _ := follow(t, tp)
	r.wait("the head", 10*time.Second, (*reader).started)
	other := topic(t, newStreams(t, url, nil), "room") // another process
	appendN(t, other, 3, 4)
	appendN(t, tp, 5, 5)
	r.wait("3 events", 10*time.Second, func(r *reader) bool { return len(r.got) == 3 })
	r.mu.Lock()
	defer r.mu.Unlock()
	if fmt.Sprint(r.got) != "[3 4 5]" || r.gaps != 0 || r.start != 2 || len(r.errs) > 0 {
		t.Errorf("got %v from offset %d with %d gaps, errors %v; want [3 4 5] from 2, and no gap", r.got, r.start, r.gaps, r.errs)
	}
}

// A topic nobody appended to gets a row, and its followers a head, at
// offset 0 of a new epoch; its first Append is at offset 1 of that epoch.
func TestFollowNewTopic(t *testing.T) {
	url := newDB(t)
	tp := topic(t, newStreams(t, url, nil), "new")
	r, _ := follow(t, tp)
	r.wait("the head", 10*time.Second, (*reader).started)
	r.mu.Lock()
	epoch, start := r.epoch, r.start
	r.mu.Unlock()
	p := appendN(t, tp, 1, 1)[0]
	if start != 0 || p != (ssebroker.Position{Epoch: epoch, Offset: 1}) {
		t.Errorf("head at %d, first Append at %v; want the head at %s-0 and the Append at %s-1", start, p, epoch, epoch)
	}
	r.wait("the event", 10*time.Second, func(r *reader) bool { return len(r.got) == 1 })
}

func TestStopEndsDeliveries(t *testing.T) {
	url := newDB(t)
	s := newStreams(t, url, nil)
	tp := topic(t, s, "room")
	stop, stopped, late := followCountingLate(t, tp)
	witness, _ := follow(t, tp) // on the same Streams: after stop, it still gets events
	witness.wait("the head", 10*time.Second, (*reader).started)
	stop()
	stopped.Store(true)
	stop() // again: no effect
	appendN(t, tp, 1, 3)
	witness.wait("3 events", 10*time.Second, func(r *reader) bool { return len(r.got) == 3 })
	if n := late.Load(); n > 0 {
		t.Errorf("deliver called %d times after stop returned", n)
	}
}

// stop, called while the loop is in another follower's deliver, returns at
// once, and the stopped follower gets nothing after it.
func TestNoDeliverAfterStop(t *testing.T) {
	url := newDB(t)
	s := newStreams(t, url, nil)
	tp := topic(t, s, "room")
	stopA, stopped, late := followCountingLate(t, tp)
	blocked, release := make(chan struct{}), make(chan struct{})
	var got atomic.Int64
	wStarted := make(chan struct{})
	signal := sync.OnceFunc(func() { close(wStarted) })
	stopW := tp.Follow(func(pos ssebroker.Position, w []byte) {
		switch {
		case w == nil:
			signal()
		case number(t, w) == 1:
			close(blocked)
			<-release
		}
		if w != nil {
			got.Add(1)
		}
	})
	defer stopW()
	waitClosed(t, "the witness's head", wStarted)
	appendN(t, tp, 1, 1)
	<-blocked
	stopA() // A is not in deliver: returns at once, though the loop is busy
	stopped.Store(true)
	appendN(t, tp, 2, 2)
	for len(s.subs.inbox) == 0 { // event 2's notification waits for the loop, before A's leave
		time.Sleep(time.Millisecond)
	}
	close(release)
	for got.Load() < 2 {
		time.Sleep(time.Millisecond)
	}
	if n := late.Load(); n > 0 {
		t.Errorf("deliver called %d times after stop returned", n)
	}
}

// followCountingLate follows tp with a deliver that counts its calls made
// once *stopped is set (the test sets it when stop has returned), and
// returns once the first head has come. The test's end stops it.
func followCountingLate(t *testing.T, tp *Topic) (stop func(), stopped *atomic.Bool, late *atomic.Int64) {
	t.Helper()
	stopped, late = new(atomic.Bool), new(atomic.Int64)
	started := make(chan struct{})
	signal := sync.OnceFunc(func() { close(started) })
	stop = tp.Follow(func(pos ssebroker.Position, w []byte) {
		if stopped.Load() {
			late.Add(1)
		}
		if w == nil {
			signal()
		}
	})
	t.Cleanup(stop)
	waitClosed(t, "the head", started)
	return stop, stopped, late
}

// Followers that join while events are being appended start at the head
// they are given, and miss nothing after it.
func TestFollowJoinsMidStream(t *testing.T) {
	url := newDB(t)
	pub := topic(t, newStreams(t, url, nil), "room")
	s := newStreams(t, url, nil)
	var next atomic.Int64
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-done:
				return
			default:
			}
			if _, err := pub.Append(context.Background(), wire(int(next.Add(1)))); err != nil {
				t.Error(err)
				return
			}
		}
	})
	defer wg.Wait()
	defer close(done)
	var readers []*reader
	var starts []uint64
	for i := range 5 {
		for next.Load() < int64(30*(i+1)) {
			time.Sleep(time.Millisecond)
		}
		r, _ := follow(t, topic(t, s, "room"))
		r.wait("the head", 10*time.Second, (*reader).started)
		r.mu.Lock()
		starts = append(starts, r.start)
		r.mu.Unlock()
		readers = append(readers, r)
	}
	last := next.Load() + 20
	for next.Load() < last {
		time.Sleep(time.Millisecond)
	}
	for i, r := range readers {
		r.wait(fmt.Sprint("event ", last), 20*time.Second, func(r *reader) bool { return r.last >= uint64(last) })
		checkUpTo(r, starts[i], uint64(last))
	}
}

// checkUpTo fails the test unless r, which started at offset from and has
// reached to, got exactly the log's events from from+1 to to first, with
// no gap to fill.
func checkUpTo(r *reader, from, to uint64) {
	r.t.Helper()
	var want []int
	for pos := (ssebroker.Position{Epoch: r.epoch, Offset: from}); pos.Offset < to; {
		wires, _, err := r.tp.ReadAfter(context.Background(), pos, 1<<20)
		if err != nil || len(wires) == 0 {
			r.t.Fatalf("ReadAfter(%v): %d events, %v", pos, len(wires), err)
		}
		for _, w := range wires {
			if pos.Offset < to {
				want = append(want, number(r.t, w))
				pos.Offset++
			}
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.errs) > 0 || r.gaps > 0 {
		r.t.Errorf("follower errors: %v; %d gaps", r.errs, r.gaps)
	}
	if got := r.got[:min(len(r.got), len(want))]; fmt.Sprint(got) != fmt.Sprint(want) {
		r.t.Errorf("follower from offset %d got %v, the log holds %v", from, clip(got), clip(want))
	}
}

// One listening connection per Streams, and a fixed few goroutines,
// whatever the number of topics followed or appended to.
func TestManyTopicsFewFollowed(t *testing.T) {
	url := newDB(t)
	const topics, followed = 10000, 10
	before := runtime.NumGoroutine()
	s := newStreams(t, url, nil)
	// Every topic appended to, in batches of calls, as a busy process
	// would.
	var wg sync.WaitGroup
	for w := range 50 {
		wg.Go(func() {
			for i := w; i < topics; i += 50 {
				if _, err := topic(t, s, fmt.Sprint("user:", i)).Append(context.Background(), wire(i)); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	var readers []*reader
	for i := range followed {
		r, _ := follow(t, topic(t, s, fmt.Sprint("user:", i)))
		readers = append(readers, r)
	}
	for _, r := range readers {
		r.wait("the head", 10*time.Second, (*reader).started)
	}
	for i := range followed {
		appendN(t, topic(t, s, fmt.Sprint("user:", i)), 100000+i, 100000+i)
	}
	for i, r := range readers {
		r.wait("its event", 10*time.Second, func(r *reader) bool { return len(r.got) == 1 && r.got[0] == 100000+i })
	}
	waitListening(t, s)
	// Goroutines: the callers, the trimmer, the loop and the listener, and
	// pgxpool's own (a few); none per topic.
	if n := runtime.NumGoroutine() - before; n > callers+3+6 {
		t.Errorf("%d goroutines more than before the Streams; want at most %d", n, callers+3+6)
	}
	var conns, listeners int
	err := s.pool.QueryRow(t.Context(), `SELECT count(*), count(*) FILTER (WHERE application_name = $1)
		FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()`, listenerName).Scan(&conns, &listeners)
	if err != nil {
		t.Fatal(err)
	}
	// The pool's (at most its MaxConns, 8, of which this query holds one)
	// and the listener.
	if listeners != 1 || conns > 8 {
		t.Errorf("%d connections, %d listening; want at most 8 (the pool's MaxConns, and the listener), 1 listening", conns+1, listeners)
	}
	t.Logf("after %d Appends to %d topics, %d followed: %d goroutines more, %d connections", topics, topics, followed,
		runtime.NumGoroutine()-before, conns+1)
}

// A Streams hands what its own Appends committed to its followers at once,
// without the notification and a read: here its listener cannot connect,
// and it polls only every hour, yet its followers get every event. It
// hands them copies: the caller may use its buffer again.
func TestLocalAppendsNeedNoRead(t *testing.T) {
	url := newDB(t)
	s, refuse := refusingListener(t, url, &Options{PollInterval: time.Hour})
	refuse.Store(true)
	tp := topic(t, s, "room")
	r, _ := follow(t, tp) // its first read: the poll before the listener is up
	r.wait("the head", 10*time.Second, (*reader).started)
	buf := make([]byte, 0, 64)
	for i := 1; i <= 5; i++ {
		buf = append(buf[:0], wire(i)...)
		if _, err := tp.Append(t.Context(), buf); err != nil {
			t.Fatal(err)
		}
	}
	copy(buf, "data: 666")
	r.wait("5 events", 10*time.Second, func(r *reader) bool { return len(r.got) == 5 })
	r.checkLog(0)
	if n := s.subs.connects.Load(); n != 0 {
		t.Errorf("the listener connected %d times, want none", n)
	}
}
