package sserun

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/lightsse/sse"
	"github.com/lightsse/sse/ssebroker"
)

// A run is what a process holds of one run: its own, or another process's
// that it streams.
type run struct {
	id    string
	log   ssebroker.Log // the run's events: a *memLog, or NewLog's
	mem   *memLog       // log, when it is kept here
	owner bool          // started by this process
	epoch string        // the Log's epoch when the run started

	mu     sync.Mutex
	end    ssebroker.Position // where the terminal event is; Offset 0 while live
	broker *ssebroker.Broker  // streams the live run; nil once closed
}

// A Run is one run, as the process that started it holds it: the handle
// through which its events are published. Its methods are safe for
// concurrent use; the events of concurrent calls are in the order the calls
// took effect.
type Run struct {
	rs  *Runs
	st  *run
	pub sync.Mutex // orders Publish and Finish
}

// Start begins the run id, on this process, which does its work: its
// events go to the viewers of id on every process that shares its Log. A
// viewer that comes before the first event gets a stream that waits for it.
//
// It returns ErrInvalidRunID for an id that validID refuses, ErrExists for
// one that names a run this Runs holds or (with Options.NewLog) whose Log
// holds events, sse.ErrClosed after Close, and an error of NewLog or of the
// Log, which ctx bounds. (Two processes that start one id at the same moment
// may both succeed; the first Publish of the second then fails or mixes.
// Choose ids that are unique, such as random ones.)
func (rs *Runs) Start(ctx context.Context, id string) (*Run, error) {
	if !validID(id) {
		return nil, fmt.Errorf("%w: %q", ErrInvalidRunID, id)
	}
	rs.mu.Lock()
	rs.sweepLocked(time.Now())
	_, held := rs.runs[id]
	closed := rs.closed
	rs.mu.Unlock()
	switch {
	case closed:
		return nil, sse.ErrClosed
	case held:
		return nil, fmt.Errorf("%w: %q", ErrExists, id)
	}
	st := &run{id: id, owner: true}
	if rs.newLog == nil {
		st.mem = newMemLog(rs.maxBytes)
		st.log = st.mem
	} else {
		log, err := rs.newLog(id)
		if err != nil {
			return nil, err
		}
		if _, _, exists, err := probe(ctx, log); err != nil {
			return nil, err
		} else if exists {
			return nil, fmt.Errorf("%w: %q, in its Log", ErrExists, id)
		}
		st.log = log
	}
	// The opening mark makes the run exist in its Log, for every process,
	// before its first event.
	pos, err := st.log.Append(ctx, []byte(startMark))
	if err != nil {
		return nil, err
	}
	st.epoch = pos.Epoch
	if st.broker, err = rs.newBroker(st); err != nil {
		return nil, err
	}
	rs.mu.Lock()
	defer rs.mu.Unlock()
	switch {
	case rs.closed:
		st.broker.Close()
		return nil, sse.ErrClosed
	case rs.runs[id] != nil:
		st.broker.Close()
		return nil, fmt.Errorf("%w: %q", ErrExists, id)
	}
	rs.runs[id] = st
	return &Run{rs: rs, st: st}, nil
}

// ID returns the run's id.
func (r *Run) ID() string { return r.st.id }

// Publish adds e to the run: every viewer gets it, in order, with the id
// the run gives it. It returns ErrFinished after Finish; sse.ErrInvalidID
// for an e with an ID of its own (a run numbers its events); the error of
// [sse.Event.AppendText] for an event that cannot be written faithfully;
// ErrTooLarge past Options.MaxBytes; sse.ErrClosed after Runs.Close; and
// with Options.NewLog the Log's error, after which the event may or may not
// be in the run.
func (r *Run) Publish(e sse.Event) error { return r.PublishContext(context.Background(), e) }

// PublishContext is Publish, with ctx bounding the wait for the Log: when
// ctx ends first, it returns ctx's error.
func (r *Run) PublishContext(ctx context.Context, e sse.Event) error {
	if e.ID != "" {
		return fmt.Errorf("%w: %q: a run numbers its events itself", sse.ErrInvalidID, e.ID)
	}
	r.pub.Lock()
	defer r.pub.Unlock()
	r.st.mu.Lock()
	done, b := r.st.end.Offset != 0, r.st.broker
	r.st.mu.Unlock()
	switch {
	case done:
		return ErrFinished
	case b == nil:
		return sse.ErrClosed
	}
	return b.PublishContext(ctx, e)
}

// Finish ends the run with e, its terminal event: "done", an error, a
// cancellation, whatever the application chooses. Every viewer gets e last,
// after which its stream ends and its reconnection gets 204 No Content
// (which stops a browser's EventSource for good). The run is kept for
// Options.Retention after Finish, then forgotten.
//
// It returns ErrFinished if the run is finished, and otherwise what Publish
// returns for e. After an error from the Log the run is still live, but e
// may be in it: call Finish again only with a Log that cannot have taken e.
func (r *Run) Finish(e sse.Event) error { return r.FinishContext(context.Background(), e) }

// FinishContext is Finish, with ctx bounding the wait for the Log.
func (r *Run) FinishContext(ctx context.Context, e sse.Event) error {
	if e.ID != "" {
		return fmt.Errorf("%w: %q: a run numbers its events itself", sse.ErrInvalidID, e.ID)
	}
	w, err := e.AppendText(nil)
	if err != nil {
		return err
	}
	w = append(w[:len(w)-1], endMark...)
	r.pub.Lock()
	defer r.pub.Unlock()
	st, rs := r.st, r.rs
	st.mu.Lock()
	done, b := st.end.Offset != 0, st.broker
	st.mu.Unlock()
	switch {
	case done:
		return ErrFinished
	case b == nil:
		return sse.ErrClosed
	}
	pos, err := st.log.Append(ctx, w)
	if err != nil {
		return err
	}
	rs.ended(st, pos)
	if st.mem != nil {
		st.mem.clip()
		// A memLog hands events over within Append: the Broker's streams
		// have the terminal event, and the Broker can close.
		rs.closeBroker(st)
	} else if b.Stats().Open == 0 {
		rs.closeBroker(st) // no feed to bring the terminal event back
	}
	rs.mu.Lock()
	rs.expiry.add(time.Now().Add(rs.retention), st)
	rs.mu.Unlock()
	return nil
}

// startMark is the run's first event in its Log: a comment alone, which a
// client reads as an id line alone, setting its last event ID and
// dispatching nothing.
const startMark = ": run\n\n"

// endMark ends the terminal event's wire form: a comment, which clients
// ignore, that marks the event as the run's last for every process that
// reads the Log. No event that sse.Event.AppendText writes has a line that
// begins with a colon.
const endMark = ": end of run\n\n"

// isEnd reports whether w is a run's terminal event.
func isEnd(w []byte) bool {
	return len(w) >= len(endMark)+1 && string(w[len(w)-len(endMark)-1:]) == "\n"+endMark
}

// probe asks log whether it holds a run: if it does, the run's epoch, and
// where its terminal event is if it is finished.
func probe(ctx context.Context, log ssebroker.Log) (end ssebroker.Position, epoch string, exists bool, err error) {
	for range 3 {
		_, head, err := log.ReadAfter(ctx, ssebroker.Position{}, 1)
		if err != nil || head.Offset == 0 {
			return ssebroker.Position{}, "", false, err
		}
		wires, head2, err := log.ReadAfter(ctx, ssebroker.Position{Epoch: head.Epoch, Offset: head.Offset - 1}, 1)
		switch {
		case err != nil:
			return ssebroker.Position{}, "", false, err
		case len(wires) == 0:
			continue // gone, or a new epoch, as we looked: ask again
		case head2 == head && isEnd(wires[0]):
			return head, head.Epoch, true, nil
		}
		return ssebroker.Position{}, head.Epoch, true, nil
	}
	return ssebroker.Position{}, "", false, errLogMoving
}

// errLogMoving is probe's error for a Log whose head keeps changing epoch.
var errLogMoving = errors.New("sserun: the run's Log changed its epoch three times while read")

// A feedLog is the Log of a live run's Broker: the run's Log, watched for
// the terminal event. Once the Broker has it, the Broker closes, which ends
// its streams after it.
type feedLog struct {
	ssebroker.Log
	rs *Runs
	st *run
}

// ReadAfter notes a terminal event among what the Log returns.
func (f *feedLog) ReadAfter(ctx context.Context, after ssebroker.Position, max int) ([][]byte, ssebroker.Position, error) {
	wires, head, err := f.Log.ReadAfter(ctx, after, max)
	if n := len(wires); n > 0 && err == nil && isEnd(wires[n-1]) {
		f.rs.ended(f.st, ssebroker.Position{Epoch: after.Epoch, Offset: after.Offset + uint64(n)})
	}
	return wires, head, err
}

// Follow closes the Broker once it has been handed the terminal event, or
// a head at or past it (having filled the gap up to it).
func (f *feedLog) Follow(deliver func(ssebroker.Position, []byte)) (stop func()) {
	return f.Log.Follow(func(pos ssebroker.Position, w []byte) {
		deliver(pos, w)
		if w != nil && isEnd(w) {
			f.rs.ended(f.st, pos)
		}
		f.st.mu.Lock()
		end := f.st.end
		f.st.mu.Unlock()
		if end.Offset != 0 && end.Epoch == pos.Epoch && pos.Offset >= end.Offset {
			f.rs.closeBroker(f.st)
		}
	})
}
