package ssebroker

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lightsse/sse"
	"github.com/lightsse/sse/internal/leakcheck"
	"github.com/lightsse/sse/internal/ssetest"
)

// ---- Streams: slow clients, batches and memory -----------------------------

// Events waiting for a stream go out in one write and one flush.
func TestBrokerBatchesWaitingEvents(t *testing.T) {
	leakcheck.Check(t)
	b := newBroker(t, nil)
	for i := range 100 {
		_ = b.Publish(sse.Event{Data: fmt.Sprint(i)})
	}
	rec := &countingWriter{Recorder: ssetest.NewRecorder()}
	ctx, cancel := context.WithCancel(context.Background())
	req := httptest.NewRequestWithContext(ctx, "GET", "/", nil)
	req.Header.Set("Last-Event-ID", epochOf(b)+"-0")
	done := make(chan struct{})
	go func() { defer close(done); b.ServeHTTP(rec, req) }()
	waitFor(t, "the replay", func() bool { return strings.Count(rec.Body(), "data: ") == 100 })
	cancel()
	<-done
	if rec.writes() != 1 || rec.Flushes() != 2 { // the headers' flush, then the batch's
		t.Errorf("100 waiting events: %d writes, %d flushes; want 1 write and 1 flush after the headers", rec.writes(), rec.Flushes()-1)
	}
	got, _ := ssetest.Parse(rec.Body())
	if len(got) != 100 || got[99].Data != "99" {
		t.Errorf("got %d events", len(got))
	}
	if n := b.Stats().BytesWritten; n != uint64(len(rec.Body())) {
		t.Errorf("Stats.BytesWritten = %d; the stream got %d", n, len(rec.Body()))
	}
}

// A Publish and its delivery to every waiting stream allocate the same with
// no stream and with 1,000: the encoded event and its entry (a parked stream
// waits on a count, not a channel; now and then a goroutine, the one that
// hands the parked streams to the pumps or a pump, is new). Each round publishes once, waits until every stream has
// written the event and waits again, and counts every goroutine's
// allocations in between; the figure is the median round, so that a round
// in which a busy machine collected the pools' buffers or let a pump exit
// does not count as the Broker's.
func TestBrokerPublishAllocsDoNotGrowWithSubscribers(t *testing.T) {
	if ssetest.Race {
		t.Skip("the race detector allocates on goroutine switches; .ci/run runs this test without it")
	}
	leakcheck.Check(t)
	allocs := func(streams int) float64 {
		b := newBroker(t, nil)
		defer b.Close()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		var wg sync.WaitGroup
		var writes atomic.Int64
		for range streams {
			wg.Add(1)
			go func() {
				defer wg.Done()
				b.ServeHTTP(&ssetest.Discard{Head: http.Header{}, Writes: &writes}, httptest.NewRequestWithContext(ctx, "GET", "/", nil))
			}()
		}
		waitFor(t, "every stream to write its opening", func() bool { return writes.Load() == int64(streams) })
		const rounds = 51
		var counts []uint64
		for i := range rounds + 5 { // the first 5 warm the pools
			want := writes.Load() + int64(streams)
			before := mallocs()
			_ = b.Publish(typical)
			waitFor(t, "every stream to write the event", func() bool { return writes.Load() == want })
			waitFor(t, "every stream to wait again", func() bool { return b.nparked.Load() == int64(streams) })
			if i >= 5 {
				counts = append(counts, mallocs()-before)
			}
		}
		cancel()
		wg.Wait()
		slices.Sort(counts)
		return float64(counts[len(counts)/2])
	}
	none, many := allocs(0), allocs(1000)
	if none > 2.5 || many > none+0.5 {
		t.Errorf("allocations per Publish and its deliveries: %.1f with no stream, %.1f with 1,000; want 2, and no more with streams waiting", none, many)
	}
	t.Logf("allocations per Publish and its deliveries: %.1f with no stream, %.1f with 1,000", none, many)
}

// A client that stops reading delays no one: while its stream is stuck in
// a write, every Publish returns and every other client gets every event.
// (Nothing here is timed: the stuck stream's write timeout is a minute, far
// longer than the burst takes even on a busy machine, and the test checks
// that it is still stuck when everything else is done.)
func TestBrokerStalledClientDelaysNoOne(t *testing.T) {
	leakcheck.Check(t)
	const healthy, events = 20, 400
	b := newBroker(t, &Options{Stream: sse.Options{WriteTimeout: time.Minute}})
	srv := stallingServer(b)
	t.Cleanup(func() { b.Close(); srv.Close() })

	stalled := dialStalled(t, srv.Listener.Addr().String())
	defer stalled.Close()
	waitFor(t, "the stalled client", func() bool { return b.Subscribers() == 1 })
	results := make(chan error, healthy)
	moving := watchProgress(t)
	for range healthy {
		cl := connect(t, srv.Client(), srv.URL, "")
		go func() { results <- checkSequence(cl, 1, events, moving) }()
	}
	waitFor(t, "every client", func() bool { return b.Subscribers() == healthy+1 })

	// 400 KiB: far more than the stalled connection buffers, so its stream
	// gets stuck in a write, holding a pump there.
	data := strings.Repeat("x", 1<<10)
	for i := range events {
		_ = b.Publish(sse.Event{Data: "0 " + strconv.Itoa(i) + " " + data})
	}
	for range healthy {
		if err := <-results; err != nil {
			t.Fatal(err)
		}
	}
	// Every Publish has returned and every healthy client has everything,
	// while the stalled stream is still open, stuck in its write (the one
	// pump left once the others have gone idle): none waited for it.
	waitFor(t, "the healthy streams' pumps to go idle", func() bool { return pumps() == 1 })
	if s := b.Stats(); b.Subscribers() != healthy+1 || s.Ended.WriteTimeout != 0 {
		t.Fatalf("%d streams open, %d ended by a write timeout, when the healthy clients finished; want %d open, the stalled one still stuck", b.Subscribers(), s.Ended.WriteTimeout, healthy+1)
	}
	stalled.Close()
	waitFor(t, "the stalled stream to end with its connection", func() bool { return b.Subscribers() == healthy })
	b.mu.Lock()
	held := b.hist.Load().bytes
	b.mu.Unlock()
	if held > DefaultHistoryBytes {
		t.Errorf("history holds %d bytes, over its bound", held)
	}
}

// A Broker's stream whose client stops reading ends once a write has waited
// for the write timeout.
func TestBrokerWriteTimeoutEndsStalledStream(t *testing.T) {
	leakcheck.Check(t)
	const timeout = time.Second
	b := newBroker(t, &Options{Stream: sse.Options{WriteTimeout: timeout}})
	srv := stallingServer(b)
	t.Cleanup(func() { b.Close(); srv.Close() })
	stalled := dialStalled(t, srv.Listener.Addr().String())
	defer stalled.Close()
	waitFor(t, "the stalled client", func() bool { return b.Subscribers() == 1 })
	start := time.Now()
	for range 100 {
		_ = b.Publish(sse.Event{Data: strings.Repeat("x", 1<<10)})
	}
	waitFor(t, "the stalled stream to end", func() bool { return b.Subscribers() == 0 })
	// A write gets at least 7/8 of the timeout (Options.WriteTimeout).
	if waited := time.Since(start); waited < timeout*7/8 {
		t.Errorf("the stalled stream ended %v after the burst, before 7/8 of the write timeout of %v", waited, timeout)
	}
	if s := b.Stats(); s.Ended.WriteTimeout != 1 {
		t.Errorf("Stats.Ended = %+v, want one write timeout", s.Ended)
	}
}

// A stream that falls more than half the history behind, by count or by
// bytes, is ended, and its client, reconnecting with its last id, gets
// everything it missed.
func TestBrokerSlowStreamIsEndedAndResumes(t *testing.T) {
	for _, tt := range []struct {
		name        string
		opts        Options
		size, burst int // event data size, events published while it is stuck
	}{
		{"by count", Options{HistoryLen: 100}, 1, 60},
		{"by bytes", Options{HistoryBytes: 10 << 10}, 1 << 10, 8},
	} {
		t.Run(tt.name, func(t *testing.T) {
			leakcheck.Check(t)
			b := newBroker(t, &tt.opts)
			srv := brokerServer(t, b)
			g := &gate{Recorder: ssetest.NewRecorder(), entered: make(chan struct{}, 1000), open: make(chan struct{}, 1000)}
			done := make(chan struct{})
			go func() { defer close(done); b.ServeHTTP(g, httptest.NewRequest("GET", "/", nil)) }()
			<-g.entered
			g.open <- struct{}{} // the new stream's id line
			waitFor(t, "the stream to wait for events", func() bool { return b.nparked.Load() == 1 })
			data := func(i int) string { return strconv.Itoa(i) + strings.Repeat("x", tt.size) }
			_ = b.Publish(sse.Event{Data: data(0)})
			<-g.entered // the stream's write of event 0 waits at the gate
			for i := 1; i <= tt.burst; i++ {
				_ = b.Publish(sse.Event{Data: data(i)}) // over half the history
			}
			for range 10 {
				g.open <- struct{}{}
			}
			select {
			case <-done:
			case <-time.After(20 * time.Second):
				t.Fatalf("a stream %d events behind was not ended", tt.burst)
			}
			got, r := ssetest.Parse(g.Body())
			if len(got) != 1 || got[0].Data != data(0) {
				t.Fatalf("the slow stream got %d events", len(got))
			}
			if n := b.Stats().Ended.FellBehind; n != 1 {
				t.Errorf("Stats.Ended.FellBehind = %d, want 1", n)
			}
			cl := connect(t, srv.Client(), srv.URL, r.LastEventID)
			for i := 1; i <= tt.burst; i++ {
				if ev := cl.next(t); ev.Data != data(i) {
					t.Fatalf("after reconnecting: %.20q, want %.20q", ev.Data, data(i))
				}
			}
		})
	}
}

// Clients that stop reading while a large event is written hold no copy of
// it each: the heap with 200 of them stuck is about the heap with 50.
func TestBrokerStalledClientsHoldNoCopies(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	leakcheck.Check(t)
	const size = 2 << 20
	heap := func(n int) uint64 {
		b := newBroker(t, &Options{Stream: sse.Options{WriteTimeout: time.Minute}})
		srv := stallingServer(b)
		defer srv.Close()
		defer b.Close()
		for range n {
			defer dialStalled(t, srv.Listener.Addr().String()).Close()
		}
		waitFor(t, "the streams", func() bool { return b.Subscribers() == n })
		_ = b.Publish(sse.Event{Data: strings.Repeat("x", size)})
		// Every stream is stuck in its write of the event: n pumps.
		waitFor(t, "every stream stuck in a write", func() bool { return pumps() >= n })
		return heapInUse()
	}
	few, many := heap(50), heap(200)
	if many > few && many-few > 30<<20 {
		t.Errorf("heap with 200 clients stuck on a %d MiB event: %d MiB, with 50: %d MiB; the extra 150 hold copies", size>>20, many>>20, few>>20)
	}
	t.Logf("heap in use with 50 stuck clients: %.1f MiB, with 200: %.1f MiB", float64(few)/(1<<20), float64(many)/(1<<20))
}

// An idle stream's handler goroutine never writes (the Broker's pumps do), so
// its stack stays small: a Broker's idle streams, which have each received an
// event, take at most 7 KiB of goroutine stacks each. Writing from the
// handler, as a bare handler that writes its headers and waits does, grows
// its goroutine's stack to 8 KiB for as long as the stream lasts (10 KiB in
// all with net/http's reader).
func TestBrokerIdleStreamStack(t *testing.T) {
	if ssetest.Race {
		t.Skip("the race detector deepens every frame, so stacks grow in any case; .ci/run runs this test without it")
	}
	leakcheck.Check(t)
	const n = 200
	perStream := func(h http.Handler, open func() int, publish func()) float64 {
		srv := httptest.NewServer(h)
		defer srv.Close()
		before := stackInUse()
		conns := make([]*rawStream, n)
		for i := range conns {
			s, err := dialStream(srv.Listener.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer s.conn.Close()
			conns[i] = s
		}
		waitFor(t, "the streams", func() bool { return open() == n })
		publish()
		return float64(stackInUse()-before) / n / 1024
	}
	var started atomic.Int64
	bare := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(200)
		http.NewResponseController(w).Flush()
		started.Add(1)
		<-r.Context().Done()
	})
	floor := perStream(bare, func() int { return int(started.Load()) }, func() {})
	b := newBroker(t, nil)
	defer b.Close()
	ours := perStream(b, b.Subscribers, func() {
		_ = b.Publish(sse.Event{Data: "x"})
		// Each stream has written the event: let the pumps go idle.
		waitFor(t, "the pumps to exit", func() bool { return pumps() == 0 })
	})
	t.Logf("goroutine stacks per stream: Broker %.1f KiB, bare handler %.1f KiB", ours, floor)
	// The bare handler's figure is only shown: repeated in one process (-count)
	// it reuses stacks freed by earlier runs and can read far below 10 KiB.
	if ours > 7 {
		t.Errorf("goroutine stacks per idle stream: %.1f KiB, want at most 7 (4 KiB for the handler, 2 for net/http's reader, and the shared pumps)", ours)
	}
}

// A request that ends before its stream opens is still answered as a
// stream, with its headers and no event: a client that gets anything else
// (sseclient, a browser) gives up instead of coming back.
func TestBrokerRequestEndedBeforeOpen(t *testing.T) {
	b := newBroker(t, nil)
	defer b.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	rec := ssetest.NewRecorder()
	b.ServeHTTP(rec, httptest.NewRequestWithContext(ctx, "GET", "/", nil))
	if ct := rec.Header().Get("Content-Type"); ct != "text/event-stream" {
		t.Errorf("Content-Type %q, want text/event-stream", ct)
	}
	if n := b.Stats().Ended.ClientLeft; n != 1 {
		t.Errorf("Ended.ClientLeft = %d, want 1", n)
	}
}
