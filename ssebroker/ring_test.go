package ssebroker

import (
	"fmt"
	"testing"
)

// ---- The ring --------------------------------------------------------------

func TestRingBounds(t *testing.T) {
	r := (&Broker{historyLen: 2}).newRing("e", 0)
	push := func(size, maxLen, maxBytes int) {
		r.push(&entry{wire: make([]byte, size), id: fmt.Sprint("id", r.head.Load()+1)}, maxLen, maxBytes)
	}
	state := func() string {
		return fmt.Sprintf("head %d tail %d bytes %d slots %d", r.head.Load(), r.tail.Load(), r.bytes, len(*r.slots.Load()))
	}
	for range 10 {
		push(10, 4, 1000)
	}
	if got := state(); got != "head 10 tail 7 bytes 40 slots 4" {
		t.Errorf("by count: %s", got)
	}
	if len(r.byID) != 4 || r.byID["id7"].offset != 7 || r.byID["id6"].count != 0 {
		t.Errorf("the id index after dropping 1-6: %v", r.byID)
	}
	for off := uint64(1); off <= 10; off++ {
		if held := r.get(off) != nil; held != (off >= 7) {
			t.Errorf("get(%d) held = %v", off, held)
		}
	}
	push(25, 4, 50) // 30+25 > 50: drop two
	if got := state(); got != "head 11 tail 9 bytes 45 slots 4" {
		t.Errorf("by bytes: %s", got)
	}
	if r.get(8) != nil {
		t.Error("an event dropped by bytes is still held")
	}
	push(500, 4, 50) // larger than the bound: kept alone
	if got := state(); got != "head 12 tail 12 bytes 500 slots 4" {
		t.Errorf("oversized: %s", got)
	}
	if r.lagging(12, 12, 0, 0) {
		t.Error("a stream with only the newest event to send counts as lagging")
	}
}
