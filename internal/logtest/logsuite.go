package logtest

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lightsse/sse/ssebroker"
)

// Run runs, as subtests of t, the tests of what ssebroker.Log's doc asks of
// every Log: Append's Positions, ReadAfter's events, limit and head, one
// epoch shared by every process, wire forms kept to the byte, and Follow's
// heads, events, order and stop. start starts an empty Store for each
// subtest.
func Run(t *testing.T, start func(t *testing.T) Store) {
	runEach(t, start, []subtest{
		{"AppendAndReadAfter", testAppendAndReadAfter},
		{"EpochSharedAndKept", testEpochSharedAndKept},
		{"ReadAfterStopsAtLimit", testReadAfterStopsAtLimit},
		{"WireKeptExactly", testWireKeptExactly},
		{"FollowDeliversAppends", testFollowDeliversAppends},
		{"FollowNewTopic", testFollowNewTopic},
		{"StopEndsDeliveries", testStopEndsDeliveries},
		{"FollowJoinsMidStream", testFollowJoinsMidStream},
		{"ThreeProcessesOneOrder", testThreeProcessesOneOrder},
	})
}

// A subtest is one test of a suite, on a Store of its own.
type subtest struct {
	name string
	test func(t *testing.T, st Store)
}

// runEach runs each of tests as a subtest of t, on a Store that start
// starts for it.
func runEach(t *testing.T, start func(t *testing.T) Store, tests []subtest) {
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.test(t, start(t)) })
	}
}

// Append numbers a topic's events from 1 in one epoch; ReadAfter hands back
// those after a Position, and the head, and none from the head on, past
// it, or in another epoch.
func testAppendAndReadAfter(t *testing.T, st Store) {
	log := st.Open(t, 0).Log(t, "room")
	ps := AppendN(t, log, 1, 3)
	epoch := ps[0].Epoch
	if !ValidEpoch(epoch) {
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
		{"far past the head", ssebroker.Position{Epoch: epoch, Offset: 1<<64 - 1}, nil},
		{"another epoch", ssebroker.Position{Epoch: "0123456789abcdef", Offset: 1}, nil},
		{"no epoch", ssebroker.Position{}, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			wires, h, err := log.ReadAfter(t.Context(), tt.after, 1<<20)
			if err != nil {
				t.Fatal(err)
			}
			if h != head {
				t.Errorf("head %v, want %v", h, head)
			}
			var got []int
			for _, w := range wires {
				got = append(got, Number(t, w))
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("events %v, want %v", got, tt.want)
			}
		})
	}
}

// Processes that append to one topic share its epoch and number its events
// in one sequence; one that starts later (a restarted instance) keeps both.
func testEpochSharedAndKept(t *testing.T, st Store) {
	a := st.Open(t, 0).Log(t, "room")
	b := st.Open(t, 0).Log(t, "room")
	pa := AppendN(t, a, 1, 2)
	pb := AppendN(t, b, 3, 3)
	if pb[0] != (ssebroker.Position{Epoch: pa[0].Epoch, Offset: 3}) {
		t.Errorf("second process appended at %v, want %s-3", pb[0], pa[0].Epoch)
	}
	c := st.Open(t, 0).Log(t, "room")
	if h := Head(t, c); h != pb[0] {
		t.Errorf("a new process's head: %v; want %v", h, pb[0])
	}
	if got := Numbers(t, c); fmt.Sprint(got) != "[1 2 3]" {
		t.Errorf("a new process reads %v, want [1 2 3]", got)
	}
}

// ReadAfter stops once its events hold at least limit bytes, and returns
// one event whatever the limit.
func testReadAfterStopsAtLimit(t *testing.T, st Store) {
	log := st.Open(t, 0).Log(t, "room")
	epoch := AppendN(t, log, 1, 9)[0].Epoch // 9 bytes each
	wires, _, err := log.ReadAfter(t.Context(), ssebroker.Position{Epoch: epoch}, 25)
	if err != nil {
		t.Fatal(err)
	}
	if len(wires) != 3 {
		t.Errorf("ReadAfter with limit 25 returned %d events of 9 bytes, want 3 (27 bytes, the first to reach 25)", len(wires))
	}
	if wires, _, err := log.ReadAfter(t.Context(), ssebroker.Position{Epoch: epoch}, 1); err != nil || len(wires) != 1 {
		t.Errorf("ReadAfter with limit 1: %d events, %v; want 1", len(wires), err)
	}
}

// ReadAfter and Follow hand back each wire form as Append was given it, byte
// for byte, whatever it holds.
func testWireKeptExactly(t *testing.T, st Store) {
	log := st.Open(t, 0).Log(t, "exact")
	var mu sync.Mutex
	var fed [][]byte
	started := make(chan struct{})
	signal := sync.OnceFunc(func() { close(started) })
	stop := log.Follow(func(pos ssebroker.Position, w []byte) {
		mu.Lock()
		defer mu.Unlock()
		if w == nil {
			signal()
			return
		}
		fed = append(fed, w)
	})
	defer stop()
	WaitClosed(t, "the head", started)
	wires := []string{
		"event: a b\ndata: 1 2 3\ndata: \ndata: x\n\n",
		"id: 7 8\ndata: \u00e9\u65e5\U0001F600\n\n",
		"data: \n\n",
		"data: \x00\xff\n\n", // no valid event, but bytes: kept as they are
		"data: " + strings.Repeat("z", 100<<10) + "\n\n",
	}
	for _, w := range wires {
		if _, err := log.Append(t.Context(), []byte(w)); err != nil {
			t.Fatal(err)
		}
	}
	read, _, err := log.ReadAfter(t.Context(), ssebroker.Position{Epoch: Head(t, log).Epoch}, 1<<30)
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

// Follow hands over the head first, then every event appended after it, by
// this process or another, with no gap to fill.
func testFollowDeliversAppends(t *testing.T, st Store) {
	p := st.Open(t, 0)
	log := p.Log(t, "room")
	AppendN(t, log, 1, 2) // before Follow: not delivered
	f, _ := Follow(t, log)
	f.Wait("the head", 10*time.Second, Started)
	AppendN(t, st.Open(t, 0).Log(t, "room"), 3, 4) // another process
	AppendN(t, log, 5, 5)
	s := f.Wait("3 events", 10*time.Second, Got(3))
	if fmt.Sprint(s.Got) != "[3 4 5]" || s.Gaps != 0 || s.Start != 2 || len(s.Errs) > 0 {
		t.Errorf("got %v from offset %d with %d gaps, errors %v; want [3 4 5] from 2, and no gap", s.Got, s.Start, s.Gaps, s.Errs)
	}
}

// A topic nobody appended to has a head, for its followers, at offset 0 of
// an epoch; its first Append is at offset 1 of that epoch.
func testFollowNewTopic(t *testing.T, st Store) {
	log := st.Open(t, 0).Log(t, "new")
	f, _ := Follow(t, log)
	s := f.Wait("the head", 10*time.Second, Started)
	p := AppendN(t, log, 1, 1)[0]
	if s.Start != 0 || p != (ssebroker.Position{Epoch: s.Epoch, Offset: 1}) {
		t.Errorf("head at %s-%d, first Append at %v; want the head at offset 0 and the Append at %s-1", s.Epoch, s.Start, p, s.Epoch)
	}
	f.Wait("the event", 10*time.Second, Got(1))
}

// Once stop has returned, deliver is called no more, though another Follow
// of the topic, in the same process, goes on; a second stop does nothing.
func testStopEndsDeliveries(t *testing.T, st Store) {
	log := st.Open(t, 0).Log(t, "room")
	stop, stopped, late := FollowCountingLate(t, log)
	witness, _ := Follow(t, log)
	witness.Wait("the head", 10*time.Second, Started)
	stop()
	stopped.Store(true)
	stop() // again: no effect
	AppendN(t, log, 1, 3)
	witness.Wait("3 events", 10*time.Second, Got(3))
	if n := late.Load(); n > 0 {
		t.Errorf("deliver called %d times after stop returned", n)
	}
}

// NoDeliverAfterStop checks that stop, called while a Follow's deliver for
// another follower of log's process holds up the process's deliveries,
// returns at once, and that the stopped follower gets nothing after it.
// waiting reports whether the process holds news of an appended event
// that waits for the held-up deliveries (a notification, say): the test
// stops the follower before it releases them, with that news waiting.
// Follows of one process share one goroutine in both Logs here; the test
// assumes so.
func NoDeliverAfterStop(t *testing.T, log ssebroker.Log, waiting func() bool) {
	stopA, stopped, late := FollowCountingLate(t, log)
	// The witness, which follows after A in the same process, holds up
	// the deliveries inside its deliver of event 1.
	blocked, release := make(chan struct{}), make(chan struct{})
	var got atomic.Int64
	wStarted := make(chan struct{})
	signal := sync.OnceFunc(func() { close(wStarted) })
	stopW := log.Follow(func(pos ssebroker.Position, w []byte) {
		switch {
		case w == nil:
			signal()
		case Number(t, w) == 1:
			close(blocked)
			<-release
		}
		if w != nil {
			got.Add(1)
		}
	})
	defer stopW()
	WaitClosed(t, "the witness's head", wStarted)
	AppendN(t, log, 1, 1)
	<-blocked
	stopA() // A is not in deliver: returns at once, though the deliveries are held up
	stopped.Store(true)
	AppendN(t, log, 2, 2)
	for !waiting() { // event 2's news waits, before A's leave
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

// FollowCountingLate follows log with a deliver that counts its calls made
// once *stopped is set (the test sets it when stop has returned), and
// returns once the first head has come. The test's end stops it.
func FollowCountingLate(t testing.TB, log ssebroker.Log) (stop func(), stopped *atomic.Bool, late *atomic.Int64) {
	t.Helper()
	stopped, late = new(atomic.Bool), new(atomic.Int64)
	started := make(chan struct{})
	signal := sync.OnceFunc(func() { close(started) }) // a head after a break is no second start
	stop = log.Follow(func(pos ssebroker.Position, w []byte) {
		if stopped.Load() {
			late.Add(1)
		}
		if w == nil {
			signal()
		}
	})
	t.Cleanup(stop)
	WaitClosed(t, "the head", started)
	return stop, stopped, late
}

// Followers that join while events are being appended start at the head
// they are given, and miss nothing after it.
func testFollowJoinsMidStream(t *testing.T, st Store) {
	pub := st.Open(t, 100000).Log(t, "room")
	p := st.Open(t, 0)
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
			if _, err := pub.Append(context.Background(), Wire(int(next.Add(1)))); err != nil {
				t.Error(err)
				return
			}
		}
	})
	defer wg.Wait()
	defer close(done)
	var fs []*Follower
	var starts []uint64
	for i := range 5 {
		for next.Load() < int64(50*(i+1)) {
			time.Sleep(time.Millisecond)
		}
		f, _ := Follow(t, p.Log(t, "room"))
		starts = append(starts, f.Wait("the head", 10*time.Second, Started).Start)
		fs = append(fs, f)
	}
	last := next.Load() + 20
	for next.Load() < last {
		time.Sleep(time.Millisecond)
	}
	for i, f := range fs {
		f.Wait(fmt.Sprint("event ", last), 20*time.Second, func(s *State) bool { return s.Last >= uint64(last) })
		f.CheckUpTo(starts[i], uint64(last))
	}
}

// Three processes append to one topic at once, from several goroutines
// each: each process's follower gets every event, in the log's one order,
// with no gap to fill.
func testThreeProcessesOneOrder(t *testing.T, st Store) {
	const perProcess, workers = 3334, 8
	var logs []ssebroker.Log
	var fs []*Follower
	for range 3 {
		log := st.Open(t, 3*perProcess).Log(t, "room")
		f, _ := Follow(t, log)
		logs, fs = append(logs, log), append(fs, f)
	}
	for _, f := range fs {
		f.Wait("the head", 10*time.Second, Started)
	}
	var wg sync.WaitGroup
	var failed atomic.Int64
	for i, log := range logs {
		for w := range workers {
			wg.Go(func() {
				for n := w; n < perProcess; n += workers {
					if _, err := log.Append(context.Background(), Wire(i*perProcess+n)); err != nil {
						failed.Add(1)
						t.Error(err)
						return
					}
				}
			})
		}
	}
	wg.Wait()
	if failed.Load() > 0 {
		t.FailNow()
	}
	total := 3 * perProcess
	for _, f := range fs {
		s := f.Wait(fmt.Sprint(total, " events"), 60*time.Second, func(s *State) bool { return len(s.Got) >= total })
		f.CheckLog(0)
		if s.Gaps != 0 {
			t.Errorf("a follower filled %d gaps in a run without failures: the feed lost events", s.Gaps)
		}
	}
}
