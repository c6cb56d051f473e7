package ssebroker

import (
	"context"
	"errors"

	"github.com/lightsse/sse/internal/wire"
)

// maxSlowReads is how many reads in a row a stream lets the Log run out of
// time before it gives up on what the Log holds (7 heartbeat periods in all).
const maxSlowReads = 3

// readLog reads the events after the stream's position from the Log, for a
// stream whose next event is older than the ring holds, or from an epoch
// this Broker has not seen. Once the Log has nothing more, the stream joins
// the ring. What the Log cannot give is a ResetEvent: at once if the stream
// has sent nothing, else when its client reconnects (the stream ends).
func (s *stream) readLog(dst []byte) step {
	if r := s.b.hist.Load(); r != nil && r.epoch == s.epoch && s.cursor >= r.tail.Load() && s.cursor <= r.head.Load()+1 {
		s.toRing(r, s.cursor) // the ring has the rest
		return step{batch: dst}
	}
	after := Position{s.epoch, s.cursor - 1}
	ctx, cancel := s.logContext()
	wires, head, err := s.b.log.ReadAfter(ctx, after, maxBatch)
	cancel()
	if err != nil {
		return s.readFailed(dst, err, after)
	}
	s.slowReads = 0
	switch {
	case checkRead(after, wires, head) != nil:
		s.b.counts.logErrors.Add(1)
		return s.logFailed(dst, head, after)
	case len(wires) > 0:
		return s.sendRead(dst, wires)
	case head == after:
		return s.caughtUpInLog(dst, head, after)
	}
	return s.lostInLog(dst, head, after)
}

// readFailed handles a read of the Log that failed: the stream ends if its
// client left or the Broker closed; else it waits, with its heartbeats, and
// asks again when something happens (an event, a heartbeat, the feed coming
// back), to go on with no gap. A Log that runs out of time maxSlowReads
// times in a row has lost what it holds for this stream.
func (s *stream) readFailed(dst []byte, err error, after Position) step {
	b := s.b
	select {
	case <-s.wr.Done():
		return step{batch: dst, end: endClientLeft}
	default:
	}
	if b.closed.Load() {
		return step{batch: wire.AppendRetry(dst, b.jitter()), end: endClosed}
	}
	b.counts.logErrors.Add(1)
	if errors.Is(err, context.DeadlineExceeded) {
		if s.slowReads++; s.slowReads >= maxSlowReads {
			s.slowReads = 0
			return s.logFailed(dst, Position{}, after)
		}
	}
	return s.idle(dst, b.hist.Load())
}

// sendRead appends wires, the events the Log holds from the stream's cursor
// on, each with its id line unless its publisher gave it an ID.
func (s *stream) sendRead(dst []byte, wires [][]byte) step {
	if !s.sent {
		s.countResume(fromLog)
	}
	for i, w := range wires {
		if _, own := wire.OwnID(w); !own {
			dst = wire.AppendIDLine(dst, s.epoch, s.cursor+uint64(i))
		}
		dst = append(dst, w...)
	}
	s.cursor += uint64(len(wires))
	s.sent = true
	return step{batch: dst}
}

// caughtUpInLog goes on in the ring once the stream has read the Log up to
// its head, as soon as the ring has the Log's epoch (the feed may lag the
// Log); until then it waits.
func (s *stream) caughtUpInLog(dst []byte, head, after Position) step {
	r := s.b.hist.Load()
	if r == nil || r.epoch != s.epoch {
		return s.idle(dst, r)
	}
	if s.cursor < r.tail.Load() {
		// The ring, which the Log fed, has dropped events that the Log
		// says it does not have: it cannot be right.
		s.b.counts.logErrors.Add(1)
		return s.logFailed(dst, head, after)
	}
	if !s.sent {
		s.countResume(fromHistory)
	}
	s.toRing(r, s.cursor)
	return step{batch: dst}
}

// lostInLog handles a Log that holds neither the event after the stream's
// position nor that position as its head: the events are gone, or the id
// was made up. A stream that has sent events ends (its client reconnects and
// is told then); one that has not gets a ResetEvent.
func (s *stream) lostInLog(dst []byte, head, after Position) step {
	if s.sent {
		return step{batch: dst, end: endFellBehind}
	}
	cause := resetTooOld
	if head.Epoch != after.Epoch || after.Offset > head.Offset {
		cause = resetUnknownID
	}
	s.b.counts.resets[cause].Add(1)
	return s.resetToLog(dst, head, after)
}

// idle has a stream that is not in the ring wait for anything new: an
// event, a heartbeat (which it sends), a history other than seen, or Close.
func (s *stream) idle(dst []byte, seen *ring) step {
	b := s.b
	if beats := b.beats.Load(); s.beats != beats {
		s.beats = beats
		b.counts.heartbeats.Add(1)
		dst = append(dst, wire.Heartbeat...)
	}
	wakes := b.wakes.Load()
	if b.closed.Load() || b.beats.Load() != s.beats || b.hist.Load() != seen {
		return step{batch: dst} // came in as we looked: read again
	}
	return step{batch: dst, wait: true, wakes: wakes}
}

// logFailed ends a stream that the Log failed, or resets it if it has sent
// nothing yet.
func (s *stream) logFailed(dst []byte, head, after Position) step {
	if s.sent {
		return step{batch: dst, end: endLogFailed}
	}
	s.b.counts.resets[resetLogFailed].Add(1)
	return s.resetToLog(dst, head, after)
}

// resetToLog resets a stream that has sent nothing, to the ring's newest
// event, or, before the ring is known, to the Log's head (the stream then
// joins the ring when it comes).
func (s *stream) resetToLog(dst []byte, head Position, after Position) step {
	from := s.lastID
	if r := s.b.hist.Load(); r != nil {
		return s.resetTo(dst, r, s.startIn(r), from)
	}
	if !validEpoch(head.Epoch) { // the Log failed: no position to give
		head = after
	}
	s.toLog(head.Epoch, head.Offset+1)
	s.sent = true
	return step{batch: wire.AppendReset(dst, head.Epoch, head.Offset, from)}
}
