package wire

import (
	"math"
	"testing"
	"time"

	"github.com/lightsse/sse/internal/ssetest"
)

func TestStreamLinesAsAClientReadsThem(t *testing.T) {
	var b []byte
	b = AppendRetry(b, 0) // nothing
	b = AppendRetry(b, 1500*time.Millisecond+time.Microsecond)
	b = AppendPlace(b, "0123456789abcdef", 7)
	b = append(b, Heartbeat...)
	b = AppendReset(b, "0123456789abcdef", 9, "old-3")
	want := "retry: 1500\n\nid: 0123456789abcdef-7\n\n:\nid: 0123456789abcdef-9\nevent: reset\ndata: old-3\n\n"
	if string(b) != want {
		t.Fatalf("got %q\nwant %q", b, want)
	}
	evs, _ := ssetest.Parse(string(b))
	if len(evs) != 1 || evs[0] != (ssetest.Event{Type: ResetType, Data: "old-3", LastEventID: "0123456789abcdef-9"}) {
		t.Errorf("a client dispatches %+v; want the reset alone", evs)
	}
}

func TestIDLineLenBoundsEveryLine(t *testing.T) {
	for _, off := range []uint64{0, 9, 10, math.MaxUint64} {
		if got, max := len(AppendIDLine(nil, "0123456789abcdef", off)), IDLineLen(16); got > max {
			t.Errorf("offset %d: a line of %d bytes, over IDLineLen's %d", off, got, max)
		}
	}
	if got := len(AppendIDLine(nil, "0123456789abcdef", math.MaxUint64)); got != IDLineLen(16) {
		t.Errorf("the largest offset takes %d bytes, IDLineLen says %d", got, IDLineLen(16))
	}
}

func TestOwnID(t *testing.T) {
	for wire, want := range map[string]string{
		"id: 42\ndata: x\n\n": "42",
		"id: \ndata: x\n\n":   "",
		"data: x\n\n":         "-",
		"id: 42":              "-", // no line end
		"":                    "-",
	} {
		id, own := OwnID([]byte(wire))
		if (want == "-") == own || (own && id != want) {
			t.Errorf("OwnID(%q) = %q, %v; want %q", wire, id, own, want)
		}
	}
}

func TestOneEvent(t *testing.T) {
	for wire, want := range map[string]bool{
		"data: x\n\n":            true,
		"id: 1\ndata: x\n\n":     true,
		"data: x\n":              false, // cut short
		"data: x\r\n\r\n":        false,
		"data: a\n\ndata: b\n\n": false,
		"":                       false,
		"\n":                     false,
		"data: a\n\n\n":          false,
		"event: e\ndata: \n\n":   true,
		"data: x\rid: evil\n\n":  false,
		"data: \xff (bytes)\n\n": true, // UTF-8 is the encoder's to check
	} {
		if got := OneEvent([]byte(wire)); got != want {
			t.Errorf("OneEvent(%q) = %v, want %v", wire, got, want)
		}
	}
}

func TestHeaderUnsafe(t *testing.T) {
	for v, want := range map[string]int{
		"":           -1,
		"abc-1":      -1,
		"a\tb":       -1,
		"a\x00b":     1,
		"ab\x1f":     2,
		"\x7f":       0,
		"é, ünïcode": -1,
	} {
		if got := HeaderUnsafe(v); got != want {
			t.Errorf("HeaderUnsafe(%q) = %d, want %d", v, got, want)
		}
	}
}
