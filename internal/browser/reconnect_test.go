package browser

import (
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/lightsse/sse"
)

// arrival is one request for a stream, as the server saw it.
type arrival struct {
	at          time.Time
	lastEventID string // the raw header
	hasHeader   bool
	ended       time.Time // when the handler returned
}

// arrivals records the requests of one stream URL, in order.
type arrivals struct {
	mu   sync.Mutex
	list []arrival
}

// add records r and returns its number, from 1.
func (a *arrivals) add(r *http.Request) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	_, has := r.Header["Last-Event-Id"]
	a.list = append(a.list, arrival{at: time.Now(), lastEventID: r.Header.Get("Last-Event-ID"), hasHeader: has})
	return len(a.list)
}

// end records that request n's handler is returning.
func (a *arrivals) end(n int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.list[n-1].ended = time.Now()
}

func (a *arrivals) get() []arrival {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]arrival(nil), a.list...)
}

func (a *arrivals) count() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.list)
}

// holdOpen keeps a handler's stream open until the page leaves or the test
// ends.
func (p *page) holdOpen(r *http.Request) {
	select {
	case <-r.Context().Done():
	case <-p.ctx.Done():
	}
}

// newWriter starts a stream or fails the test.
func (p *page) newWriter(w http.ResponseWriter, r *http.Request, o *sse.Options) *sse.Writer {
	sw, err := sse.NewWriter(w, r, o)
	if err != nil {
		p.t.Errorf("NewWriter: %v", err)
		return nil
	}
	return sw
}

// send sends the events, reporting a failure.
func (p *page) send(sw *sse.Writer, events ...sse.Event) bool {
	for _, e := range events {
		if err := sw.Send(e); err != nil {
			p.t.Errorf("Send(%+v): %v", e, err)
			return false
		}
	}
	return true
}

// followScript watches one EventSource on /stream until its "end" event, then
// closes it and reports what it saw as "done".
const followScript = `
const es = new EventSource('/stream');
watch(es, ['message', 'end']);
await new Promise(done => es.addEventListener('end', () => { es.close(); done(); }));
await report('done', seen);
`

// TestRetryHonoured: the server sets retry: 200 and ends the stream; the
// page comes back after about 200 ms, far sooner than Chromium's 3 s default,
// with the last event id.
func TestRetryHonoured(t *testing.T) {
	p := newPage(t)
	const retry = 200 * time.Millisecond
	var reqs arrivals
	p.Mux.HandleFunc("GET /stream", func(w http.ResponseWriter, r *http.Request) {
		n := reqs.add(r)
		defer reqs.end(n)
		switch n {
		case 1:
			sw := p.newWriter(w, r, &sse.Options{Retry: retry})
			if sw == nil {
				return
			}
			defer sw.Close()
			p.send(sw, sse.Event{ID: "r1", Data: "first"})
			// Returning ends the stream.
		case 2:
			sw := p.newWriter(w, r, nil)
			if sw == nil {
				return
			}
			defer sw.Close()
			if p.send(sw, sse.Event{ID: "r2", Data: "second"}, sse.Event{Type: endEvent}) {
				p.holdOpen(r)
			}
		default:
			t.Errorf("request %d: the page should have stopped at the second", n)
			w.WriteHeader(http.StatusNoContent)
		}
	})
	p.start(followScript)
	var got []record
	p.await("done", &got)
	checkSeq(t, "page", got, []record{
		opened(),
		ev("message", "first", "r1"),
		failed(connecting),
		opened(),
		ev("message", "second", "r2"),
		ev(endEvent, "", "r2"),
	})
	a := reqs.get()
	if len(a) != 2 {
		t.Fatalf("%d requests, want 2", len(a))
	}
	if a[1].lastEventID != "r1" {
		t.Errorf("reconnection's Last-Event-ID = %q (present: %v), want %q", a[1].lastEventID, a[1].hasHeader, "r1")
	}
	gap := a[1].at.Sub(a[0].ended)
	t.Logf("reconnected %v after the stream ended (retry: %v)", gap, retry)
	if gap < retry*3/4 || gap > time.Second {
		t.Errorf("reconnected %v after the stream ended; want about %v (Chromium's default is 3 s)", gap, retry)
	}
}

// TestReconnectWithLastEventID: a stream the server ends is reopened by the
// page on its own, with the last id it saw (kept across an event without an
// id) in Last-Event-ID, and goes on from there. The retry comes from an
// event's Retry field this time.
func TestReconnectWithLastEventID(t *testing.T) {
	p := newPage(t)
	var reqs arrivals
	p.Mux.HandleFunc("GET /stream", func(w http.ResponseWriter, r *http.Request) {
		n := reqs.add(r)
		defer reqs.end(n)
		sw := p.newWriter(w, r, nil)
		if sw == nil {
			return
		}
		defer sw.Close()
		switch n {
		case 1:
			p.send(sw,
				sse.Event{ID: "1", Data: "a"},
				sse.Event{ID: "2", Data: "b", Retry: 50 * time.Millisecond},
				sse.Event{Data: "no id"})
		case 2:
			p.send(sw, sse.Event{ID: "3", Data: "c"})
		case 3:
			if p.send(sw, sse.Event{Data: "d"}, sse.Event{Type: endEvent}) {
				p.holdOpen(r)
			}
		default:
			t.Errorf("request %d: the page should have stopped at the third", n)
		}
	})
	p.start(followScript)
	var got []record
	p.await("done", &got)
	checkSeq(t, "page", got, []record{
		opened(),
		ev("message", "a", "1"),
		ev("message", "b", "2"),
		ev("message", "no id", "2"),
		failed(connecting),
		opened(),
		ev("message", "c", "3"),
		failed(connecting),
		opened(),
		ev("message", "d", "3"),
		ev(endEvent, "", "3"),
	})
	a := reqs.get()
	if len(a) != 3 {
		t.Fatalf("%d requests, want 3", len(a))
	}
	if a[0].hasHeader {
		t.Errorf("first request carries Last-Event-ID %q", a[0].lastEventID)
	}
	for i, want := range []string{"2", "3"} {
		if got := a[i+1].lastEventID; got != want {
			t.Errorf("request %d: Last-Event-ID = %q, want %q", i+2, got, want)
		}
	}
}

// TestNoContentStopsReconnection: answered 204 on its reconnection, the page
// closes the EventSource for good and never asks again.
func TestNoContentStopsReconnection(t *testing.T) {
	p := newPage(t)
	const retry = 50 * time.Millisecond
	var reqs arrivals
	p.Mux.HandleFunc("GET /stream", func(w http.ResponseWriter, r *http.Request) {
		n := reqs.add(r)
		defer reqs.end(n)
		switch n {
		case 1:
			sw := p.newWriter(w, r, &sse.Options{Retry: retry})
			if sw == nil {
				return
			}
			defer sw.Close()
			p.send(sw, sse.Event{ID: "x", Data: "one"})
		default:
			w.WriteHeader(http.StatusNoContent)
		}
	})
	// Once the EventSource is CLOSED, the page waits 20 retry periods before
	// it reports: a window in which a reconnection would show, since there
	// is no state to wait for when nothing must happen.
	p.start(`
const es = new EventSource('/stream');
watch(es, ['message']);
await until(() => es.readyState === EventSource.CLOSED);
await sleep(1000);
await report('done', {seen, state: es.readyState});
`)
	var got struct {
		Seen  []record
		State int
	}
	p.await("done", &got)
	checkSeq(t, "page", got.Seen, []record{
		opened(),
		ev("message", "one", "x"),
		failed(connecting),
		failed(closed),
	})
	if got.State != closed {
		t.Errorf("readyState %d a second after the 204, want CLOSED (2)", got.State)
	}
	a := reqs.get()
	if len(a) != 2 {
		t.Errorf("%d requests, want 2: the page came back after the 204", len(a))
	}
	if len(a) > 1 && a[1].lastEventID != "x" {
		t.Errorf("reconnection's Last-Event-ID = %q, want %q", a[1].lastEventID, "x")
	}
}
