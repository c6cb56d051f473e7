package sserun

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/lightsse/sse"
	"github.com/lightsse/sse/internal/ssetest"
)

// patience is how long a test waits for what should happen at once before it
// calls it a failure: long, so that a busy machine fails nothing.
const patience = time.Minute

// serve serves rs at /runs/{id} on a loopback server closed at the end of
// the test (after rs is closed, which ends its streams).
func serve(t *testing.T, rs *Runs) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	mux.Handle("/runs/{id}", rs)
	srv := httptest.NewServer(mux)
	t.Cleanup(func() {
		rs.Close()
		srv.CloseClientConnections()
		srv.Close()
	})
	return srv
}

// A viewer is one request for a run's stream, read in its own goroutine.
type viewer struct {
	status int
	events chan ssetest.Event // closed when the stream ends
	cancel context.CancelFunc

	mu     sync.Mutex
	reader *ssetest.Reader
	err    error // why the stream ended, once events is closed
}

// view opens url with Last-Event-ID lastID, if not empty.
func view(t *testing.T, url, lastID string) *viewer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	v := &viewer{status: resp.StatusCode, events: make(chan ssetest.Event, 1<<14), cancel: cancel, reader: ssetest.NewReader(resp.Body)}
	go func() {
		defer close(v.events)
		defer resp.Body.Close()
		for {
			ev, err := v.reader.Next()
			if err != nil {
				v.mu.Lock()
				v.err = err
				v.mu.Unlock()
				return
			}
			v.events <- ev
		}
	}()
	t.Cleanup(func() {
		cancel()
		for range v.events {
		}
	})
	return v
}

// next returns the next event, failing the test if the stream ends first.
func (v *viewer) next(t *testing.T) ssetest.Event {
	t.Helper()
	select {
	case ev, ok := <-v.events:
		if !ok {
			t.Fatalf("stream ended: %v", v.err)
		}
		return ev
	case <-time.After(patience):
		t.Fatalf("no event within %v", patience)
	}
	return ssetest.Event{}
}

// rest waits for the stream to end, and returns the events that came
// first and the last event ID the client would reconnect with.
func (v *viewer) rest(t *testing.T) ([]ssetest.Event, string) {
	t.Helper()
	var got []ssetest.Event
	timeout := time.After(patience)
	for {
		select {
		case ev, ok := <-v.events:
			if !ok {
				v.mu.Lock()
				defer v.mu.Unlock()
				if v.err != io.EOF {
					t.Errorf("stream ended with %v, want its end", v.err)
				}
				return got, v.reader.LastEventID
			}
			got = append(got, ev)
		case <-timeout:
			t.Fatalf("stream still open after %v", patience)
		}
	}
}

// leave ends the request, and returns the last event ID the client would
// reconnect with.
func (v *viewer) leave() string {
	v.cancel()
	for range v.events {
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.reader.LastEventID
}

// tok is the i-th token of a test run.
func tok(i int) string { return "t" + strconv.Itoa(i) }

// publish publishes tokens from..to (inclusive) into r.
func publish(t *testing.T, r *Run, from, to int) {
	t.Helper()
	for i := from; i <= to; i++ {
		if err := r.Publish(sse.Event{Type: "token", Data: tok(i)}); err != nil {
			t.Fatal(err)
		}
	}
}

// expectTokens reads tokens from..to from v, in order, each once.
func (v *viewer) expectTokens(t *testing.T, from, to int) {
	t.Helper()
	for i := from; i <= to; i++ {
		if ev := v.next(t); ev.Type != "token" || ev.Data != tok(i) {
			t.Fatalf("got %+v, want token %s", ev, tok(i))
		}
	}
}

// checkRun checks that evs are tokens from..to, then the terminal event
// done, and nothing else.
func checkRun(t *testing.T, evs []ssetest.Event, from, to int) {
	t.Helper()
	want := to - from + 2
	if len(evs) != want {
		t.Fatalf("got %d events, want %d tokens and done: %+v", len(evs), want-1, evs)
	}
	for i, ev := range evs[:want-1] {
		if ev.Type != "token" || ev.Data != tok(from+i) {
			t.Fatalf("event %d: %+v, want token %s", i, ev, tok(from+i))
		}
	}
	if last := evs[want-1]; last.Type != "done" || last.Data != "ok" {
		t.Fatalf("last event %+v, want done", last)
	}
}

// statusOf returns the status of a GET of url with Last-Event-ID lastID, and
// its body.
func statusOf(t *testing.T, url, lastID string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// waitFor polls cond, for conditions that other goroutines make true.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(patience); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// viewers returns the open streams of the run id of rs, on its Broker.
func viewers(rs *Runs, id string) int {
	rs.mu.Lock()
	st := rs.runs[id]
	rs.mu.Unlock()
	if st == nil {
		return 0
	}
	st.mu.Lock()
	b := st.broker
	st.mu.Unlock()
	if b == nil {
		return 0
	}
	return b.Subscribers()
}

var done = sse.Event{Type: "done", Data: "ok"}

// newRuns returns New(opts), and fails the test if New refuses opts.
func newRuns(tb testing.TB, opts *Options) *Runs {
	tb.Helper()
	rs, err := New(opts)
	if err != nil {
		tb.Fatal(err)
	}
	return rs
}
