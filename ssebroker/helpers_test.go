package ssebroker

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/lightsse/sse"
	"github.com/lightsse/sse/internal/ssetest"
)

// ---- Helpers: clients of a Broker ----------------------------------------

// brokerServer serves b on a loopback server closed at the end of the test.
func brokerServer(t *testing.T, b *Broker) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(b)
	t.Cleanup(func() { b.Close(); srv.Close() })
	return srv
}

// detachAll runs the package's tests with every Broker's streams detached
// (go test ./ssebroker -detach): .ci/run runs them both ways.
var detachAll = flag.Bool("detach", false, "give every Broker the tests make Options.Detach")

// newBroker returns New(opts), and fails the test if New refuses opts.
func newBroker(tb testing.TB, opts *Options) *Broker {
	tb.Helper()
	if *detachAll && (opts == nil || opts.Stream.WriteTimeout >= 0) { // Detach needs a write timeout
		o := Options{}
		if opts != nil {
			o = *opts
		}
		o.Detach = true
		opts = &o
	}
	b, err := New(opts)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// patience is how long a test waits for what should happen at once before it
// calls it a failure: long, so that a busy machine fails nothing.
const patience = time.Minute

// waitFor polls cond, for conditions that other goroutines make true.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(patience); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// client is a stream opened on a Broker, read in its own goroutine.
type client struct {
	events chan ssetest.Event // closed when the stream ends
	cancel context.CancelFunc
	reader *ssetest.Reader
	err    error // why the stream ended, read after events is closed
}

func connect(t *testing.T, c *http.Client, url, lastID string) *client {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := c.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	cl := &client{events: make(chan ssetest.Event, 64), cancel: cancel, reader: ssetest.NewReader(resp.Body)}
	go func() {
		defer close(cl.events)
		defer resp.Body.Close()
		for {
			ev, err := cl.reader.Next()
			if err != nil {
				cl.err = err
				return
			}
			cl.events <- ev
		}
	}()
	t.Cleanup(func() {
		cancel()
		for range cl.events {
		}
		c.CloseIdleConnections()
	})
	return cl
}

func (cl *client) next(t *testing.T) ssetest.Event {
	t.Helper()
	select {
	case ev, ok := <-cl.events:
		if !ok {
			t.Fatalf("stream ended: %v", cl.err)
		}
		return ev
	case <-time.After(patience):
		t.Fatalf("no event within %v", patience)
		return ssetest.Event{}
	}
}

// ended waits for the stream to end and returns the events that came first.
func (cl *client) ended(t *testing.T) []ssetest.Event {
	t.Helper()
	var rest []ssetest.Event
	timeout := time.After(patience)
	for {
		select {
		case ev, ok := <-cl.events:
			if !ok {
				return rest
			}
			rest = append(rest, ev)
		case <-timeout:
			t.Fatalf("stream still open after %v", patience)
		}
	}
}

// expect reads one event per data in want from cl.
func (cl *client) expect(t *testing.T, want ...string) {
	t.Helper()
	for _, w := range want {
		if ev := cl.next(t); ev.Data != w || ev.Type == ResetEvent {
			t.Fatalf("got %+v, want data %q", ev, w)
		}
	}
}

// checkSequence reads publishers*each events and checks that ids count up by
// one from 1 and that each publisher's events arrive in its order. It waits
// for as long as events reach some client (moving).
func checkSequence(cl *client, publishers, each int, moving *progress) error {
	next := make([]int, publishers)
	for n := 1; n <= publishers*each; n++ {
		var ev ssetest.Event
		select {
		case e, ok := <-cl.events:
			if !ok {
				return fmt.Errorf("stream ended after %d events: %v", n-1, cl.err)
			}
			ev = e
		case <-moving.stalled:
			return fmt.Errorf("no event %d: no client has received anything for %v", n, stallAfter)
		}
		moving.n.Add(1)
		ps, rest, _ := strings.Cut(ev.Data, " ")
		is, _, _ := strings.Cut(rest, " ")
		p, err1 := strconv.Atoi(ps)
		i, err2 := strconv.Atoi(is)
		if err1 != nil || err2 != nil || p >= publishers || i != next[p] {
			return fmt.Errorf("event %d = %+v, want publisher %d's event %d", n, ev, p, next[p])
		}
		next[p]++
		if _, off, _ := strings.Cut(ev.LastEventID, "-"); off != strconv.Itoa(n) {
			return fmt.Errorf("event %d has id %q", n, ev.LastEventID)
		}
	}
	return nil
}

// A progress counts the events that many clients receive, so that a test
// waits for as long as they advance and gives up only once all have stood
// still for stallAfter. On a busy machine one client can wait for a CPU for
// tens of seconds while the others go on; that is not a fault, and a budget
// per event would call it one.
type progress struct {
	n       atomic.Int64
	stalled chan struct{} // closed when n has not moved for stallAfter
}

const stallAfter = time.Minute

// watchProgress returns a progress watched until the test ends.
func watchProgress(t *testing.T) *progress {
	p := &progress{stalled: make(chan struct{})}
	done := make(chan struct{})
	go func() {
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		last, since := int64(-1), time.Now()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
			}
			if n := p.n.Load(); n != last {
				last, since = n, time.Now()
			} else if time.Since(since) > stallAfter {
				close(p.stalled)
				return
			}
		}
	}()
	t.Cleanup(func() { close(done) })
	return p
}

// smallBuffers shrinks each accepted connection's send buffer, so that a
// client that stops reading blocks the server after kilobytes, not megabytes.
type smallBuffers struct{ net.Listener }

func (l smallBuffers) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetWriteBuffer(16 << 10)
	}
	return c, err
}

// stallingServer serves b with smallBuffers, for clients that stop reading.
// The caller closes it.
func stallingServer(b *Broker) *httptest.Server {
	srv := httptest.NewUnstartedServer(b)
	srv.Listener = smallBuffers{srv.Listener}
	srv.Start()
	return srv
}

// dialStalled opens a stream on addr with a small receive buffer, and never
// reads it. The caller closes it.
func dialStalled(t *testing.T, addr string) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	_ = conn.(*net.TCPConn).SetReadBuffer(4 << 10)
	fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	return conn
}

func reconnectingClient(t *testing.T, srv *httptest.Server, seed, events int, ready chan<- struct{}) error {
	rng := rand.New(rand.NewPCG(uint64(seed), 1))
	lastID, want, reconnects := "", 0, 0
	for want < events {
		ctx, cancel := context.WithCancel(context.Background())
		req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL, nil)
		if lastID != "" {
			req.Header.Set("Last-Event-ID", lastID)
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			cancel()
			return err
		}
		if lastID == "" {
			ready <- struct{}{}
			lastID = "connected" // the first stream sees everything live
		}
		r := ssetest.NewReader(resp.Body)
		for stay := 1 + rng.IntN(300); stay > 0 && want < events; stay-- {
			ev, err := r.Next()
			if err != nil {
				cancel()
				resp.Body.Close()
				return fmt.Errorf("client %d: %v after event %d", seed, err, want-1)
			}
			if ev.Type == ResetEvent || ev.Data != strconv.Itoa(want) {
				cancel()
				resp.Body.Close()
				return fmt.Errorf("client %d after %d reconnects: got %+v, want event %d", seed, reconnects, ev, want)
			}
			want++
			lastID = ev.LastEventID
		}
		cancel()
		resp.Body.Close()
		reconnects++
	}
	srv.Client().CloseIdleConnections()
	return nil
}

// readCounter counts the bytes read from the connections it accepts.
type readCounter struct {
	net.Listener
	read atomic.Int64
}

func (l *readCounter) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &countedConn{Conn: c, n: &l.read}, nil
}

type countedConn struct {
	net.Conn
	n *atomic.Int64
}

func (c *countedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// rawStream is a loopback client with no goroutine of its own until it reads:
// a raw connection and the response, without http.Transport.
type rawStream struct {
	conn net.Conn
	body *bufio.Reader
}

func dialStream(addr string) (*rawStream, error) {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	req, _ := http.NewRequest("GET", "http://"+addr+"/", nil)
	if err := req.Write(conn); err != nil {
		conn.Close()
		return nil, err
	}
	resp, err := http.ReadResponse(bufio.NewReaderSize(conn, 512), req)
	if err != nil {
		conn.Close()
		return nil, err
	}
	return &rawStream{conn: conn, body: bufio.NewReaderSize(resp.Body, 4096)}, nil
}

// connHolder is the floor of any stream outside net/http: a handler that
// hijacks each connection, writes a stream's head, and only holds it.
type connHolder struct {
	mu   sync.Mutex
	held []net.Conn
}

func (h *connHolder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(err)
	}
	_, _ = io.WriteString(conn, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n")
	h.mu.Lock()
	h.held = append(h.held, conn)
	h.mu.Unlock()
}

// count returns how many connections h holds.
func (h *connHolder) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.held)
}

// closeAll closes the connections h holds.
func (h *connHolder) closeAll() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, c := range h.held {
		c.Close()
	}
	h.held = nil
}

// fdBound returns n, or fewer if this process cannot open both ends of n
// connections (a container may cap RLIMIT_NOFILE even for root): the
// benchmark's name then says how many it ran.
func fdBound(n int) int {
	var lim syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim) == nil && uint64(2*n+1000) > lim.Max {
		return max(int(lim.Max)/2-500, 1)
	}
	return n
}

// raiseFileLimit lets one process hold both ends of n connections.
func raiseFileLimit(b *testing.B, n int) {
	var lim syscall.Rlimit
	_ = syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim)
	if want := uint64(2*n + 1000); lim.Cur < want {
		lim.Cur, lim.Max = want, max(lim.Max, want)
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			b.Skipf("%d connections need %d file descriptors: %v", n, want, err)
		}
	}
}

// ---- Helpers: a Broker's insides -----------------------------------------

// epochOf returns the epoch of b's history.
func epochOf(b *Broker) string { return b.hist.Load().epoch }

// headOf returns the offset of the newest event in b's history.
func headOf(b *Broker) uint64 { return b.hist.Load().head.Load() }

// pumpFunc is the name of pumpPool.pump as goroutine dumps show it, taken
// from the code, so that a rename cannot make pumps count nothing.
var pumpFunc = runtime.FuncForPC(reflect.ValueOf((*pumpPool).pump).Pointer()).Name() + "("

// pumps counts the goroutines running pumpPool.pump, in any Broker.
func pumps() int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			return strings.Count(string(buf[:n]), pumpFunc)
		}
		buf = make([]byte, 2*len(buf))
	}
}

// publishN publishes n events with data prefix0, prefix1, ...
func publishN(t *testing.T, b *Broker, prefix string, n int) {
	t.Helper()
	for i := range n {
		if err := b.Publish(sse.Event{Data: prefix + strconv.Itoa(i)}); err != nil {
			t.Fatal(err)
		}
	}
}

// endedSum adds up every reason streams ended for.
func endedSum(e Ends) uint64 {
	return e.ClientLeft + e.WriteTimeout + e.FellBehind + e.Closed + e.RefusedFull + e.RefusedClosed + e.LogFailed + e.Failed
}

// stackInUse returns the bytes of goroutine stacks in use, after the GCs
// that free the stacks of goroutines that have exited and shrink, by half
// each, those of parked goroutines that use under a quarter of theirs: what
// a long-lived idle stream costs, whatever the load was as it started.
func stackInUse() uint64 {
	for range 3 {
		runtime.GC()
	}
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.StackInuse
}

// memInUse returns the bytes of heap and goroutine stacks in use, after two
// GCs (the second frees what the first's finalizers let go).
func memInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse + m.StackInuse
}

// heapInUse returns the bytes of heap in use, after a GC. (Each of these
// reads runtime.MemStats in its own frame: passing the 5 KiB struct around
// grows and shrinks the caller's stack, which moves the stack figures.)
func heapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

// mallocs returns how many heap objects every goroutine has allocated so far.
func mallocs() uint64 {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.Mallocs
}

// withGap returns a Broker on a memLog, served, with one client, whose feed
// has skipped the n events just published ("missed 0", "missed 1", ...):
// the feed's next delivery finds a gap.
func withGap(t *testing.T, n int) (*memLog, *Broker, *client) {
	t.Helper()
	log := newMemLog()
	b := newBroker(t, &Options{Log: log})
	srv := brokerServer(t, b)
	cl := connect(t, srv.Client(), srv.URL, "")
	log.mute.Store(true)
	publishN(t, b, "missed ", n)
	waitFor(t, "the feed to skip them", func() bool { return log.passed.Load() == uint64(n) })
	log.mute.Store(false)
	return log, b, cl
}

// ---- Helpers: responses --------------------------------------------------

// blockingWriter's writes wait for release once block is set.
type blockingWriter struct {
	*ssetest.Recorder
	block   atomic.Bool
	release chan struct{}
}

func (w *blockingWriter) Write(p []byte) (int, error) {
	if w.block.Load() {
		<-w.release
	}
	return w.Recorder.Write(p)
}

// countingWriter counts its writes.
type countingWriter struct {
	*ssetest.Recorder
	n atomic.Int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	c.n.Add(1)
	return c.Recorder.Write(p)
}

func (c *countingWriter) writes() int { return int(c.n.Load()) }

// gate is a ResponseWriter whose writes wait for the test: a client that
// reads slowly, on a connection without deadlines.
type gate struct {
	*ssetest.Recorder
	entered chan struct{} // a write is waiting
	open    chan struct{} // lets one write through
}

func (g *gate) Write(p []byte) (int, error) {
	g.entered <- struct{}{}
	<-g.open
	return g.Recorder.Write(p)
}

// ids returns r's index of publisher IDs, as a map, whichever form it has.
func (r *ring) ids() map[string]idRef {
	r.idMu.Lock()
	defer r.idMu.Unlock()
	m := make(map[string]idRef, len(r.byID)+len(r.few))
	for id, ref := range r.byID {
		m[id] = ref
	}
	for _, f := range r.few {
		m[f.id] = f.ref
	}
	return m
}

// ---- Helpers: streams over memory ----------------------------------------

// memStreams are detached streams over connections that are only memory
// (memConn), on one Broker or on a Broker each, as one per user: as many as
// memory allows, with no file descriptor.
type memStreams struct {
	brokers []*Broker
	conns   []*memConn
	writes  atomic.Int64 // writes to every memConn: the heads, then one per event per stream
	events  int64        // events each stream has been sent
}

// openMemStreams opens n detached streams over memConns, without
// heartbeats, on one Broker or, perUser, on a Broker each (HistoryLen 16),
// and publishes one event to all: it returns once every stream has written
// it and parked again (with a Broker per stream, every Broker holds it).
func openMemStreams(tb testing.TB, n int, perUser bool) *memStreams {
	opts := &Options{Detach: true, Stream: sse.Options{Heartbeat: -1}}
	if perUser {
		opts.HistoryLen = 16
	}
	m := &memStreams{conns: make([]*memConn, n)}
	for i := range m.conns {
		if perUser || i == 0 {
			m.brokers = append(m.brokers, newBroker(tb, opts))
		}
		c := &memConn{closed: make(chan struct{}), writes: &m.writes}
		m.conns[i] = c
		m.brokers[len(m.brokers)-1].ServeHTTP(&hijackable{c: c}, httptest.NewRequest("GET", "/", nil))
	}
	m.publish(tb)
	return m
}

// publish publishes one event on every Broker, and waits until every
// stream has written it and parked again.
func (m *memStreams) publish(tb testing.TB) {
	m.events++
	for _, br := range m.brokers {
		_ = br.Publish(typical)
	}
	want := int64(len(m.conns)) * (1 + m.events) // the heads, and the events
	waitUntil(tb, func() bool {
		var parked int64
		for _, br := range m.brokers {
			parked += br.nparked.Load()
		}
		return m.writes.Load() == want && parked == int64(len(m.conns))
	})
}

// close closes every Broker, and waits until each has closed its streams'
// connections.
func (m *memStreams) close() {
	for _, br := range m.brokers {
		br.Close()
	}
	for _, c := range m.conns {
		<-c.closed
	}
}

// waitUntil polls cond every 50 µs (a broadcast to 10,000 streams takes some
// milliseconds), for five minutes at most.
func waitUntil(tb testing.TB, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(5 * time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatal("timed out")
		}
		time.Sleep(50 * time.Microsecond)
	}
}

// A hijackable is a ResponseWriter whose connection, c, can be hijacked.
type hijackable struct {
	ssetest.Discard
	c *memConn
}

func (h *hijackable) Header() http.Header {
	if h.Head == nil {
		h.Head = http.Header{}
	}
	return h.Head
}

func (h *hijackable) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return h.c, nil, nil
}

// A memConn is a connection that is only memory: a write is counted and
// dropped (or kept, with keep), a read waits until Close.
type memConn struct {
	closed    chan struct{}
	closeOnce sync.Once
	writes    *atomic.Int64

	keep bool // keep what is written, for body
	mu   sync.Mutex
	kept []byte
}

func (c *memConn) Read([]byte) (int, error) { <-c.closed; return 0, io.EOF }
func (c *memConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	if c.keep {
		c.mu.Lock()
		c.kept = append(c.kept, p...)
		c.mu.Unlock()
	}
	return len(p), nil
}

// body returns what was written to c, with keep.
func (c *memConn) body() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return string(c.kept)
}
func (c *memConn) Close() error {
	c.closeOnce.Do(func() { close(c.closed) })
	return nil
}
func (c *memConn) LocalAddr() net.Addr              { return memAddr{} }
func (c *memConn) RemoteAddr() net.Addr             { return memAddr{} }
func (c *memConn) SetDeadline(time.Time) error      { return nil }
func (c *memConn) SetReadDeadline(time.Time) error  { return nil }
func (c *memConn) SetWriteDeadline(time.Time) error { return nil }

type memAddr struct{}

func (memAddr) Network() string { return "mem" }
func (memAddr) String() string  { return "mem" }
