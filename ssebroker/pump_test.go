package ssebroker

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/lightsse/sse"
	"github.com/lightsse/sse/internal/leakcheck"
	"github.com/lightsse/sse/internal/ssetest"
)

// ---- Pumps -----------------------------------------------------------------

// A stream holds a pump only while it has something to write: pumps are
// shared, a stream whose client is stuck in a write holds up no other, idle
// pumps exit after pumpIdle, and none outlives Close.
//
// On one P: a pump that takes a stream while more wait, with no pump free,
// starts another (the one taken may get stuck), and a pump preempted in its
// write looks as busy as a stuck one. With two Ps on a loaded machine, the
// OS's preemptions made 19 pumps for these 51 streams once; on one, the
// count says what the design does.
func TestBrokerPumps(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	synctest.Test(t, func(t *testing.T) {
		b := newBroker(t, nil)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		const n = 50
		recs := make([]*ssetest.Recorder, n)
		for i := range recs {
			recs[i] = ssetest.NewRecorder()
			go b.ServeHTTP(recs[i], httptest.NewRequestWithContext(ctx, "GET", "/", nil))
		}
		stuck := &blockingWriter{Recorder: ssetest.NewRecorder(), release: make(chan struct{})}
		go b.ServeHTTP(stuck, httptest.NewRequestWithContext(ctx, "GET", "/", nil))
		synctest.Wait()
		idle := func(when string) {
			t.Helper()
			time.Sleep(pumpIdle)
			synctest.Wait()
			if p := pumps(); p != 0 {
				t.Fatalf("%s: %d pumps a second after the last write, want 0", when, p)
			}
		}
		idle("streams open and idle")

		stuck.block.Store(true)
		_ = b.Publish(sse.Event{Data: "x"})
		synctest.Wait()
		for i, rec := range recs {
			if !strings.HasSuffix(rec.Body(), "data: x\n\n") {
				t.Fatalf("stream %d, with another stuck in a write: %q", i, rec.Body())
			}
		}
		// A pump is free again once its write is done, so about one per CPU
		// does (plus the stuck one). The race detector shuffles the scheduler,
		// which makes streams wait for pumps less often: there, some sharing.
		most := 2*runtime.GOMAXPROCS(0) + 2
		if ssetest.Race {
			most = n
		}
		if p := pumps(); p < 1 || int(p) > most {
			t.Errorf("%d pumps for %d streams, one stuck: want at least 1 and at most %d", p, n+1, most)
		}
		close(stuck.release)
		synctest.Wait()
		if !strings.HasSuffix(stuck.Body(), "data: x\n\n") {
			t.Fatalf("the stuck stream, released: %q", stuck.Body())
		}
		idle("after a Publish")

		_ = b.Publish(sse.Event{Data: "y"}) // pumps start again
		synctest.Wait()
		for i, rec := range recs {
			if !strings.HasSuffix(rec.Body(), "data: y\n\n") {
				t.Fatalf("stream %d after the pumps had exited: %q", i, rec.Body())
			}
		}
		b.Close() // ends the streams, and the idle pumps at once
		synctest.Wait()
		if p := pumps(); p != 0 {
			t.Errorf("%d pumps left after Close", p)
		}
	})
}

// A Broker in a testing/synctest bubble need not be closed: once its last
// stream ends, its pumps exit, and the bubble can end.
// A pump that takes a stream as its idle timer fires (the stream was queued
// as it gave up) still exits after pumpIdle with nothing to write: the fired
// timer is not the one it waits on next.
func TestBrokerPumpExitsAfterATurnAsItGaveUp(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	for round := range 40 {
		synctest.Test(t, func(t *testing.T) {
			b := newBroker(t, &Options{Stream: sse.Options{Heartbeat: -1}})
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			for range lingerFrom + 1 { // enough streams for pumps to wait
				go b.ServeHTTP(ssetest.NewRecorder(), httptest.NewRequestWithContext(ctx, "GET", "/", nil))
			}
			synctest.Wait()
			time.Sleep(2 * pumpIdle)
			synctest.Wait()
			_ = b.Publish(sse.Event{Data: "a"}) // the pumps write, then wait from now
			synctest.Wait()
			time.Sleep(pumpIdle)                // as their idle timers fire...
			_ = b.Publish(sse.Event{Data: "b"}) // ...more to write
			synctest.Wait()
			time.Sleep(100 * pumpIdle)
			synctest.Wait()
			if n := pumps(); n != 0 {
				t.Errorf("round %d: %d pumps after %v with nothing to write, want 0", round, n, 100*pumpIdle)
			}
			b.Close()
			cancel()
			synctest.Wait()
		})
		if t.Failed() {
			return
		}
	}
}

func TestBrokerInBubbleWithoutClose(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBroker(t, &Options{Stream: sse.Options{Heartbeat: -1}})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			defer close(done)
			b.ServeHTTP(ssetest.NewRecorder(), httptest.NewRequestWithContext(ctx, "GET", "/", nil))
		}()
		synctest.Wait()
		_ = b.Publish(sse.Event{Data: "x"})
		synctest.Wait()
		cancel()
		<-done
		synctest.Wait()
		if p := pumps(); p != 0 {
			t.Errorf("%d pumps left with no stream open", p)
		}
	})
}

// A panic in a pump (here, in a Log) reaches the stream's handler, where
// net/http reports it as it does any handler's, and leaves other streams and
// the pumps working.
func TestBrokerPumpPanicReachesHandler(t *testing.T) {
	leakcheck.Check(t)
	boom := errors.New("log exploded")
	log := newMemLog()
	b := newBroker(t, &Options{HistoryLen: 2, Log: log})
	defer b.Close()
	publishN(t, b, "", 5)
	log.onRead = func(context.Context) error { panic(boom) }
	req := httptest.NewRequest("GET", "/", nil)
	req.Header.Set("Last-Event-ID", log.head().Epoch+"-1") // older than the history: asks the Log
	var got any
	func() {
		defer func() { got = recover() }()
		b.ServeHTTP(ssetest.NewRecorder(), req)
	}()
	if err, ok := got.(error); !ok || !errors.Is(err, boom) || !strings.Contains(err.Error(), "ReadAfter") {
		t.Fatalf("handler panicked with %v, want an error wrapping %v, with the Log's stack", got, boom)
	}
	log.onRead = nil // the next stream reads the Log at Close
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rec := ssetest.NewRecorder()
	go b.ServeHTTP(rec, httptest.NewRequestWithContext(ctx, "GET", "/", nil))
	waitFor(t, "another stream, placed", func() bool { return strings.Contains(rec.Body(), "id: ") })
	_ = b.Publish(sse.Event{Data: "after"})
	waitFor(t, "the next event", func() bool { return strings.Contains(rec.Body(), "data: after") })
	if n := b.Stats().Ended.Failed; n != 1 {
		t.Errorf("Stats.Ended.Failed = %d, want 1", n)
	}
}

// A pump's runtime.Goexit (a t.FailNow in a fake Log, say) ends the stream
// and its handler the same way, and a pump's http.ErrAbortHandler reaches the
// handler unchanged, for net/http to abort quietly.
func TestBrokerPumpGoexitAndAbort(t *testing.T) {
	leakcheck.Check(t)
	for _, tt := range []struct {
		name   string
		onRead func(context.Context) error
		check  func(t *testing.T, exited bool, p any)
	}{
		{"Goexit", func(context.Context) error { runtime.Goexit(); return nil }, func(t *testing.T, exited bool, p any) {
			if !exited || p != nil {
				t.Errorf("handler: Goexit %v, panic %v; want Goexit", exited, p)
			}
		}},
		{"ErrAbortHandler", func(context.Context) error { panic(http.ErrAbortHandler) }, func(t *testing.T, exited bool, p any) {
			if p != http.ErrAbortHandler {
				t.Errorf("handler panicked with %v, want http.ErrAbortHandler itself", p)
			}
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			log := newMemLog()
			b := newBroker(t, &Options{HistoryLen: 2, Log: log})
			defer b.Close()
			publishN(t, b, "", 5)
			log.onRead = tt.onRead
			req := httptest.NewRequest("GET", "/", nil)
			req.Header.Set("Last-Event-ID", log.head().Epoch+"-1") // older than the history: asks the Log
			exited, recovered := true, any(nil)
			done := make(chan struct{})
			go func() {
				defer close(done)
				defer func() { recovered = recover() }()
				b.ServeHTTP(ssetest.NewRecorder(), req)
				exited = false
			}()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("the handler did not return")
			}
			tt.check(t, exited && recovered == nil, recovered)
			if n := b.Subscribers(); n != 0 {
				t.Errorf("%d subscribers after the stream ended", n)
			}
			if n := log.follows.Load(); n != 0 {
				t.Errorf("%d Follows of the Log running with no stream open", n)
			}
		})
	}
}
