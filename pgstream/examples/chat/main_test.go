package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/lightsse/sse/examples/chat/room"
	"github.com/lightsse/sse/internal/ssetest"
	"github.com/lightsse/sse/pgstream"
	"github.com/lightsse/sse/pgstream/internal/pgtest"
)

// TestMain stops the tests' PostgreSQL after them, and fails the run if a
// stream, connection or goroutine of pgx outlives its test.
func TestMain(m *testing.M) { pgtest.Main(m) }

// process starts what one chat process serves, on the database at dbURL,
// until the test ends.
func process(t *testing.T, dbURL string) *httptest.Server {
	pool, err := pgxpool.New(context.Background(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if err := pgstream.Migrate(t.Context(), pool, nil); err != nil {
		t.Fatal(err)
	}
	broker, streams, err := newBroker(pool, "chat")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { streams.Close() })
	hs := httptest.NewServer(room.Handler(broker))
	t.Cleanup(hs.Close)
	t.Cleanup(func() { broker.Close() })
	return hs
}

// A message posted to one process reaches a tab served by the other.
func TestTwoProcessesOneRoom(t *testing.T) {
	dbURL := pgtest.Start(t).NewDB(t)
	a, b := process(t, dbURL), process(t, dbURL)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	hc := &http.Client{Transport: tr}
	tabA, tabB := open(t, ctx, hc, a.URL), open(t, ctx, hc, b.URL)
	form := url.Values{"name": {"ann"}, "text": {"hello from A"}}.Encode()
	// The tabs may open before their process follows the room: post until
	// both have the message (each post is one more message).
	evA, evB := make(chan ssetest.Event, 1), make(chan ssetest.Event, 1)
	go func() { evA <- next(tabA) }()
	go func() { evB <- next(tabB) }()
	var gotA, gotB ssetest.Event
	for tick := time.NewTicker(200 * time.Millisecond); gotA.Type == "" || gotB.Type == ""; {
		resp, err := hc.Post(a.URL+"/send", "application/x-www-form-urlencoded", strings.NewReader(form))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNoContent {
			t.Fatalf("POST /send: %s", resp.Status)
		}
		select {
		case gotA = <-evA:
		case gotB = <-evB:
		case <-tick.C:
		case <-ctx.Done():
			t.Fatal("the message did not reach both tabs")
		}
	}
	for _, ev := range []ssetest.Event{gotA, gotB} {
		var m room.Message
		if err := json.Unmarshal([]byte(ev.Data), &m); err != nil || ev.Type != "chat" || m.Text != "hello from A" {
			t.Errorf("event %+v, want the chat message", ev)
		}
	}
	if gotA.LastEventID == "" || gotB.LastEventID == "" {
		t.Error("the message has no id")
	}
}

func open(t *testing.T, ctx context.Context, hc *http.Client, base string) *ssetest.Reader {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, "GET", base+"/events", nil)
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != 200 {
		t.Fatalf("GET /events: %s", resp.Status)
	}
	return ssetest.NewReader(resp.Body)
}

func next(r *ssetest.Reader) ssetest.Event {
	ev, _ := r.Next()
	return ev
}
