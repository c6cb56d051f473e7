package ssebroker

import (
	"context"
	"errors"

	"github.com/lightsse/sse"
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
	b := s.b
	if r := b.hist.Load(); r != nil && r.epoch == s.epoch && s.cursor >= r.tail.Load() && s.cursor <= r.head.Load()+1 {
		s.ring = r // the ring has the rest
		return step{batch: dst}
	}
	after := Position{s.epoch, s.cursor - 1}
	ctx, cancel := s.logContext()
	wires, head, err := b.log.ReadAfter(ctx, after, maxBatch)
	cancel()
	if err != nil {
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
				// Asked again and again, the Log never answers in time:
				// what it holds is lost to this stream.
				s.slowReads = 0
				return s.logFailed(dst, Position{}, after)
			}
		}
		// The Log cannot be read now: the stream stays open, with its
		// heartbeats, and asks again when something happens (an event, a
		// heartbeat, the feed coming back), to go on with no gap.
		return s.idle(dst, b.hist.Load())
	}
	s.slowReads = 0
	if err := checkRead(after, wires, head); err != nil {
		b.counts.logErrors.Add(1)
		return s.logFailed(dst, head, after)
	}
	switch {
	case len(wires) > 0:
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
	case head.Epoch == after.Epoch && head.Offset == after.Offset:
		// Nothing after the stream's position: it goes on in the ring, once
		// the ring has its epoch (the Log's feed may lag the Log).
		r := b.hist.Load()
		if r != nil && r.epoch == s.epoch {
			if s.cursor < r.tail.Load() {
				// The ring, which the Log fed, has dropped events that the Log
				// says it does not have: it cannot be right.
				b.counts.logErrors.Add(1)
				return s.logFailed(dst, head, after)
			}
			if !s.sent {
				s.countResume(fromHistory)
			}
			s.ring = r
			return step{batch: dst}
		}
		return s.idle(dst, r)
	}
	// The Log holds neither the event after the stream's position nor that
	// position as its head: the events are gone, or the id was made up.
	if s.sent {
		return step{batch: dst, end: endFellBehind}
	}
	cause := resetTooOld
	if head.Epoch != after.Epoch || after.Offset > head.Offset {
		cause = resetUnknownID
	}
	b.counts.resets[cause].Add(1)
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
	wake := b.wake.wait()
	if b.closed.Load() || b.beats.Load() != s.beats || b.hist.Load() != seen {
		return step{batch: dst} // came in as we looked: read again
	}
	return step{batch: dst, wake: wake}
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
	from := sse.LastEventID(s.req)
	if r := s.b.hist.Load(); r != nil {
		return s.resetTo(dst, r, s.startIn(r), from)
	}
	if !validEpoch(head.Epoch) { // the Log failed: no position to give
		head = after
	}
	s.epoch, s.cursor, s.sent = head.Epoch, head.Offset+1, true
	return step{batch: wire.AppendReset(dst, head.Epoch, head.Offset, from)}
}
