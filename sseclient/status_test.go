package sseclient

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

// A status other than 200 and 204 ends the stream with a *StatusError that
// matches ErrStatus and holds what the API said: the status, the headers
// (Retry-After) and the start of the body, whose first bytes the message
// quotes. One request: an EventSource does not reconnect after one either.
func TestStatusError(t *testing.T) {
	const apiError = `{"error":{"type":"rate_limit_error","message":"slow down"}}`
	long := strings.Repeat("x", 3*MaxErrorBody)
	for _, tt := range []struct {
		name string
		code int
		body string
		want string // the Body kept
	}{
		{"429 with a JSON body", http.StatusTooManyRequests, apiError, apiError},
		{"503 with a body longer than MaxErrorBody", http.StatusServiceUnavailable, long, long[:MaxErrorBody]},
		{"500 without a body", http.StatusInternalServerError, "", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := newServer(t, func(w http.ResponseWriter, r *http.Request, n int) {
				if n > 1 {
					respond(w, "data: too late\n\n")
					return
				}
				w.Header().Set("Retry-After", "7")
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(tt.code)
				io.WriteString(w, tt.body)
			})
			got, err := read(fast(nil), get(t, srv.URL), 1)
			var se *StatusError
			if !errors.As(err, &se) || !errors.Is(err, ErrStatus) || len(got) != 0 {
				t.Fatalf("%+v, %v; want a *StatusError that matches ErrStatus", got, err)
			}
			status := fmt.Sprintf("%d %s", tt.code, http.StatusText(tt.code))
			if se.StatusCode != tt.code || se.Status != status || se.Header.Get("Retry-After") != "7" || !bytes.Equal(se.Body, []byte(tt.want)) {
				t.Errorf("StatusCode %d, Status %q, Retry-After %q, Body of %d bytes %.40q...",
					se.StatusCode, se.Status, se.Header.Get("Retry-After"), len(se.Body), se.Body)
			}
			msg := err.Error()
			if !strings.Contains(msg, se.Status) || !strings.Contains(msg, strings.ReplaceAll(tt.want[:min(len(tt.want), 20)], `"`, `\"`)) || len(msg) > 300 {
				t.Errorf("message %q: want the status and the body's start, in 300 bytes", msg)
			}
			if n := srv.n.Load(); n != 1 {
				t.Errorf("%d requests, want 1", n)
			}
		})
	}
}

// errorServer answers every request with a 503 whose body is what it
// writes, and then nothing until the request's context ends.
type errorServer struct{ wrote string }

func (e errorServer) RoundTrip(req *http.Request) (*http.Response, error) {
	pr, pw := io.Pipe()
	context.AfterFunc(req.Context(), func() { pw.CloseWithError(req.Context().Err()) })
	go io.WriteString(pw, e.wrote)
	return &http.Response{StatusCode: 503, Status: "503 Service Unavailable", Body: pr, Request: req}, nil
}

// A status error whose body never ends ends the stream all the same, on the
// fake clock after 5 s, with the part of the body that came.
func TestStatusErrorSlowBody(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := &Client{HTTPClient: &http.Client{Transport: errorServer{`{"error":`}}}
		req, _ := http.NewRequestWithContext(t.Context(), "GET", "http://fake/events", nil)
		start := time.Now()
		var se *StatusError
		for _, err := range c.Events(req) {
			if !errors.As(err, &se) {
				t.Fatalf("%v, want a *StatusError", err)
			}
		}
		if d := time.Since(start); d != 5*time.Second || string(se.Body) != `{"error":` {
			t.Errorf("after %v, Body %q; want after 5s, the part that came", d, se.Body)
		}
	})
}
