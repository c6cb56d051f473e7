package ssebroker

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/lightsse/sse"
	"github.com/lightsse/sse/internal/leakcheck"
	"github.com/lightsse/sse/internal/ssetest"
)

// TestMain fails the run if any goroutine outlives the tests.
func TestMain(m *testing.M) { leakcheck.Main(m) }

// ---- The Broker: delivery, replay and reset --------------------------------

func TestBrokerDeliversAndResumes(t *testing.T) {
	leakcheck.Check(t)
	b := newBroker(t, nil)
	srv := brokerServer(t, b)
	first := connect(t, srv.Client(), srv.URL, "")
	waitFor(t, "a subscriber", func() bool { return b.Subscribers() == 1 })
	for i := range 3 {
		if err := b.Publish(sse.Event{Type: "n", Data: fmt.Sprint(i)}); err != nil {
			t.Fatal(err)
		}
	}
	var ids []string
	for i := range 3 {
		ev := first.next(t)
		if ev.Type != "n" || ev.Data != fmt.Sprint(i) || ev.LastEventID != epochOf(b)+"-"+fmt.Sprint(i+1) {
			t.Fatalf("event %d = %+v", i, ev)
		}
		ids = append(ids, ev.LastEventID)
	}
	// A client that saw only the first event resumes after it: no gap, no duplicate.
	again := connect(t, srv.Client(), srv.URL, ids[0])
	for _, want := range []string{"1", "2"} {
		if ev := again.next(t); ev.Data != want {
			t.Fatalf("replay: %+v, want data %s", ev, want)
		}
	}
	_ = b.Publish(sse.Event{Data: "live"})
	if ev := again.next(t); ev.Data != "live" {
		t.Fatalf("after replay: %+v, want the live event", ev)
	}
	if ev := first.next(t); ev.Data != "live" {
		t.Fatalf("first client: %+v", ev)
	}
	first.cancel()
	again.cancel()
	waitFor(t, "both streams to end", func() bool { return b.Subscribers() == 0 })
	if s := b.Stats(); s.Opened != 2 || s.Ended.ClientLeft != 2 || s.Resumed.History != 1 || s.Published != 4 {
		t.Errorf("stats %+v; want 2 opened, 2 ended as the client left, 1 resumed, 4 published", s)
	}
}

// A new client gets a position before any event, invisibly: had its stream
// ended before its first event, it would still resume where it began.
func TestBrokerGivesNewClientsAPosition(t *testing.T) {
	leakcheck.Check(t)
	b := newBroker(t, nil)
	srv := brokerServer(t, b)
	for range 3 {
		_ = b.Publish(sse.Event{Data: "before"})
	}
	cl := connect(t, srv.Client(), srv.URL, "")
	waitFor(t, "the stream", func() bool { return b.Subscribers() == 1 })
	_ = b.Close()
	if rest := cl.ended(t); len(rest) != 0 {
		t.Fatalf("the position was dispatched as events: %q", rest)
	}
	if got, want := cl.reader.LastEventID, epochOf(b)+"-3"; got != want {
		t.Errorf("last event ID of a client that got no event = %q, want %q", got, want)
	}
}

// Once Subscribers counts a stream, an event published after that reaches
// it: the wait that ExampleBroker shows, over real sockets, 1,000 times, with
// and without a Log (whose head a new Broker learns only once it follows).
func TestBrokerSubscribersMeansDelivered(t *testing.T) {
	for _, withLog := range []bool{false, true} {
		t.Run(fmt.Sprintf("log=%v", withLog), func(t *testing.T) {
			var current atomic.Pointer[Broker]
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				current.Load().ServeHTTP(w, r)
			}))
			defer srv.Close()
			log := newMemLog()
			for i := range 1000 {
				var opts Options
				if withLog {
					opts.Log = log
				}
				b := newBroker(t, &opts)
				current.Store(b)
				if err := subscribedThenPublished(srv, b, strconv.Itoa(i)); err != nil {
					b.Close()
					t.Fatalf("iteration %d: %v", i, err)
				}
				b.Close()
			}
		})
	}
}

// subscribedThenPublished opens a stream of b from another goroutine, waits
// until b counts it, publishes data, and reads the stream until it arrives.
func subscribedThenPublished(srv *httptest.Server, b *Broker, data string) error {
	type answer struct {
		resp *http.Response
		err  error
	}
	got := make(chan answer, 1)
	go func() {
		resp, err := srv.Client().Get(srv.URL)
		got <- answer{resp, err}
	}()
	for b.Subscribers() < 1 {
		time.Sleep(50 * time.Microsecond)
	}
	if err := b.Publish(sse.Event{Data: data}); err != nil {
		return err
	}
	a := <-got
	if a.err != nil {
		return a.err
	}
	defer a.resp.Body.Close()
	timer := time.AfterFunc(patience, func() { a.resp.Body.Close() })
	defer timer.Stop()
	lines := bufio.NewScanner(a.resp.Body)
	var seen []string
	for lines.Scan() {
		seen = append(seen, lines.Text())
		if lines.Text() == "data: "+data {
			return nil
		}
	}
	return fmt.Errorf("the event published after Subscribers counted the stream never came; the stream had %q", seen)
}

func TestBrokerResetsUnknownIDs(t *testing.T) {
	leakcheck.Check(t)
	b := newBroker(t, &Options{HistoryLen: 4})
	srv := brokerServer(t, b)
	for i := range 10 {
		_ = b.Publish(sse.Event{Data: fmt.Sprint(i)})
	}
	for _, lastID := range []string{
		"junk",
		epochOf(b) + "-2",       // older than the history
		epochOf(b) + "-1000000", // from the future
		"0000000000000000-5",    // another epoch: another Broker or an earlier run
		epochOf(b) + "-",        //
	} {
		newest := epochOf(b) + "-" + strconv.FormatUint(headOf(b), 10)
		cl := connect(t, srv.Client(), srv.URL, lastID)
		ev := cl.next(t)
		if ev != (ssetest.Event{Type: ResetEvent, Data: lastID, LastEventID: newest}) {
			t.Errorf("Last-Event-ID %q: first event %+v, want a reset with id %s", lastID, ev, newest)
		}
		_ = b.Publish(sse.Event{Data: "live " + lastID})
		if ev := cl.next(t); ev.Data != "live "+lastID {
			t.Errorf("after the reset: %+v, want only live events", ev)
		}
		cl.cancel()
	}
	// The reset's id resumes: no second reset.
	_ = b.Publish(sse.Event{Data: "x"})
	cl := connect(t, srv.Client(), srv.URL, epochOf(b)+"-"+fmt.Sprint(headOf(b)-1))
	if ev := cl.next(t); ev.Data != "x" {
		t.Errorf("resuming at the newest event: %+v", ev)
	}
	if s := b.Stats(); s.Resets.UnknownID != 4 || s.Resets.TooOld != 1 || s.Resumed.History != 1 {
		t.Errorf("resets %+v, resumed %+v; want 4 unknown, 1 too old, 1 resumed", s.Resets, s.Resumed)
	}
}

// A client of one topic's Broker that reconnects to another topic's Broker
// with its id gets a reset and nothing of the first topic.
func TestBrokerTopicsAreIsolated(t *testing.T) {
	leakcheck.Check(t)
	news, sports := newBroker(t, nil), newBroker(t, nil)
	mux := http.NewServeMux()
	mux.Handle("/news", news)
	mux.Handle("/sports", sports)
	srv := httptest.NewServer(mux)
	t.Cleanup(func() { news.Close(); sports.Close(); srv.Close() })
	for i := range 5 {
		_ = news.Publish(sse.Event{Data: "news " + fmt.Sprint(i)})
		_ = sports.Publish(sse.Event{Data: "sports " + fmt.Sprint(i)})
	}
	newsID := epochOf(news) + "-2"
	cl := connect(t, srv.Client(), srv.URL+"/sports", newsID)
	if ev := cl.next(t); ev.Type != ResetEvent {
		t.Fatalf("a news id on sports: first event %+v, want a reset", ev)
	}
	_ = news.Publish(sse.Event{Data: "news live"})
	_ = sports.Publish(sse.Event{Data: "sports live"})
	if ev := cl.next(t); ev.Data != "sports live" {
		t.Fatalf("got %+v, want only sports' live event", ev)
	}
	// And its own id resumes only its own topic.
	cl = connect(t, srv.Client(), srv.URL+"/news", newsID)
	for _, want := range []string{"news 2", "news 3", "news 4", "news live"} {
		if ev := cl.next(t); ev.Data != want {
			t.Fatalf("news replay: %+v, want %q", ev, want)
		}
	}
}

func TestBrokerResumesPublisherIDs(t *testing.T) {
	leakcheck.Check(t)
	b := newBroker(t, &Options{HistoryLen: 3})
	srv := brokerServer(t, b)
	for _, id := range []string{"a", "b", "c", "d"} {
		_ = b.Publish(sse.Event{ID: "row-" + id, Data: id})
	}
	cl := connect(t, srv.Client(), srv.URL, "row-b")
	for _, want := range []string{"c", "d"} {
		if ev := cl.next(t); ev.Data != want || ev.LastEventID != "row-"+want {
			t.Fatalf("got %+v, want %q", ev, want)
		}
	}
	if byID := b.hist.Load().ids(); len(byID) != 3 || byID["row-a"].count != 0 {
		t.Errorf("the id index keeps events that left the history: %v", byID)
	}
	if cl := connect(t, srv.Client(), srv.URL, "row-a"); cl.next(t).Type != ResetEvent {
		t.Error("an id that left the history was not reset")
	}
}

// Clients that drop at random points while events are published, and come
// back with their Last-Event-ID, end up with every event exactly once.
func TestBrokerReplayAcrossRandomReconnects(t *testing.T) {
	leakcheck.Check(t)
	const clients, events = 20, 2000
	b := newBroker(t, nil)
	srv := brokerServer(t, b)
	results := make(chan error, clients)
	ready := make(chan struct{}, clients)
	for c := range clients {
		go func() { results <- reconnectingClient(t, srv, c, events, ready) }()
	}
	for range clients {
		<-ready
	}
	for i := range events {
		_ = b.Publish(sse.Event{Data: strconv.Itoa(i)})
		if i%50 == 0 {
			time.Sleep(time.Millisecond) // let clients drop and come back mid-stream
		}
	}
	for range clients {
		if err := <-results; err != nil {
			t.Fatal(err)
		}
	}
}

// 1,000 clients over loopback, 1,000 events from 4 goroutines: every client
// gets every event once, in the Broker's order, each publisher's in its own.
func TestBrokerFanOutThousand(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	leakcheck.Check(t)
	const clients, publishers, each = 1000, 4, 250
	// A thousand clients parsing under the race detector on a busy machine
	// may leave one unread for seconds: this test is about what arrives, and
	// others are about clients too slow to keep.
	b := newBroker(t, &Options{Stream: sse.Options{WriteTimeout: time.Minute}})
	srv := brokerServer(t, b)
	httpClient := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 0}}
	t.Cleanup(httpClient.CloseIdleConnections)
	results := make(chan error, clients)
	moving := watchProgress(t)
	for range clients {
		cl := connect(t, httpClient, srv.URL, "")
		go func() { results <- checkSequence(cl, publishers, each, moving) }()
	}
	waitFor(t, "every client to subscribe", func() bool { return b.Subscribers() == clients })
	var wg sync.WaitGroup
	for p := range publishers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				if err := b.Publish(sse.Event{Type: "p", Data: fmt.Sprintf("%d %d", p, i)}); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	for range clients {
		if err := <-results; err != nil {
			t.Fatalf("%v\n%d events received in all; %d streams open, %d pumps; %+v", err, moving.n.Load(), b.Subscribers(), pumps(), b.Stats())
		}
	}
}

// A stream answers GET only. HEAD gets the headers and ends, so the next
// request on its keep-alive connection is served; OPTIONS (a CORS
// preflight) and other methods get 405 with Allow; a GET that declares a
// body it never sends is refused at once. None holds a subscriber's place.
func TestBrokerMethods(t *testing.T) {
	leakcheck.Check(t)
	b := newBroker(t, nil)
	srv := brokerServer(t, b)
	c := *srv.Client() // the server's transport, so its keep-alive connections
	c.Timeout = 10 * time.Second
	resp, err := c.Head(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Errorf("HEAD: %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	for _, method := range []string{"OPTIONS", "POST", "PUT", "DELETE"} {
		req, _ := http.NewRequest(method, srv.URL, nil)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 405 || resp.Header.Get("Allow") != "GET, HEAD" {
			t.Errorf("%s: %d, Allow %q; want 405 and GET, HEAD", method, resp.StatusCode, resp.Header.Get("Allow"))
		}
	}
	// The same connection still serves a stream after all that.
	cl := connect(t, srv.Client(), srv.URL, "")
	waitFor(t, "the stream", func() bool { return b.Subscribers() == 1 })
	_ = b.Publish(sse.Event{Data: "x"})
	cl.expect(t, "x")

	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprint(conn, "GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n") // and no body
	resp, err = http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 400 {
		t.Errorf("GET with a declared body: %d, want 400", resp.StatusCode)
	}
	if s := b.Stats(); s.Opened != 1 || b.Subscribers() != 1 {
		t.Errorf("%d streams opened, %d open; want only the GET's", s.Opened, b.Subscribers())
	}
}

// New follows the options rule: 0 is the default, negative is off where off
// exists, and anything else it cannot take is an error that names the field.
func TestNewOptionsRule(t *testing.T) {
	for _, tt := range []struct {
		opts  Options
		field string // "" for none: New takes it
	}{
		{Options{}, ""},
		{Options{CloseRetry: -1}, ""},
		{Options{Stream: sse.Options{WriteTimeout: -1, Heartbeat: -1}}, ""},
		{Options{HistoryLen: -1}, "HistoryLen"},
		{Options{HistoryBytes: -1}, "HistoryBytes"},
		{Options{MaxSubscribers: -1}, "MaxSubscribers"},
		{Options{CloseRetry: time.Microsecond}, "CloseRetry"},
		{Options{Stream: sse.Options{Retry: time.Microsecond}}, "Stream.Retry"},
		{Options{Stream: sse.Options{Retry: -time.Second}}, "Stream.Retry"},
	} {
		b, err := New(&tt.opts)
		switch {
		case tt.field == "" && err != nil:
			t.Errorf("New(%+v): %v, want a Broker", tt.opts, err)
		case tt.field != "" && (!errors.Is(err, ErrInvalidOptions) || !strings.Contains(err.Error(), tt.field) || b != nil):
			t.Errorf("New(%+v): %v, %v; want no Broker and an ErrInvalidOptions naming %s", tt.opts, b, err, tt.field)
		}
		if b != nil {
			b.Close()
		}
	}
	if _, err := New(&Options{Stream: sse.Options{Retry: time.Microsecond}}); !errors.Is(err, sse.ErrInvalidRetry) {
		t.Errorf("a Retry NewWriter refuses: %v, want it to match sse.ErrInvalidRetry too", err)
	}
}

// With CloseRetry negative, Close ends every stream with no retry field.
func TestBrokerCloseRetryOff(t *testing.T) {
	leakcheck.Check(t)
	b := newBroker(t, &Options{CloseRetry: -1})
	srv := brokerServer(t, b)
	cl := connect(t, srv.Client(), srv.URL, "")
	waitFor(t, "the stream", func() bool { return b.Subscribers() == 1 })
	_ = b.Close()
	if rest := cl.ended(t); len(rest) != 0 || cl.reader.Retry != 0 {
		t.Errorf("at Close: events %v, retry %v; want the end and no retry field", rest, cl.reader.Retry)
	}
}

// OnIdle runs each time the last open stream ends, and only then.
func TestBrokerOnIdle(t *testing.T) {
	leakcheck.Check(t)
	var idle atomic.Int32
	b := newBroker(t, &Options{OnIdle: func() { idle.Add(1) }})
	srv := brokerServer(t, b)
	one, two := connect(t, srv.Client(), srv.URL, ""), connect(t, srv.Client(), srv.URL, "")
	waitFor(t, "two streams", func() bool { return b.Subscribers() == 2 })
	one.cancel()
	waitFor(t, "one stream", func() bool { return b.Subscribers() == 1 })
	three := connect(t, srv.Client(), srv.URL, "")
	two.cancel()
	waitFor(t, "the other stream to end", func() bool { return b.Subscribers() == 1 })
	three.cancel()
	waitFor(t, "OnIdle", func() bool { return idle.Load() == 1 })
	connect(t, srv.Client(), srv.URL, "").cancel()
	waitFor(t, "OnIdle again", func() bool { return idle.Load() == 2 })
	if b.Subscribers() != 0 {
		t.Errorf("%d streams open", b.Subscribers())
	}
}

// ---- The Broker: Close and limits ------------------------------------------

func TestBrokerClose(t *testing.T) {
	leakcheck.Check(t)
	const clients = 50
	b := newBroker(t, &Options{CloseRetry: 10 * time.Second})
	srv := brokerServer(t, b)
	var streams []*client
	for range clients {
		streams = append(streams, connect(t, srv.Client(), srv.URL, ""))
	}
	waitFor(t, "every client", func() bool { return b.Subscribers() == clients })
	_ = b.Close()
	retries := map[time.Duration]bool{}
	for _, cl := range streams {
		if rest := cl.ended(t); len(rest) != 0 || cl.err != io.EOF || cl.reader.Pending {
			t.Fatalf("Close: stream ended with %v after %q", cl.err, rest)
		}
		r := cl.reader.Retry
		if r <= 0 || r > 10*time.Second {
			t.Fatalf("retry %v, want in (0, 10s]", r)
		}
		retries[r] = true
	}
	if len(retries) < clients/2 {
		t.Errorf("%d streams got only %d distinct retries: not jittered", clients, len(retries))
	}
	if err := b.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := b.Publish(sse.Event{}); !errors.Is(err, sse.ErrClosed) {
		t.Errorf("Publish after Close: %v, want sse.ErrClosed", err)
	}
	// A request after Close: a 200 stream with a retry and no events, so the
	// browser comes back later instead of giving up as it would on a 503.
	late := connect(t, srv.Client(), srv.URL, "")
	if rest := late.ended(t); len(rest) != 0 || late.reader.Retry <= 0 {
		t.Errorf("after Close: events %q, retry %v", rest, late.reader.Retry)
	}
	waitFor(t, "streams to end", func() bool { return b.Subscribers() == 0 })
	if s := b.Stats(); s.Ended.Closed != clients || s.Ended.RefusedClosed != 1 || s.Opened != clients+1 {
		t.Errorf("stats %+v; want %d ended by Close, 1 refused after it, of %d", s, clients, clients+1)
	}
}

// An event published just before Close reaches every open stream, before
// the retry that ends it: a shutdown notice is exactly such an event.
func TestBrokerCloseSendsWhatCameBefore(t *testing.T) {
	for _, withLog := range []bool{false, true} {
		t.Run(fmt.Sprintf("log=%v", withLog), func(t *testing.T) {
			// With a Log, the event may still be on its way back through the
			// feed when Close comes: the streams read it from the Log.
			leakcheck.Check(t)
			const streams = 50
			for round := range 5 {
				var opts Options
				if withLog {
					opts.Log = newMemLog()
				}
				b := newBroker(t, &opts)
				srv := brokerServer(t, b)
				var clients []*client
				for range streams {
					clients = append(clients, connect(t, srv.Client(), srv.URL, ""))
				}
				waitFor(t, "the streams", func() bool { return b.Subscribers() == streams })
				if err := b.Publish(sse.Event{Data: "shutting down"}); err != nil {
					t.Fatal(err)
				}
				_ = b.Close()
				for i, cl := range clients {
					if got := cl.ended(t); len(got) != 1 || got[0].Data != "shutting down" || cl.reader.Retry <= 0 {
						t.Fatalf("round %d, stream %d: %v then retry %v; want the last event, then a retry", round, i, got, cl.reader.Retry)
					}
				}
				if s := b.Stats(); s.Ended.Closed != streams {
					t.Errorf("Stats.Ended.Closed = %d, want %d", s.Ended.Closed, streams)
				}
			}
		})
	}
}

// A stream that Subscribers counts gets what is published before Close,
// even if Close comes before a pump has placed it: its start was fixed as
// it was counted. (A detached stream, on one P: ServeHTTP returns with the
// stream counted and its pump not yet run, and Publish and Close run before
// it does.)
func TestBrokerCountedStreamGetsWhatCameBeforeClose(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	for round := range 20 {
		b := newBroker(t, &Options{Detach: true, Stream: sse.Options{Heartbeat: -1}})
		c := &memConn{closed: make(chan struct{}), writes: new(atomic.Int64), keep: true}
		b.ServeHTTP(&hijackable{c: c}, httptest.NewRequest("GET", "/", nil))
		if n := b.Subscribers(); n != 1 {
			t.Fatalf("Subscribers = %d, want 1", n)
		}
		if err := b.Publish(sse.Event{Data: "counted"}); err != nil {
			t.Fatal(err)
		}
		_ = b.Close()
		select {
		case <-c.closed:
		case <-time.After(patience):
			t.Fatal("the stream did not end")
		}
		if body := c.body(); !strings.Contains(body, "data: counted\n") || !strings.Contains(body, "retry: ") {
			t.Fatalf("round %d: the stream got %q; want the event published after Subscribers counted it, then a retry", round, body)
		}
	}
}

func TestBrokerMaxSubscribers(t *testing.T) {
	leakcheck.Check(t)
	b := newBroker(t, &Options{MaxSubscribers: 2})
	srv := brokerServer(t, b)
	one, two := connect(t, srv.Client(), srv.URL, ""), connect(t, srv.Client(), srv.URL, "")
	waitFor(t, "two streams", func() bool { return b.Subscribers() == 2 })
	third := connect(t, srv.Client(), srv.URL, "")
	if rest := third.ended(t); len(rest) != 0 || third.reader.Retry <= 0 {
		t.Errorf("over the cap: events %q, retry %v; want a retry and the end", rest, third.reader.Retry)
	}
	one.cancel()
	waitFor(t, "a place to free", func() bool { return b.Subscribers() == 1 })
	fourth := connect(t, srv.Client(), srv.URL, "")
	waitFor(t, "the place to be taken", func() bool { return b.Subscribers() == 2 })
	_ = b.Publish(sse.Event{Data: "x"})
	if fourth.next(t).Data != "x" || two.next(t).Data != "x" {
		t.Error("streams under the cap did not get the event")
	}
	if s := b.Stats(); s.Ended.RefusedFull != 1 || s.Open != 2 {
		t.Errorf("stats %+v; want 1 refused over the cap, 2 open", s)
	}
}

// With Close wired to RegisterOnShutdown, Shutdown returns while 1,000
// streams are open.
func TestBrokerShutdownWithThousandStreams(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	leakcheck.Check(t)
	const streams = 1000
	b := newBroker(t, nil)
	srv := httptest.NewUnstartedServer(b)
	srv.Config.RegisterOnShutdown(func() { b.Close() })
	srv.Start()
	defer srv.Close()
	httpClient := &http.Client{Transport: &http.Transport{}}
	defer httpClient.CloseIdleConnections()
	var clients []*client
	for range streams {
		clients = append(clients, connect(t, httpClient, srv.URL, ""))
	}
	waitFor(t, "every stream", func() bool { return b.Subscribers() == streams })
	// Without the Broker's Close, Shutdown would wait for the streams until
	// its context ends; with it, it returns as soon as they have ended.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := srv.Config.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown with %d streams: %v", streams, err)
	}
	for _, cl := range clients {
		cl.ended(t)
		if cl.reader.Retry <= 0 {
			t.Fatal("a stream ended by Shutdown got no retry")
		}
	}
}

// Close racing Publish and new streams: no panic, no race, no stream left.
func TestBrokerCloseRacesPublishAndSubscribe(t *testing.T) {
	leakcheck.Check(t)
	for range 5 {
		b := newBroker(t, &Options{HistoryLen: 8})
		srv := httptest.NewServer(b)
		var wg sync.WaitGroup
		stop := make(chan struct{})
		for p := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					if err := b.Publish(sse.Event{Data: fmt.Sprint(p, i)}); err != nil && !errors.Is(err, sse.ErrClosed) {
						t.Error(err)
					}
				}
			}()
		}
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					resp, err := srv.Client().Get(srv.URL)
					if err != nil {
						continue
					}
					_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
					resp.Body.Close()
				}
			}()
		}
		time.Sleep(20 * time.Millisecond)
		_ = b.Close()
		time.Sleep(20 * time.Millisecond)
		close(stop)
		wg.Wait()
		srv.Client().CloseIdleConnections()
		srv.Close() // waits for every handler
		if n := b.Subscribers(); n != 0 {
			t.Fatalf("%d streams counted after every handler returned", n)
		}
		if s := b.Stats(); s.Opened != endedSum(s.Ended) {
			t.Fatalf("after every stream ended: %d opened, %d ended (%+v)", s.Opened, endedSum(s.Ended), s.Ended)
		}
	}
}

// ---- The Broker's heartbeat ------------------------------------------------

// A Broker keeps one heartbeat for all its streams: after a period without a
// Publish, each stream writes a comment; a Publish restarts the period; with
// no stream left the timer rests.
func TestBrokerHeartbeat(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBroker(t, nil)
		ctx, cancel := context.WithCancel(context.Background())
		recs := []*ssetest.Recorder{ssetest.NewRecorder(), ssetest.NewRecorder()}
		for _, rec := range recs {
			go b.ServeHTTP(rec, httptest.NewRequestWithContext(ctx, "GET", "/", nil))
		}
		synctest.Wait()
		preamble := "id: " + epochOf(b) + "-0\n\n"
		step := func(d time.Duration, want string) {
			t.Helper()
			time.Sleep(d)
			synctest.Wait()
			for i, rec := range recs {
				if got := rec.Body(); got != preamble+want {
					t.Fatalf("stream %d after %v more: %q, want %q", i, d, got, preamble+want)
				}
			}
		}
		step(sse.DefaultHeartbeat-time.Millisecond, "")
		step(time.Millisecond, ":\n")
		step(5*time.Second, ":\n")
		_ = b.Publish(sse.Event{Data: "x"}) // 5 s into a period: restarts it
		step(sse.DefaultHeartbeat-time.Millisecond, ":\nid: "+epochOf(b)+"-1\ndata: x\n\n")
		step(time.Millisecond, ":\nid: "+epochOf(b)+"-1\ndata: x\n\n:\n")
		if n := b.Stats().Heartbeats; n != 4 {
			t.Errorf("Stats.Heartbeats = %d, want 4 (two beats, two streams)", n)
		}
		cancel()
		synctest.Wait()
		time.Sleep(time.Hour) // no stream: the timer fires once and is dropped
		synctest.Wait()
		b.mu.Lock()
		beating, timer := b.beating, b.beatTimer
		b.mu.Unlock()
		if beating || timer != nil {
			t.Errorf("with no stream open, the heartbeat timer is still armed (%v) or kept (%v)", beating, timer != nil)
		}
		b.Close()
	})
}

// A request whose client sent a pipelined byte and then reset the
// connection keeps a context that net/http never cancels (its background
// read took the byte and stopped reading); the heartbeat's write finds the
// connection gone and ends the stream.
func TestBrokerHeartbeatEndsGhostStreams(t *testing.T) {
	leakcheck.Check(t)
	b := newBroker(t, &Options{Stream: sse.Options{Heartbeat: time.Second}})
	srv := httptest.NewUnstartedServer(b)
	ln := &readCounter{Listener: srv.Listener}
	srv.Listener = ln
	srv.Start()
	t.Cleanup(func() { b.Close(); srv.Close() })
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	request := "GET / HTTP/1.1\r\nHost: x\r\n\r\n"
	fmt.Fprint(conn, request)
	waitFor(t, "the stream", func() bool { return b.Subscribers() == 1 })
	fmt.Fprint(conn, "G") // one byte of a next request
	waitFor(t, "the server to read the byte", func() bool { return ln.read.Load() == int64(len(request)+1) })
	_ = conn.(*net.TCPConn).SetLinger(0)
	conn.Close() // a reset, which nothing reads
	waitFor(t, "the heartbeat to end the ghost stream", func() bool { return b.Subscribers() == 0 })
	if s := b.Stats(); s.Ended.ClientLeft != 1 {
		t.Errorf("Stats.Ended = %+v, want one client left", s.Ended)
	}
}

// One Broker per user costs little more per stream than one shared Broker:
// with one detached stream each and one event each, at most 1,300 bytes more
// of heap per stream (a Broker with its ring, epoch and index of publisher
// IDs, and its own copy of the event: 1.1 to 1.2 KB measured). Over
// connections that are only memory, so that nothing but the Brokers
// differs; after a first round that leaves the runtime enough goroutines to
// reuse, so that neither count pays for new ones.
func TestPerUserBrokerSize(t *testing.T) {
	if ssetest.Race {
		t.Skip("the race detector adds to every allocation; .ci/run runs this test without it")
	}
	leakcheck.Check(t)
	const n = 10000
	per := func(perUser bool) float64 {
		goroutines := runtime.NumGoroutine()
		runtime.GC() // and heapInUse's: the pools' buffers go
		before := heapInUse()
		m := openMemStreams(t, n, perUser)
		runtime.GC()
		used := float64(heapInUse()-before) / n
		m.close()
		waitFor(t, "the streams' goroutines to exit", func() bool { return runtime.NumGoroutine() <= goroutines })
		return used
	}
	per(true) // the first round
	shared, users := per(false), per(true)
	t.Logf("per stream: %.0f B on one shared Broker, %.0f B with a Broker each (%+.0f B)", shared, users, users-shared)
	if users-shared > 1300 {
		t.Errorf("a Broker per stream costs %.0f B more heap per stream than one shared Broker, want at most 1,300", users-shared)
	}
}

// An idle Broker, with no stream, holds little: one Broker per user is
// affordable for every user an application knows.
func TestIdleBrokerSize(t *testing.T) {
	if ssetest.Race {
		t.Skip("the race detector adds to every allocation; .ci/run runs this test without it")
	}
	const n = 10000
	brokers := make([]*Broker, n)
	before := heapInUse()
	for i := range brokers {
		brokers[i] = newBroker(t, &Options{HistoryLen: 64})
	}
	per := float64(heapInUse()-before) / n
	runtime.KeepAlive(brokers)
	for _, b := range brokers {
		b.Close()
	}
	if per > 900 {
		t.Errorf("an idle Broker holds %.0f bytes, want at most 900", per)
	}
	t.Logf("an idle Broker holds %.0f bytes", per)
}
