package ssebroker

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lightsse/sse"
	"github.com/lightsse/sse/internal/wire"
)

// A Log is an ordered history of events kept outside the Broker: Redis
// Streams, a table, a file. With a Log, the Broker numbers nothing itself.
// Publish appends each event to the Log, which gives it its Position; the
// Log hands every event back, from whichever process appended it, through
// Follow; and the Log serves replay older than the Broker's in-memory
// history through ReadAfter. Brokers in several processes that share one Log
// serve one stream: the same events, in the same order, with the same ids.
// Within one process, a Log that persists its events lets clients resume
// across restarts, from a history longer than memory holds.
//
// A wire form, in every method, is one whole event as [sse.Event.AppendText]
// encodes it. It begins with an id line only when the publisher set its own
// sse.Event.ID; otherwise the Broker writes "id: " and the event's Position
// before it. The Log keeps the bytes as they are.
//
// The Broker checks what a Log hands it: a Position whose epoch has another
// shape, a wire form that is not one event, or events past the head that
// ReadAfter reports count as errors of the Log (Stats.Log.Errors), and a
// client is told of what they cost it with a ResetEvent, never left with a
// silent gap. What Follow delivers past a gap is checked against ReadAfter:
// an event past the Log's head, or of an epoch the Log does not have, is
// dropped, and a history the Log no longer holds goes on from the Log's own
// head, never from the feed's word alone. The event at the offset right
// after the Broker's newest is taken as Follow hands it: a Log whose feed
// others can write to (a Pub/Sub channel) must check what it hands over, as
// redisstream reads its events back from the stream. An event at an offset
// the Broker has sent, with other bytes, starts a new history, and the ids
// it had given from there resume nothing; still, a Log that gives an offset
// to a second event should start a new epoch.
//
// Its methods must be safe for concurrent use, and must return, with an
// error, when their context ends.
type Log interface {
	// Append adds wire to the log as its newest event and returns the
	// event's Position. An error means the event may not be in the log (a
	// timeout, say, leaves that unknown); Publish returns it.
	Append(ctx context.Context, wire []byte) (Position, error)

	// ReadAfter returns the wire forms of the events that follow after, in
	// order and without a gap: the events at after.Offset+1, +2, and so on
	// in after.Epoch, stopping once they hold at least limit bytes. It also
	// returns the log's head, the Position of its newest event (Offset 0 if
	// the current epoch has none yet).
	//
	// It returns no events when after is the head, when after.Epoch is not
	// the log's current epoch, and when the log no longer holds the event at
	// after.Offset+1 (trimmed, or lost): the Broker then tells the client so
	// with a ResetEvent. An error means the log could not be read.
	ReadAfter(ctx context.Context, after Position, limit int) (wires [][]byte, head Position, err error)

	// Follow has the log call deliver with the events appended from now on,
	// from any process, in log order, until stop is called. It returns at
	// once; delivery runs in the background. Its first call, once the log
	// can be reached, is deliver(head, nil): the log's newest event is at
	// head. After any break in the feed (a lost connection, say) it calls
	// deliver(head, nil) again. It may skip events or repeat ones it
	// delivered before: the Broker fills a gap with ReadAfter and ignores
	// repeats. Calls to deliver do not overlap, and deliver may call
	// ReadAfter. The Broker keeps wire and never modifies it.
	//
	// stop returns once no call to deliver is running, and none is made
	// after it; the log then runs no goroutine for this Follow. (So deliver
	// never calls stop.)
	//
	// When the head it hands over has a new epoch, the Broker starts its
	// history there and sends its streams a ResetEvent: events of the new
	// epoch appended before the feed saw it are behind that point, so
	// clients reload rather than miss them in silence.
	Follow(deliver func(pos Position, wire []byte)) (stop func())
}

// syncFeed follows the Log while the Broker has open streams, and stops
// following it when it has none: a Broker nobody listens to costs the Log
// nothing. Its history goes with the feed, since it would go stale.
func (b *Broker) syncFeed() {
	lg := b.lg
	lg.feedMu.Lock()
	defer lg.feedMu.Unlock()
	switch want := b.open.Load() > 0; {
	case want && lg.stopFeed == nil:
		// The feed's calls to the Log end with it: stop waits for a
		// delivery, and a delivery may be filling a gap.
		ctx, cancel := context.WithCancel(lg.ctx)
		stop := b.log.Follow(func(pos Position, w []byte) { b.deliver(ctx, pos, w) })
		lg.stopFeed = func() { cancel(); stop() }
	case !want && lg.stopFeed != nil:
		lg.stopFeed()
		lg.stopFeed = nil
		b.mu.Lock()
		b.hist.Store(nil)
		b.mu.Unlock()
	}
}

// fillBatch is how many bytes of events the feed reads from the Log at once
// to fill a gap.
const fillBatch = 1 << 20

// deliver takes what the Log's Follow hands the Broker: an event at pos, or,
// with w nil, the Log's head. It puts events in the history in the Log's
// order, fills a gap from the Log before it goes on, and starts a new history
// (its streams get a ResetEvent) for a new epoch, a head behind its own, a
// gap the Log no longer holds, or an event that differs from the one it
// holds at the same offset: two different events never go out under one id.
// If the Log fails while it fills a gap, it drops the delivery: the next one
// finds the gap again. ctx ends with the feed.
//
// Past a gap the feed is a hint, never the truth: an event past the Log's
// own head, an event of an epoch the Log does not have, or a first delivery
// that is not a head is dropped (and counted as a Log error), and an event
// that is not one encoded event is read again from the Log (see Log).
func (b *Broker) deliver(ctx context.Context, pos Position, w []byte) {
	if b.closed.Load() {
		return
	}
	if !validEpoch(pos.Epoch) || (w != nil && pos.Offset == 0) {
		b.counts.logErrors.Add(1)
		return
	}
	hint := false // an event the Log holds at pos, to be read from the Log
	if w != nil && !wire.OneEvent(w) {
		b.counts.logErrors.Add(1)
		w, hint = nil, true
	}
	last := pos.Offset // the Log holds every event up to last before this one
	if w != nil {
		last--
	}
	event := w != nil || hint
	r := b.hist.Load()
	switch {
	case r == nil && event:
		b.counts.logErrors.Add(1) // Follow's first call is a head
		return
	case r == nil:
		r = b.replace(pos.Epoch, last, 0)
	case r.epoch != pos.Epoch:
		if event && !b.confirmEpoch(ctx, pos) {
			return
		}
		b.counts.newHistories.Add(1)
		r = b.replace(pos.Epoch, last, 0)
	case !event && last < r.head.Load():
		b.counts.newHistories.Add(1)
		r = b.replace(pos.Epoch, last, 0)
	case last > r.head.Load():
		switch out, at := b.fill(ctx, r, last); out {
		case fillFailed:
			return
		case fillLost:
			b.counts.newHistories.Add(1)
			r = b.replace(pos.Epoch, at, 0)
		}
	}
	if r == nil || w == nil {
		return // closed, or a head
	}
	if head := r.head.Load(); pos.Offset <= head {
		if b.differs(r, pos, w) {
			// The Log numbered another event at an offset this history
			// has sent (a master that lost its writes, say): go on from the
			// Log's, after a ResetEvent; an id this history gave from there
			// to its head names another event now, and resumes nothing.
			b.counts.newHistories.Add(1)
			r = b.replace(pos.Epoch, pos.Offset-1, head)
		} else {
			return // a repeat
		}
	}
	if r == nil || pos.Offset != r.head.Load()+1 {
		return
	}
	w, id := numbered(pos, w)
	b.mu.Lock()
	if !b.closed.Load() {
		b.pushLocked(r, w, id)
	}
	b.mu.Unlock()
}

// differs reports whether r holds, at pos, an event other than w.
func (b *Broker) differs(r *ring, pos Position, w []byte) bool {
	e := r.get(pos.Offset)
	if e == nil {
		return false // no longer held: nothing to compare
	}
	kept, _ := numbered(pos, w)
	return !bytes.Equal(e.wire, kept)
}

// confirmEpoch reports whether the Log's history holds the event at pos, of
// an epoch this Broker has not seen, as the feed says: a feed whose event
// alone says so could be a peer that can publish but not write the Log.
func (b *Broker) confirmEpoch(ctx context.Context, pos Position) bool {
	_, head, err := b.log.ReadAfter(ctx, Position{pos.Epoch, 0}, 1)
	if err != nil || head.Epoch != pos.Epoch || pos.Offset > head.Offset {
		if ctx.Err() == nil {
			b.counts.logErrors.Add(1)
		}
		return false
	}
	return true
}

// numbered returns the wire form to keep for the event at pos, and the ID
// its publisher gave it: an event without one gets its position as its id.
func numbered(pos Position, w []byte) ([]byte, string) {
	if id, own := wire.OwnID(w); own {
		return w, id
	}
	line := wire.IDLineLen(len(pos.Epoch))
	return append(wire.AppendIDLine(make([]byte, 0, line+len(w)), pos.Epoch, pos.Offset), w...), ""
}

// replace starts a new history at head, the position before its first event.
// It returns nil, and changes nothing, once the Broker is closed: streams
// then end with what they have.
func (b *Broker) replace(epoch string, head, contested uint64) *ring {
	r := b.newRing(epoch, head)
	r.contested = contested
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed.Load() {
		return nil
	}
	b.hist.Store(r)
	b.notify()
	return r
}

// What fill did.
const (
	fillDone   = iota // the gap is filled
	fillFailed        // the Log failed, the feed lied, or the feed or the Broker ended
	fillLost          // the Log no longer holds the events
)

// fill reads the events after r's head up to last from the Log into r. When
// the Log has lost them (fillLost), it also returns the offset after which a
// new history goes on: the Log's own word, never the feed's alone.
func (b *Broker) fill(ctx context.Context, r *ring, last uint64) (int, uint64) {
	for {
		after := Position{r.epoch, r.head.Load()}
		if after.Offset >= last {
			b.counts.gapsFilled.Add(1)
			return fillDone, 0
		}
		wires, head, err := b.log.ReadAfter(ctx, after, fillBatch)
		switch {
		case err != nil:
			if ctx.Err() == nil {
				b.counts.logErrors.Add(1)
			}
			return fillFailed, 0
		case head.Epoch != after.Epoch:
			// The Log is on another history, which its feed's head brings.
			if !validEpoch(head.Epoch) {
				b.counts.logErrors.Add(1)
			}
			return fillFailed, 0
		case len(wires) == 0 && head.Offset < last:
			// The feed said the Log holds events past its own head.
			b.counts.logErrors.Add(1)
			return fillFailed, 0
		case checkRead(after, wires, head) != nil:
			// The Log answers what cannot be right (a damaged event, say),
			// and will answer it again: asking again would stall every
			// stream for good, so the history goes on past it.
			b.counts.logErrors.Add(1)
			return fillLost, max(after.Offset, min(last, head.Offset))
		case len(wires) == 0:
			return fillLost, head.Offset // trimmed: it goes on from the Log's head
		}
		wires = wires[:min(uint64(len(wires)), last-after.Offset)]
		b.mu.Lock()
		if b.closed.Load() {
			b.mu.Unlock()
			return fillFailed, 0
		}
		for i, w := range wires {
			w, id := numbered(Position{r.epoch, after.Offset + 1 + uint64(i)}, w)
			b.pushLocked(r, w, id)
		}
		b.mu.Unlock()
		b.counts.eventsFilled.Add(uint64(len(wires)))
	}
}

// fillAtClose reads into r, the history of a closed Broker, the events the
// Log holds past r's head: events published before Close whose delivery the
// feed had not made. The first stream to ask does it, bounded by a heartbeat
// period, and gets wait false; others get wait true, with the Broker's
// notifications as they looked, until it is done (its end notifies).
func (b *Broker) fillAtClose(r *ring) (wakes uint64, wait bool) {
	c := &b.lg.closing
	if !c.started.CompareAndSwap(false, true) {
		wakes = b.wakes.Load() // before done: the notify at its end comes after
		select {
		case <-c.done:
			return 0, false
		default:
			return wakes, true
		}
	}
	defer func() {
		close(c.done)
		b.notify() // for the streams parked waiting for the fill
	}()
	ctx, cancel := context.WithTimeout(context.Background(), b.logLimit())
	defer cancel()
	until := uint64(0) // the Log's head when first read: later events came after Close
	for {
		after := Position{r.epoch, r.head.Load()}
		wires, head, err := b.log.ReadAfter(ctx, after, fillBatch)
		if err != nil || head.Epoch != r.epoch || checkRead(after, wires, head) != nil || len(wires) == 0 {
			return 0, false
		}
		if until == 0 {
			until = head.Offset
		}
		wires = wires[:min(uint64(len(wires)), until-min(until, after.Offset))]
		b.mu.Lock()
		for i, w := range wires {
			w, id := numbered(Position{r.epoch, after.Offset + 1 + uint64(i)}, w)
			b.pushLocked(r, w, id)
		}
		b.mu.Unlock()
		if len(wires) == 0 || r.head.Load() >= until {
			return 0, false
		}
	}
}

// A logSide is what a Broker with a Log keeps for it, besides the Log: a
// Broker without one (most per-user Brokers) has none of it.
type logSide struct {
	ctx    context.Context // ends at Close: bounds every call to the Log
	cancel context.CancelFunc

	closing closeFill // reading in, at Close, what the feed had not delivered

	feedMu   sync.Mutex // serializes starting and stopping the Log's Follow
	stopFeed func()     // stops the Log's Follow; nil when not following
}

// A closeFill is the one fillAtClose of a Broker.
type closeFill struct {
	started atomic.Bool
	done    chan struct{}
}

// logLimit is how long a call to the Log on a stream's behalf may take at
// first: a heartbeat period, so that a call that hangs does not keep the
// stream from its heartbeats.
func (b *Broker) logLimit() time.Duration {
	if b.heartbeat > 0 {
		return b.heartbeat
	}
	return sse.DefaultHeartbeat
}

// checkRead returns an error if what ReadAfter returned cannot be right.
func checkRead(after Position, wires [][]byte, head Position) error {
	if !validEpoch(head.Epoch) {
		return fmt.Errorf("sse: Log.ReadAfter: head %q has no epoch", head)
	}
	if len(wires) == 0 {
		return nil
	}
	if head.Epoch != after.Epoch || head.Offset < after.Offset || uint64(len(wires)) > head.Offset-after.Offset {
		return fmt.Errorf("sse: Log.ReadAfter: %d events after %v, past the head %v", len(wires), after, head)
	}
	for i, w := range wires {
		if !wire.OneEvent(w) {
			return fmt.Errorf("sse: Log.ReadAfter: event %d after %v is not one encoded event", i+1, after)
		}
	}
	return nil
}

// logContext returns a context for a call to the Log on the stream's behalf:
// it ends when the client leaves, when the Broker closes, or after its limit:
// a heartbeat period, after which the stream sends one and asks again, with
// twice the time, then four times (a Log that answers, but slower than a
// heartbeat, still gets to answer).
func (s *stream) logContext() (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(s.ctx, s.b.logLimit()<<min(s.slowReads, 2))
	stop := context.AfterFunc(s.b.lg.ctx, cancel)
	return ctx, func() { stop(); cancel() }
}
