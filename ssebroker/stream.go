package ssebroker

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net/http"
	"os"
	"runtime/debug"
	"sync"

	"github.com/lightsse/sse/internal/wire"
)

// maxBatch is how many bytes a stream gathers for one write; bigEvent is the
// size from which an event is written from the history's own bytes rather
// than copied into a batch, so that streams stuck in a write hold no copies
// of large events.
const (
	maxBatch = 32 << 10
	bigEvent = maxBatch / 2
)

var batchPool = sync.Pool{New: func() any { b := make([]byte, 0, maxBatch); return &b }}

// A stream is one client's position in a Broker's history. The Broker's
// pumps write it (see pumpPool for why), and between their turns it waits
// parked in the Broker (see park.go). Its handler goroutine waits in serve
// until it ends; a detached stream has none (see detach.go).
type stream struct {
	b   *Broker
	wr  *wire.Stream
	ctx context.Context // bounds calls to the Log on its behalf: the request's, or none once detached

	lastID    string      // the request's Last-Event-ID, as sse.LastEventID reads it
	badLastID bool        // the request has a Last-Event-ID that LastEventID refuses
	detached  bool        // its connection left net/http: pumps end it (see detach.go)
	parkAt    int         // its index in the Broker's parked streams, -1, or ended
	errorLog  *log.Logger // detached: where a panic on a pump is reported (nil: package log)

	mode   mode   // where it reads: which of ring and epoch says where cursor is
	ring   *ring  // inRing: the history it reads
	epoch  string // inLog: the epoch of the Log it reads
	cursor uint64 // offset of the next event to send, in ring or in epoch
	start  *ring  // the history when the stream's start was fixed; nil before
	from   uint64 // start's head then: the stream sends every event after it
	beats  uint64 // the Broker's heartbeats this stream has sent, or skipped

	slowReads int // reads of the Log in a row that ran out of time

	over chan struct{} // not detached: closed when the stream has ended, with out
	out  outcome

	opened   bool // the headers are written
	sent     bool // an event has been sent: a reset is no longer possible at the start
	caughtUp bool // the stream has reached the newest event once
	resumed  bool // its resume is counted, or it is not a resume
}

// A mode is where a stream reads its next event.
type mode uint8

const (
	unplaced mode = iota // not yet known: it waits for the history (with a Log, its head)
	inRing               // in the Broker's ring
	inLog                // in the Log: older than the ring holds, or of an epoch the ring is not
)

// serve has the pumps write the stream, and waits until it has ended: it
// returns why, and only when no pump holds the stream, so nothing writes
// to the response after the handler returns. When the request ends first
// (its client left), it hands the stream to a pump to end it, if parked.
func (s *stream) serve() endReason {
	s.over = make(chan struct{})
	s.b.pumps.give(s)
	select {
	case <-s.over:
	case <-s.wr.Done():
		s.b.kick(s)
		<-s.over
	}
	if f := s.out.fault; f != nil {
		f.raise() // where net/http recovers it, as from any handler
	}
	return s.out.end
}

// turn is a pump's turn with a stream: it writes the stream until it
// catches up, then parks it, or until it ends, and ends it.
func (s *stream) turn() {
	for {
		out := s.writeOnce()
		if !out.wait {
			s.finish(out)
			return
		}
		if s.b.park(s, out.wakes) {
			return
		}
		// Notified as it parked, or its client left: another round.
	}
}

// writeOnce is writeAll, or the end of a stream whose request has ended,
// with a panic or runtime.Goexit of the pump's turned into an outcome, for
// the handler to raise (a detached stream, to log). On a Goexit, it ends the
// stream itself, for the pump goes no further.
func (s *stream) writeOnce() (out outcome) {
	completed := false
	defer func() {
		if !completed {
			out = outcome{end: endFailed, fault: &fault{panicked: pumpPanic(recover())}}
			s.finish(out) // a panic's outcome comes back to turn, which finds it done
		}
	}()
	select {
	case <-s.wr.Done():
		if !s.opened {
			// Still answered as a stream: a client whose request ended
			// before its stream opened (a proxy that cut it, say) sees
			// what it asked for, empty, and comes back.
			s.opened = true
			s.wr.WriteHeader()
		}
		out = outcome{end: endClientLeft}
	default:
		out = s.writeAll()
	}
	completed = true
	return out
}

// finish ends the stream with out, once: a detached stream on the pump
// (see endDetached), any other on its handler, which serve wakes.
func (s *stream) finish(out outcome) {
	s.b.parkMu.Lock() // kick reads parkAt, from the request's goroutine or the connection's
	done := s.parkAt == ended
	s.parkAt = ended
	s.b.parkMu.Unlock()
	switch {
	case done:
	case s.detached:
		s.endDetached(out)
	default:
		s.out = out
		close(s.over)
	}
}

// pumpPanic returns what to panic with on the handler's goroutine for p, a
// pump's panic: an error wrapping p with the pump's stack, or
// http.ErrAbortHandler unchanged, which net/http treats as a quiet abort. It
// returns nil for nil, which is a runtime.Goexit.
func pumpPanic(p any) any {
	if p == nil || p == http.ErrAbortHandler {
		return p
	}
	err, ok := p.(error)
	if !ok {
		err = fmt.Errorf("%v", p)
	}
	return fmt.Errorf("sse: panic while writing a stream: %w\n%s", err, debug.Stack())
}

// A step is what a stream's read found: bytes to write, then whether to go
// on, wait, or end.
type step struct {
	batch []byte    // whole events, or lines of the stream's own, copied
	big   []byte    // then one large event, from the history's own bytes
	wait  bool      // nothing more to send now: wait for a notify
	wakes uint64    // with wait: the Broker's notifications when it looked
	end   endReason // the stream ends once batch is written
}

// writeAll is turn's work: it reads and writes until the stream has caught up
// or ended.
func (s *stream) writeAll() outcome {
	for {
		bp := batchPool.Get().(*[]byte)
		dst := (*bp)[:0]
		if !s.opened {
			dst = wire.AppendRetry(dst, s.b.opts.Retry)
		}
		own := len(dst) // the opening retry, not yet written
		st := s.next(dst)
		var err error
		switch {
		case !s.opened && (s.mode != unplaced || len(st.batch) > own || len(st.big) > 0 || st.end != endNone):
			// The headers go out once the stream knows where it starts (or
			// has something to say before: a heartbeat), even with nothing
			// else to send, so that the client's open event fires: an event
			// published after open reaches it.
			s.opened = true
			s.wr.WriteHeader()
			fallthrough
		case s.opened && (len(st.batch) > 0 || len(st.big) > 0):
			if err = s.wr.Write(st.batch, st.big); err == nil {
				s.b.counts.bytes.Add(uint64(len(st.batch) + len(st.big)))
			}
		}
		if cap(st.batch) <= 2*maxBatch {
			*bp = st.batch[:0]
			batchPool.Put(bp)
		}
		switch {
		case err != nil:
			return outcome{end: writeEnd(err)}
		case st.end != endNone:
			return outcome{end: st.end}
		case st.wait:
			return outcome{wait: true, wakes: st.wakes}
		}
	}
}

// writeEnd returns why a failed write ended a stream.
func writeEnd(err error) endReason {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return endWriteTimeout
	}
	return endClientLeft // sse.ErrClosed (the request ended), or a broken connection
}

// next appends to dst what the stream has to send now, from its cursor on,
// and advances the cursor: events (up to maxBatch bytes, or one large event),
// a heartbeat, or the closing retry. It takes no lock. With nothing to send
// it returns wait, with the Broker's notifications as it looked (the stream
// parks only while no other has come), or, if something came in as it
// looked, nothing at all, and the caller reads again.
func (s *stream) next(dst []byte) step {
	switch s.mode {
	case unplaced:
		return s.place(dst)
	case inLog:
		return s.readLog(dst)
	}
	b, r := s.b, s.ring
	closed := b.closed.Load() // before head: once closed, head moves no more
	if head := r.head.Load(); s.cursor <= head {
		tail := r.tail.Load()
		switch {
		case s.cursor < tail:
			return s.leaveRing(dst)
		case s.caughtUp && r.lagging(s.cursor, head, max(b.historyLen/2, 1), max(b.historyBytes/2, 1)):
			return step{batch: dst, end: endFellBehind}
		}
		return s.gather(dst, head)
	}
	if cur := b.hist.Load(); cur != r && cur != nil {
		// The Log's history was replaced: say so, then go on with every event
		// of the new one.
		b.counts.resets[resetNewHistory].Add(1)
		return s.resetTo(dst, cur, cur.tail.Load()-1, s.lastSent(r))
	}
	if closed {
		if b.log != nil {
			// Events published before Close may still be on their way back
			// from the Log: the first stream here reads them in.
			if wakes, wait := b.fillAtClose(r); wait {
				return step{batch: dst, wait: true, wakes: wakes}
			}
			if r.head.Load() >= s.cursor {
				return step{batch: dst} // filled: read again
			}
		}
		return step{batch: wire.AppendRetry(dst, b.jitter()), end: endClosed}
	}
	if beats := b.beats.Load(); s.beats != beats {
		s.beats = beats
		b.counts.heartbeats.Add(1)
		return step{batch: append(dst, wire.Heartbeat...)}
	}
	wakes := b.wakes.Load()
	if r.head.Load() >= s.cursor || b.beats.Load() != s.beats || b.closed.Load() || b.hist.Load() != r {
		return step{batch: dst} // came in as we looked: read again
	}
	s.caughtUp = true
	return step{batch: dst, wait: true, wakes: wakes}
}

// gather appends the events from the cursor to head, up to maxBatch bytes; or,
// when the next is a large one, returns it to be written from the ring.
func (s *stream) gather(dst []byte, head uint64) step {
	r, n := s.ring, 0
	for ; s.cursor <= head; s.cursor++ {
		e := r.get(s.cursor)
		if e == nil { // dropped as we read: send what we have, then see
			if n > 0 {
				break
			}
			return s.leaveRing(dst)
		}
		if len(e.wire) >= bigEvent {
			if n == 0 {
				s.cursor++
				s.sent = true
				return step{batch: dst, big: e.wire}
			}
			break
		}
		if n > 0 && len(dst)+len(e.wire) > maxBatch {
			break
		}
		dst = append(dst, e.wire...)
		n++
	}
	s.sent = true
	s.beats = s.b.beats.Load() // the events just read are traffic enough
	return step{batch: dst}
}

// leaveRing handles a stream whose next event the ring no longer holds: with
// a Log it reads on from the Log; without, it has fallen behind for good.
func (s *stream) leaveRing(dst []byte) step {
	if s.b.log == nil {
		return step{batch: dst, end: endFellBehind}
	}
	s.toLog(s.ring.epoch, s.cursor)
	return s.readLog(dst)
}

// place finds where in the history a new stream starts, from its request's
// Last-Event-ID, and appends what it sends first: nothing for a client that
// resumes, an id line alone for a new client, a ResetEvent for one that
// cannot resume. With a Log it may wait for the Log's head; a resume from
// older than the ring, or from an epoch it is not, goes on in the Log.
func (s *stream) place(dst []byte) step {
	b := s.b
	r := b.hist.Load()
	if b.closed.Load() && (r == nil || s.start != r) {
		// Counted in no history that is still here, it has missed nothing.
		// One that was (Subscribers counts it) gets what was published
		// before Close, however late its pump comes: next sends it, then
		// ends the stream.
		return step{batch: wire.AppendRetry(dst, b.jitter()), end: endClosed}
	}
	if r == nil { // with a Log whose head is not known yet
		return s.idle(dst, nil)
	}
	if s.start == nil {
		s.fix(r)
	}
	lastID := s.lastID
	if lastID == "" {
		switch {
		case s.badLastID:
			// A header LastEventID refuses (too long, not UTF-8) is an id we
			// cannot resume from, not the absence of one.
			b.counts.resets[resetUnknownID].Add(1)
			return s.resetTo(dst, r, s.startIn(r), "")
		case b.fromStart:
			s.resumed = true // a start, not a resume: nothing to count
			return s.placeAt(dst, r, Position{r.epoch, 0}, "")
		}
		head := s.startIn(r)
		switch {
		case s.opened:
			// The client saw its stream open (a heartbeat went out) before
			// the Log's history was known: events published in between,
			// elsewhere, are behind this point, so say so.
			b.counts.resets[resetLogFailed].Add(1)
			return s.resetTo(dst, r, head, "")
		case s.start != r:
			// The history the stream was counted in is gone (the feed
			// stopped and started again, or the Log's history changed):
			// events published since may be behind r's head.
			b.counts.resets[resetNewHistory].Add(1)
			return s.resetTo(dst, r, head, "")
		}
		s.toRing(r, head+1)
		return step{batch: wire.AppendPlace(dst, r.epoch, head)}
	}
	if p, ok := parsePosition(lastID); ok {
		return s.placeAt(dst, r, p, lastID)
	}
	ref, ok := r.lookup(lastID)
	if ok && ref.count == 1 {
		s.countResume(fromHistory)
		s.toRing(r, ref.offset+1)
		return step{batch: dst}
	}
	b.counts.resets[resetUnknownID].Add(1)
	return s.resetTo(dst, r, s.startIn(r), lastID)
}

// toRing has the stream read r from offset cursor on.
func (s *stream) toRing(r *ring, cursor uint64) {
	s.mode, s.ring, s.epoch, s.cursor = inRing, r, "", cursor
}

// toLog has the stream read the Log's epoch from offset cursor on.
func (s *stream) toLog(epoch string, cursor uint64) {
	s.mode, s.ring, s.epoch, s.cursor = inLog, nil, epoch, cursor
}

// placeAt places a new stream after p, a position that lastID named (or, from
// the start, that no id named): in r when r holds what follows, else in the
// Log, else after a ResetEvent.
func (s *stream) placeAt(dst []byte, r *ring, p Position, lastID string) step {
	b := s.b
	head, tail := r.head.Load(), r.tail.Load()
	if p.Epoch == r.epoch && r.contests(p.Offset) {
		// An earlier history of this epoch gave the id to another event.
		b.counts.resets[resetUnknownID].Add(1)
		return s.resetTo(dst, r, s.startIn(r), lastID)
	}
	if p.Epoch == r.epoch && p.Offset <= head && p.Offset+1 >= tail {
		s.countResume(fromHistory)
		s.toRing(r, p.Offset+1)
		return step{batch: dst}
	}
	if b.log != nil {
		// Read from the Log next time round, once the headers are out:
		// the Log may be slow, and the client should see its stream open.
		s.toLog(p.Epoch, p.Offset+1)
		return step{batch: dst}
	}
	cause := resetUnknownID
	if p.Epoch == r.epoch && p.Offset < head {
		cause = resetTooOld
	}
	b.counts.resets[cause].Add(1)
	return s.resetTo(dst, r, s.startIn(r), lastID)
}

// fix fixes the stream's start at r's head and counts the stream in
// Subscribers: every event published from now on is at a later offset, in r
// or in a history that replaces it (whose streams get a ResetEvent).
func (s *stream) fix(r *ring) {
	s.start, s.from = r, r.head.Load()
	s.b.subs.Add(1)
}

// startIn returns the offset after which a stream that does not resume
// starts in r: its fixed start, or r's head if r replaced that history.
func (s *stream) startIn(r *ring) uint64 {
	if r == s.start {
		return s.from
	}
	return r.head.Load()
}

// countResume counts the stream's resume, once, as beginning in from.
func (s *stream) countResume(from int) {
	if !s.resumed {
		s.resumed = true
		s.b.counts.resumed[from].Add(1)
	}
}

// lastSent returns the id of the last event the stream sent from r, which
// it read up to its cursor.
func (s *stream) lastSent(r *ring) string {
	if e := r.get(s.cursor - 1); e != nil && e.id != "" {
		return e.id
	}
	return Position{r.epoch, s.cursor - 1}.String()
}

// resetTo appends a ResetEvent and places the stream in r after offset at:
// after is the id after which the client lost events.
func (s *stream) resetTo(dst []byte, r *ring, at uint64, after string) step {
	s.toRing(r, at+1)
	s.sent = true
	return step{batch: wire.AppendReset(dst, r.epoch, at, after)}
}
