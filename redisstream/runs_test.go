package redisstream

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/lightsse/sse"
	"github.com/lightsse/sse/internal/leakcheck"
	"github.com/lightsse/sse/internal/ssetest"
	"github.com/lightsse/sse/redisstream/internal/redistest"
	"github.com/lightsse/sse/ssebroker"
	"github.com/lightsse/sse/sserun"
)

// The tests in this file run sserun's runs on several instances that share
// one Redis: each instance a Streams, a Runs whose runs are topics, and an
// HTTP server on 127.0.0.1.

// A runInstance is one process serving runs.
type runInstance struct {
	runs *sserun.Runs
	srv  *httptest.Server
}

func newRunInstance(t *testing.T, redis *redistest.Server, o *Options) *runInstance {
	t.Helper()
	s := newStreams(t, redis, o)
	runs, err := sserun.New(&sserun.Options{NewLog: func(id string) (ssebroker.Log, error) { return s.Topic("run:" + id) }})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /runs/{id}", runs)
	in := &runInstance{runs: runs, srv: httptest.NewServer(mux)}
	t.Cleanup(in.stop)
	return in
}

// stop ends the instance, as a restart does: its streams end, its server
// closes. (Its Streams closes at the test's end.)
func (in *runInstance) stop() {
	in.runs.Close()
	in.srv.CloseClientConnections()
	in.srv.Close()
}

func (in *runInstance) url(id string) string { return in.srv.URL + "/runs/" + id }

// runStatus returns the status of a GET of url with Last-Event-ID lastID.
func runStatus(t *testing.T, url, lastID string) int {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// watchRun reads the run at url from the event after lastID: up to n
// events, or with n < 0 to the stream's end. It returns the events and the
// last event ID.
func watchRun(t *testing.T, url, lastID string, n int) ([]ssetest.Event, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s after %q: %d", url, lastID, resp.StatusCode)
	}
	rd := ssetest.NewReader(resp.Body)
	var evs []ssetest.Event
	for n < 0 || len(evs) < n {
		ev, err := rd.Next()
		if err == io.EOF && n < 0 {
			break
		}
		if err != nil {
			t.Fatalf("GET %s after %q, %d events: %v", url, lastID, len(evs), err)
		}
		evs = append(evs, ev)
	}
	return evs, rd.LastEventID
}

// A run generated on A is watched from B, which reloads onto A mid-run, and
// from a B that restarts mid-run: every event once, in order, then done and
// 204 on every instance; a late viewer anywhere gets it whole; a run that
// never existed is the application's 404 everywhere; and once Redis's key
// expiry has deleted the finished run, it is 404 everywhere.
func TestRunAcrossInstances(t *testing.T) {
	leakcheck.Check(t)
	redis := redistest.Start(t)
	o := &Options{MaxLen: 2000, IdleTTL: 3 * time.Second}
	a, b := newRunInstance(t, redis, o), newRunInstance(t, redis, o)
	run, err := a.runs.Start(t.Context(), "r1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.runs.Start(t.Context(), "r1"); err == nil {
		t.Error("Start of a run that another instance started: no error")
	}
	const n = 600
	published := make(chan int, n)
	go func() {
		for i := 1; i <= n; i++ {
			if err := run.Publish(sse.Event{Type: "token", Data: strconv.Itoa(i)}); err != nil {
				t.Error(err)
				return
			}
			published <- i
			if i%20 == 0 {
				time.Sleep(time.Millisecond) // live, not all at once
			}
		}
		close(published)
	}()
	var got []ssetest.Event
	evs, last := watchRun(t, b.url("r1"), "", 100) // B, from the first
	got = append(got, evs...)
	evs, last = watchRun(t, a.url("r1"), last, 100) // a reload onto A
	got = append(got, evs...)
	b.stop() // B restarts
	b2 := newRunInstance(t, redis, o)
	evs, last = watchRun(t, b2.url("r1"), last, 100)
	got = append(got, evs...)
	for range published {
	}
	go func() {
		time.Sleep(10 * time.Millisecond)
		if err := run.Finish(sse.Event{Type: "done", Data: "ok"}); err != nil {
			t.Error(err)
		}
	}()
	evs, last = watchRun(t, b2.url("r1"), last, -1) // to the end, live
	got = append(got, evs...)
	checkTokens(t, "the viewer that moved", got, n)
	for _, in := range []*runInstance{a, b2} {
		if code := runStatus(t, in.url("r1"), last); code != http.StatusNoContent {
			t.Errorf("reconnection after the end: %d, want 204", code)
		}
		evs, _ := watchRun(t, in.url("r1"), "", -1)
		checkTokens(t, "a late viewer", evs, n)
		if code := runStatus(t, in.url("nope"), ""); code != http.StatusNotFound {
			t.Errorf("a run that never existed: %d, want 404", code)
		}
	}
	if err := run.Publish(sse.Event{}); err == nil {
		t.Error("Publish after Finish: no error")
	}
	// Redis deletes the run after IdleTTL; every instance then answers 404.
	for _, in := range []*runInstance{a, b2} {
		deadline := time.Now().Add(time.Minute)
		for runStatus(t, in.url("r1"), "") != http.StatusNotFound {
			if time.Now().After(deadline) {
				t.Fatal("the run is still served a minute after its expiry")
			}
			time.Sleep(100 * time.Millisecond) // Redis's clock, not ours
		}
	}
}

// checkTokens checks that evs are tokens 1..n, then done.
func checkTokens(t *testing.T, who string, evs []ssetest.Event, n int) {
	t.Helper()
	if len(evs) != n+1 {
		t.Fatalf("%s: %d events, want %d tokens and done", who, len(evs), n)
	}
	for i, ev := range evs[:n] {
		if ev.Type != "token" || ev.Data != strconv.Itoa(i+1) {
			t.Fatalf("%s: event %d is %+v, want token %d", who, i, ev, i+1)
		}
	}
	if ev := evs[n]; ev.Type != "done" {
		t.Fatalf("%s: last event %+v, want done", who, ev)
	}
}
