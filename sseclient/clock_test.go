package sseclient

import (
	"context"
	"errors"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/lightsse/sse"
)

// ---- Timers, on testing/synctest's fake clock --------------------------------
//
// The server here is a RoundTripper whose responses are pipes written by a
// script, so that every goroutine is in the bubble and time moves only when
// all of them wait: the delays measured are the Client's, to the nanosecond.

// fakeServer answers each request with a 200 text/event-stream response whose
// body script writes; script's n counts requests from 1. It records when
// each request came. A request that stall, if not nil, picks gets no
// response at all: it waits for the request's context.
type fakeServer struct {
	script func(n int, req *http.Request, w io.Writer)
	stall  func(n int) bool
	mu     sync.Mutex
	times  []time.Time
	ids    []string
}

func (f *fakeServer) RoundTrip(req *http.Request) (*http.Response, error) {
	f.mu.Lock()
	f.times = append(f.times, time.Now())
	f.ids = append(f.ids, req.Header.Get("Last-Event-ID"))
	n := len(f.times)
	f.mu.Unlock()
	if f.stall != nil && f.stall(n) {
		<-req.Context().Done()
		return nil, req.Context().Err()
	}
	pr, pw := io.Pipe()
	stop := context.AfterFunc(req.Context(), func() { pw.CloseWithError(req.Context().Err()) })
	go func() {
		defer stop()
		f.script(n, req, pw)
		pw.Close()
	}()
	return &http.Response{
		StatusCode: 200,
		Status:     "200 OK",
		Header:     http.Header{"Content-Type": {"text/event-stream"}},
		Body:       pr,
		Request:    req,
	}, nil
}

// gaps returns the time between each request and the next.
func (f *fakeServer) gaps() []time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	var d []time.Duration
	for i := 1; i < len(f.times); i++ {
		d = append(d, f.times[i].Sub(f.times[i-1]))
	}
	return d
}

// run reads the stream until script has answered requests requests: the
// next request cancels it. It returns the events read and the error the
// stream ended with.
func (f *fakeServer) run(t *testing.T, c *Client, requests int) ([]sse.Event, error) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	script := f.script
	f.script = func(n int, req *http.Request, w io.Writer) {
		if n > requests {
			cancel()
			return
		}
		script(n, req, w)
	}
	c.HTTPClient = &http.Client{Transport: f}
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://fake/events", nil)
	var got []sse.Event
	for ev, err := range c.Events(req) {
		if err != nil {
			return got, err
		}
		got = append(got, ev)
	}
	return got, nil
}

// within checks that each gap is in [want, 1.5*want]: the delay and at most
// half of it again as jitter (for a delay over two thirds of MaxDelay, want is
// capped(MaxDelay)). It returns whether some gap had jitter.
func within(t *testing.T, gaps, want []time.Duration) bool {
	t.Helper()
	if len(gaps) != len(want) {
		t.Fatalf("%d gaps %v, want %d like %v", len(gaps), gaps, len(want), want)
	}
	jitter := false
	for i := range want {
		if gaps[i] < want[i] || gaps[i] > want[i]+want[i]/2 {
			t.Errorf("gap %d is %v, want %v plus at most half", i+1, gaps[i], want[i])
		}
		jitter = jitter || gaps[i] > want[i]
	}
	return jitter
}

// Connections that deliver nothing back off: Retry, then doubling up to
// MaxDelay, each with jitter; no wait passes MaxDelay, and the waits at the
// cap still have jitter, between two thirds of MaxDelay and MaxDelay.
func TestBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeServer{script: func(int, *http.Request, io.Writer) {}}
		const maxDelay = 10 * time.Second
		_, err := f.run(t, &Client{Retry: time.Second, MaxDelay: maxDelay}, 12)
		if !errors.Is(err, context.Canceled) {
			t.Errorf("ended with %v", err)
		}
		s, c := time.Second, capped(maxDelay) // 8s is over the two thirds
		gaps := f.gaps()
		if !within(t, gaps, []time.Duration{s, 2 * s, 4 * s, c, c, c, c, c, c, c, c, c}) {
			t.Error("no jitter")
		}
		if longest := slices.Max(gaps); longest > maxDelay {
			t.Errorf("a wait of %v, over MaxDelay", longest)
		}
		if atCap := gaps[3:]; slices.Min(atCap) == slices.Max(atCap) {
			t.Errorf("the waits at the cap are all %v: no jitter", atCap[0])
		}
	})
}

// capped is the least wait at the cap, two thirds of maxDelay: what within
// takes for a delay at the cap.
func capped(maxDelay time.Duration) time.Duration { return maxDelay / 3 * 2 }

// The server's retry sets the delay, for every later connection; an event
// delivered resets the backoff.
func TestRetryAndReset(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeServer{script: func(n int, _ *http.Request, w io.Writer) {
			switch n {
			case 1:
				io.WriteString(w, "retry: 500\ndata: a\n\n")
			case 5:
				io.WriteString(w, "id: 9\ndata: b\n\n")
			}
		}}
		got, _ := f.run(t, &Client{Retry: time.Minute, MaxDelay: time.Hour}, 7)
		if len(got) != 2 {
			t.Fatalf("events %+v", got)
		}
		ms := time.Millisecond
		// 1 delivered; 2, 3 and 4 did not (the backoff doubles from
		// Retry, which is above the server's retry); 5 delivered; 6 and 7
		// did not.
		within(t, f.gaps(), []time.Duration{500 * ms, 500 * ms, 2 * time.Minute, 4 * time.Minute, 500 * ms, 500 * ms, 2 * time.Minute})
		if f.ids[5] != "9" || f.ids[6] != "9" {
			t.Errorf("Last-Event-ID %q after the event with id 9", f.ids)
		}
	})
}

// A quiet but healthy connection is no failure: one that stayed open for
// MaxDelay or longer, though it delivered no event, resets the backoff. One
// that delivered bytes but not for so long does not.
func TestLongConnectionResetsBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeServer{script: func(n int, _ *http.Request, w io.Writer) {
			switch n {
			case 4: // an hour of heartbeats, then the end
				for range 360 {
					time.Sleep(10 * time.Second)
					io.WriteString(w, ":\n")
				}
			case 6: // heartbeats, for less than MaxDelay
				for range 5 {
					time.Sleep(time.Second)
					io.WriteString(w, ":\n")
				}
			}
		}}
		f.run(t, &Client{Retry: time.Second, MaxDelay: time.Minute}, 6)
		gaps := f.gaps()
		if len(gaps) == 6 {
			gaps[3] -= time.Hour
			gaps[5] -= 5 * time.Second
		}
		s := time.Second
		// 1, 2 and 3 fail; 4 is healthy; 5 and 6 fail.
		within(t, gaps, []time.Duration{s, 2 * s, 4 * s, s, s, 2 * s})
	})
}

// retry: 0 reconnects at once, but a server that keeps sending it without
// events does not make a loop: the backoff starts from Retry.
func TestRetryZeroDoesNotLoop(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeServer{script: func(n int, _ *http.Request, w io.Writer) { io.WriteString(w, "retry: 0\n\n") }}
		f.run(t, &Client{Retry: time.Second}, 4)
		gaps := f.gaps()
		if gaps[0] != 0 {
			t.Errorf("first gap %v, want 0", gaps[0])
		}
		within(t, gaps[1:], []time.Duration{2 * time.Second, 4 * time.Second, 8 * time.Second})
	})
}

// A retry over MaxDelay waits no more than MaxDelay.
func TestRetryCapped(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeServer{script: func(n int, _ *http.Request, w io.Writer) { io.WriteString(w, "retry: 86400000\ndata: x\n\n") }}
		f.run(t, &Client{}, 3)
		c := capped(DefaultMaxDelay)
		within(t, f.gaps(), []time.Duration{c, c, c})
	})
}

// Heartbeats keep a connection alive; silence for IdleTimeout ends it,
// however long the response has been open.
func TestIdleTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		var lastByte time.Time
		f := &fakeServer{script: func(n int, req *http.Request, w io.Writer) {
			if n > 1 {
				return
			}
			for range 12 { // two minutes of heartbeats
				time.Sleep(10 * time.Second)
				io.WriteString(w, ":\n")
				mu.Lock()
				lastByte = time.Now()
				mu.Unlock()
			}
			<-req.Context().Done() // then silence
		}}
		var rs retries
		start := time.Now()
		f.run(t, &Client{IdleTimeout: 15 * time.Second, Retry: time.Second, OnRetry: func(err error, wait time.Duration) {
			mu.Lock()
			defer mu.Unlock()
			rs.on(err, time.Since(lastByte))
		}}, 1)
		if len(rs.errs) != 1 || rs.errs[0] != ErrIdleTimeout || rs.waits[0] != 15*time.Second {
			t.Errorf("OnRetry: %v, %v after the last byte; want ErrIdleTimeout after 15s", rs.errs, rs.waits)
		}
		mu.Lock()
		defer mu.Unlock()
		if d := lastByte.Sub(start); d != 2*time.Minute {
			t.Errorf("the heartbeats ran %v", d)
		}
	})
}

// A connection that stalls, before its headers or after an event, ends after
// IdleTimeout, exactly; the Client comes back after its delay, resuming from
// the last event ID, and OnRetry is told why, once.
func TestIdleTimeoutEndsAStall(t *testing.T) {
	for _, tt := range []struct {
		name   string
		stall  bool   // the first request gets no headers
		first  string // or this, and then nothing
		lastID string // the Last-Event-ID the second request must carry
		want   string // the data of the events read
	}{
		{name: "stall before the headers", stall: true, want: "b"},
		{name: "stall past the idle timeout", first: "id: 1\ndata: a\n\n", lastID: "1", want: "ab"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				f := &fakeServer{
					stall: func(n int) bool { return tt.stall && n == 1 },
					script: func(n int, req *http.Request, w io.Writer) {
						if n == 1 {
							io.WriteString(w, tt.first)
						} else {
							io.WriteString(w, "data: b\n\n")
						}
						<-req.Context().Done()
					},
				}
				var rs retries
				c := &Client{IdleTimeout: 15 * time.Second, Retry: time.Second, OnRetry: rs.on, HTTPClient: &http.Client{Transport: f}}
				req, _ := http.NewRequestWithContext(ctx, "GET", "http://fake/events", nil)
				var got string
				for ev, err := range c.Events(req) {
					if err != nil {
						t.Fatal(err)
					}
					if got += ev.Data; ev.Data == "b" {
						break
					}
				}
				if got != tt.want || len(f.ids) != 2 || f.ids[1] != tt.lastID {
					t.Errorf("events %q over %d requests, the second with Last-Event-ID %q; want %q, 2 and %q",
						got, len(f.ids), f.ids[1:], tt.want, tt.lastID)
				}
				if len(rs.errs) != 1 || rs.errs[0] != ErrIdleTimeout {
					t.Fatalf("OnRetry got %v, want ErrIdleTimeout once", rs.errs)
				}
				within(t, rs.waits, []time.Duration{time.Second})
				if gaps := f.gaps(); gaps[0] != 15*time.Second+rs.waits[0] {
					t.Errorf("the second request came %v after the first, want the idle timeout and the wait, %v",
						gaps[0], 15*time.Second+rs.waits[0])
				}
			})
		})
	}
}

// The idle clock stops while the caller holds an event: a slow caller is not
// a silent server.
func TestIdleClockStopsForTheCaller(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		f := &fakeServer{script: func(n int, req *http.Request, w io.Writer) {
			if n > 1 {
				cancel() // one connection is all it takes
				return
			}
			io.WriteString(w, "data: a\n\n")
			time.Sleep(5 * time.Second)
			io.WriteString(w, "data: b\n\n")
			<-req.Context().Done()
		}}
		c := &Client{IdleTimeout: 15 * time.Second, HTTPClient: &http.Client{Transport: f}}
		req, _ := http.NewRequestWithContext(ctx, "GET", "http://fake/events", nil)
		var got []string
		for ev, err := range c.Events(req) {
			if err != nil {
				break
			}
			got = append(got, ev.Data)
			if ev.Data == "b" {
				cancel()
			} else {
				time.Sleep(time.Minute) // the caller is busy
			}
		}
		if n := len(f.gaps()) + 1; strings.Join(got, "") != "ab" || n != 1 {
			t.Errorf("events %q over %d connections, want a, b over one", got, n)
		}
	})
}

// LastEventID is the stream's last event ID, as the standard keeps it, not
// the last non-empty ID of the events: an id line alone sets it, an empty id
// field resets it. In the loop it counts the event in hand; after the loop,
// all that was read; the next request sends it.
func TestLastEventIDFollowsTheStream(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		f := &fakeServer{script: func(n int, req *http.Request, w io.Writer) {
			if n == 1 {
				io.WriteString(w, "id: 1\ndata: a\n\nid: 2\n\ndata: b\n\nid\ndata: c\n\nid: 3\ndata: d\n\nid: 9\n\n")
				return
			}
			io.WriteString(w, "data: e\n\nid: 10\n\n")
			<-req.Context().Done()
		}}
		c := &Client{HTTPClient: &http.Client{Transport: f}}
		req, _ := http.NewRequestWithContext(ctx, "GET", "http://fake/events", nil)
		req.Header.Set("Last-Event-ID", "0")
		s := c.Stream(req)
		if id := s.LastEventID(); id != "0" {
			t.Errorf("before the loop: %q, want the request's", id)
		}
		var got []string
		for ev, err := range s.Events() {
			if err != nil {
				break
			}
			got = append(got, ev.Data+":"+ev.ID+":"+s.LastEventID())
			if ev.Data == "e" {
				cancel() // the id line after e, which came in the same read, is read all the same
			}
		}
		want := []string{"a:1:1", "b::2", "c::", "d:3:3", "e::9"}
		if !slices.Equal(got, want) {
			t.Errorf("data:ID:LastEventID in the loop %q, want %q", got, want)
		}
		if id := s.LastEventID(); id != "10" || f.ids[0] != "0" || f.ids[1] != "9" {
			t.Errorf("after the loop: %q, want 10; the requests sent %q, want 0 and 9", id, f.ids)
		}
	})
}

// A stream that ends before its first event has a last event ID all the
// same, if the server sent one (a Broker opens a new client's stream with an
// id line alone): a later process that resumes from it misses nothing.
func TestLastEventIDBeforeAnyEvent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		f := &fakeServer{script: func(n int, req *http.Request, w io.Writer) {
			io.WriteString(w, "id: e-41\n\n")
			<-req.Context().Done()
		}}
		c := &Client{HTTPClient: &http.Client{Transport: f}}
		req, _ := http.NewRequestWithContext(ctx, "GET", "http://fake/events", nil)
		s := c.Stream(req)
		done := make(chan error)
		go func() {
			for _, err := range s.Events() {
				done <- err
			}
			close(done)
		}()
		synctest.Wait() // the id line is read; the stream waits for more
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("ended with %v", err)
		}
		<-done
		if id := s.LastEventID(); id != "e-41" {
			t.Errorf("LastEventID %q, want e-41", id)
		}
	})
}

// Cancelling the context ends a wait to reconnect at once, however long it
// was to be, and a connection being read.
func TestCancelEndsAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		f := &fakeServer{script: func(int, *http.Request, io.Writer) {}}
		c := &Client{Retry: time.Hour, HTTPClient: &http.Client{Transport: f}, OnRetry: func(error, time.Duration) { cancel() }}
		req, _ := http.NewRequestWithContext(ctx, "GET", "http://fake/events", nil)
		start := time.Now()
		for _, err := range c.Events(req) {
			if !errors.Is(err, context.Canceled) {
				t.Errorf("err %v", err)
			}
		}
		if d := time.Since(start); d != 0 {
			t.Errorf("cancelled during the wait, returned after %v", d)
		}

		ctx, cancel = context.WithCancel(context.Background())
		defer cancel()
		f = &fakeServer{script: func(_ int, req *http.Request, w io.Writer) {
			io.WriteString(w, "data: a\n\n")
			<-req.Context().Done()
		}}
		c = &Client{HTTPClient: &http.Client{Transport: f}}
		req, _ = http.NewRequestWithContext(ctx, "GET", "http://fake/events", nil)
		go func() {
			time.Sleep(time.Hour)
			cancel()
		}()
		start = time.Now()
		var errs []error
		for _, err := range c.Events(req) {
			errs = append(errs, err)
		}
		if d := time.Since(start); d != time.Hour || len(errs) != 2 || !errors.Is(errs[1], context.Canceled) {
			t.Errorf("cancelled while reading after 1h: returned after %v with %v", d, errs)
		}
	})
}
