package wire

import (
	"errors"
	"fmt"
	"math"
	"net/http"
	"time"
)

// MinHeartbeat is the shortest heartbeat: a comment every few milliseconds
// keeps no proxy's connection open that one a second would not, and costs
// every stream a write each.
const MinHeartbeat = time.Second

// ErrDone is returned by Stream.Write once the request's context has ended.
var ErrDone = errors.New("sse: request ended")

// Duration resolves a duration option by the packages' one rule: 0 means def,
// negative means none (0), positive is taken as it is.
func Duration(d, def time.Duration) time.Duration {
	switch {
	case d == 0:
		return def
	case d < 0:
		return 0
	}
	return d
}

// HeartbeatOf resolves a heartbeat option: def for 0, none (0) when
// negative, and never under MinHeartbeat.
func HeartbeatOf(d, def time.Duration) time.Duration {
	if d = Duration(d, def); d > 0 {
		return max(d, MinHeartbeat)
	}
	return 0
}

// A Stream writes an event stream's bytes to one HTTP response: each Write
// is followed by a flush, under a write deadline that is moved forward as
// writes go on, so that a client that stopped reading fails a write within
// the timeout rather than blocking it for minutes. It is not safe for
// concurrent use; its owner serializes calls.
type Stream struct {
	done    <-chan struct{} // the request's context's
	w       http.ResponseWriter
	rc      http.ResponseController
	timeout time.Duration // 0: no deadline (none wanted, or not supported)
	renew   time.Duration // when the deadline is next moved forward; renewNow: at the next write
	h2      bool          // HTTP/2: a pending deadline resets the stream even when idle
	d       *detached     // after Hijack: the connection, written directly; w and rc are unset

	// Wrote is when the last write began, as Monotonic returns it.
	Wrote time.Duration
}

// NewStream returns a Stream on w, the response to r, with a write deadline
// of timeout per write (0: none). It checks that w can flush, looking
// through wrappers that implement Unwrap() http.ResponseWriter, and returns
// an error matching http.ErrNotSupported if nothing can. It touches neither
// the response nor its headers, which keeps the calling goroutine's stack
// shallow: a Broker's handlers wait on theirs for the whole stream.
func NewStream(w http.ResponseWriter, r *http.Request, timeout time.Duration) (*Stream, error) {
	if !canFlush(w) {
		return nil, fmt.Errorf("sse: response writer cannot flush: %w", http.ErrNotSupported)
	}
	return &Stream{done: r.Context().Done(), w: w, rc: *http.NewResponseController(w), h2: r.ProtoMajor >= 2, renew: renewNow, timeout: timeout}, nil
}

// Done returns the request's context's Done channel.
func (s *Stream) Done() <-chan struct{} { return s.done }

// WriteHeader sets an event stream's headers and writes status 200, which
// the first Write sends. On a detached Stream the head is ready since
// Hijack, and the first Write sends it.
func (s *Stream) WriteHeader() {
	if s.d == nil {
		WriteHeader(s.w)
	}
}

// WriteHeader sets an event stream's headers on w and writes status 200:
// Content-Type: text/event-stream, Cache-Control: no-cache and
// X-Accel-Buffering: no unless the handler set them, and no Content-Length,
// Connection or Keep-Alive (the last two make an HTTP/2 response malformed).
func WriteHeader(w http.ResponseWriter) {
	setHeaders(w.Header())
	w.WriteHeader(http.StatusOK)
}

// setHeaders sets WriteHeader's headers on h.
func setHeaders(h http.Header) {
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
}

// Write writes p and then q, and flushes once, under the write deadline. It
// returns ErrDone, writing nothing, once the request's context has ended,
// and otherwise the error of the write, the flush or the deadline (which
// wraps os.ErrDeadlineExceeded on a timeout). After an error the response
// is broken; the owner writes no more.
func (s *Stream) Write(p, q []byte) error {
	select {
	case <-s.done:
		return ErrDone
	default:
	}
	now := time.Now()
	mono := Monotonic(now)
	if s.timeout > 0 && mono >= s.renew {
		// Moving a deadline updates a runtime timer, which costs more than
		// encoding an event; doing it once per eighth of the timeout still
		// gives every write at least 7/8 of it.
		switch err := s.setWriteDeadline(now.Add(s.timeout)); {
		case errors.Is(err, http.ErrNotSupported):
			s.timeout = 0 // stream without deadlines
		case err != nil:
			return err
		}
		s.renew = mono + s.timeout/8
	}
	if s.d != nil {
		if err := s.d.write(p, q); err != nil {
			return err
		}
		s.Wrote = mono
		return nil
	}
	for _, b := range [2][]byte{p, q} {
		if len(b) == 0 {
			continue
		}
		if _, err := s.w.Write(b); err != nil {
			return err
		}
	}
	if err := s.rc.Flush(); err != nil {
		return err
	}
	if s.h2 && s.timeout > 0 {
		// An HTTP/2 stream's deadline is a timer that resets the stream when
		// it fires, writing or not: clear it, or a quiet stream dies.
		_ = s.rc.SetWriteDeadline(time.Time{})
		s.renew = renewNow
	}
	s.Wrote = mono
	return nil
}

// Finish gives the response's final bytes, which net/http writes when the
// handler returns, one more write timeout. A detached Stream writes them
// itself (unless a write failed) and closes the connection. Call it once,
// when the stream is over.
func (s *Stream) Finish() {
	if s.d != nil {
		s.d.finish(s.timeout)
		return
	}
	if s.timeout > 0 {
		_ = s.rc.SetWriteDeadline(time.Now().Add(s.timeout))
	}
}

// Abort ends a detached response as net/http ends one whose handler
// panicked: it closes the connection without the response's last bytes, so
// that the client sees the body cut. On a Stream not detached it is Finish
// (net/http aborts the response as the panic reaches it).
func (s *Stream) Abort() {
	if s.d != nil {
		s.d.broken = true
	}
	s.Finish()
}

// setWriteDeadline sets the write deadline of the response, or of the
// detached connection.
func (s *Stream) setWriteDeadline(t time.Time) error {
	if s.d != nil {
		return s.d.conn.SetWriteDeadline(t)
	}
	return s.rc.SetWriteDeadline(t)
}

// clockOrigin is the origin of Monotonic.
var clockOrigin = time.Now()

// Monotonic returns t as time since the process started, by the monotonic
// clock: 8 bytes instead of a time.Time's 24. (Under testing/synctest, whose
// clock starts in 2000, it is negative.)
func Monotonic(t time.Time) time.Duration { return t.Sub(clockOrigin) }

// renewNow, as a Stream's renew, has the next write set the deadline.
const renewNow = time.Duration(math.MinInt64)

// WaitRest re-arms t for what is left of period, of which elapsed has
// passed, and reports whether anything was left. Timers that act only after
// a whole period of quiet (a heartbeat, an idle pump) wait so, rather than
// being reset on every event.
func WaitRest(t *time.Timer, period, elapsed time.Duration) bool {
	if elapsed >= period {
		return false
	}
	t.Reset(period - elapsed)
	return true
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
