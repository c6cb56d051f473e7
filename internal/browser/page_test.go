package browser

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lightsse/sse/internal/leakcheck"
)

// TestMain fails the run if any goroutine outlives the tests.
func TestMain(m *testing.M) { leakcheck.Main(m) }

// testTimeout bounds each test: Chromium's start, the page and every wait.
const testTimeout = 45 * time.Second

// page is one test's browser session: a server on 127.0.0.1 whose "/" is a
// page running the test's script, and one Chromium showing it. The script
// sends its findings with report(name, value); the test reads them with await.
type page struct {
	t       *testing.T
	ctx     context.Context // ends at the test's deadline, or when it ends
	bin     string
	Mux     *http.ServeMux // the test adds its handlers before start
	srv     *httptest.Server
	browser *browserProc

	mu      sync.Mutex
	reports map[string]chan []byte
	jsErr   chan string
}

// newPage prepares a session; it skips the test when there is no Chromium.
func newPage(t *testing.T) *page {
	t.Helper()
	bin := requireChromium(t)
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	t.Cleanup(cancel)
	p := &page{
		t: t, ctx: ctx, bin: bin, Mux: http.NewServeMux(),
		reports: make(map[string]chan []byte),
		jsErr:   make(chan string, 1),
	}
	p.Mux.HandleFunc("POST /report/{name}", p.serveReport)
	return p
}

// pageOptions vary how a page is served and shown.
type pageOptions struct {
	TLS bool // serve over HTTPS with HTTP/2; Chromium accepts the test certificate
}

// start serves the page running script over HTTP/1.1 and opens it in Chromium.
func (p *page) start(script string) { p.startWith(script, pageOptions{}) }

// startWith serves the page running script and opens it in Chromium.
func (p *page) startWith(script string, o pageOptions) {
	p.t.Helper()
	html := pageHTML(script)
	p.Mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		io.WriteString(w, html)
	})
	var extra []string
	p.srv = httptest.NewUnstartedServer(p.Mux)
	// Chromium's speculative connections, closed unused, would log
	// handshake errors.
	p.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	p.srv.Config.ConnContext = func(ctx context.Context, c net.Conn) context.Context {
		return context.WithValue(ctx, connKey{}, c)
	}
	if o.TLS {
		p.srv.EnableHTTP2 = true
		p.srv.StartTLS()
		extra = append(extra, "--ignore-certificate-errors")
	} else {
		p.srv.Start()
	}
	// Cleanups run last-first: Chromium is killed before the server closes, so
	// that the streams' request contexts end and Close does not wait on them.
	p.t.Cleanup(func() {
		p.srv.CloseClientConnections()
		p.srv.Close()
	})
	p.browser = launchChromium(p.t, p.bin, p.srv.URL+"/", extra...)
}

// connKey is the request context key of the request's connection.
type connKey struct{}

// connOf returns the connection r arrived on, for a test to drop it.
func connOf(r *http.Request) net.Conn {
	c, _ := r.Context().Value(connKey{}).(net.Conn)
	return c
}

func (p *page) channel(name string) chan []byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	c, ok := p.reports[name]
	if !ok {
		c = make(chan []byte, 16)
		p.reports[name] = c
	}
	return c
}

func (p *page) serveReport(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 64<<20))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	name := r.PathValue("name")
	if name == "jserror" {
		select {
		case p.jsErr <- string(body):
		default:
		}
	} else {
		select {
		case p.channel(name) <- body:
		default:
			p.t.Errorf("report %q sent more than 16 times", name)
		}
	}
	w.WriteHeader(http.StatusNoContent)
}

// await waits for the page's report name and decodes it into v. It fails the
// test at the deadline, or at once if the page threw an error.
func (p *page) await(name string, v any) {
	p.t.Helper()
	select {
	case body := <-p.channel(name):
		if err := json.Unmarshal(body, v); err != nil {
			p.t.Fatalf("report %q: %v", name, err)
		}
	case msg := <-p.jsErr:
		p.t.Fatalf("the page threw, awaiting report %q: %s (what it had seen follows)", name, msg)
	case <-p.ctx.Done():
		p.t.Fatalf("no report %q from the page by the test's deadline: %v (what it had seen follows)", name, context.Cause(p.ctx))
	}
}

// waitFor polls cond until it holds, or fails the test at its deadline.
func (p *page) waitFor(what string, cond func() bool) {
	p.t.Helper()
	for !cond() {
		select {
		case <-time.After(5 * time.Millisecond):
		case <-p.ctx.Done():
			p.t.Fatalf("deadline waiting for %s (what the page had seen follows)", what)
		}
	}
}

// pageHTML is the page: the helpers below, then the test's script inside an
// async function, so it can await.
func pageHTML(script string) string {
	return `<!doctype html>
<html><head><meta charset="utf-8"><link rel="icon" href="data:,"><title>sse</title></head>
<body><script>
"use strict";
` + pageLib + `
(async () => {
` + script + `
})().catch(e => { note({kind: 'jserror', data: String(e && e.stack || e)}); report('jserror', String(e && e.stack || e)); });
</script></body></html>
`
}

// pageLib are the helpers every page has.
//
//	watch(es, types, src) records into seen, in order: "open" and "error"
//	  with the readyState at that moment, and each event of the listed types
//	  with its type, data and lastEventId; src tags the records when the page
//	  has several sources. Each record is noted too.
//	note(r) writes r to the console, shortened, where the test finds it
//	  (pageOutput): the page's own record of what it saw, printed when a
//	  test fails. It takes no connection, so it works when the page's
//	  connections are all held by streams.
//	report(name, value) POSTs value as JSON to /report/name, and notes it.
//	until(cond) resolves once cond() is true. It has no time limit of its
//	  own: the test's deadline is the one limit, and its failure shows the
//	  page's record.
//	sleep(ms) resolves after ms.
const pageLib = `
const seen = [];
function note(r) {
  const short = {...r};
  if (typeof short.data === 'string' && short.data.length > 60) {
    short.data = short.data.slice(0, 60) + '...(' + r.data.length + ' chars)';
  }
  console.log('sse-record ' + JSON.stringify(short));
}
function watch(es, types, src) {
  const tag = src === undefined ? {} : {src: String(src)};
  const record = r => { seen.push(r); note(r); };
  es.addEventListener('open', () => record({kind: 'open', state: es.readyState, ...tag}));
  es.addEventListener('error', () => record({kind: 'error', state: es.readyState, ...tag}));
  for (const t of types) {
    es.addEventListener(t, e => record({kind: 'event', type: e.type, data: e.data, lastEventId: e.lastEventId, ...tag}));
  }
}
async function report(name, value) {
  note({kind: 'report', name});
  const r = await fetch('/report/' + name, {method: 'POST', body: JSON.stringify(value)});
  if (!r.ok) throw new Error('report ' + name + ': HTTP ' + r.status);
}
function sleep(ms) { return new Promise(resolve => setTimeout(resolve, ms)); }
async function until(cond) {
  while (!cond()) await sleep(5);
}
window.addEventListener('error', e => {
  note({kind: 'jserror', data: e.message + ' (line ' + e.lineno + ')'});
  report('jserror', e.message + ' (line ' + e.lineno + ')');
});
`

// record is one thing the page saw, as watch records it.
type record struct {
	Kind        string `json:"kind"` // "open", "error" or "event"
	State       int    `json:"state,omitempty"`
	Src         string `json:"src,omitempty"`
	Type        string `json:"type,omitempty"`
	Data        string `json:"data,omitempty"`
	LastEventID string `json:"lastEventId,omitempty"`
}

// EventSource.readyState values.
const (
	connecting = 0
	open       = 1
	closed     = 2
)

func opened() record          { return record{Kind: "open", State: open} }
func failed(state int) record { return record{Kind: "error", State: state} }

// ev is a dispatched event: its type, data and the source's last event ID.
func ev(typ, data, lastEventID string) record {
	return record{Kind: "event", Type: typ, Data: data, LastEventID: lastEventID}
}

func (r record) String() string {
	src := ""
	if r.Src != "" {
		src = "[" + r.Src + "] "
	}
	if r.Kind != "event" {
		return fmt.Sprintf("%s%s(readyState %d)", src, r.Kind, r.State)
	}
	data := r.Data
	if len(data) > 80 {
		data = fmt.Sprintf("%s...(%d bytes)", data[:60], len(data))
	}
	return fmt.Sprintf("%sevent(type=%q, data=%q, lastEventId=%q)", src, r.Type, data, r.LastEventID)
}

// checkSeq fails the test unless got is exactly want, naming the first
// difference and a few records around it.
func checkSeq(t *testing.T, what string, got, want []record) {
	t.Helper()
	n := min(len(got), len(want))
	i := 0
	for i < n && got[i] == want[i] {
		i++
	}
	if i == n && len(got) == len(want) {
		return
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s: got %d records, want %d; first difference at %d:\n", what, len(got), len(want), i)
	for j := max(0, i-2); j < min(max(len(got), len(want)), i+3); j++ {
		g, w := "(none)", "(none)"
		if j < len(got) {
			g = got[j].String()
		}
		if j < len(want) {
			w = want[j].String()
		}
		mark := "  "
		if g != w {
			mark = "! "
		}
		fmt.Fprintf(&b, "%s[%d] got  %s\n%s     want %s\n", mark, j, g, mark, w)
	}
	t.Error(b.String())
}
