package sseclient

import (
	"fmt"
	"io"
	"net/http"
	"time"
)

// MaxErrorBody is how much of the body of a response with a status other
// than 200 a StatusError keeps.
const MaxErrorBody = 4 << 10

// A StatusError is the error a stream ends with when the server answers a
// status other than 200 OK and 204 No Content: an EventSource does not
// reconnect after one, even 503, and neither does the Client. It matches
// ErrStatus with errors.Is; get it with errors.As to read what an API says
// about the error, in its headers (Retry-After, its rate limits) and at the
// start of its body (the JSON error of most LLM APIs):
//
//	var se *sseclient.StatusError
//	if errors.As(err, &se) && se.StatusCode == http.StatusTooManyRequests {
//		wait := se.Header.Get("Retry-After")
//		...
//	}
type StatusError struct {
	// StatusCode is the response's status code, say 429.
	StatusCode int
	// Status is the response's status line, say "429 Too Many Requests".
	Status string
	// Header is the response's header.
	Header http.Header
	// Body is the start of the response's body: its first MaxErrorBody
	// bytes, or all of it if it is shorter; less if reading it failed,
	// or the request's context ended, or the rest did not arrive within
	// 5 seconds (or IdleTimeout, if shorter), as the Client reads it only
	// so far.
	Body []byte
}

// Error says which status it was, and quotes the body's start.
func (e *StatusError) Error() string {
	if len(e.Body) == 0 {
		return fmt.Sprintf("%v: %s", ErrStatus, e.Status)
	}
	return fmt.Sprintf("%v: %s: %.200q", ErrStatus, e.Status, e.Body)
}

// Unwrap returns ErrStatus, so that errors.Is(err, ErrStatus) holds.
func (e *StatusError) Unwrap() error { return ErrStatus }

// errorBodyWait bounds the time the Client reads the body of a status
// error for: a server may answer 503 and never end its body.
const errorBodyWait = 5 * time.Second

// statusError returns the StatusError of resp, reading the start of its
// body from body for at most errorBodyWait, after which it calls abort,
// which must make the reads fail.
func statusError(resp *http.Response, body io.Reader, abort func()) *StatusError {
	t := time.AfterFunc(errorBodyWait, abort)
	b, _ := io.ReadAll(io.LimitReader(body, MaxErrorBody))
	t.Stop()
	status := resp.Status
	if status == "" { // a RoundTripper's response may leave it out
		status = fmt.Sprintf("%d %s", resp.StatusCode, http.StatusText(resp.StatusCode))
	}
	return &StatusError{StatusCode: resp.StatusCode, Status: status, Header: resp.Header, Body: b}
}
