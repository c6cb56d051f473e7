package sse

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/lightsse/sse/internal/wire"
)

// Options configure a Writer. A nil *Options, and any zero field, means the
// default.
type Options struct {
	// WriteTimeout bounds each write and flush: a client that stops reading
	// makes Send fail within it instead of blocking for minutes. It replaces
	// the http.Server's WriteTimeout for this response, so that a
	// server-wide timeout does not end a healthy stream. 0 means
	// DefaultWriteTimeout; negative means no deadline.
	WriteTimeout time.Duration
	// Heartbeat is the silence after which the Writer sends a comment line by
	// itself, so that proxies and load balancers keep the connection open. 0
	// means DefaultHeartbeat; negative disables heartbeats; a positive value
	// under one second means one second (a comment every few milliseconds
	// keeps no proxy's connection open that one a second would not).
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
	out       *wire.Stream
	buf       []byte
	heartbeat time.Duration // 0: none
	timer     *time.Timer
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
	out, err := wire.NewStream(w, r, wire.Duration(o.WriteTimeout, DefaultWriteTimeout))
	if err != nil {
		return nil, err
	}
	if err := (&Event{Retry: o.Retry}).validate(); err != nil {
		return nil, err
	}
	sw := &Writer{out: out}
	out.WriteHeader()
	sw.mu.Lock()
	defer sw.mu.Unlock()
	if sw.heartbeat = wire.HeartbeatOf(o.Heartbeat, DefaultHeartbeat); sw.heartbeat > 0 {
		sw.timer = time.AfterFunc(sw.heartbeat, sw.tick)
		// Only the heartbeat writes by itself, so only it must stop when the
		// request ends; every other write checks the context first.
		sw.stopCtx = context.AfterFunc(r.Context(), sw.end)
	}
	if err := sw.writeLocked(wire.AppendRetry(nil, o.Retry)); err != nil {
		return nil, err
	}
	return sw, nil
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
	return w.writeLocked(buf)
}

// Close stops the heartbeat, waiting for one being written, and makes later
// calls return ErrClosed. It gives the response's final bytes, which net/http
// writes when the handler returns, one more write timeout. It writes nothing
// itself and always returns nil; calling it again does nothing.
func (w *Writer) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err == nil {
		w.out.Finish()
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
	if w.err != nil || wire.WaitRest(w.timer, w.heartbeat, wire.Monotonic(time.Now())-w.out.Wrote) {
		return
	}
	if w.writeLocked(wire.Heartbeat) == nil {
		w.timer.Reset(w.heartbeat)
	}
}

// writeLocked writes p and flushes, under the write deadline. A failure
// breaks the stream for good.
func (w *Writer) writeLocked(p []byte) error {
	switch err := w.out.Write(p, nil); {
	case errors.Is(err, wire.ErrDone):
		w.stopLocked(ErrClosed)
		return w.err
	case err != nil:
		return w.failLocked(err)
	}
	return nil
}

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
