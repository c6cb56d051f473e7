package browser

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lightsse/sse/internal/brokertest"

	"github.com/lightsse/sse/ssebroker"

	"github.com/lightsse/sse"
)

// brokerScript follows /stream until its "end" event and reports what it saw
// as "done"; on the way, the message whose data is one of marks is reported
// as "got<mark>", so the test knows how far the page has got.
func brokerScript(marks ...string) string {
	q := make([]string, len(marks))
	for i, m := range marks {
		q[i] = strconv.Quote(m)
	}
	return fmt.Sprintf(`
const marks = new Set([%s]);
const es = new EventSource('/stream');
watch(es, ['message', %q, 'end']);
es.addEventListener('message', e => { if (marks.has(e.data)) report('got' + e.data, e.lastEventId); });
await new Promise(done => es.addEventListener('end', () => { es.close(); done(); }));
await report('done', seen);
`, strings.Join(q, ", "), ssebroker.ResetEvent)
}

// publish publishes events whose data are the numbers from..to.
func publish(t *testing.T, b *ssebroker.Broker, from, to int) {
	for i := from; i <= to; i++ {
		if err := b.Publish(sse.Event{Data: strconv.Itoa(i)}); err != nil {
			t.Errorf("Publish(%d): %v", i, err)
			return
		}
	}
}

// numbered is what the page sees of events from..to published with
// publish on a Broker of the given epoch.
func numbered(epoch string, from, to int) []record {
	var r []record
	for i := from; i <= to; i++ {
		r = append(r, ev("message", strconv.Itoa(i), id(epoch, i)))
	}
	return r
}

// id is the id a Broker of epoch gives its offset-th event.
func id(epoch string, offset int) string { return epoch + "-" + strconv.Itoa(offset) }

// epochOf returns the epoch of a Broker-assigned id.
func epochOf(t *testing.T, id string) string {
	t.Helper()
	epoch, _, ok := strings.Cut(id, "-")
	if !ok || epoch == "" {
		t.Fatalf("id %q is not <epoch>-<offset>", id)
	}
	return epoch
}

func concat(parts ...[]record) []record {
	var all []record
	for _, p := range parts {
		all = append(all, p...)
	}
	return all
}

// cuttable serves b and lets the test end the current stream: cleanly, by
// ending the request's context (the handler returns, the response ends), or
// by dropping its connection.
type cuttable struct {
	reqs   arrivals
	mu     sync.Mutex
	cancel context.CancelFunc
	conn   net.Conn
}

func (c *cuttable) handler(b *ssebroker.Broker) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		n := c.reqs.add(r)
		defer c.reqs.end(n)
		ctx, cancel := context.WithCancel(r.Context())
		defer cancel()
		c.mu.Lock()
		c.cancel, c.conn = cancel, connOf(r)
		c.mu.Unlock()
		b.ServeHTTP(w, r.WithContext(ctx))
	}
}

// end ends the current stream from the server's side.
func (c *cuttable) end() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cancel()
}

// drop closes the current stream's connection under it.
func (c *cuttable) drop() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.conn.Close()
}

// TestBrokerResume: the page's stream is ended by the server, then its
// connection dropped; both times events are published while the page is away
// and while it comes back. Through the Broker's replay it receives every event
// exactly once, in order.
func TestBrokerResume(t *testing.T) {
	p := newPage(t)
	b := brokertest.New(t, &ssebroker.Options{Stream: sse.Options{Retry: 100 * time.Millisecond}})
	t.Cleanup(func() { b.Close() })
	var c cuttable
	p.Mux.Handle("GET /stream", c.handler(b))
	p.start(brokerScript("5", "40"))
	subscribers := func(n int) func() bool { return func() bool { return b.Subscribers() == n } }

	p.waitFor("the page to subscribe", subscribers(1))
	publish(t, b, 1, 5)
	var at5 string
	p.await("got5", &at5)
	epoch := epochOf(t, at5)

	// The server ends the stream. Publish while the page is away, and on,
	// every few milliseconds, while it reconnects (after 100 ms).
	c.end()
	p.waitFor("the stream to end", subscribers(0))
	publish(t, b, 6, 10)
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 11; i <= 40; i++ {
			publish(t, b, i, i)
			time.Sleep(7 * time.Millisecond)
		}
	})
	var at40 string
	p.await("got40", &at40)
	wg.Wait()

	// The connection drops.
	c.drop()
	p.waitFor("the stream to end", subscribers(0))
	publish(t, b, 41, 50)
	p.waitFor("the page to come back", func() bool { return c.reqs.count() == 3 && b.Subscribers() == 1 })
	publish(t, b, 51, 60)
	if err := b.Publish(sse.Event{Type: endEvent}); err != nil {
		t.Fatal(err)
	}

	var got []record
	p.await("done", &got)
	checkSeq(t, "page", got, concat(
		[]record{opened()}, numbered(epoch, 1, 5),
		[]record{failed(connecting), opened()}, numbered(epoch, 6, 40),
		[]record{failed(connecting), opened()}, numbered(epoch, 41, 60),
		[]record{ev(endEvent, "", id(epoch, 61))},
	))
	a := c.reqs.get()
	if len(a) != 3 {
		t.Fatalf("%d requests, want 3", len(a))
	}
	for i, want := range []string{"", id(epoch, 5), id(epoch, 40)} {
		if a[i].lastEventID != want {
			t.Errorf("request %d: Last-Event-ID %q, want %q", i+1, a[i].lastEventID, want)
		}
	}
}

// TestDetachedBrokerResume: the stream of a Broker that detaches streams
// from net/http (Options.Detach), which writes the HTTP/1.1 response
// itself: Chromium reads it, and after its connection drops comes back with
// its Last-Event-ID and gets every event once, in order, while the Broker
// counts the stream out as soon as the connection is gone. The handler
// returned while the stream was still open.
func TestDetachedBrokerResume(t *testing.T) {
	p := newPage(t)
	b := brokertest.New(t, &ssebroker.Options{Detach: true, Stream: sse.Options{Retry: 100 * time.Millisecond}})
	t.Cleanup(func() { b.Close() })
	var c cuttable
	p.Mux.Handle("GET /stream", c.handler(b))
	p.start(brokerScript("5"))
	subscribers := func(n int) func() bool { return func() bool { return b.Subscribers() == n } }

	p.waitFor("the page to subscribe", subscribers(1))
	p.waitFor("the handler to return, the stream open", func() bool { return !c.reqs.get()[0].ended.IsZero() })
	publish(t, b, 1, 5)
	var at5 string
	p.await("got5", &at5)
	epoch := epochOf(t, at5)

	c.drop()
	p.waitFor("the stream to end", subscribers(0))
	publish(t, b, 6, 10)
	p.waitFor("the page to come back", func() bool { return c.reqs.count() == 2 && b.Subscribers() == 1 })
	publish(t, b, 11, 20)
	if err := b.Publish(sse.Event{Type: endEvent}); err != nil {
		t.Fatal(err)
	}
	var got []record
	p.await("done", &got)
	checkSeq(t, "page", got, concat(
		[]record{opened()}, numbered(epoch, 1, 5),
		[]record{failed(connecting), opened()}, numbered(epoch, 6, 20),
		[]record{ev(endEvent, "", id(epoch, 21))},
	))
	if a := c.reqs.get(); len(a) != 2 || a[1].lastEventID != id(epoch, 5) {
		t.Errorf("requests %+v, want 2, the second with Last-Event-ID %s", a, id(epoch, 5))
	}
}

// TestBrokerTooOldID: away while more events were published than the
// history holds, the page is told so by a "reset" event whose data is the id
// it came back with, then gets live events.
func TestBrokerTooOldID(t *testing.T) {
	p := newPage(t)
	// History for 10 events; a stream that falls more than 5 behind is ended
	// as too slow, so publish at most that many at once while it is open.
	b := brokertest.New(t, &ssebroker.Options{HistoryLen: 10, Stream: sse.Options{Retry: 100 * time.Millisecond}})
	t.Cleanup(func() { b.Close() })
	var c cuttable
	p.Mux.Handle("GET /stream", c.handler(b))
	p.start(brokerScript("3"))

	p.waitFor("the page to subscribe", func() bool { return b.Subscribers() == 1 })
	publish(t, b, 1, 3)
	var at3 string
	p.await("got3", &at3)
	epoch := epochOf(t, at3)
	c.end()
	p.waitFor("the stream to end", func() bool { return b.Subscribers() == 0 })
	publish(t, b, 4, 23) // the history keeps 14 to 23: the event after 3 is gone
	p.waitFor("the page to come back", func() bool { return c.reqs.count() == 2 && b.Subscribers() == 1 })
	publish(t, b, 24, 25)
	if err := b.Publish(sse.Event{Type: endEvent}); err != nil {
		t.Fatal(err)
	}

	var got []record
	p.await("done", &got)
	checkSeq(t, "page", got, concat(
		[]record{opened()}, numbered(epoch, 1, 3),
		[]record{failed(connecting), opened()},
		// The reset carries the newest id, so a later reconnection resumes
		// from the point where the page was reset.
		[]record{ev(ssebroker.ResetEvent, id(epoch, 3), id(epoch, 23))},
		numbered(epoch, 24, 25),
		[]record{ev(endEvent, "", id(epoch, 26))},
	))
	if a := c.reqs.get(); len(a) != 2 || a[1].lastEventID != id(epoch, 3) {
		t.Errorf("requests %+v: want 2, the second with Last-Event-ID %q", a, id(epoch, 3))
	}
}

// TestBrokerCloseComesBack: Close tells the page to come back within
// CloseRetry and ends its stream. The page comes back by itself: first to the
// closed Broker, which answers with another retry and no events, then, at the
// same URL, to a new Broker, which tells it with "reset" that its id is from
// another Broker, then streams.
func TestBrokerCloseComesBack(t *testing.T) {
	p := newPage(t)
	const closeRetry = 300 * time.Millisecond
	first := brokertest.New(t, &ssebroker.Options{CloseRetry: closeRetry})
	second := brokertest.New(t, nil)
	t.Cleanup(func() { first.Close(); second.Close() })
	var current atomic.Pointer[ssebroker.Broker]
	current.Store(first)
	var (
		reqs     arrivals
		mu       sync.Mutex
		served   []*ssebroker.Broker // the Broker that served each request
		closedAt time.Time
	)
	p.Mux.HandleFunc("GET /stream", func(w http.ResponseWriter, r *http.Request) {
		n := reqs.add(r)
		defer reqs.end(n)
		b := current.Load()
		mu.Lock()
		served = append(served, b)
		mu.Unlock()
		b.ServeHTTP(w, r)
	})
	p.start(brokerScript("2"))

	p.waitFor("the page to subscribe", func() bool { return first.Subscribers() == 1 })
	publish(t, first, 1, 2)
	var at2 string
	p.await("got2", &at2)
	epoch := epochOf(t, at2)
	mu.Lock()
	closedAt = time.Now()
	mu.Unlock()
	first.Close()
	if err := first.Publish(sse.Event{Data: "late"}); err != sse.ErrClosed {
		t.Errorf("Publish after Close: %v, want ErrClosed", err)
	}
	// Let the page be turned away twice by the closed Broker.
	p.waitFor("two requests after Close", func() bool { return reqs.count() >= 3 })
	current.Store(second)
	p.waitFor("the page at the new Broker", func() bool { return second.Subscribers() == 1 })
	publish(t, second, 1, 1)
	if err := second.Publish(sse.Event{Type: endEvent}); err != nil {
		t.Fatal(err)
	}

	var got []record
	p.await("done", &got)
	mu.Lock()
	refused := len(served) - 2 // all but the first and the last
	for i, b := range served {
		want, name := first, "closed"
		if i == len(served)-1 {
			want, name = second, "new"
		}
		if b != want {
			t.Errorf("request %d of %d not served by the %s Broker", i+1, len(served), name)
		}
	}
	mu.Unlock()
	if refused < 2 {
		t.Fatalf("served by the closed Broker %d times after Close, want at least 2", refused)
	}
	var newEpoch string
	if len(got) >= 2 {
		newEpoch = epochOf(t, got[len(got)-2].LastEventID)
	}
	want := concat([]record{opened()}, numbered(epoch, 1, 2), []record{failed(connecting)})
	for range refused {
		want = append(want, opened(), failed(connecting))
	}
	want = append(want, opened(),
		ev(ssebroker.ResetEvent, id(epoch, 2), id(newEpoch, 0)),
		ev("message", "1", id(newEpoch, 1)),
		ev(endEvent, "", id(newEpoch, 2)))
	checkSeq(t, "page", got, want)
	if newEpoch == epoch {
		t.Errorf("both Brokers have epoch %q", epoch)
	}

	a := reqs.get()
	for i, r := range a[1:] {
		if r.lastEventID != id(epoch, 2) {
			t.Errorf("request %d: Last-Event-ID %q, want %q", i+2, r.lastEventID, id(epoch, 2))
		}
	}
	// Each return came within CloseRetry (plus the time to reconnect), far
	// sooner than Chromium's 3 s default.
	prev := closedAt
	for i, r := range a[1:] {
		if gap := r.at.Sub(prev); gap > closeRetry+500*time.Millisecond {
			t.Errorf("request %d came %v after the stream ended; CloseRetry is %v", i+2, gap, closeRetry)
		}
		prev = r.ended
	}
}
