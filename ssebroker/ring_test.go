package ssebroker

import (
	"fmt"
	"testing"
)

// ---- The ring --------------------------------------------------------------

// The index of publisher IDs says, for each ID the ring holds, its newest
// offset and how many events carry it, both while it is a slice (up to
// fewIDs IDs) and once it is a map; an ID counts out as its events drop.
func TestRingIDIndex(t *testing.T) {
	for _, distinct := range []int{3, fewIDs, fewIDs + 1, 3 * fewIDs} {
		t.Run(fmt.Sprint(distinct, " IDs"), func(t *testing.T) {
			r := (&Broker{historyLen: 1024}).newRing("e", 0)
			const each = 3 // events per ID, in turn: offset i carries ID i%distinct
			n := distinct * each
			for i := range n {
				r.push(&entry{wire: []byte("x"), id: fmt.Sprint("id", i%distinct)}, 1024, 1<<20)
			}
			check := func(held int) {
				t.Helper()
				ids := r.ids()
				for k := range distinct {
					id := fmt.Sprint("id", k)
					count := 0 // events held with this ID: offsets tail..n, ID k at offsets k+1, k+1+distinct, ...
					for off := uint64(n - held + 1); off <= uint64(n); off++ {
						if int(off-1)%distinct == k {
							count++
						}
					}
					ref, ok := r.lookup(id)
					if count == 0 {
						if ok || ids[id] != (idRef{}) {
							t.Errorf("%d held: %s still indexed: %+v", held, id, ref)
						}
						continue
					}
					newest := uint64(n - distinct + k + 1)
					if !ok || ref != (idRef{offset: newest, count: count}) || ids[id] != ref {
						t.Errorf("%d held: %s = %+v (%v), want offset %d, count %d", held, id, ref, ok, newest, count)
					}
				}
				if want := min(distinct, held); len(ids) != want {
					t.Errorf("%d held: %d IDs indexed, want %d", held, len(ids), want)
				}
			}
			if isMap := r.byID != nil; isMap != (distinct > fewIDs) {
				t.Errorf("with %d IDs the index is a map: %v, want %v", distinct, isMap, distinct > fewIDs)
			}
			check(n)
			for held := n - 1; held >= 1; held-- {
				r.drop()
				check(held)
			}
			if _, ok := r.lookup("nobody"); ok {
				t.Error("an ID never published is found")
			}
		})
	}
}

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
	if ids := r.ids(); len(ids) != 4 || ids["id7"].offset != 7 || ids["id6"].count != 0 {
		t.Errorf("the id index after dropping 1-6: %v", ids)
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
