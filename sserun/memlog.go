package sserun

import (
	"context"
	"fmt"
	"sync"

	"github.com/lightsse/sse/ssebroker"
)

// A memLog is the ssebroker.Log of a run kept in this process: the run's
// whole history, every wire form back to back in one buffer, and where each
// ends. An event costs its wire form and four bytes. It hands each event to
// its followers in Append itself, after its own lock is released, so that a
// run's streams have an event when Publish returns.
type memLog struct {
	epoch string
	max   int // bytes it may hold

	mu   sync.Mutex
	buf  []byte   // the wire forms, back to back; never written below len
	ends []uint32 // ends[i] is where the event at offset i+1 ends in buf

	dmu       sync.Mutex // serializes deliveries, and guards the two below
	delivered uint64     // offset of the last event handed to the followers
	follows   []*follower
}

type follower struct {
	deliver func(ssebroker.Position, []byte)
}

func newMemLog(limit int) *memLog {
	return &memLog{epoch: ssebroker.NewEpoch(), max: limit}
}

// Append adds w as the newest event and hands it to the followers. It
// returns ErrTooLarge, adding nothing, when the log would pass its bound.
func (m *memLog) Append(ctx context.Context, w []byte) (ssebroker.Position, error) {
	if err := ctx.Err(); err != nil {
		return ssebroker.Position{}, err
	}
	m.mu.Lock()
	if len(m.buf)+len(w) > m.max {
		m.mu.Unlock()
		return ssebroker.Position{}, fmt.Errorf("%w: %d bytes held, %d more, over %d", ErrTooLarge, len(m.buf), len(w), m.max)
	}
	m.buf = append(m.buf, w...)
	m.ends = append(m.ends, uint32(len(m.buf)))
	pos := ssebroker.Position{Epoch: m.epoch, Offset: uint64(len(m.ends))}
	m.mu.Unlock()
	m.flush()
	return pos, nil
}

// flush hands the followers every event they have not had, in order.
func (m *memLog) flush() {
	m.dmu.Lock()
	defer m.dmu.Unlock()
	for {
		m.mu.Lock()
		if m.delivered >= uint64(len(m.ends)) {
			m.mu.Unlock()
			return
		}
		off := m.delivered + 1
		w := m.wireLocked(off)
		m.mu.Unlock()
		for _, f := range m.follows {
			f.deliver(ssebroker.Position{Epoch: m.epoch, Offset: off}, w)
		}
		m.delivered = off
	}
}

// wireLocked returns the wire form at offset, in 1..len(m.ends), capped so
// that no append reaches past it.
func (m *memLog) wireLocked(off uint64) []byte {
	start := uint32(0)
	if off > 1 {
		start = m.ends[off-2]
	}
	end := m.ends[off-1]
	return m.buf[start:end:end]
}

// ReadAfter returns the events after after, up to max bytes (at least one),
// without copying them.
func (m *memLog) ReadAfter(ctx context.Context, after ssebroker.Position, max int) ([][]byte, ssebroker.Position, error) {
	if err := ctx.Err(); err != nil {
		return nil, ssebroker.Position{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	head := ssebroker.Position{Epoch: m.epoch, Offset: uint64(len(m.ends))}
	if after.Epoch != m.epoch || after.Offset >= head.Offset {
		return nil, head, nil
	}
	var wires [][]byte
	for off, n := after.Offset+1, 0; off <= head.Offset && (n == 0 || n < max); off++ {
		w := m.wireLocked(off)
		wires = append(wires, w)
		n += len(w)
	}
	return wires, head, nil
}

// Follow hands deliver the log's head at once, then every later event.
func (m *memLog) Follow(deliver func(ssebroker.Position, []byte)) (stop func()) {
	f := &follower{deliver: deliver}
	m.dmu.Lock()
	m.follows = append(m.follows, f)
	deliver(ssebroker.Position{Epoch: m.epoch, Offset: m.delivered}, nil)
	m.dmu.Unlock()
	m.flush() // an Append that came before the follower may not have flushed
	return func() {
		m.dmu.Lock()
		defer m.dmu.Unlock()
		for i, g := range m.follows {
			if g == f {
				m.follows = append(m.follows[:i], m.follows[i+1:]...)
				break
			}
		}
	}
}

// clip lets go of the room the buffers kept to grow, once nothing more is
// appended.
func (m *memLog) clip() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.buf = append([]byte(nil), m.buf...)
	m.ends = append([]uint32(nil), m.ends...)
}
