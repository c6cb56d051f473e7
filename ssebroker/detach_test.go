package ssebroker

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lightsse/sse"
	"github.com/lightsse/sse/internal/leakcheck"
	"github.com/lightsse/sse/internal/ssetest"
)

// ---- Detached streams -------------------------------------------------------

// returned is a middleware that records when the handler it wraps returns,
// after setting a header of its own, as a CORS middleware would.
type returned struct {
	next http.Handler
	done chan struct{} // closed when the first request's handler returns
	once sync.Once
}

func (m *returned) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Access-Control-Allow-Origin", "*")
	m.next.ServeHTTP(w, r)
	m.once.Do(func() { close(m.done) })
}

// openStream GETs url and returns the response, a reader of its events, and
// leave, which ends the request and so closes its connection, as a client
// that goes away does.
func openStream(t *testing.T, c *http.Client, url string) (resp *http.Response, events *ssetest.Reader, leave func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp, ssetest.NewReader(resp.Body), func() { cancel(); resp.Body.Close() }
}

// openDetached is openStream, for a stream that must be detached.
func openDetached(t *testing.T, c *http.Client, url string) (*http.Response, *ssetest.Reader, func()) {
	t.Helper()
	resp, events, leave := openStream(t, c, url)
	if !resp.Close {
		t.Fatal("not detached: no Connection: close")
	}
	return resp, events, leave
}

// A detached stream is the same stream on the wire, with Connection: close:
// the handler's own headers, every event as published, heartbeats, and at
// Close the retry and a clean end of the body (the last chunk), past the
// http.Server's ReadTimeout and WriteTimeout. ServeHTTP has returned, with
// no goroutine of net/http's left for the connection.
func TestDetachedStream(t *testing.T) {
	leakcheck.Check(t)
	b := newBroker(t, &Options{Detach: true, Stream: sse.Options{Heartbeat: time.Second}})
	mw := &returned{next: b, done: make(chan struct{})}
	srv := httptest.NewUnstartedServer(mw)
	// The server's own deadlines end at the hijack: the stream outlives them.
	srv.Config.ReadTimeout = 100 * time.Millisecond
	srv.Config.WriteTimeout = 100 * time.Millisecond
	srv.Start()
	defer srv.Close()
	defer b.Close()

	resp, events, _ := openStream(t, srv.Client(), srv.URL)
	h := resp.Header
	if h.Get("Content-Type") != "text/event-stream" || h.Get("Cache-Control") != "no-cache" || h.Get("Access-Control-Allow-Origin") != "*" {
		t.Errorf("headers %v", h)
	}
	if !resp.Close || len(resp.TransferEncoding) != 1 || resp.TransferEncoding[0] != "chunked" {
		t.Errorf("Close %v, Transfer-Encoding %v: want Connection: close and chunked", resp.Close, resp.TransferEncoding)
	}
	select {
	case <-mw.done:
	case <-time.After(patience):
		t.Fatal("ServeHTTP has not returned for a detached stream")
	}
	waitFor(t, "the stream counted", func() bool { return b.Subscribers() == 1 })

	sent := []sse.Event{
		{Type: "a", Data: "one"},
		{ID: "own-id", Data: "two\nlines"},
		{Data: strings.Repeat("big", bigEvent)}, // written from the history's own bytes
	}
	for _, e := range sent {
		if err := b.Publish(e); err != nil {
			t.Fatal(err)
		}
	}
	for i, e := range sent {
		got, err := events.Next()
		if err != nil {
			t.Fatalf("event %d: %v", i, err)
		}
		if got.Type != e.Type && !(e.Type == "" && got.Type == "message") || got.Data != e.Data {
			t.Fatalf("event %d: got %+v, want %+v", i, got, e)
		}
		if e.ID != "" && got.LastEventID != e.ID || e.ID == "" && !strings.HasPrefix(got.LastEventID, epochOf(b)+"-") {
			t.Errorf("event %d: id %q", i, got.LastEventID)
		}
	}
	waitFor(t, "a heartbeat", func() bool { return b.Stats().Heartbeats > 0 })
	if err := b.Publish(sse.Event{Data: "past the server's timeouts"}); err != nil {
		t.Fatal(err)
	}
	if got, err := events.Next(); err != nil || got.Data != "past the server's timeouts" {
		t.Fatalf("after the server's ReadTimeout and WriteTimeout: %+v, %v", got, err)
	}

	b.Close()
	if ev, err := events.Next(); err != io.EOF {
		t.Errorf("after Close: %+v, %v; want the body to end cleanly (io.EOF)", ev, err)
	}
	if events.Retry <= 0 {
		t.Errorf("no retry before the end")
	}
	waitFor(t, "the stream counted out", func() bool { return b.Stats().Ended.Closed == 1 })
}

// A detached stream whose client leaves is over at once, not at the next
// write: Subscribers drops, OnIdle runs, and its goroutines are gone.
func TestDetachedClientLeaves(t *testing.T) {
	leakcheck.Check(t)
	idle := make(chan struct{}, 1)
	b := newBroker(t, &Options{Detach: true, Stream: sse.Options{Heartbeat: -1}, OnIdle: func() { idle <- struct{}{} }})
	srv := brokerServer(t, b)
	_, _, leave := openDetached(t, srv.Client(), srv.URL)
	waitFor(t, "the stream counted", func() bool { return b.Subscribers() == 1 })
	leave()
	select {
	case <-idle:
	case <-time.After(patience):
		t.Fatal("OnIdle not called after the client left")
	}
	if n := b.Subscribers(); n != 0 {
		t.Errorf("%d subscribers after the client left", n)
	}
	if n := b.Stats().Ended.ClientLeft; n != 1 {
		t.Errorf("Ended.ClientLeft = %d, want 1", n)
	}
	waitFor(t, "the goroutine reading the connection to end", func() bool { return goroutinesIn("wire.watch") == 0 })
}

// goroutinesIn counts the goroutines whose stack names fn.
func goroutinesIn(fn string) int {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	return strings.Count(string(buf), fn+"(")
}

// http.Server's Shutdown neither waits for detached streams nor ends them;
// Close, registered with RegisterOnShutdown, does. The server's ConnState
// sees the connection hijacked.
func TestDetachedShutdown(t *testing.T) {
	leakcheck.Check(t)
	b := newBroker(t, &Options{Detach: true})
	srv := httptest.NewUnstartedServer(b)
	var mu sync.Mutex
	var states []http.ConnState
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) { mu.Lock(); states = append(states, s); mu.Unlock() }
	srv.Config.RegisterOnShutdown(func() { b.Close() })
	srv.Start()
	defer srv.Close()
	_, events, _ := openDetached(t, srv.Client(), srv.URL)
	waitFor(t, "the stream counted", func() bool { return b.Subscribers() == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	defer cancel()
	if err := srv.Config.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if _, err := events.Next(); err != io.EOF {
		t.Errorf("after Shutdown: %v, want the stream to end cleanly", err)
	}
	if events.Retry <= 0 {
		t.Error("no retry from Close")
	}
	mu.Lock()
	defer mu.Unlock()
	if len(states) < 3 || states[2] != http.StateHijacked {
		t.Errorf("connection states %v, want new, active, hijacked", states)
	}
}

// countingListener counts its open connections, as a listener that limits
// them (golang.org/x/net/netutil.LimitListener) does.
type countingListener struct {
	net.Listener
	open atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.open.Add(1)
	return &countedClose{Conn: c, l: l}, nil
}

type countedClose struct {
	net.Conn
	once sync.Once
	l    *countingListener
}

func (c *countedClose) Close() error {
	c.once.Do(func() { c.l.open.Add(-1) })
	return c.Conn.Close()
}

// A listener that limits connections counts a detached stream's until the
// stream ends, however it ends (its client leaves, Close), and gets it back
// then: the Broker closes the connection it took, through the listener's
// own net.Conn.
func TestDetachedConnectionLimit(t *testing.T) {
	leakcheck.Check(t)
	b := newBroker(t, &Options{Detach: true})
	srv := httptest.NewUnstartedServer(b)
	l := &countingListener{Listener: srv.Listener}
	srv.Listener = l
	srv.Start()
	defer srv.Close()
	defer b.Close()
	_, _, leave := openDetached(t, srv.Client(), srv.URL)
	waitFor(t, "the stream counted", func() bool { return b.Subscribers() == 1 })
	if n := l.open.Load(); n != 1 {
		t.Fatalf("%d connections counted with one detached stream open", n)
	}
	leave()
	waitFor(t, "the connection given back after the client left", func() bool { return l.open.Load() == 0 })

	openDetached(t, srv.Client(), srv.URL)
	waitFor(t, "the second stream counted", func() bool { return b.Subscribers() == 1 && l.open.Load() == 1 })
	b.Close()
	waitFor(t, "the connection given back after Close", func() bool { return l.open.Load() == 0 })
}

// unwrapless is a middleware's ResponseWriter that hides the one it wraps.
type unwrapless struct{ http.ResponseWriter }

func (u unwrapless) Flush() { u.ResponseWriter.(http.Flusher).Flush() }

// unwrapping is one that lets http.ResponseController find it.
type unwrapping struct{ http.ResponseWriter }

func (u unwrapping) Unwrap() http.ResponseWriter { return u.ResponseWriter }

// Where the connection cannot be taken (a wrapper that hides it, HTTP/2),
// the stream is served as without Detach; a wrapper with Unwrap is looked
// through; HTTP/1.0 gets the body until the connection closes, unchunked.
func TestDetachedFallsBack(t *testing.T) {
	leakcheck.Check(t)
	for _, tt := range []struct {
		name   string
		wrap   func(http.Handler) http.Handler
		http2  bool
		detach bool
	}{
		{"wrapper without Unwrap", func(h http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { h.ServeHTTP(unwrapless{w}, r) })
		}, false, false},
		{"wrapper with Unwrap", func(h http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { h.ServeHTTP(unwrapping{w}, r) })
		}, false, true},
		{"HTTP/2", func(h http.Handler) http.Handler { return h }, true, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			b := newBroker(t, &Options{Detach: true})
			srv := httptest.NewUnstartedServer(tt.wrap(b))
			if tt.http2 {
				srv.EnableHTTP2 = true
				srv.StartTLS()
			} else {
				srv.Start()
			}
			defer srv.Close()
			defer b.Close()
			resp, events, _ := openStream(t, srv.Client(), srv.URL)
			if tt.http2 && resp.ProtoMajor != 2 {
				t.Fatalf("protocol %s, want HTTP/2", resp.Proto)
			}
			if resp.Close != tt.detach {
				t.Errorf("Connection: close %v, want %v (detached)", resp.Close, tt.detach)
			}
			waitFor(t, "the stream counted", func() bool { return b.Subscribers() == 1 })
			_ = b.Publish(sse.Event{Data: "x"})
			if ev, err := events.Next(); err != nil || ev.Data != "x" {
				t.Fatalf("got %+v, %v", ev, err)
			}
		})
	}

	t.Run("HTTP/1.0", func(t *testing.T) {
		b := newBroker(t, &Options{Detach: true})
		srv := brokerServer(t, b)
		conn, err := net.Dial("tcp", srv.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_, _ = io.WriteString(conn, "GET / HTTP/1.0\r\nHost: x\r\n\r\n")
		br := bufio.NewReader(conn)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.TransferEncoding) != 0 || !resp.Close {
			t.Errorf("Transfer-Encoding %v, Close %v: want the body unchunked, until close", resp.TransferEncoding, resp.Close)
		}
		waitFor(t, "the stream counted", func() bool { return b.Subscribers() == 1 })
		_ = b.Publish(sse.Event{Data: "x"})
		b.Close()
		body, _ := io.ReadAll(resp.Body)
		evs, _ := ssetest.Parse(string(body))
		if len(evs) != 1 || evs[0].Data != "x" {
			t.Errorf("body %q", body)
		}
	})
}

// A panic while a detached stream is written is logged to the server's
// ErrorLog, as net/http logs a handler's, and ends that stream only; other
// streams go on.
func TestDetachedPanicIsLogged(t *testing.T) {
	leakcheck.Check(t)
	boom := errors.New("log exploded")
	mlog := newMemLog()
	b := newBroker(t, &Options{HistoryLen: 2, Log: mlog, Detach: true})
	var logged syncBuffer
	srv := httptest.NewUnstartedServer(b)
	srv.Config.ErrorLog = log.New(&logged, "", 0)
	srv.Start()
	defer srv.Close()
	defer b.Close()
	publishN(t, b, "", 5)
	live := connect(t, srv.Client(), srv.URL, "")
	waitFor(t, "the live stream counted", func() bool { return b.Subscribers() == 1 })
	mlog.onRead = func(context.Context) error { panic(boom) }
	req, _ := http.NewRequest("GET", srv.URL, nil)
	req.Header.Set("Last-Event-ID", mlog.head().Epoch+"-1") // older than the history: asks the Log
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	waitFor(t, "the panic logged", func() bool { return strings.Contains(logged.String(), boom.Error()) })
	if !strings.Contains(logged.String(), "ReadAfter") {
		t.Errorf("logged %q, want the panic with the Log's stack", logged.String())
	}
	mlog.onRead = nil
	_ = b.Publish(sse.Event{Data: "after"})
	if ev := live.next(t); ev.Data != "after" {
		t.Errorf("the other stream got %+v", ev)
	}
	if n := b.Stats().Ended.Failed; n != 1 {
		t.Errorf("Stats.Ended.Failed = %d, want 1", n)
	}
}

// syncBuffer is a bytes.Buffer safe for a logger and a test to share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// An idle detached stream costs at most 7 KiB (heap and goroutine stacks)
// over the connection it holds, which costs what any stream outside net/http
// costs: measured here, in one process, against a handler that hijacks the
// connection and only holds it, with the same raw clients at the other end.
// (BenchmarkIdleStream gives the figures; the harness in benchmarks/
// measures the server's RSS alone.)
func TestDetachedStreamSize(t *testing.T) {
	if ssetest.Race {
		t.Skip("the race detector adds to every allocation; .ci/run runs this test without it")
	}
	leakcheck.Check(t)
	const n = 2000
	hold := &connHolder{}
	b := newBroker(t, &Options{Detach: true, Stream: sse.Options{Heartbeat: -1}})
	defer b.Close()
	per := func(h http.Handler) (heap, stack float64) {
		srv := httptest.NewServer(h)
		defer srv.Close()
		runtime.GC()
		runtime.GC()
		var m0, m1 runtime.MemStats
		runtime.ReadMemStats(&m0)
		clients := make([]*rawStream, n)
		for i := range clients {
			c, err := dialStream(srv.Listener.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			clients[i] = c
		}
		time.Sleep(pumpIdle + 100*time.Millisecond) // idle pumps gone
		runtime.GC()
		runtime.GC()
		runtime.ReadMemStats(&m1)
		for _, c := range clients {
			c.conn.Close()
		}
		return float64(int64(m1.HeapInuse-m0.HeapInuse)) / n, float64(int64(m1.StackInuse-m0.StackInuse)) / n
	}
	floorHeap, floorStack := per(hold)
	hold.closeAll()
	heap, stack := per(b)
	extra := heap + stack - floorHeap - floorStack
	t.Logf("per stream, both ends: held connection %.0f B heap + %.0f B stacks; detached stream %.0f + %.0f; the Broker's part %.0f B",
		floorHeap, floorStack, heap, stack, extra)
	if extra > 7<<10 {
		t.Errorf("a detached stream costs %.0f B over its connection, want at most 7 KiB (with its connection, the 8 KiB of issue #22)", extra)
	}
}

// A detached stream whose client stopped reading ends within its write
// timeout, after Close too: http.Server's Close, which ends such a stream
// served the usual way by closing its connection, cannot reach a detached
// one. So Detach needs a write timeout, and New refuses it without one.
func TestDetachedStalledStreamEnds(t *testing.T) {
	leakcheck.Check(t)
	if _, err := New(&Options{Detach: true, Stream: sse.Options{WriteTimeout: -1}}); !errors.Is(err, ErrInvalidOptions) || !strings.Contains(err.Error(), "WriteTimeout") {
		t.Errorf("New with Detach and no write timeout: %v, want ErrInvalidOptions naming WriteTimeout", err)
	}
	b := newBroker(t, &Options{Detach: true, Stream: sse.Options{WriteTimeout: 200 * time.Millisecond, Heartbeat: -1}})
	srv := stallingServer(b)
	conn := dialStalled(t, srv.Listener.Addr().String())
	defer conn.Close()
	defer srv.Close()
	defer b.Close()
	waitFor(t, "the stream counted", func() bool { return b.Subscribers() == 1 })
	big := strings.Repeat("x", 64<<10)
	for range 64 { // 4 MiB: far more than the connection buffers
		if err := b.Publish(sse.Event{Data: big}); err != nil {
			t.Fatal(err)
		}
	}
	b.Close() // the stream owes its client all 4 MiB first: its write stalls
	srv.Close()
	waitFor(t, "the stalled stream to end after Close", func() bool { return b.Stats().Open == 0 })
	if n := b.Stats().Ended.WriteTimeout; n != 1 {
		t.Errorf("Ended.WriteTimeout = %d, want 1", n)
	}
}

// A detached stream writes the handler's headers as net/http would, which
// drops a header whose name is not a token (written as it is, "X:Colon"
// would reach the client as a header X, and a name with a space makes the
// head malformed), trims values, and keeps a Date the handler set.
func TestDetachedDropsInvalidHeaderNames(t *testing.T) {
	leakcheck.Check(t)
	b := newBroker(t, &Options{Detach: true})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h["X:Colon"] = []string{"injected"}
		h["X Space"] = []string{"v"}
		h["X-Good"] = []string{" kept\t"}              // trimmed, as net/http trims
		h.Set("Date", "Mon, 07 Dec 2026 00:00:00 GMT") // kept, as net/http keeps it
		b.ServeHTTP(w, r)
	}))
	defer srv.Close()
	defer b.Close()
	resp, _, _ := openDetached(t, srv.Client(), srv.URL)
	if resp.Header.Get("X-Good") != "kept" {
		t.Errorf("X-Good: %q, want kept", resp.Header.Get("X-Good"))
	}
	if d := resp.Header.Values("Date"); len(d) != 1 || d[0] != "Mon, 07 Dec 2026 00:00:00 GMT" {
		t.Errorf("Date: %q, want the handler's, once", d)
	}
	for k, v := range resp.Header {
		if k == "X" || strings.HasPrefix(k, "X Space") {
			t.Errorf("header %q: %q reached the client; net/http drops the invalid name", k, v)
		}
	}
}

// A panic in OnIdle, which runs on a Broker goroutine when the last stream
// is detached, is logged to the server's ErrorLog as net/http logs a
// handler's (where OnIdle runs for a stream served the usual way), and the
// stream still ends: it does not end the process. The process that could
// die is a child, this test binary again.
func TestDetachedOnIdlePanicIsLogged(t *testing.T) {
	if os.Getenv("SSEBROKER_ONIDLE_PANIC") == "" {
		cmd := exec.Command(os.Args[0], "-test.run=^TestDetachedOnIdlePanicIsLogged$", "-test.count=1", "-test.v")
		cmd.Env = append(os.Environ(), "SSEBROKER_ONIDLE_PANIC=1")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("the child process failed (%v):\n%.3000s", err, out)
		}
		return
	}
	leakcheck.Check(t)
	var panicked atomic.Bool
	b := newBroker(t, &Options{Detach: true, OnIdle: func() {
		if !panicked.Swap(true) {
			panic("OnIdle exploded")
		}
	}})
	var logged syncBuffer
	srv := httptest.NewUnstartedServer(b)
	srv.Config.ErrorLog = log.New(&logged, "", 0)
	srv.Start()
	defer srv.Close()
	defer b.Close()
	_, _, leave := openDetached(t, srv.Client(), srv.URL)
	waitFor(t, "the stream counted", func() bool { return b.Subscribers() == 1 })
	leave()
	waitFor(t, "the panic logged", func() bool { return strings.Contains(logged.String(), "OnIdle exploded") })
	waitFor(t, "the stream counted out", func() bool { return b.Stats().Open == 0 })
	cl := connect(t, srv.Client(), srv.URL, "")
	waitFor(t, "the next stream counted", func() bool { return b.Subscribers() == 1 })
	_ = b.Publish(sse.Event{Data: "after"})
	cl.expect(t, "after")
}

// A pump's panic aborts a detached response as net/http aborts a handler's
// (http.ErrAbortHandler included, whose whole point that is): the client
// sees the body cut (io.ErrUnexpectedEOF), not a clean end of the stream.
func TestDetachedPanicAbortsResponse(t *testing.T) {
	leakcheck.Check(t)
	for _, boom := range []any{http.ErrAbortHandler, errors.New("log exploded")} {
		mlog := newMemLog()
		b := newBroker(t, &Options{HistoryLen: 2, Log: mlog, Detach: true})
		srv := httptest.NewUnstartedServer(b)
		srv.Config.ErrorLog = log.New(io.Discard, "", 0)
		srv.Start()
		publishN(t, b, "", 5)
		mlog.onRead = func(context.Context) error { panic(boom) }
		req, _ := http.NewRequest("GET", srv.URL, nil)
		req.Header.Set("Last-Event-ID", mlog.head().Epoch+"-1") // older than the history: asks the Log
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if !resp.Close {
			t.Fatal("not detached")
		}
		if _, err := io.ReadAll(resp.Body); err != io.ErrUnexpectedEOF {
			t.Errorf("panic(%v): the body ended with %v, want io.ErrUnexpectedEOF (aborted)", boom, err)
		}
		resp.Body.Close()
		b.Close()
		srv.Close()
	}
}
