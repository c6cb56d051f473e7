package sserun

import (
	"context"
	"errors"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lightsse/sse"
	"github.com/lightsse/sse/internal/leakcheck"
	"github.com/lightsse/sse/internal/ssetest"
	"github.com/lightsse/sse/sseclient"
)

// TestMain fails the run if any goroutine outlives the tests.
func TestMain(m *testing.M) { leakcheck.Main(m) }

// A viewer who comes mid-run gets the run from its first event, then live
// ones, then the terminal event, and its stream ends; its reconnection, with
// the terminal event's id, gets 204.
func TestViewerGetsTheWholeRun(t *testing.T) {
	leakcheck.Check(t)
	rs := newRuns(t, nil)
	srv := serve(t, rs)
	r, err := rs.Start(t.Context(), "a")
	if err != nil {
		t.Fatal(err)
	}
	publish(t, r, 1, 3)
	v := view(t, srv.URL+"/runs/a", "")
	if v.status != http.StatusOK {
		t.Fatalf("status %d", v.status)
	}
	v.expectTokens(t, 1, 3)
	waitFor(t, "the viewer to count", func() bool { return viewers(rs, "a") == 1 })
	publish(t, r, 4, 5)
	v.expectTokens(t, 4, 5)
	if err := r.Finish(done); err != nil {
		t.Fatal(err)
	}
	evs, last := v.rest(t)
	checkRun(t, evs, 6, 5) // done alone
	if code, _ := statusOf(t, srv.URL+"/runs/a", last); code != http.StatusNoContent {
		t.Errorf("reconnection after the end: %d, want 204", code)
	}
}

// A viewer who comes before the first event waits for it.
func TestViewerBeforeTheFirstEvent(t *testing.T) {
	leakcheck.Check(t)
	rs := newRuns(t, nil)
	srv := serve(t, rs)
	r, _ := rs.Start(t.Context(), "a")
	v := view(t, srv.URL+"/runs/a", "")
	waitFor(t, "the viewer to count", func() bool { return viewers(rs, "a") == 1 })
	publish(t, r, 1, 2)
	_ = r.Finish(done)
	evs, _ := v.rest(t)
	checkRun(t, evs, 1, 2)
}

// After the end, a viewer gets the whole run and its stream ends; with a
// Last-Event-ID, exactly what followed it.
func TestFinishedRun(t *testing.T) {
	leakcheck.Check(t)
	rs := newRuns(t, nil)
	srv := serve(t, rs)
	r, _ := rs.Start(t.Context(), "a")
	publish(t, r, 1, 100)
	_ = r.Finish(done)
	evs, last := view(t, srv.URL+"/runs/a", "").rest(t)
	checkRun(t, evs, 1, 100)
	if code, _ := statusOf(t, srv.URL+"/runs/a", last); code != http.StatusNoContent {
		t.Errorf("reconnection after the end: %d, want 204", code)
	}
	// Every id of the run resumes after itself.
	for _, k := range []int{0, 1, 50, 99, 100} {
		id := evs[0].LastEventID[:17] + "1" // the opening mark
		if k > 0 {
			id = evs[k-1].LastEventID
		}
		got, _ := view(t, srv.URL+"/runs/a", id).rest(t)
		checkRun(t, got, k+1, 100)
	}
}

// A reconnection mid-run gets exactly what followed its id, from the run's
// history or live.
func TestReconnectMidRun(t *testing.T) {
	leakcheck.Check(t)
	rs := newRuns(t, nil)
	srv := serve(t, rs)
	r, _ := rs.Start(t.Context(), "a")
	publish(t, r, 1, 10)
	v := view(t, srv.URL+"/runs/a", "")
	v.expectTokens(t, 1, 10)
	last := v.leave()
	publish(t, r, 11, 20)
	v2 := view(t, srv.URL+"/runs/a", last)
	v2.expectTokens(t, 11, 20)
	waitFor(t, "the viewer to count", func() bool { return viewers(rs, "a") == 1 })
	publish(t, r, 21, 22)
	_ = r.Finish(done)
	evs, _ := v2.rest(t)
	checkRun(t, evs, 21, 22)
}

// Viewers that come and go at random moments of a run, some reconnecting
// with the id they had, each see every event once, in order, and the end.
func TestViewersComeAndGo(t *testing.T) {
	leakcheck.Check(t)
	rs := newRuns(t, nil)
	srv := serve(t, rs)
	r, _ := rs.Start(t.Context(), "a")
	const n = 2000
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for i := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- watchWhole(srv.URL+"/runs/a", rand.New(rand.NewPCG(uint64(i), 1)), n)
		}()
	}
	go func() {
		for i := 1; i <= n; i++ {
			_ = r.Publish(sse.Event{Type: "token", Data: tok(i)})
		}
		_ = r.Finish(done)
	}()
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
}

// watchWhole reads a run of n tokens and done, leaving and reconnecting
// with its last event ID at random, and checks it got each event once.
func watchWhole(u string, rnd *rand.Rand, n int) error {
	next, last := 1, ""
	for range 100 {
		req, _ := http.NewRequest("GET", u, nil)
		if last != "" {
			req.Header.Set("Last-Event-ID", last)
		}
		ctx, cancel := context.WithCancel(context.Background())
		resp, err := http.DefaultClient.Do(req.WithContext(ctx))
		if err != nil {
			cancel()
			return err
		}
		if resp.StatusCode == http.StatusNoContent {
			resp.Body.Close()
			cancel()
			if next != n+2 {
				return errors.New("204 before the end")
			}
			return nil
		}
		rd := ssetest.NewReader(resp.Body)
		leaveAfter := rnd.IntN(n / 4)
		for read := 0; ; read++ {
			ev, err := rd.Next()
			if err != nil {
				break // the end: reconnect
			}
			last = rd.LastEventID
			want := "token"
			if next == n+1 {
				want = "done"
			}
			if ev.Type != want || (want == "token" && ev.Data != tok(next)) {
				resp.Body.Close()
				cancel()
				return errors.New("got " + ev.Type + " " + ev.Data + ", want " + want + " " + tok(next))
			}
			next++
			if read == leaveAfter {
				break
			}
		}
		cancel()
		resp.Body.Close()
	}
	return errors.New("100 connections and not done")
}

// A run that does not exist gets Options.NotFound, 404 by default, before
// any byte of a stream; one whose id could not name a run too.
func TestNotFound(t *testing.T) {
	leakcheck.Check(t)
	srv := serve(t, newRuns(t, nil))
	for _, id := range []string{"nope", "%7Bx%7D", strings.Repeat("x", MaxIDLen+1)} {
		if code, _ := statusOf(t, srv.URL+"/runs/"+id, ""); code != http.StatusNotFound {
			t.Errorf("%s: %d, want 404", id, code)
		}
	}
	srv2 := serve(t, newRuns(t, &Options{NotFound: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "gone", http.StatusGone)
	})}))
	if code, body := statusOf(t, srv2.URL+"/runs/nope", ""); code != http.StatusGone || body != "gone\n" {
		t.Errorf("NotFound set: %d %q, want 410 gone", code, body)
	}
}

// Authorize decides first: its error is 403 with no stream, for a run that
// exists, and for one that does not. It is asked with the run's id.
func TestAuthorize(t *testing.T) {
	leakcheck.Check(t)
	var asked []string
	var mu sync.Mutex
	rs := newRuns(t, &Options{Authorize: func(r *http.Request, id string) error {
		mu.Lock()
		asked = append(asked, id)
		mu.Unlock()
		if r.URL.Query().Get("ticket") != "ok-"+id {
			return errors.New("no")
		}
		return nil
	}})
	srv := serve(t, rs)
	r, _ := rs.Start(t.Context(), "a")
	publish(t, r, 1, 2)
	_ = r.Finish(done)
	for _, q := range []string{"", "?ticket=bad", "?ticket=ok-b"} {
		code, body := statusOf(t, srv.URL+"/runs/a"+q, "")
		if code != http.StatusForbidden || strings.Contains(body, "data:") {
			t.Errorf("ticket %q: %d %q, want 403 and no stream", q, code, body)
		}
	}
	if code, _ := statusOf(t, srv.URL+"/runs/b", ""); code != http.StatusForbidden {
		t.Errorf("no ticket for a run that does not exist: %d, want 403", code)
	}
	evs, _ := view(t, srv.URL+"/runs/a?ticket=ok-a", "").rest(t)
	checkRun(t, evs, 1, 2)
	mu.Lock()
	defer mu.Unlock()
	if asked[len(asked)-1] != "a" {
		t.Errorf("Authorize asked about %q, want a", asked[len(asked)-1])
	}
}

// The query cursor, where set, resumes as the header does; the header wins;
// where it is not set, the query is ignored.
func TestQueryCursor(t *testing.T) {
	leakcheck.Check(t)
	for _, live := range []bool{false, true} {
		rs := newRuns(t, &Options{QueryCursor: "lastEventId"})
		srv := serve(t, rs)
		r, _ := rs.Start(t.Context(), "a")
		publish(t, r, 1, 10)
		if !live {
			_ = r.Finish(done)
		}
		id4 := idOf(t, srv.URL+"/runs/a", 4)
		id7 := idOf(t, srv.URL+"/runs/a", 7)
		q := srv.URL + "/runs/a?lastEventId=" + url.QueryEscape(id4)
		v := view(t, q, "")
		v.expectTokens(t, 5, 5)
		v.leave()
		v = view(t, q, id7) // the header wins
		v.expectTokens(t, 8, 8)
		v.leave()
		v = view(t, srv.URL+"/runs/a?lastEventId=x", "")
		if ev := v.next(t); ev.Type != "reset" || ev.Data != "x" {
			t.Errorf("an unknown cursor: %+v, want a reset", ev)
		}
		v.leave()
		if !live {
			end := idOf(t, srv.URL+"/runs/a", 11)
			if code, _ := statusOf(t, srv.URL+"/runs/a?lastEventId="+url.QueryEscape(end), ""); code != http.StatusNoContent {
				t.Errorf("a cursor at the end: %d, want 204", code)
			}
		}
		// Not opted in: the query is nothing.
		rs2 := newRuns(t, nil)
		srv2 := serve(t, rs2)
		r2, _ := rs2.Start(t.Context(), "a")
		publish(t, r2, 1, 3)
		_ = r2.Finish(done)
		evs, _ := view(t, srv2.URL+"/runs/a?lastEventId="+url.QueryEscape(idOf(t, srv2.URL+"/runs/a", 2)), "").rest(t)
		checkRun(t, evs, 1, 3)
	}
}

// idOf returns the id of the k-th event (the k-th token; k past the tokens,
// the terminal event) of the run at u.
func idOf(t *testing.T, u string, k int) string {
	t.Helper()
	v := view(t, u, "")
	var ev string
	for range k {
		ev = v.next(t).LastEventID
	}
	v.leave()
	return ev
}

// An id that names no event of a finished run gets a reset, with the id as
// its data, then the stream ends; the reconnection gets 204.
func TestFinishedRunUnknownID(t *testing.T) {
	leakcheck.Check(t)
	rs := newRuns(t, nil)
	srv := serve(t, rs)
	r, _ := rs.Start(t.Context(), "a")
	publish(t, r, 1, 3)
	_ = r.Finish(done)
	for _, id := range []string{"x", "0123456789abcdef-1", "\xff"} {
		evs, last := view(t, srv.URL+"/runs/a", id).rest(t)
		want := id
		if id == "\xff" {
			want = ""
		}
		if len(evs) != 1 || evs[0].Type != "reset" || evs[0].Data != want {
			t.Errorf("id %q: got %+v, want one reset", id, evs)
		}
		if code, _ := statusOf(t, srv.URL+"/runs/a", last); code != http.StatusNoContent {
			t.Errorf("reconnection after the reset: %d, want 204", code)
		}
	}
}

// The errors of Start, Publish and Finish.
func TestErrors(t *testing.T) {
	leakcheck.Check(t)
	rs := newRuns(t, &Options{MaxBytes: 100})
	for _, id := range []string{"", "a/b", "a b", "{a}", strings.Repeat("x", MaxIDLen+1)} {
		if _, err := rs.Start(t.Context(), id); !errors.Is(err, ErrInvalidRunID) {
			t.Errorf("Start(%q): %v, want ErrInvalidRunID", id, err)
		}
	}
	r, err := rs.Start(t.Context(), "a")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rs.Start(t.Context(), "a"); !errors.Is(err, ErrExists) {
		t.Errorf("Start twice: %v, want ErrExists", err)
	}
	if err := r.Publish(sse.Event{ID: "x"}); !errors.Is(err, sse.ErrInvalidID) {
		t.Errorf("Publish with an ID: %v, want sse.ErrInvalidID", err)
	}
	if err := r.Publish(sse.Event{Type: "a\nb"}); !errors.Is(err, sse.ErrInvalidType) {
		t.Errorf("Publish with a bad type: %v, want sse.ErrInvalidType", err)
	}
	if err := r.Publish(sse.Event{Data: strings.Repeat("x", 100)}); !errors.Is(err, ErrTooLarge) {
		t.Errorf("Publish past MaxBytes: %v, want ErrTooLarge", err)
	}
	if err := r.Finish(sse.Event{ID: "x"}); !errors.Is(err, sse.ErrInvalidID) {
		t.Errorf("Finish with an ID: %v, want sse.ErrInvalidID", err)
	}
	if err := r.Finish(done); err != nil {
		t.Fatal(err)
	}
	if err := r.Publish(sse.Event{}); !errors.Is(err, ErrFinished) {
		t.Errorf("Publish after Finish: %v, want ErrFinished", err)
	}
	if err := r.Finish(done); !errors.Is(err, ErrFinished) {
		t.Errorf("Finish twice: %v, want ErrFinished", err)
	}
	if _, err := rs.Start(t.Context(), "a"); !errors.Is(err, ErrExists) {
		t.Errorf("Start of a finished run: %v, want ErrExists", err)
	}
	r2, _ := rs.Start(t.Context(), "b")
	rs.Close()
	if _, err := rs.Start(t.Context(), "c"); !errors.Is(err, sse.ErrClosed) {
		t.Errorf("Start after Close: %v, want sse.ErrClosed", err)
	}
	if err := r2.Publish(sse.Event{}); !errors.Is(err, sse.ErrClosed) {
		t.Errorf("Publish after Close: %v, want sse.ErrClosed", err)
	}
}

// Close ends the streams of live runs; their clients are told to come back.
func TestCloseEndsStreams(t *testing.T) {
	leakcheck.Check(t)
	rs := newRuns(t, nil)
	srv := serve(t, rs)
	r, _ := rs.Start(t.Context(), "a")
	publish(t, r, 1, 2)
	v := view(t, srv.URL+"/runs/a", "")
	v.expectTokens(t, 1, 2)
	waitFor(t, "the viewer to count", func() bool { return viewers(rs, "a") == 1 })
	rs.Close()
	if evs, _ := v.rest(t); len(evs) != 0 {
		t.Errorf("after Close: %+v", evs)
	}
	if v.reader.Retry <= 0 || v.reader.Retry > endRetry {
		t.Errorf("retry %v, want up to %v", v.reader.Retry, endRetry)
	}
}

// Methods other than GET and HEAD get 405; HEAD gets a stream's headers.
func TestMethods(t *testing.T) {
	leakcheck.Check(t)
	rs := newRuns(t, nil)
	srv := serve(t, rs)
	r, _ := rs.Start(t.Context(), "a")
	_ = r.Finish(done)
	resp, err := http.Post(srv.URL+"/runs/a", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "GET, HEAD" {
		t.Errorf("POST: %d, Allow %q", resp.StatusCode, resp.Header.Get("Allow"))
	}
	resp, err = http.Head(srv.URL + "/runs/a")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Errorf("HEAD: %d, %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
}

// A Go client (sseclient) reading a run gets it whole, then, when it comes
// back after the terminal event, the 204 that ends its stream for good, as
// EventSource does: no reconnection loop.
func TestGoClientStopsAfterTheRun(t *testing.T) {
	leakcheck.Check(t)
	rs := newRuns(t, nil)
	srv := serve(t, rs)
	r, err := rs.Start(t.Context(), "a")
	if err != nil {
		t.Fatal(err)
	}
	publish(t, r, 1, 3)
	if err := r.Finish(done); err != nil {
		t.Fatal(err)
	}
	var requests atomic.Int32
	client := sseclient.Client{
		HTTPClient: &http.Client{Transport: countingTransport{&requests, srv.Client().Transport}},
		Retry:      time.Millisecond,
	}
	req, _ := http.NewRequestWithContext(t.Context(), "GET", srv.URL+"/runs/a", nil)
	var got []string
	var end error
	for ev, err := range client.Events(req) {
		if err != nil {
			end = err
			break
		}
		got = append(got, ev.Data)
	}
	if want := []string{tok(1), tok(2), tok(3), done.Data}; !slices.Equal(got, want) || !errors.Is(end, sseclient.ErrNoContent) {
		t.Errorf("events %q, then %v; want %q, then ErrNoContent", got, end, want)
	}
	if n := requests.Load(); n != 2 {
		t.Errorf("%d requests, want 2: the run, then the reconnection that got 204", n)
	}
}

// countingTransport counts the requests it sends.
type countingTransport struct {
	n    *atomic.Int32
	next http.RoundTripper
}

func (c countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	return c.next.RoundTrip(r)
}
