package sserun

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/lightsse/sse/internal/ssetest"
)

// get serves one request to rs and returns the response, for a finished
// run's stream, which ends by itself.
func get(rs *Runs, url, lastID string) *httptest.ResponseRecorder {
	req := httptest.NewRequest("GET", url, nil)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	rec := httptest.NewRecorder()
	rs.ServeHTTP(rec, req)
	return rec
}

// A finished run is served whole until its retention is over, then it is
// gone: the application's 404, and nothing held. Its live viewer's stream
// ended at Finish; nothing of the run's runs on (the bubble would not end).
func TestRetention(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rs := newRuns(t, &Options{Retention: time.Minute})
		r, err := rs.Start(t.Context(), "a")
		if err != nil {
			t.Fatal(err)
		}
		publish(t, r, 1, 3)
		live := httptest.NewRecorder()
		served := make(chan struct{})
		go func() {
			defer close(served)
			rs.ServeHTTP(live, httptest.NewRequest("GET", "/runs/a", nil))
		}()
		synctest.Wait()
		if err := r.Finish(done); err != nil {
			t.Fatal(err)
		}
		<-served
		evs, _ := ssetest.Parse(live.Body.String())
		checkRun(t, evs, 1, 3)

		time.Sleep(time.Minute - time.Nanosecond)
		rec := get(rs, "/runs/a", "")
		evs, _ = ssetest.Parse(rec.Body.String())
		checkRun(t, evs, 1, 3)
		if rs.Len() != 1 {
			t.Errorf("Len = %d within the retention, want 1", rs.Len())
		}
		// A second run, finished later, outlives the first.
		r2, _ := rs.Start(t.Context(), "b")
		_ = r2.Finish(done)

		time.Sleep(time.Nanosecond)
		if rec := get(rs, "/runs/a", ""); rec.Code != http.StatusNotFound {
			t.Errorf("after the retention: %d %q, want 404", rec.Code, rec.Body.String())
		}
		if rs.Len() != 1 {
			t.Errorf("Len = %d after the first retention, want 1", rs.Len())
		}
		if rec := get(rs, "/runs/b", ""); rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), "event: done") {
			t.Errorf("the later run: %d %q, want it whole", rec.Code, rec.Body.String())
		}
		// The id is free again.
		if _, err := rs.Start(t.Context(), "a"); err != nil {
			t.Errorf("Start after the retention: %v", err)
		}
		time.Sleep(time.Minute)
		if _, err := rs.Start(t.Context(), "c"); err != nil {
			t.Fatal(err)
		}
		if rs.Len() != 2 { // a and c, live
			t.Errorf("Len = %d, want the 2 live runs", rs.Len())
		}
		rs.Close()
	})
}

// The queue forgets runs in order, and reuses its room.
func TestExpiryQueue(t *testing.T) {
	var e expiry
	t0 := time.Now()
	runs := make([]*run, 3000)
	for i := range runs {
		runs[i] = &run{}
		e.add(t0.Add(time.Duration(i)), runs[i])
	}
	if e.due(t0.Add(-1)) != nil {
		t.Fatal("a run due before its time")
	}
	for i := range runs {
		if got := e.due(t0.Add(time.Duration(i))); got != runs[i] {
			t.Fatalf("due %d: got another run", i)
		}
		if e.due(t0.Add(time.Duration(i))) != nil {
			t.Fatalf("due %d: two runs", i)
		}
		if len(e.q)-e.head != len(runs)-i-1 {
			t.Fatalf("after %d: %d queued", i, len(e.q)-e.head)
		}
		if e.head > 1024 && e.head*2 > len(e.q) {
			t.Fatalf("after %d: %d of %d are gone and kept", i, e.head, len(e.q))
		}
	}
	if e.head != 0 || len(e.q) != 0 {
		t.Errorf("empty queue: head %d, len %d", e.head, len(e.q))
	}
}
