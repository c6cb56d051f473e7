package ssebroker

import (
	"context"
	"log"
	"net/http"
	"runtime/debug"
)

// Detached streams (Options.Detach).
//
// A stream served the usual way keeps its request's handler goroutine, and
// with it net/http's state for the connection: about 22 KiB in all, most of
// it net/http's buffers and the goroutine's stack, which the request's
// handling grew. A detached stream gives all that back: ServeHTTP takes the
// HTTP/1.x connection from net/http (wire.Stream.Hijack) and returns, and
// the stream lives on as its connection, its place in the history, and a
// goroutine on a small stack reading the connection to learn when the
// client leaves. Between turns on the pumps it waits parked in the Broker,
// as every stream does (park.go). A pump ends a detached stream itself: it
// counts the stream out, finishes the response and closes the connection,
// as ServeHTTP and net/http do for the others.

// detach takes s's connection from net/http where the Broker detaches
// streams and the request allows, and starts the stream on the pumps. It
// reports whether it did; if not, ServeHTTP serves s the usual way.
func (b *Broker) detach(s *stream, r *http.Request) bool {
	if !b.detachStreams || r.ProtoMajor != 1 {
		return false
	}
	if err := s.wr.Hijack(r, func() { b.kick(s) }); err != nil {
		return false
	}
	s.detached = true
	s.ctx = context.Background() // the request's ends when ServeHTTP returns
	if srv, ok := r.Context().Value(http.ServerContextKey).(*http.Server); ok {
		s.errorLog = srv.ErrorLog
	}
	b.pumps.give(s)
	return true
}

// endDetached ends a detached stream, on the pump that ends it, as
// ServeHTTP ends the others: it reports a fault as net/http reports a
// handler's panic, counts the stream out, and finishes the response.
func (s *stream) endDetached(out outcome) {
	if f := out.fault; f != nil && f.panicked != nil && f.panicked != http.ErrAbortHandler {
		s.logf("%v", f.panicked)
	}
	// Counted out before the response ends, as ServeHTTP does before net/http
	// writes a stream's last bytes: a client that sees its stream end finds
	// it counted. A panic or runtime.Goexit while it is counted out (in
	// OnIdle, say) is treated as net/http treats one in a handler: a panic
	// is logged (on a pump it would end the process), and the response,
	// like that of a stream whose pump failed, is aborted.
	counted := false
	defer func() {
		if p := recover(); p != nil && p != http.ErrAbortHandler {
			s.logf("sse: panic ending a detached stream: %v\n%s", p, debug.Stack())
		}
		if out.fault != nil || !counted {
			s.wr.Abort()
		} else {
			s.wr.Finish()
		}
	}()
	s.b.unsubscribe(s, out.end)
	counted = true
}

// logf logs for a detached stream, as net/http logs for a handler: to the
// server's ErrorLog, or with package log.
func (s *stream) logf(format string, args ...any) {
	if s.errorLog != nil {
		s.errorLog.Printf(format, args...)
		return
	}
	log.Printf(format, args...)
}
