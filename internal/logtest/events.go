package logtest

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/lightsse/sse/ssebroker"
)

// Wire returns the wire form of the test event number n: "data: n", alone.
func Wire(n int) []byte { return []byte("data: " + strconv.Itoa(n) + "\n\n") }

// Number returns n from Wire(n), or from an event whose first line is
// "data: n" and whose other lines are data lines too (a large test event);
// it fails tb on any other wire form.
func Number(tb testing.TB, w []byte) int {
	tb.Helper()
	s, ok := strings.CutPrefix(string(w), "data: ")
	s, rest, _ := strings.Cut(s, "\n")
	n, err := strconv.Atoi(s)
	if !ok || err != nil || !strings.HasSuffix(rest, "\n") || !onlyData(strings.TrimSuffix(rest, "\n")) {
		tb.Fatalf("unexpected wire %q", w)
	}
	return n
}

// onlyData reports whether lines, each ended by "\n", are all data lines.
func onlyData(lines string) bool {
	for line := range strings.Lines(lines) {
		if !strings.HasPrefix(line, "data: ") || !strings.HasSuffix(line, "\n") {
			return false
		}
	}
	return true
}

// AppendN appends Wire(from) to Wire(to) to log, in order, and returns their
// Positions; it fails tb if an Append fails.
func AppendN(tb testing.TB, log ssebroker.Log, from, to int) []ssebroker.Position {
	tb.Helper()
	var ps []ssebroker.Position
	for i := from; i <= to; i++ {
		p, err := log.Append(context.Background(), Wire(i))
		if err != nil {
			tb.Fatalf("Append %d: %v", i, err)
		}
		ps = append(ps, p)
	}
	return ps
}

// Head returns log's head, as ReadAfter reports it; it fails tb if the read
// fails.
func Head(tb testing.TB, log ssebroker.Log) ssebroker.Position {
	tb.Helper()
	_, head, err := log.ReadAfter(context.Background(), ssebroker.Position{}, 1)
	if err != nil {
		tb.Fatal(err)
	}
	return head
}

// NumbersIn returns the Numbers of the events that log holds in epoch, from
// its first, in order, as ReadAfter hands them, in as many reads as it
// takes. It fails tb if a read fails, or returns nothing short of a head in
// epoch.
func NumbersIn(tb testing.TB, log ssebroker.Log, epoch string) []int {
	tb.Helper()
	var got []int
	for pos := (ssebroker.Position{Epoch: epoch}); ; {
		wires, head, err := log.ReadAfter(context.Background(), pos, 1<<20)
		if err != nil {
			tb.Fatal(err)
		}
		if len(wires) == 0 {
			if head.Epoch == epoch && head.Offset > pos.Offset {
				tb.Fatalf("ReadAfter(%v): nothing, head %v", pos, head)
			}
			return got
		}
		for _, w := range wires {
			got = append(got, Number(tb, w))
		}
		pos.Offset += uint64(len(wires))
	}
}

// Numbers returns the Numbers of the events that log holds in its current
// epoch, as NumbersIn does.
func Numbers(tb testing.TB, log ssebroker.Log) []int {
	tb.Helper()
	return NumbersIn(tb, log, Head(tb, log).Epoch)
}

// Clip returns s as fmt.Sprint does, but only its first and last 20 items
// when it has more than 40: enough to read in a test's failure.
func Clip[T any](s []T) string {
	if len(s) > 40 {
		return fmt.Sprint(s[:20], " ... ", s[len(s)-20:])
	}
	return fmt.Sprint(s)
}
