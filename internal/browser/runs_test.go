package browser

import (
	"errors"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/lightsse/sse"
	"github.com/lightsse/sse/sserun"
)

// runRequest is one request for a run's stream, as the server answered it.
type runRequest struct {
	at     time.Time
	url    string
	status int
}

// runRequests records the requests a Runs answers.
type runRequests struct {
	mu      sync.Mutex
	reqs    []runRequest
	started int // requests that came, answered or not
}

func (rr *runRequests) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		rr.mu.Lock()
		rr.started++
		rr.mu.Unlock()
		h.ServeHTTP(sw, r)
		rr.mu.Lock()
		rr.reqs = append(rr.reqs, runRequest{time.Now(), r.URL.String(), sw.status})
		rr.mu.Unlock()
	})
}

func (rr *runRequests) count() int {
	rr.mu.Lock()
	defer rr.mu.Unlock()
	return rr.started
}

func (rr *runRequests) get() []runRequest {
	rr.mu.Lock()
	defer rr.mu.Unlock()
	return append([]runRequest(nil), rr.reqs...)
}

// statusWriter notes the status a handler answers with.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) { w.status = code; w.ResponseWriter.WriteHeader(code) }

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// tokens returns the records of tokens from..to of the run whose ids are in
// epoch, offset k+1 for token k (the run's first event is its opening mark),
// and of the terminal event done, if withDone.
func tokens(epoch string, from, to int, withDone bool) []record {
	var rs []record
	for i := from; i <= to; i++ {
		rs = append(rs, ev("token", "t"+strconv.Itoa(i), id(epoch, i+1)))
	}
	if withDone {
		rs = append(rs, ev("done", "ok", id(epoch, to+2)))
	}
	return rs
}

// A run in Chromium: a page that reloads mid-run gets the whole run, then
// follows it; a second stream that joins late (a second tab) gets the whole
// run so far, then follows; each gets the terminal event, after which the
// reconnection gets 204 and EventSource is CLOSED, and no request comes for
// 10 s. A reload after the end gets the whole run and is CLOSED. After the
// retention, the run is the application's 404, and a wrong ticket is 403:
// EventSource CLOSED, no event.
func TestRunInChromium(t *testing.T) {
	p := newPage(t)
	const retention = 6 * time.Second
	runs, err := sserun.New(&sserun.Options{
		Retention: retention,
		Authorize: func(r *http.Request, runID string) error {
			if r.URL.Query().Get("ticket") != "ok-"+runID {
				return errors.New("no ticket for this run")
			}
			return nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { runs.Close() })
	var reqs runRequests
	p.Mux.Handle("GET /runs/{id}", reqs.wrap(runs))
	run, err := runs.Start(t.Context(), "a")
	if err != nil {
		t.Fatal(err)
	}
	const n = 200
	next := make(chan int) // the test asks for tokens up to a number
	go func() {
		i := 1
		for to := range next {
			for ; i <= to; i++ {
				if err := run.Publish(sse.Event{Type: "token", Data: "t" + strconv.Itoa(i)}); err != nil {
					t.Error(err)
				}
				if to == n {
					time.Sleep(2 * time.Millisecond) // live, while the second stream follows
				}
			}
		}
		if err := run.Finish(sse.Event{Type: "done", Data: "ok"}); err != nil {
			t.Error(err)
		}
	}()
	next <- 30
	// Phases across reloads, in sessionStorage: 0 reads 20 tokens and
	// reloads; 1 reads the 30 there are, opens a second stream, and reads
	// both to the end (the test publishes the rest once the second stream
	// has come); 2 (a reload after the end) reads to the end; 3 asks for a
	// run that is gone and for one with a wrong ticket.
	p.start(`
const phase = Number(sessionStorage.getItem('phase') || '0');
const tokens = src => seen.filter(r => r.kind === 'event' && r.type === 'token' && (src === undefined || r.src === src)).length;
if (phase === 0) {
  const es = new EventSource('/runs/a?ticket=ok-a');
  watch(es, ['token', 'done', 'reset']);
  await until(() => tokens() >= 20, 20000);
  es.close();
  await report('first', seen);
  sessionStorage.setItem('phase', '1');
  location.reload();
} else if (phase === 1) {
  const es = new EventSource('/runs/a?ticket=ok-a');
  watch(es, ['token', 'done', 'reset'], 1);
  await until(() => tokens('1') >= 30, 20000);
  await report('following', tokens('1'));
  const es2 = new EventSource('/runs/a?ticket=ok-a');
  watch(es2, ['token', 'done', 'reset'], 2);
  await until(() => es.readyState === EventSource.CLOSED && es2.readyState === EventSource.CLOSED, 30000);
  await report('second', seen);
  sessionStorage.setItem('phase', '2');
  location.reload();
} else if (phase === 2) {
  const es = new EventSource('/runs/a?ticket=ok-a');
  watch(es, ['token', 'done', 'reset']);
  await until(() => es.readyState === EventSource.CLOSED, 20000);
  await report('third', seen);
  sessionStorage.setItem('phase', '3');
  await sleep(` + strconv.Itoa(int(retention/time.Millisecond)+5000) + `);
  location.reload();
} else {
  const srcs = ['/runs/a?ticket=ok-a', '/runs/a', '/runs/a?ticket=ok-b', '/runs/b?ticket=ok-a'];
  const ess = srcs.map((u, i) => { const es = new EventSource(u); watch(es, ['token', 'done', 'reset'], i); return es; });
  await until(() => ess.every(es => es.readyState === EventSource.CLOSED), 20000);
  await report('fourth', seen);
}
`)
	var first []record
	p.await("first", &first)
	var following int
	p.await("following", &following)
	p.waitFor("the second stream", func() bool { return reqs.count() == 3 })
	next <- n // the rest, live for both streams
	close(next)
	epoch := ""
	if len(first) > 1 {
		epoch = epochOf(t, first[1].LastEventID)
	}
	checkSeq(t, "before the reload", first[:min(len(first), 21)], append([]record{opened()}, tokens(epoch, 1, 20, false)...))
	var second []record
	p.await("second", &second)
	whole := append(append([]record{opened()}, tokens(epoch, 1, n, true)...), failed(connecting), failed(closed))
	for _, src := range []string{"1", "2"} {
		var got []record
		for _, r := range second {
			if r.Src == src {
				r.Src = ""
				got = append(got, r)
			}
		}
		checkSeq(t, "after the reload, stream "+src, got, whole)
	}
	var third []record
	p.await("third", &third)
	checkSeq(t, "a reload after the end", third, whole)
	ended := time.Now()
	var fourth []record
	p.await("fourth", &fourth)
	all := reqs.get()
	var quiet []runRequest
	for _, r := range all {
		if r.at.After(ended) && r.at.Before(ended.Add(10*time.Second)) {
			quiet = append(quiet, r)
		}
	}
	if len(quiet) != 0 {
		t.Errorf("requests within 10 s of the end: %+v", quiet)
	}
	want := map[string][]record{ // by src
		"0": {failed(closed)}, // gone: 404
		"1": {failed(closed)}, // no ticket: 403
		"2": {failed(closed)}, // another run's ticket
		"3": {failed(closed)}, // a ticket for a, to b
	}
	for src, w := range want {
		var got []record
		for _, r := range fourth {
			if r.Src == src {
				r.Src = ""
				got = append(got, r)
			}
		}
		checkSeq(t, "after the retention, stream "+src, got, w)
	}
	statuses := map[string]int{}
	for _, r := range all[len(all)-4:] {
		statuses[r.url] = r.status
	}
	for u, code := range map[string]int{
		"/runs/a?ticket=ok-a": http.StatusNotFound, "/runs/a": http.StatusForbidden,
		"/runs/a?ticket=ok-b": http.StatusForbidden, "/runs/b?ticket=ok-a": http.StatusForbidden,
	} {
		if statuses[u] != code {
			t.Errorf("%s after the retention: %d, want %d (all: %+v)", u, statuses[u], code, all[len(all)-4:])
		}
	}
}
