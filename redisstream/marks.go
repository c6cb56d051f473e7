package redisstream

import (
	"sync"

	"github.com/lightsse/sse/ssebroker"
)

// marks holds the high-water mark of each topic the Streams appends to,
// reads or follows: the newest Position it has seen the topic hold, in an
// Append's reply, a read's head, or a message of its feed. Every script call
// passes the topic's mark, so that a Redis gone back in time (see
// prologue) starts a new epoch rather than hand out the same offsets again.
//
// A mark only ever adds a check, so marks may be lost: past maxMarks
// topics, a new one pushes out another at random, and that topic is
// checked again once the Streams has seen it anew. Within one epoch offsets
// only grow, so a mark is never ahead of Redis but when Redis went back;
// one of an older epoch, seen out of order, checks nothing until the next.
type marks struct {
	mu sync.Mutex
	m  map[string]ssebroker.Position // by the topic's channel
}

// maxMarks bounds the marks a Streams keeps: with topic names of 256 bytes,
// at most about 25 MiB.
const maxMarks = 1 << 16

// get returns the mark of the topic whose channel is key, or the zero
// Position if there is none.
func (ms *marks) get(key string) ssebroker.Position {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	return ms.m[key]
}

// see raises the mark of the topic whose channel is key to p, or replaces
// it if p is of another epoch.
func (ms *marks) see(key string, p ssebroker.Position) {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	old, ok := ms.m[key]
	switch {
	case ok && old.Epoch == p.Epoch && old.Offset >= p.Offset:
		return
	case !ok && len(ms.m) >= maxMarks:
		for k := range ms.m {
			delete(ms.m, k) // one of them, at random
			break
		}
	case ms.m == nil:
		ms.m = make(map[string]ssebroker.Position)
	}
	ms.m[key] = p
}
