package ssebroker

import (
	"errors"
	"strings"
	"testing"

	"github.com/lightsse/sse"
	"github.com/lightsse/sse/internal/leakcheck"
)

// Epochs are 64 bits: 200,000 of them hold no repeat. (At 32 bits, a repeat
// among 200,000 is all but certain: 1 - e^(-4.66).)
func TestEpochsAreWide(t *testing.T) {
	seen := make(map[string]bool, 200_000)
	for range 200_000 {
		e := NewEpoch()
		if !validEpoch(e) || seen[e] {
			t.Fatalf("epoch %q: repeated, or not 16 lowercase hex digits", e)
		}
		seen[e] = true
	}
}

// Ids a client could not resume from are refused by Publish: spaces at
// either end (the header that brings them back is trimmed), control bytes
// (net/http answers that header with 400), and the shape of the ids a
// Broker gives, which resume by position, not by name.
func TestBrokerRefusesUnresumablePublisherIDs(t *testing.T) {
	b := newBroker(t, nil)
	defer b.Close()
	for _, id := range []string{" a", "a ", "\ta", "a\t", "a\x01b", "a\x1fb", "a\x7fb", "0123456789abcdef-0", epochOf(b) + "-3", "ffffffffffffffff-18446744073709551615"} {
		if err := b.Publish(sse.Event{ID: id}); !errors.Is(err, sse.ErrInvalidID) {
			t.Errorf("Publish with ID %q: %v, want sse.ErrInvalidID", id, err)
		}
	}
	for _, id := range []string{"a b", "a\tb", "0123456789abcdef", "0123456789ABCDEF-3", "0123456789abcdef-x", "0123456789abcdef-99999999999999999999"} {
		if err := b.Publish(sse.Event{ID: id}); err != nil {
			t.Errorf("Publish with ID %q: %v, want nil", id, err)
		}
	}
	if s := b.Stats(); s.Published != 6 || s.PublishErrors != 10 {
		t.Errorf("stats: %d published, %d errors; want 6 and 10", s.Published, s.PublishErrors)
	}
}

// Ids the Broker could not resume from are refused, or answered with a reset:
// never a silent gap.
func TestBrokerUnresumableIDs(t *testing.T) {
	leakcheck.Check(t)
	b := newBroker(t, nil)
	srv := brokerServer(t, b)
	long := strings.Repeat("a", sse.MaxLastEventIDLen+1)
	if err := b.Publish(sse.Event{ID: long}); !errors.Is(err, sse.ErrInvalidID) {
		t.Errorf("Publish with a %d-byte id: %v, want sse.ErrInvalidID", len(long), err)
	}
	// A header LastEventID refuses gets a reset, not a fresh start.
	if ev := connect(t, srv.Client(), srv.URL, long).next(t); ev.Type != ResetEvent || ev.Data != "" {
		t.Errorf("an over-long Last-Event-ID: first event %+v, want a reset", ev)
	}
	// A publisher id seen twice in the history names no single position.
	_ = b.Publish(sse.Event{ID: "x", Data: "seen"})
	_ = b.Publish(sse.Event{Data: "missed"})
	_ = b.Publish(sse.Event{ID: "x", Data: "also x"})
	if ev := connect(t, srv.Client(), srv.URL, "x").next(t); ev.Type != ResetEvent || ev.Data != "x" {
		t.Errorf("a repeated id: first event %+v, want a reset", ev)
	}
}
