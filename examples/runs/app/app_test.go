package app

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/lightsse/sse"
	"github.com/lightsse/sse/internal/leakcheck"
	"github.com/lightsse/sse/internal/ssetest"
)

// TestMain fails the run if a goroutine outlives the tests.
func TestMain(m *testing.M) { leakcheck.Main(m) }

func newServer(t *testing.T) (*App, *httptest.Server) {
	t.Helper()
	a, err := New(Options{Key: []byte("0123456789abcdef0123456789abcdef"), TokenDelay: time.Millisecond, Tokens: 50})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(a.Handler())
	t.Cleanup(func() { a.Close(); srv.CloseClientConnections(); srv.Close() })
	return a, srv
}

// noRedirect is a client that shows the 303 itself.
var noRedirect = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// POST /runs answers 303 to the run's page, with a ticket; the page opens
// the stream with it; the stream is the answer's tokens, then done, and
// after it, 204.
func TestAsk(t *testing.T) {
	leakcheck.Check(t)
	_, srv := newServer(t)
	resp, err := noRedirect.PostForm(srv.URL+"/runs", url.Values{"prompt": {"why so fast"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, _ := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(loc.Path, "/runs/") || loc.Query().Get("ticket") == "" {
		t.Fatalf("POST /runs: %d, Location %q", resp.StatusCode, loc)
	}
	page := get(t, srv.URL+loc.String())
	if !strings.Contains(page, `new EventSource("/runs/"`) || !strings.Contains(page, `addEventListener("token"`) {
		t.Errorf("the run's page: %s", page)
	}
	events := srv.URL + loc.Path + "/events?" + loc.RawQuery
	body := get(t, events)
	evs, rd := ssetest.Parse(body)
	if len(evs) != 51 || evs[0].Data != "why " || evs[50].Type != "done" {
		t.Fatalf("the stream: %d events: %+v", len(evs), evs)
	}
	for _, ev := range evs[:50] {
		if ev.Type != "token" {
			t.Fatalf("event %+v, want a token", ev)
		}
	}
	req, _ := http.NewRequest("GET", events, nil)
	req.Header.Set("Last-Event-ID", rd.LastEventID)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusNoContent {
		t.Errorf("after the end: %v %v, want 204", resp.Status, err)
	} else {
		resp.Body.Close()
	}
}

// get returns the body of a GET of u, which must answer 200.
func get(t *testing.T, u string) string {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %s", u, resp.StatusCode, b)
	}
	return string(b)
}

// A missing, tampered, other-run or expired ticket gets 403 and no stream.
func TestTickets(t *testing.T) {
	leakcheck.Check(t)
	a, srv := newServer(t)
	run, err := a.Runs.Start(context.Background(), "r1")
	if err != nil {
		t.Fatal(err)
	}
	_ = run.Finish(sse.Event{Type: "done"})
	good := a.tickets.Sign("r1", time.Hour)
	tampered := []byte(good)
	tampered[3] ^= 1
	for name, ticket := range map[string]string{
		"missing":   "",
		"tampered":  string(tampered),
		"other run": a.tickets.Sign("r2", time.Hour),
		"expired":   a.tickets.Sign("r1", -time.Second),
		"garbage":   "%%%",
	} {
		resp, err := http.Get(srv.URL + "/runs/r1/events?ticket=" + url.QueryEscape(ticket))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden || strings.Contains(string(b), "data:") {
			t.Errorf("%s ticket: %d %q, want 403 and no stream", name, resp.StatusCode, b)
		}
	}
	if body := get(t, srv.URL+"/runs/r1/events?ticket="+url.QueryEscape(good)); !strings.Contains(body, "event: done") {
		t.Errorf("a good ticket: %q", body)
	}
}

// The fake model answers one prompt one way, with the prompt's words first.
func TestAnswer(t *testing.T) {
	a, b := answer("hello there", 40), answer("hello there", 40)
	if strings.Join(a, "") != strings.Join(b, "") || len(a) != 40 || a[0] != "hello " || a[1] != "there: " {
		t.Errorf("answer: %q", a)
	}
	if strings.Join(answer("other", 40), "") == strings.Join(a, "") {
		t.Error("two prompts, one answer")
	}
}
