package ssebroker

import (
	"context"
	"log"
	"net/http"
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
// client leaves. Between turns on the pumps it waits parked in the Broker;
// whoever notifies the streams (Publish, the feed, the heartbeat, Close)
// hands the parked ones back to the pumps, from a goroutine of their own
// so that Publish never waits for that. A pump ends a detached stream
// itself: it finishes the response, closes the connection and counts the
// stream out, as ServeHTTP does for the others.

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

// turnDetached is a pump's turn with a detached stream: it writes the
// stream until the stream parks or ends, and ends it then.
func (s *stream) turnDetached() {
	for {
		var out outcome
		select {
		case <-s.wr.Done():
			out = outcome{end: endClientLeft}
		default:
			out = s.writeOnce()
		}
		if out.wake == nil {
			s.finish(out)
			return
		}
		if s.b.park(s, out.wake) {
			return
		}
		// Notified as it parked, or its client left: another round.
	}
}

// writeOnce is writeAll, with a panic or runtime.Goexit of the pump's made an
// outcome: a detached stream has no handler to raise it on.
func (s *stream) writeOnce() (out outcome) {
	finished := false
	defer func() {
		if !finished {
			out = outcome{end: endFailed, fault: &fault{panicked: pumpPanic(recover())}}
			s.finish(out) // a Goexit goes on from here, and never returns
		}
	}()
	out = s.writeAll()
	finished = true
	return out
}

// finish ends a detached stream: it reports a fault as net/http reports a
// handler's panic, counts the stream out, and finishes the response.
func (s *stream) finish(out outcome) {
	s.b.parkMu.Lock() // kick reads parkAt, from the goroutine watching the connection
	done := s.parkAt == finished
	s.parkAt = finished
	s.b.parkMu.Unlock()
	if done {
		return // a Goexit's deferred call, after a panic's: already done
	}
	if f := out.fault; f != nil && f.panicked != nil && f.panicked != http.ErrAbortHandler {
		logf := log.Printf
		if s.errorLog != nil {
			logf = s.errorLog.Printf
		}
		logf("%v", f.panicked)
	}
	// Counted out before the response ends, as ServeHTTP does before net/http
	// writes a stream's last bytes: a client that sees its stream end finds
	// it counted.
	s.b.unsubscribe(s, out.end)
	s.wr.Finish()
}

// finished, as a detached stream's parkAt, marks it ended.
const finished = -2

// park puts s among the parked streams until the next notify, and reports
// true, unless wake, the notification it waits for, has come already or
// its client has left: then it reports false, and the pump goes on with s.
func (b *Broker) park(s *stream, wake <-chan struct{}) bool {
	b.parkMu.Lock()
	defer b.parkMu.Unlock()
	// Counted before wake is looked at: a notify that comes after the look
	// finds the count above zero and dispatches.
	b.nparked.Add(1)
	select {
	case <-wake:
	case <-s.wr.Done():
	default:
		s.parkAt = len(b.parked)
		b.parked = append(b.parked, s)
		return true
	}
	b.nparked.Add(-1)
	return false
}

// kick hands s back to the pumps if it is parked: its client left, and a
// pump ends it.
func (b *Broker) kick(s *stream) {
	b.parkMu.Lock()
	i := s.parkAt
	if i < 0 {
		b.parkMu.Unlock()
		return // on a pump, being dispatched, or ended: it sees Done
	}
	last := b.parked[len(b.parked)-1]
	b.parked[i], last.parkAt = last, i
	b.parked[len(b.parked)-1] = nil
	b.parked = b.parked[:len(b.parked)-1]
	s.parkAt = -1
	b.nparked.Add(-1)
	b.parkMu.Unlock()
	b.pumps.give(s)
}

// notify wakes every stream waiting for something new to send: those
// waiting on b.wake, and the parked ones, which a goroutine of their own
// hands to the pumps. b.mu is held, or the change it tells of is otherwise
// ordered before it.
func (b *Broker) notify() {
	b.wake.notify()
	if b.nparked.Load() > 0 && !b.dispatching.Swap(true) {
		go b.dispatch()
	}
}

// dispatch hands every parked stream to the pumps, and writes the first
// itself, as a pump.
func (b *Broker) dispatch() {
	b.parkMu.Lock()
	b.dispatching.Store(false) // before the take: a later notify dispatches what parks after it
	list := b.parked
	b.parked, b.spare = b.spare, nil
	for _, s := range list {
		s.parkAt = -1
	}
	b.nparked.Add(-int64(len(list)))
	b.parkMu.Unlock()
	if len(list) == 0 {
		return
	}
	first := list[0]
	for _, s := range list[1:] {
		b.pumps.give(s)
	}
	clear(list)
	b.parkMu.Lock()
	if b.spare == nil {
		b.spare = list[:0]
	}
	b.parkMu.Unlock()
	b.pumps.pump(first)
}
