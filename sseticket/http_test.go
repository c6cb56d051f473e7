package sseticket

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lightsse/sse"
)

// runStreams serves GET /runs/{id}/events, a stream behind s.Require, and
// counts the requests that reached the stream's handler.
func runStreams(t *testing.T, s *Signer) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	var reached atomic.Int32
	mux := http.NewServeMux()
	mux.Handle("GET /runs/{id}/events", s.Require(
		func(r *http.Request) string { return "run:" + r.PathValue("id") },
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			reached.Add(1)
			stream, err := sse.NewWriter(w, r, nil)
			if err != nil {
				return
			}
			defer stream.Close()
			stream.Send(sse.Event{ID: "1", Data: "run " + r.PathValue("id")})
		})))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv, &reached
}

// getBody returns the response to a GET of url, its body read.
func getBody(t *testing.T, url string) (*http.Response, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

// Over a real server: a ticket for the run opens its stream; a missing,
// expired, tampered, other-run or doubled ticket gets 403 and a short text,
// the same whatever the reason, and nothing of the stream: its handler does
// not run, no event-stream header, no event.
func TestRequire(t *testing.T) {
	s := signer(t, 1)
	srv, reached := runStreams(t, s)
	good := s.Sign("run:7", time.Minute)
	resp, body := getBody(t, srv.URL+"/runs/7/events?ticket="+good)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" || !strings.Contains(body, "id: 1\ndata: run 7\n\n") {
		t.Fatalf("a good ticket: %s, Content-Type %q, body %q", resp.Status, resp.Header.Get("Content-Type"), body)
	}

	tampered := []byte(good)
	tampered[10] ^= 1
	for _, tt := range []struct {
		name, query string
	}{
		{"no ticket", ""},
		{"an empty ticket", "ticket="},
		{"expired", "ticket=" + s.Sign("run:7", -time.Second)},
		{"tampered", "ticket=" + string(tampered)},
		{"for another run", "ticket=" + s.Sign("run:8", time.Minute)},
		{"signed with another key", "ticket=" + signer(t, 2).Sign("run:7", time.Minute)},
		{"in another parameter", "t=" + good},
		{"twice", "ticket=" + good + "&ticket=" + good},
	} {
		before := reached.Load()
		resp, body := getBody(t, srv.URL+"/runs/7/events?"+tt.query)
		if resp.StatusCode != http.StatusForbidden || body != "Forbidden\n" ||
			resp.Header.Get("Content-Type") != "text/plain; charset=utf-8" || reached.Load() != before {
			t.Errorf("%s: %s, Content-Type %q, body %q, the stream's handler ran: %v; want 403, text/plain, Forbidden, no",
				tt.name, resp.Status, resp.Header.Get("Content-Type"), body, reached.Load() != before)
		}
		for k := range resp.Header {
			if k != "Content-Type" && k != "Content-Length" && k != "Date" && k != "X-Content-Type-Options" {
				t.Errorf("%s: a header %s: %q", tt.name, k, resp.Header[k])
			}
		}
	}
}

// Check reads the parameter that Param names, and says why a ticket fails.
func TestCheck(t *testing.T) {
	s := signer(t, 1)
	s.Param = "t"
	tk := s.Sign("user:42", time.Minute)
	for _, tt := range []struct {
		query string
		want  error
	}{
		{"t=" + tk, nil},
		{"t=" + url.QueryEscape(tk), nil},
		{"ticket=" + tk, ErrMissing},
		{"", ErrMissing},
		{"t=" + tk + "&t=" + tk, ErrInvalid},
		{"t=" + tk[1:], ErrInvalid},
		{"t=" + s.Sign("user:43", time.Minute), ErrWrongScope},
		{"t=" + s.Sign("user:42", -time.Millisecond), ErrExpired},
	} {
		r := httptest.NewRequest("GET", "/users/42/events?"+tt.query, nil)
		if err := s.Check(r, "user:42"); !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
			t.Errorf("?%s: %v, want %v", tt.query, err, tt.want)
		}
	}
}
