package pgstream

import (
	"fmt"
	"testing"
	"time"

	"github.com/lightsse/sse/internal/logtest"
	"github.com/lightsse/sse/ssebroker"
)

// readNumbers returns the numbers of the events ReadAfter gives after offset
// after of epoch; nil if the event after it is gone.
func readNumbers(t *testing.T, tp *Topic, epoch string, after uint64) []int {
	t.Helper()
	wires, _, err := tp.ReadAfter(t.Context(), ssebroker.Position{Epoch: epoch, Offset: after}, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	var got []int
	for _, w := range wires {
		got = append(got, logtest.Number(t, w))
	}
	return got
}

func TestTrimByCount(t *testing.T) {
	url := newDB(t)
	s := newStreams(t, url, &Options{MaxLen: 10, TrimInterval: -1})
	tp, other := topic(t, s, "room"), topic(t, s, "other")
	epoch := logtest.AppendN(t, tp, 1, 25)[0].Epoch
	logtest.AppendN(t, other, 1, 5)
	n, err := s.Trim(t.Context())
	if err != nil || n != 15 {
		t.Errorf("Trim: %d, %v; want 15 deleted", n, err)
	}
	if got := readNumbers(t, tp, epoch, 15); fmt.Sprint(got) != "[16 17 18 19 20 21 22 23 24 25]" {
		t.Errorf("ReadAfter(15) after trimming to 10 of 25: %v, want 16 to 25", got)
	}
	if got := readNumbers(t, tp, epoch, 14); got != nil {
		t.Errorf("ReadAfter(14): %v, want none (event 15 trimmed)", got)
	}
	if got := logtest.Numbers(t, other); len(got) != 5 {
		t.Errorf("the other topic holds %v, want its 5 events", got)
	}
	if n, err := s.Trim(t.Context()); err != nil || n != 0 {
		t.Errorf("Trim again: %d, %v; want nothing more", n, err)
	}
}

func TestTrimByAge(t *testing.T) {
	url := newDB(t)
	s := newStreams(t, url, &Options{MaxLen: -1, MaxAge: 500 * time.Millisecond, TrimInterval: -1})
	tp := topic(t, s, "room")
	epoch := logtest.AppendN(t, tp, 1, 5)[0].Epoch
	time.Sleep(600 * time.Millisecond)
	logtest.AppendN(t, tp, 6, 8)
	if n, err := s.Trim(t.Context()); err != nil || n != 5 {
		t.Errorf("Trim: %d, %v; want the 5 old events deleted", n, err)
	}
	if got := readNumbers(t, tp, epoch, 5); fmt.Sprint(got) != "[6 7 8]" {
		t.Errorf("after trimming by age: %v, want [6 7 8]", got)
	}
	if got := readNumbers(t, tp, epoch, 4); got != nil {
		t.Errorf("ReadAfter(4) after trimming by age: %v, want none (event 5 trimmed)", got)
	}
	time.Sleep(600 * time.Millisecond)
	if n, err := s.Trim(t.Context()); err != nil || n != 3 {
		t.Errorf("Trim: %d, %v; want the last 3 deleted", n, err)
	}
	if h, err := tp.Head(t.Context()); err != nil || h.Offset != 8 {
		t.Errorf("head %v, %v; want offset 8: trimming keeps the head", h, err)
	}
	if p := logtest.AppendN(t, tp, 9, 9)[0]; p != (ssebroker.Position{Epoch: epoch, Offset: 9}) {
		t.Errorf("Append after trimming all: %v, want %s-9", p, epoch)
	}
}

// A topic row deleted by hand takes the topic's events with it, at the next
// trim; the next Append starts a new epoch.
func TestTrimRowDeletedByHand(t *testing.T) {
	url := newDB(t)
	s := newStreams(t, url, &Options{TrimInterval: -1})
	tp := topic(t, s, "room")
	old := logtest.AppendN(t, tp, 1, 3)[0].Epoch
	if _, err := s.pool.Exec(t.Context(), "DELETE FROM sse_topics WHERE name = 'room'"); err != nil {
		t.Fatal(err)
	}
	p := logtest.AppendN(t, tp, 4, 4)[0]
	if p.Epoch == old || p.Offset != 1 {
		t.Errorf("Append after the row was deleted: %v; want a new epoch, offset 1", p)
	}
	if n, err := s.Trim(t.Context()); err != nil || n != 3 {
		t.Errorf("Trim: %d, %v; want the 3 events of the deleted row", n, err)
	}
	var left int
	if err := s.pool.QueryRow(t.Context(), "SELECT count(*) FROM sse_events").Scan(&left); err != nil || left != 1 {
		t.Errorf("%d events left, %v; want 1", left, err)
	}
}

// Each Streams trims by itself, every TrimInterval; one at a time.
func TestTrimEvery(t *testing.T) {
	url := newDB(t)
	s := newStreams(t, url, &Options{MaxLen: 2, TrimInterval: 50 * time.Millisecond})
	tp := topic(t, s, "room")
	logtest.AppendN(t, tp, 1, 10)
	kept := func() int {
		var n int
		if err := s.pool.QueryRow(t.Context(), "SELECT count(*) FROM sse_events").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	for deadline := time.Now().Add(10 * time.Second); kept() != 2; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("after 10 s, the log holds %d events, want 2", kept())
		}
	}
	// While another holds the trimmers' lock, Trim does nothing.
	conn, err := s.pool.Acquire(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	if _, err := conn.Exec(t.Context(), "SELECT pg_advisory_lock($1)", s.n.lockKey+1); err != nil {
		t.Fatal(err)
	}
	logtest.AppendN(t, tp, 11, 15)
	if n, err := s.Trim(t.Context()); err != nil || n != 0 {
		t.Errorf("Trim while another trims: %d, %v; want 0, nil", n, err)
	}
	time.Sleep(200 * time.Millisecond) // the trimmer's turns
	if n := kept(); n != 7 {
		t.Errorf("while another trims, the log holds %d events, want 7: none trimmed", n)
	}
	if _, err := conn.Exec(t.Context(), "SELECT pg_advisory_unlock($1)", s.n.lockKey+1); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); kept() != 2; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("once the other is done, after 10 s, the log holds %d events, want 2", kept())
		}
	}
}

// After NewEpochs, a topic's followers get a head in a new epoch, clients of
// the old one find nothing there, and Appends start again at offset 1.
func TestNewEpochs(t *testing.T) {
	url := newDB(t)
	s := newStreams(t, url, nil)
	tp := topic(t, s, "room")
	old := logtest.AppendN(t, tp, 1, 3)[0].Epoch
	r, _ := logtest.Follow(t, topic(t, newStreams(t, url, &Options{PollInterval: time.Hour}), "room"))
	r.Wait("the head", 10*time.Second, logtest.Started)
	if err := s.NewEpochs(t.Context()); err != nil {
		t.Fatal(err)
	}
	r.Wait("a new epoch, before any Append", 10*time.Second, func(s *logtest.State) bool { return len(s.Resets) == 1 })
	p := logtest.AppendN(t, tp, 4, 4)[0]
	if p.Epoch == old || p.Offset != 1 {
		t.Errorf("Append after NewEpochs: %v; want a new epoch, offset 1", p)
	}
	if epoch := r.State().Epoch; epoch != p.Epoch {
		t.Errorf("follower in epoch %s, the Append in %s", epoch, p.Epoch)
	}
	if got := readNumbers(t, tp, old, 1); got != nil {
		t.Errorf("ReadAfter in the old epoch: %v, want none", got)
	}
	if got := logtest.Numbers(t, tp); fmt.Sprint(got) != "[4]" {
		t.Errorf("the log holds %v, want [4]", got)
	}
}
