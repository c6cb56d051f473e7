package sserun

import (
	"context"
	"errors"
	"testing"

	"github.com/lightsse/sse/ssebroker"
)

// A memLog reads back what was appended, in batches of at least one event,
// hands each event once to each follower, in order, after their head, and
// stops at its bound.
func TestMemLog(t *testing.T) {
	ctx := context.Background()
	m := newMemLog(1000)
	var got [][]byte
	var heads []ssebroker.Position
	stop := m.Follow(func(pos ssebroker.Position, w []byte) {
		if w == nil {
			heads = append(heads, pos)
			return
		}
		if pos.Offset != uint64(len(got)+1) {
			t.Errorf("delivered %v after %d events", pos, len(got))
		}
		got = append(got, w)
	})
	if len(heads) != 1 || heads[0] != (ssebroker.Position{Epoch: m.epoch}) {
		t.Errorf("first delivery %v, want the head at offset 0", heads)
	}
	for _, w := range []string{"data: a\n\n", "data: bb\n\n", "data: ccc\n\n"} {
		if _, err := m.Append(ctx, []byte(w)); err != nil {
			t.Fatal(err)
		}
	}
	if len(got) != 3 || string(got[1]) != "data: bb\n\n" {
		t.Fatalf("delivered %q", got)
	}
	wires, head, err := m.ReadAfter(ctx, ssebroker.Position{Epoch: m.epoch, Offset: 1}, 1)
	if err != nil || len(wires) != 1 || string(wires[0]) != "data: bb\n\n" || head.Offset != 3 {
		t.Fatalf("ReadAfter 1, 1 byte: %q %v %v", wires, head, err)
	}
	wires, _, _ = m.ReadAfter(ctx, ssebroker.Position{Epoch: m.epoch}, 1<<20)
	if len(wires) != 3 {
		t.Fatalf("ReadAfter 0: %q", wires)
	}
	// Later appends, and the clip at the end, leave what was read as it was.
	_, _ = m.Append(ctx, []byte("data: dddd\n\n"))
	m.clip()
	if string(wires[2]) != "data: ccc\n\n" || cap(wires[2]) != len(wires[2]) {
		t.Errorf("a wire read before changed: %q", wires[2])
	}
	for _, after := range []ssebroker.Position{{Epoch: m.epoch, Offset: 4}, {Epoch: "0123456789abcdef", Offset: 1}, {}} {
		if wires, head, _ := m.ReadAfter(ctx, after, 1); len(wires) != 0 || head.Offset != 4 {
			t.Errorf("ReadAfter %v: %q, head %v", after, wires, head)
		}
	}
	stop()
	_, _ = m.Append(ctx, []byte("data: e\n\n"))
	if len(got) != 4 {
		t.Errorf("%d events delivered; want 4, none after stop", len(got))
	}
	if _, err := m.Append(ctx, make([]byte, 1000)); !errors.Is(err, ErrTooLarge) {
		t.Errorf("Append past the bound: %v", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := m.Append(cctx, []byte("data: f\n\n")); err == nil {
		t.Error("Append with an ended context: no error")
	}
	if _, _, err := m.ReadAfter(cctx, ssebroker.Position{}, 1); err == nil {
		t.Error("ReadAfter with an ended context: no error")
	}
}
