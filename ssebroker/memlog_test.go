package ssebroker

import (
	"context"
	"sync"
	"sync/atomic"
)

// ---- Helpers: a Log in memory --------------------------------------------

// memLog is a Log in memory, standing in for one outside the process (Redis
// Streams, a table). It numbers events, keeps the newest keep of them (all,
// for 0), and hands them to each follower from a goroutine of its own, as a
// subscription would. Its hooks make it misbehave.
type memLog struct {
	mu      sync.Mutex
	epoch   string
	events  [][]byte      // events[i] is at offset first+i
	first   uint64        // offset of events[0]
	keep    int           // how many events it keeps; 0: all
	changed chan struct{} // closed and replaced at every change

	onAppend func(ctx context.Context) error // runs first in Append
	onRead   func(ctx context.Context) error // runs first in ReadAfter
	read     func(after Position, limit int) ([][]byte, Position, error)
	mute     atomic.Bool   // followers skip events, as a subscription that lost messages
	follows  atomic.Int32  // Follows running
	passed   atomic.Uint64 // offset of the last event a follower delivered or skipped
}

func newMemLog() *memLog {
	return &memLog{epoch: NewEpoch(), first: 1, changed: make(chan struct{})}
}

// headLocked returns the position of the newest event.
func (m *memLog) headLocked() Position {
	return Position{m.epoch, m.first + uint64(len(m.events)) - 1}
}

func (m *memLog) notifyLocked() {
	close(m.changed)
	m.changed = make(chan struct{})
}

func (m *memLog) Append(ctx context.Context, wire []byte) (Position, error) {
	if m.onAppend != nil {
		if err := m.onAppend(ctx); err != nil {
			return Position{}, err
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.events = append(m.events, wire)
	if m.keep > 0 && len(m.events) > m.keep {
		m.events = m.events[1:]
		m.first++
	}
	m.notifyLocked()
	return m.headLocked(), nil
}

func (m *memLog) ReadAfter(ctx context.Context, after Position, limit int) ([][]byte, Position, error) {
	if m.onRead != nil {
		if err := m.onRead(ctx); err != nil {
			return nil, Position{}, err
		}
	}
	if m.read != nil {
		return m.read(after, limit)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	head := m.headLocked()
	if after.Epoch != m.epoch || after.Offset+1 < m.first || after.Offset >= head.Offset {
		return nil, head, nil
	}
	var wires [][]byte
	for i, n := after.Offset+1-m.first, 0; i < uint64(len(m.events)) && n < limit; i++ {
		wires = append(wires, m.events[i])
		n += len(m.events[i])
	}
	return wires, head, nil
}

func (m *memLog) Follow(deliver func(Position, []byte)) (stop func()) {
	quit, done := make(chan struct{}), make(chan struct{})
	m.follows.Add(1)
	go func() {
		defer close(done)
		defer m.follows.Add(-1)
		m.mu.Lock()
		at, changed := m.headLocked(), m.changed
		m.mu.Unlock()
		deliver(at, nil)
		for {
			select {
			case <-quit:
				return
			case <-changed:
			}
			m.mu.Lock()
			head, events, first := m.headLocked(), m.events, m.first
			changed = m.changed
			m.mu.Unlock()
			if head.Epoch != at.Epoch {
				at = Position{head.Epoch, first - 1}
				if len(events) == 0 {
					deliver(head, nil)
				}
			}
			for ; at.Offset < head.Offset; at.Offset++ {
				if i := at.Offset + 1 - first; i < uint64(len(events)) && !m.mute.Load() {
					deliver(Position{at.Epoch, at.Offset + 1}, events[i])
				}
				m.passed.Store(at.Offset + 1)
			}
		}
	}()
	return func() { close(quit); <-done }
}

// trim drops the events before offset from.
func (m *memLog) trim(from uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.events = m.events[from-m.first:]
	m.first = from
}

// lose forgets every event and starts a new epoch, as a Redis that
// restarted without persistence.
func (m *memLog) lose() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.epoch, m.events, m.first = NewEpoch(), nil, 1
	m.notifyLocked()
}

func (m *memLog) head() Position {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.headLocked()
}
