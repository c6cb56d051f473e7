package main

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/lightsse/sse/internal/leakcheck"
	"github.com/lightsse/sse/internal/ssetest"
)

// TestMain fails the run if a stream outlives its test.
func TestMain(m *testing.M) { leakcheck.Main(m) }

func TestClockPage(t *testing.T) {
	srv := httptest.NewServer(newMux())
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Errorf("status %d, Content-Type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	for _, want := range []string{`new EventSource("/events")`, `addEventListener("time"`} {
		if !strings.Contains(string(body), want) {
			t.Errorf("the page lacks %s", want)
		}
	}

	resp, err = srv.Client().Get(srv.URL + "/nothing")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /nothing: status %d, want 404", resp.StatusCode)
	}
}

// The stream sends a time event at once, then one per second.
func TestClockEvents(t *testing.T) {
	srv := httptest.NewServer(newMux())
	defer srv.Close()
	client := srv.Client()
	defer client.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel() // runs before srv.Close, which waits for the handler

	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/events", nil)
	req.Header.Set("Accept", "text/event-stream")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("status %d, Content-Type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}

	events := ssetest.NewReader(resp.Body)
	var times []time.Time
	for range 2 {
		ev, err := events.Next()
		if err != nil {
			t.Fatal(err)
		}
		if ev.Type != "time" {
			t.Fatalf("event type %q, want time", ev.Type)
		}
		at, err := time.Parse(time.RFC3339, ev.Data)
		if err != nil {
			t.Fatalf("data %q: %v", ev.Data, err)
		}
		times = append(times, at)
	}
	if !times[1].After(times[0]) {
		t.Errorf("second event %v is not after the first %v", times[1], times[0])
	}
}
