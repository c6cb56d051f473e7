package sse

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"sync"
	"time"
)

// Defaults used when Options leaves a field zero.
const (
	// DefaultWriteTimeout bounds one write and flush of the stream. A client
	// that has not taken the bytes by then is treated as gone.
	DefaultWriteTimeout = 10 * time.Second
	// DefaultHeartbeat is the silence after which a Writer sends a comment, well
	// under the 60 s idle timeout of common load balancers.
	DefaultHeartbeat = 15 * time.Second
	// MinHeartbeat is the shortest heartbeat: a shorter positive
	// Options.Heartbeat is raised to it. Proxies time out idle connections
	// after tens of seconds; a comment every few milliseconds keeps none
	// open that one a second would not, and costs every stream a write each.
	MinHeartbeat = time.Second
)

// ErrClosed is returned by Writer methods called after Close or after the
// request's context ended, and by Broker.Publish after the Broker's Close.
var ErrClosed = errors.New("sse: closed")

// Options configure a Writer. A nil *Options, and any zero field, means the
// default.
type Options struct {
	// WriteTimeout bounds each write and flush: a client that stops reading
	// makes Send fail within it instead of blocking for minutes. (Each write
	// gets between 7/8 of it and all of it: the deadline is moved forward only
	// once it has run down by an eighth.) It replaces the
	// http.Server's WriteTimeout for this response, so that a server-wide
	// timeout does not end a healthy stream. 0 means DefaultWriteTimeout;
	// negative means no deadline.
	WriteTimeout time.Duration
	// Heartbeat is the silence after which the Writer sends a comment line by
	// itself, so that proxies and load balancers keep the connection open. 0
	// means DefaultHeartbeat; negative disables heartbeats; a positive value
	// under MinHeartbeat means MinHeartbeat.
	Heartbeat time.Duration
	// Retry, when positive, is sent as the stream's first field: the client
	// waits this long before it reconnects. Whole milliseconds, at least 1 ms:
	// NewWriter refuses a negative or sub-millisecond Retry.
	Retry time.Duration
}

// A Writer streams events on one HTTP response. Get one from NewWriter (the
// zero Writer is not ready for use). It is safe for concurrent use: Send,
// Comment and the heartbeat each write whole events under one lock.
//
// Every write is followed by a flush, so an event reaches the client at once.
// Once a write fails (the client left, or did not read within WriteTimeout)
// the stream is broken: that call and every later one return the same error,
// and the handler should return.
//
// A Writer must be closed before its handler returns (defer w.Close()): net/http
// forbids writing to a ResponseWriter after ServeHTTP returns, and Close is
// what stops the heartbeat and waits for one in flight.
//
// Write deadlines need a ResponseWriter that supports
// [http.ResponseController.SetWriteDeadline] (net/http's HTTP/1 and HTTP/2
// servers do, and wrappers that implement Unwrap). Where it is not supported
// the Writer still works, but a client that stops reading blocks Send until the
// operating system gives up on the connection, and the server's WriteTimeout,
// if any, ends the stream.
type Writer struct {
	mu        sync.Mutex
	done      <-chan struct{} // the request's context's
	w         http.ResponseWriter
	rc        http.ResponseController
	buf       []byte
	timeout   time.Duration // 0: no deadline (none wanted, or not supported)
	heartbeat time.Duration // 0: none
	timer     *time.Timer
	wrote     time.Duration // when the last write began (see monotonic), for the heartbeat
	renew     time.Duration // when the write deadline is next moved forward; renewNow: at the next write
	h2        bool          // HTTP/2: a pending deadline resets the stream even when idle
	stopCtx   func() bool
	err       error // sticky: ErrClosed or the first write error
}

// maxKeptBuffer is the largest encoding buffer a Writer keeps between events;
// a larger one, grown for a big event, is dropped after use.
const maxKeptBuffer = 64 << 10

// NewWriter starts an event stream on w, the response to r.
//
// It first checks that w can flush, looking through wrappers that implement
// Unwrap() http.ResponseWriter, as [http.ResponseController] does. If nothing
// can flush, it returns an error matching [http.ErrNotSupported] and writes
// nothing, so the handler can still answer with an error status.
//
// Otherwise it sets Content-Type: text/event-stream, and Cache-Control:
// no-cache and X-Accel-Buffering: no unless the handler set them; it removes
// Content-Length, Connection and Keep-Alive (the last two make an HTTP/2
// response malformed) and keeps every other header the handler set. It then
// writes status 200, the Retry field if Options sets one, and flushes, so the
// client's open event fires before the first event. An error from that first
// write is returned; the stream is then unusable.
//
// An Options.Retry that is negative or under a millisecond is refused with
// ErrInvalidRetry, also before anything is written.
//
// The Writer stops its heartbeat when r's context ends; Close must still be
// called before the handler returns.
func NewWriter(w http.ResponseWriter, r *http.Request, opts *Options) (*Writer, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	sw, err := newWriter(w, r, &o)
	if err != nil {
		return nil, err
	}
	writeStreamHeader(sw.w)
	sw.mu.Lock()
	defer sw.mu.Unlock()
	if sw.heartbeat = heartbeatOf(&o); sw.heartbeat > 0 {
		sw.timer = time.AfterFunc(sw.heartbeat, sw.tick)
		// Only the heartbeat writes by itself, so only it must stop when the
		// request ends; every other write checks the context first.
		sw.stopCtx = context.AfterFunc(r.Context(), sw.end)
	}
	if err := sw.writeLocked(appendRetry(nil, o.Retry), nil); err != nil {
		return nil, err
	}
	return sw, nil
}

// newWriter checks o and w and returns a Writer with no heartbeat, whose
// headers are not set yet (see writeStreamHeader). It touches neither the response
// nor its headers, which keeps the calling goroutine's stack shallow: the
// Broker's handlers wait on theirs for the whole stream.
func newWriter(w http.ResponseWriter, r *http.Request, o *Options) (*Writer, error) {
	if !canFlush(w) {
		return nil, fmt.Errorf("sse: response writer cannot flush: %w", http.ErrNotSupported)
	}
	if err := (&Event{Retry: o.Retry}).validate(); err != nil {
		return nil, err
	}
	sw := &Writer{done: r.Context().Done(), w: w, rc: *http.NewResponseController(w), h2: r.ProtoMajor >= 2, renew: renewNow}
	sw.timeout = orDefault(o.WriteTimeout, DefaultWriteTimeout)
	return sw, nil
}

// orDefault resolves a duration option: 0 means def, negative means none (0).
func orDefault(d, def time.Duration) time.Duration {
	switch {
	case d == 0:
		return def
	case d < 0:
		return 0
	}
	return d
}

// heartbeatOf resolves o.Heartbeat: DefaultHeartbeat for 0, none (0) when
// negative, and never under MinHeartbeat.
func heartbeatOf(o *Options) time.Duration {
	if d := orDefault(o.Heartbeat, DefaultHeartbeat); d > 0 {
		return max(d, MinHeartbeat)
	}
	return 0
}

// writeStreamHeader sets an event stream's headers on w and writes status
// 200, which the first write and flush send.
func writeStreamHeader(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	if h.Get("Cache-Control") == "" {
		h.Set("Cache-Control", "no-cache")
	}
	if h.Get("X-Accel-Buffering") == "" {
		h.Set("X-Accel-Buffering", "no")
	}
	h.Del("Content-Length")
	h.Del("Connection")
	h.Del("Keep-Alive")
	w.WriteHeader(http.StatusOK)
}

// Send writes e and flushes it to the client.
//
// If e cannot be encoded faithfully, Send writes nothing and returns the error
// from [Event.AppendText] (ErrInvalidID, ErrInvalidType, ErrInvalidData or
// ErrInvalidRetry); the stream stays intact and usable. If the write or flush
// fails, or does not finish within the write timeout, Send returns that error
// (wrapping [os.ErrDeadlineExceeded] on a timeout) and the stream is broken.
// After Close, or once the request's context has ended, Send returns ErrClosed.
func (w *Writer) Send(e Event) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		return w.err
	}
	buf, err := e.AppendText(w.buf[:0])
	if err != nil {
		return err
	}
	return w.writeBufLocked(buf)
}

// Comment writes text as a comment, which clients ignore, and flushes it. Each
// line of text gets its own leading colon. Invalid UTF-8 is refused with
// ErrInvalidComment and writes nothing; other errors are as for Send.
func (w *Writer) Comment(text string) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		return w.err
	}
	buf, err := appendComment(w.buf[:0], text)
	if err != nil {
		return err
	}
	return w.writeBufLocked(buf)
}

// writeBufLocked writes buf, encoded into w.buf, keeping it for the next
// event unless it grew past maxKeptBuffer.
func (w *Writer) writeBufLocked(buf []byte) error {
	if cap(buf) <= maxKeptBuffer {
		w.buf = buf
	}
	return w.writeLocked(buf, nil)
}

// sendWire writes bytes that are already whole encoded events, p and then
// q, and flushes once. The Broker uses it to send events it encoded once for
// all: p a batch of copies, q a large event written from the Broker's own
// bytes.
func (w *Writer) sendWire(p, q []byte) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		return w.err
	}
	return w.writeLocked(p, q)
}

// Close stops the heartbeat, waiting for one being written, and makes later
// calls return ErrClosed. It gives the response's final bytes, which net/http
// writes when the handler returns, one more write timeout. It writes nothing
// itself and always returns nil; calling it again does nothing.
func (w *Writer) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err == nil && w.timeout > 0 {
		_ = w.rc.SetWriteDeadline(time.Now().Add(w.timeout))
	}
	w.stopLocked(ErrClosed)
	return nil
}

// end runs when the request's context ends: it stops the heartbeat. Unlike
// Close it touches no connection state, since the handler may have returned.
func (w *Writer) end() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.stopLocked(ErrClosed)
}

// tick runs when the heartbeat timer fires: it sends the heartbeat comment if
// the stream has been silent for the whole period, and otherwise waits out
// the rest of it. (Writes do not reset the timer: that would cost every Send
// a timer operation and could not stop a callback already waiting for mu.)
func (w *Writer) tick() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil || waitRest(w.timer, w.heartbeat, monotonic(time.Now())-w.wrote) {
		return
	}
	if w.writeLocked(heartbeatLine, nil) == nil {
		w.timer.Reset(w.heartbeat)
	}
}

// waitRest re-arms t for what is left of period, of which elapsed has
// passed, and reports whether anything was left. Timers that act only after
// a whole period of quiet (a heartbeat, an idle pump) wait so, rather than
// being reset on every event.
func waitRest(t *time.Timer, period, elapsed time.Duration) bool {
	if elapsed >= period {
		return false
	}
	t.Reset(period - elapsed)
	return true
}

// writeLocked writes p and q and flushes, under the write deadline, and
// restarts the heartbeat's silence. A failure breaks the stream for good.
func (w *Writer) writeLocked(p, q []byte) error {
	select {
	case <-w.done:
		w.stopLocked(ErrClosed)
		return w.err
	default:
	}
	now := time.Now()
	mono := monotonic(now)
	if w.timeout > 0 && mono >= w.renew {
		// Moving a deadline updates a runtime timer, which costs more than
		// encoding an event; doing it once per eighth of the timeout still
		// gives every write at least 7/8 of it.
		switch err := w.rc.SetWriteDeadline(now.Add(w.timeout)); {
		case errors.Is(err, http.ErrNotSupported):
			w.timeout = 0 // stream without deadlines
		case err != nil:
			return w.failLocked(err)
		}
		w.renew = mono + w.timeout/8
	}
	for _, b := range [2][]byte{p, q} {
		if len(b) == 0 {
			continue
		}
		if _, err := w.w.Write(b); err != nil {
			return w.failLocked(err)
		}
	}
	if err := w.rc.Flush(); err != nil {
		return w.failLocked(err)
	}
	if w.h2 && w.timeout > 0 {
		// An HTTP/2 stream's deadline is a timer that resets the stream when
		// it fires, writing or not: clear it, or a quiet stream dies.
		_ = w.rc.SetWriteDeadline(time.Time{})
		w.renew = renewNow
	}
	w.wrote = mono
	return nil
}

// clockOrigin is the origin of monotonic.
var clockOrigin = time.Now()

// monotonic returns t as time since the process started, by the monotonic
// clock. A Writer keeps its times so: 8 bytes each instead of a time.Time's 24.
// (Under testing/synctest, whose clock starts in 2000, they are negative.)
func monotonic(t time.Time) time.Duration { return t.Sub(clockOrigin) }

// renewNow, as a Writer's renew, has the next write set the deadline.
const renewNow = time.Duration(math.MinInt64)

func (w *Writer) failLocked(err error) error {
	w.stopLocked(fmt.Errorf("sse: write: %w", err))
	return w.err
}

// stopLocked records the error that ends the stream, if none is recorded yet,
// and stops the heartbeat and the context watch.
func (w *Writer) stopLocked(err error) {
	if w.err == nil {
		w.err = err
	}
	if w.timer != nil {
		w.timer.Stop()
	}
	if w.stopCtx != nil {
		w.stopCtx()
	}
}

// canFlush reports whether w, or a ResponseWriter it wraps, can flush.
func canFlush(w http.ResponseWriter) bool {
	for {
		switch t := w.(type) {
		case interface{ FlushError() error }, http.Flusher:
			return true
		case interface{ Unwrap() http.ResponseWriter }:
			w = t.Unwrap()
		default:
			return false
		}
	}
}
