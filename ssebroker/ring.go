package ssebroker

import (
	"sync"
	"sync/atomic"
)

// An entry is one event in a Broker's history. It does not change once
// published.
type entry struct {
	offset uint64 // its place in the history
	wire   []byte // the encoded event
	id     string // the event's own ID, if the publisher set one
	end    uint64 // bytes published up to and including this event
}

// A ring holds the most recent events of one epoch, by offset. Publishers
// change it under the Broker's mutex, one at a time; streams read it with
// atomic loads, and its index of publisher IDs under the ring's own lock.
// It grows by doubling up to its bound in events, so a quiet Broker holds
// little.
type ring struct {
	epoch string
	// contested, when above the ring's first head, is the end of a range of
	// offsets after it that an earlier history of this epoch gave to other
	// events: their ids resume nothing. Fixed at creation.
	contested uint64
	first     uint64 // the head the ring started at
	slots     atomic.Pointer[[]atomic.Pointer[entry]]
	head      atomic.Uint64 // offset of the newest event; tail-1 when none
	tail      atomic.Uint64 // offset of the oldest event held; head+1 when none

	// Under the Broker's mutex.
	bytes int    // bytes held
	total uint64 // bytes ever pushed

	// The index of the events held that carry their publisher's own ID,
	// which streams look up under idMu: few, while it has at most fewIDs
	// IDs (a map costs some 300 bytes even for one, and one Broker per user
	// makes many rings that hold few events), then byID.
	idMu sync.Mutex
	few  []idEntry
	byID map[string]idRef
}

// fewIDs is how many IDs a ring's index holds in a slice before it takes a
// map.
const fewIDs = 16

// An idEntry is one ID of a ring's index while it is a slice.
type idEntry struct {
	id  string
	ref idRef
}

// contests reports whether an id at offset, in r's epoch, names an event of
// an earlier history of the epoch rather than r's (see contested).
func (r *ring) contests(offset uint64) bool {
	return offset > r.first && offset <= r.contested
}

// lookup returns the index entry of the events in r that carry the
// publisher ID id. It takes only r's own lock, so that a stream looking up
// its Last-Event-ID never makes Publish wait.
func (r *ring) lookup(id string) (idRef, bool) {
	r.idMu.Lock()
	defer r.idMu.Unlock()
	if r.byID != nil {
		ref, ok := r.byID[id]
		return ref, ok
	}
	if i := r.findFew(id); i >= 0 {
		return r.few[i].ref, true
	}
	return idRef{}, false
}

// findFew returns the index of id in r.few, or -1. r.idMu is held.
func (r *ring) findFew(id string) int {
	for i := range r.few {
		if r.few[i].id == id {
			return i
		}
	}
	return -1
}

// indexID counts e in r's index of publisher IDs, as the newest event with
// its ID.
func (r *ring) indexID(e *entry) {
	r.idMu.Lock()
	defer r.idMu.Unlock()
	if r.byID == nil {
		if i := r.findFew(e.id); i >= 0 {
			r.few[i].ref = idRef{offset: e.offset, count: r.few[i].ref.count + 1}
			return
		}
		if len(r.few) < fewIDs {
			r.few = append(r.few, idEntry{id: e.id, ref: idRef{offset: e.offset, count: 1}})
			return
		}
		r.byID = make(map[string]idRef, 2*fewIDs)
		for _, f := range r.few {
			r.byID[f.id] = f.ref
		}
		r.few = nil
	}
	r.byID[e.id] = idRef{offset: e.offset, count: r.byID[e.id].count + 1}
}

// unindexID counts e, which r drops, out of its index of publisher IDs.
func (r *ring) unindexID(e *entry) {
	r.idMu.Lock()
	defer r.idMu.Unlock()
	if r.byID != nil {
		if ref := r.byID[e.id]; ref.count > 1 {
			r.byID[e.id] = idRef{offset: ref.offset, count: ref.count - 1}
		} else {
			delete(r.byID, e.id)
		}
		return
	}
	i := r.findFew(e.id)
	if i < 0 {
		return
	}
	if ref := r.few[i].ref; ref.count > 1 {
		r.few[i].ref = idRef{offset: ref.offset, count: ref.count - 1}
		return
	}
	last := len(r.few) - 1
	r.few[i] = r.few[last]
	r.few[last] = idEntry{}
	r.few = r.few[:last]
}

// An idRef indexes the events in the history that carry one publisher ID.
type idRef struct {
	offset uint64 // the newest
	count  int    // how many: more than one, and the ID says no position
}

// initialSlots is how many events a new ring has room for before it first
// grows: few, since one Broker per user makes many rings that stay small.
const initialSlots = 8

// newRing returns an empty ring of epoch whose first event will be at head+1.
func (b *Broker) newRing(epoch string, head uint64) *ring {
	r := &ring{epoch: epoch, first: head}
	slots := make([]atomic.Pointer[entry], min(b.historyLen, initialSlots))
	r.slots.Store(&slots)
	r.head.Store(head)
	r.tail.Store(head + 1)
	return r
}

// get returns the event at offset, or nil if the ring does not hold it. A
// reader that has loaded head before calling get finds every event up to
// head still held: push stores a grown slice before the events it holds.
func (r *ring) get(offset uint64) *entry {
	slots := *r.slots.Load()
	e := slots[offset%uint64(len(slots))].Load()
	if e == nil || e.offset != offset {
		return nil
	}
	return e
}

// push appends e as the newest event, then drops the oldest while more than
// maxLen events or maxBytes bytes are held (never the newest).
func (r *ring) push(e *entry, maxLen, maxBytes int) {
	slots := *r.slots.Load()
	if head, tail := r.head.Load(), r.tail.Load(); head+1-tail == uint64(len(slots)) {
		if len(slots) < maxLen {
			slots = r.grow(min(2*len(slots), maxLen))
		} else {
			r.drop()
		}
	}
	r.total += uint64(len(e.wire))
	e.end = r.total
	e.offset = r.head.Load() + 1
	slots[e.offset%uint64(len(slots))].Store(e)
	r.head.Store(e.offset)
	r.bytes += len(e.wire)
	if e.id != "" {
		r.indexID(e)
	}
	for r.bytes > maxBytes && r.tail.Load() < e.offset {
		r.drop()
	}
}

// drop lets go of the oldest event; a stream writing it keeps it alive.
func (r *ring) drop() {
	tail := r.tail.Load()
	e := r.get(tail)
	if e.id != "" {
		r.unindexID(e)
	}
	r.bytes -= len(e.wire)
	r.tail.Store(tail + 1)
	slots := *r.slots.Load()
	slots[tail%uint64(len(slots))].Store(nil)
}

func (r *ring) grow(n int) []atomic.Pointer[entry] {
	slots := make([]atomic.Pointer[entry], n)
	for off := r.tail.Load(); off <= r.head.Load(); off++ {
		slots[off%uint64(n)].Store(r.get(off))
	}
	r.slots.Store(&slots)
	return slots
}

// lagging reports whether a stream whose next event is at cursor is more than
// maxLen events or maxBytes bytes behind head. A stream with at most the
// newest event to send is never lagging.
func (r *ring) lagging(cursor, head uint64, maxLen, maxBytes int) bool {
	if cursor >= head {
		return false
	}
	if head+1-cursor > uint64(maxLen) {
		return true
	}
	first, last := r.get(cursor), r.get(head)
	if first == nil || last == nil {
		return false // moved on as we looked; the caller finds out
	}
	return last.end-(first.end-uint64(len(first.wire))) > uint64(maxBytes)
}
