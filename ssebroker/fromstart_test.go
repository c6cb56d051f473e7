package ssebroker

import (
	"testing"

	"github.com/lightsse/sse"
	"github.com/lightsse/sse/internal/leakcheck"
)

// ---- Options.FromStart -----------------------------------------------------

// With FromStart, a client without a Last-Event-ID gets every event from the
// first, with its id, then live ones; it counts as no resume.
func TestFromStartReplaysTheHistory(t *testing.T) {
	leakcheck.Check(t)
	b := newBroker(t, &Options{FromStart: true})
	srv := brokerServer(t, b)
	publishN(t, b, "e", 3)
	cl := connect(t, srv.Client(), srv.URL, "")
	for i := 1; i <= 3; i++ {
		ev := cl.next(t)
		if want := (Position{epochOf(b), uint64(i)}).String(); ev.LastEventID != want || ev.Type == ResetEvent {
			t.Fatalf("event %d: %+v, want id %s", i, ev, want)
		}
	}
	waitFor(t, "the stream to count", func() bool { return b.Subscribers() == 1 })
	_ = b.Publish(sse.Event{Data: "live"})
	cl.expect(t, "live")
	if r := b.Stats().Resumed; r != (Resumes{}) {
		t.Errorf("Stats.Resumed = %+v; a start from the first event is no resume", r)
	}
	// A Last-Event-ID still resumes after it.
	cl2 := connect(t, srv.Client(), srv.URL, (Position{epochOf(b), 2}).String())
	cl2.expect(t, "e2", "live")
}

// Without FromStart, the same client gets live events only.
func TestWithoutFromStartLiveOnly(t *testing.T) {
	leakcheck.Check(t)
	b := newBroker(t, nil)
	srv := brokerServer(t, b)
	publishN(t, b, "e", 3)
	cl := connect(t, srv.Client(), srv.URL, "")
	waitFor(t, "the stream to count", func() bool { return b.Subscribers() == 1 })
	_ = b.Publish(sse.Event{Data: "live"})
	cl.expect(t, "live")
}

// Once the history has dropped the first event, a new client gets a
// ResetEvent with empty Data, then live events.
func TestFromStartHistoryDropped(t *testing.T) {
	leakcheck.Check(t)
	b := newBroker(t, &Options{FromStart: true, HistoryLen: 2})
	srv := brokerServer(t, b)
	publishN(t, b, "e", 3)
	cl := connect(t, srv.Client(), srv.URL, "")
	if ev := cl.next(t); ev.Type != ResetEvent || ev.Data != "" {
		t.Fatalf("first event %+v, want a reset with empty data", ev)
	}
	waitFor(t, "the stream to count", func() bool { return b.Subscribers() == 1 })
	_ = b.Publish(sse.Event{Data: "live"})
	cl.expect(t, "live")
}

// With a Log, the replay beyond the ring comes from the Log: a client that
// joins after the Broker's ring was started at the Log's head gets the
// events appended before, from the first.
func TestFromStartReadsTheLog(t *testing.T) {
	leakcheck.Check(t)
	log := newMemLog()
	for _, d := range []string{"a", "b", "c"} {
		w, _ := sse.Event{Data: d}.AppendText(nil)
		if _, err := log.Append(t.Context(), w); err != nil {
			t.Fatal(err)
		}
	}
	b := newBroker(t, &Options{FromStart: true, Log: log})
	srv := brokerServer(t, b)
	cl := connect(t, srv.Client(), srv.URL, "")
	cl.expect(t, "a", "b", "c")
	waitFor(t, "the stream to count", func() bool { return b.Subscribers() == 1 })
	if err := b.Publish(sse.Event{Data: "d"}); err != nil {
		t.Fatal(err)
	}
	ev := cl.next(t)
	if want := (Position{log.head().Epoch, 4}).String(); ev.Data != "d" || ev.LastEventID != want {
		t.Fatalf("got %+v, want d at %s", ev, want)
	}
	// A header that LastEventID refuses is still a reset, not a start.
	if ev := connect(t, srv.Client(), srv.URL, "\xff").next(t); ev.Type != ResetEvent {
		t.Errorf("an invalid Last-Event-ID got %+v; want a reset", ev)
	}
}
