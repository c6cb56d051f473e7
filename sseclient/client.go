// Package sseclient reads a Server-Sent Events stream over HTTP, and resumes
// it when it breaks, as a browser's EventSource does: it reconnects with the
// Last-Event-ID header, after the delay the server asked for with retry, and
// stops for good when the server says so.
//
//	req, _ := http.NewRequestWithContext(ctx, "GET", "https://example.com/events", nil)
//	req.Header.Set("Authorization", "Bearer "+token)
//	var c sseclient.Client
//	for ev, err := range c.Events(req) {
//		if err != nil {
//			return err // the stream ended for good: a status, a cancelled ctx...
//		}
//		fmt.Println(ev.Type, ev.Data)
//	}
//
// It reads events with [Reader], so it parses exactly as the standard says,
// and hands the caller every event, a Broker's "reset" included. It keeps no
// goroutine of its own (the loop runs in the caller's; the idle timeout is a
// timer), and a cancelled context or a break out of the loop ends the
// connection at once.
//
// To resume the stream in a later process, read it through a [Stream] and
// keep its LastEventID when the loop ends: the next process sets it as the
// Last-Event-ID of its request.
//
//	stream := c.Stream(req)
//	for ev, err := range stream.Events() {
//		...
//	}
//	save(stream.LastEventID())
//
// # Streams that answer a POST
//
// An LLM API streams its answer to a POST. Sent again, a POST starts anew:
// a new completion, billed again, its text a second time. So the Client
// sends a request that is not a GET without a body again only to resume a
// stream whose server sent an id, with Last-Event-ID and the body from
// GetBody; when a stream without one is cut, it ends with ErrStreamCut.
// Set Client.Done to spot the API's last event, so that the stream ends
// there without an error (and a stream cut before it, with one); read a
// status error with errors.As, as a *StatusError, for the API's headers and
// the start of its body:
//
//	client := sseclient.Client{Done: func(ev sse.Event) bool { return ev.Data == "[DONE]" }}
//	req, _ := http.NewRequestWithContext(ctx, "POST", url, bytes.NewReader(body))
//	for ev, err := range client.Events(req) {
//		if err != nil {
//			return err // a *StatusError; ErrStreamCut: the answer is cut short...
//		}
//		if ev.Data != "[DONE]" {
//			handle(ev.Data)
//		}
//	}
//
// # Options
//
// Client's and Reader's fields follow one rule, as everywhere in this
// module: 0 means the default; a negative value means off where off exists
// (IdleTimeout), and is refused, with an error matching ErrInvalidOptions
// that names the field, where it does not.
package sseclient

import (
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lightsse/sse"
	"github.com/lightsse/sse/internal/wire"
)

// Defaults used when a Client leaves a field zero.
const (
	// DefaultRetry is the reconnection delay until the server sets one with a
	// retry field, as in Chromium.
	DefaultRetry = 3 * time.Second
	// DefaultMaxDelay caps the wait before a reconnection.
	DefaultMaxDelay = 30 * time.Second
)

// Errors that end a stream for good. The error returned says which status,
// content type, request or id it was; test for them with [errors.Is].
var (
	// ErrNoContent: the server answered 204 No Content, which tells an
	// EventSource to stop reconnecting.
	ErrNoContent = errors.New("sseclient: 204 No Content: the server asks not to reconnect")
	// ErrStatus: the server answered a status other than 200 and 204. An
	// EventSource does not reconnect after one, even 503. The error is a
	// *StatusError, which holds the status, the headers and the start of the
	// body.
	ErrStatus = errors.New("sseclient: status is not 200 OK")
	// ErrContentType: the response is not text/event-stream, or its charset
	// is not UTF-8. The type is compared as a browser does: without regard
	// to case, and to parameters but the charset (see Stream.Events).
	ErrContentType = errors.New("sseclient: response is not text/event-stream")
	// ErrStreamCut: the connection ended, or failed, before the stream's
	// end, and the stream cannot be resumed: its request has a body or a
	// method other than GET, so that sending it again would start anew
	// (a new completion, billed again, its text a second time), and the
	// server sent no id to resume from. The error matches what ended the
	// connection too: io.EOF if the server ended the response between
	// events (without the event that Client.Done looks for), or
	// io.ErrUnexpectedEOF inside one, ErrIdleTimeout, or the error from the
	// HTTP client or the body.
	ErrStreamCut = errors.New("sseclient: stream cut, and it cannot be resumed")
	// ErrBodyNotReplayable: the stream must be resumed, and its request has
	// a Body but no GetBody to send it again. The error matches ErrStreamCut
	// and what ended the connection too. http.NewRequest sets GetBody for a
	// *bytes.Buffer, *bytes.Reader or *strings.Reader body.
	ErrBodyNotReplayable = errors.New("sseclient: request body cannot be sent again (no GetBody)")
	// ErrInvalidLastEventID: the stream's last event ID, which the next
	// request must send as Last-Event-ID, holds a control byte other than
	// tab (the server sent it in an id field, or the caller's request set
	// it), and net/http refuses to send such a header. Rather than reconnect
	// without it, as a new client, and so miss events without a word, the
	// stream ends. To start afresh, open a new Stream with a request
	// without Last-Event-ID.
	ErrInvalidLastEventID = errors.New("sseclient: last event ID cannot be sent in a Last-Event-ID header")
)

// ErrInvalidOptions is the error a stream ends with, before any request, when
// its Client has a field that the options rule refuses (see Client); a Reader
// whose MaxEventSize is negative returns it from Next. The error's text names
// the field.
var ErrInvalidOptions = errors.New("sseclient: invalid options")

// check returns why the options rule refuses c, or nil.
func (c *Client) check() error {
	for _, f := range []struct {
		name string
		bad  bool
	}{{"Retry", c.Retry < 0}, {"MaxDelay", c.MaxDelay < 0}, {"MaxEventSize", c.MaxEventSize < 0}} {
		if f.bad {
			return fmt.Errorf("%w: %s is negative", ErrInvalidOptions, f.name)
		}
	}
	return nil
}

// ErrIdleTimeout is the error a connection ends with when no byte arrived
// for the Client's IdleTimeout. It does not end the stream: the Client
// reconnects, and passes it to OnRetry.
var ErrIdleTimeout = errors.New("sseclient: no byte within the idle timeout")

// A Client connects to event streams and keeps reading them across
// reconnections. The zero Client is ready to use, with the defaults. A Client
// is safe for concurrent use, and may serve several streams at once; set its
// fields before its first use and do not change them after.
type Client struct {
	// HTTPClient sends the requests; nil means http.DefaultClient. Its
	// Timeout, if any, ends every stream after that long, as it bounds the
	// whole response: leave it 0 and use IdleTimeout.
	HTTPClient *http.Client
	// Retry is the delay before a reconnection until the server sets one
	// with a retry field. 0 means DefaultRetry.
	Retry time.Duration
	// MaxDelay caps the wait before a reconnection, jitter included: the
	// server's retry, however large, and the backoff. 0 means
	// DefaultMaxDelay.
	MaxDelay time.Duration
	// IdleTimeout, if positive, ends a connection on which no byte has
	// arrived for that long, from the request on, and reconnects. Comments
	// count, so a server's heartbeats keep the stream alive: set it to a few
	// times the heartbeat (sse.Writer sends one after 15 s of silence). Time
	// the caller spends on an event does not count. 0 (the default), or a
	// negative value, means no idle timeout: a stream may be quiet for as
	// long as it likes.
	IdleTimeout time.Duration
	// MaxEventSize bounds each event, as Reader's MaxEventSize does; 0
	// means DefaultMaxEventSize. An event over it ends the stream with an
	// error matching ErrEventTooLarge.
	//
	// A negative Retry, MaxDelay or MaxEventSize ends every stream at once
	// with an error matching ErrInvalidOptions that names the field.
	MaxEventSize int
	// OnRetry, if not nil, is called before each wait to reconnect, with the
	// error that ended the connection and the time the Client will wait: the
	// error is io.EOF when the server ended the response between events,
	// io.ErrUnexpectedEOF when it ended inside one, ErrIdleTimeout, or the
	// error from the HTTP client or the body. It runs in the loop's goroutine.
	OnRetry func(err error, wait time.Duration)
	// Done, if not nil, says which event is a stream's last: it is called
	// with each event once the caller has had it (if the loop goes on), and
	// when it returns true the stream is over: the connection is closed, no
	// request follows, and the iterator ends without an error. Set it for an
	// API that marks the end of its stream with an event, as OpenAI's ends
	// with "data: [DONE]" and Anthropic's with an event of type
	// message_stop; without it the Client cannot tell the end of such a
	// stream from a cut, and reconnects (or, for a request that cannot be
	// sent again, ends with ErrStreamCut). It runs in the loop's goroutine.
	Done func(ev sse.Event) bool
}

// Events returns an iterator over the events of the stream that req opens:
// it is c.Stream(req).Events(). Use Stream instead to learn the stream's
// last event ID, say to resume it in a later process.
func (c *Client) Events(req *http.Request) iter.Seq2[sse.Event, error] {
	return c.Stream(req).Events()
}

// Stream returns the stream that req opens, for its Events method to read.
// It sends no request: Events does. req's context governs the whole stream,
// across reconnections; the Stream owns req's Body from now on.
func (c *Client) Stream(req *http.Request) *Stream {
	return &Stream{c: c, req: req, lastID: req.Header.Get("Last-Event-ID")}
}

// A Stream is one event stream that a Client reads, across its
// reconnections: it keeps what a browser's EventSource keeps from one
// connection to the next, the last event ID and the server's retry. Make one
// with Client.Stream. Its LastEventID may be called from any goroutine; its
// Events, from one loop at a time.
type Stream struct {
	c   *Client
	req *http.Request

	mu     sync.Mutex
	lastID string // the last event ID, sent on reconnection

	// Kept by the loop.
	retry    time.Duration // the server's last retry
	retrySet bool
	bodySent bool // req.Body is taken: later requests send GetBody's
}

// Events returns an iterator over the stream's events, for use with range.
//
// Each request is req with Accept: text/event-stream and Cache-Control:
// no-cache unless req sets them, and, when it reconnects, Last-Event-ID set
// to the stream's last event ID (or removed, if the stream reset it to "").
// A Last-Event-ID that req sets is the one the first request sends, and the
// stream's last event ID until the stream sets one. req's Body, if any, is
// sent by the first request, which closes it even on errors, as
// http.Client.Do does (a stream that ends before its first request closes
// it then); each later request sends a body from req.GetBody, so that an API
// that streams the response to a POST can be resumed.
//
// A response opens the stream if its status is 200 and its Content-Type is
// text/event-stream as a browser reads it: the MIME type the Fetch standard
// extracts from the header (from its last valid value, if it has several),
// compared without regard to case, whatever its parameters; but a charset
// other than UTF-8 is refused, as Chromium and Safari refuse it, since the
// stream is read as UTF-8 whatever its label says.
//
// The Client reconnects when the response ends, whether cleanly, in the
// middle of an event (which is dropped, as the standard says) or with a
// network error, and when no byte arrives within IdleTimeout, if the stream
// can be resumed. A GET without a body always can, as an EventSource's. Any
// other request (a POST to an LLM API, say) can once the server has given
// the stream an id, that is while the stream's last event ID is not empty
// (an id field set it, or req's Last-Event-ID): the request is sent again
// with it, for the server to go on from there. Without an id, sending the
// request again would start it anew: a new completion, billed again, its
// text a second time in the loop. So such a stream ends instead, with an
// error matching ErrStreamCut and what ended the connection; set
// Client.Done so that the event that ends it makes it end without one.
//
// Before it reconnects, the Client waits the delay the server set with its
// last retry field, or Retry. After a connection that failed, the delay
// doubles with each such connection in a row, from at least Retry, up to
// MaxDelay. A connection fails unless it delivers an event or its response
// stays open for MaxDelay or longer (a quiet stream that heartbeats keep open
// is healthy); a healthy one resets the backoff. To each delay it adds a
// random part of up to half of it, so that clients of a server that restarts
// do not all come back at once. The wait never passes MaxDelay: a delay over
// two thirds of MaxDelay counts as two thirds of it, so that the wait is then
// between two thirds of MaxDelay and MaxDelay.
//
// The iterator yields each event with a nil error: an event's ID, Type, Data
// and Retry are as Reader returns them. It ends for good, yielding one
// last error with a zero Event, when the server answers 204 (ErrNoContent),
// another status than 200 (a *StatusError, which matches ErrStatus), or
// another content type than text/event-stream (ErrContentType); when an event
// is over MaxEventSize (ErrEventTooLarge); when the connection of a stream
// that cannot be resumed ends (ErrStreamCut), or that of one whose req's body
// cannot be sent again (ErrBodyNotReplayable, which matches ErrStreamCut);
// when the last event ID cannot be sent in a header (ErrInvalidLastEventID);
// and when req's context is done (its Err). It ends without an error after an
// event that Client.Done says is the last; and a break out of the loop closes
// the connection and ends it without an error.
//
// A second range over the iterator, or over another from Events, goes on
// with the same stream: it connects again, resuming from LastEventID.
func (s *Stream) Events() iter.Seq2[sse.Event, error] {
	return func(yield func(sse.Event, error) bool) {
		if err := s.run(yield); err != nil {
			yield(sse.Event{}, err)
		}
	}
}

// LastEventID returns the stream's last event ID: what the next request
// will send as Last-Event-ID, and what a later process should set as the
// Last-Event-ID of its request to resume the stream where this one stopped.
// It is req's Last-Event-ID until the stream sets one; then, as
// Reader.LastEventID says, it is set by the last id field before a blank
// line, whether or not that blank line dispatched an event (a Broker opens a
// new client's stream with an id line alone), and reset to "" by an empty
// id field. So it is not the last non-empty ID of the events received.
//
// While a connection is read it is brought up to date before each event is
// yielded, and when the connection ends: in the loop's body it counts the
// event in hand, and once the loop has ended, all that was read. (An id line
// alone that arrives while the loop waits for an event counts from the end
// of its connection.)
func (s *Stream) LastEventID() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastID
}

func (s *Stream) setLastEventID(id string) {
	s.mu.Lock()
	s.lastID = id
	s.mu.Unlock()
}

// errStopped is what connect returns when the caller broke out of the loop,
// or Done said the event was the last.
var errStopped = errors.New("sseclient: stopped by the caller")

// errSlowErrorBody is the cause of the end of a connection whose status
// error's body took too long.
var errSlowErrorBody = errors.New("sseclient: the body of a status error took too long")

// permanent wraps the errors that end the stream for good.
type permanent struct{ err error }

func (p permanent) Error() string { return p.err.Error() }

// run connects, and reconnects, until the stream ends for good, and returns
// the error to yield last; nil if the caller broke out of the loop.
func (s *Stream) run(yield func(sse.Event, error) bool) error {
	ctx := s.req.Context()
	defer s.closeUnsentBody()
	if err := s.c.check(); err != nil {
		return err
	}
	failures := 0 // connections in a row that failed
	for {
		healthy, err := s.connect(ctx, yield)
		if err == errStopped {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if p, ok := err.(permanent); ok {
			return p.err
		}
		if !s.resumable() {
			return fmt.Errorf("%w: %w", ErrStreamCut, err)
		}
		if s.hasBody() && s.req.GetBody == nil {
			return fmt.Errorf("%w: %w: %w", ErrStreamCut, ErrBodyNotReplayable, err)
		}
		if healthy {
			failures = 0
		} else {
			failures++
		}
		wait := s.delay(failures)
		if s.c.OnRetry != nil {
			s.c.OnRetry(err, wait)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// resumable reports whether the stream may be resumed by sending its
// request again: if it is a GET without a body, which sent again only asks
// for the stream again, as an EventSource's does; or if the server gave the
// stream an id to resume from, which the request sent again carries.
func (s *Stream) resumable() bool {
	get := s.req.Method == "" || s.req.Method == http.MethodGet
	return get && !s.hasBody() || s.LastEventID() != ""
}

// hasBody reports whether req has a body.
func (s *Stream) hasBody() bool {
	return s.req.Body != nil && s.req.Body != http.NoBody
}

// closeUnsentBody closes req's Body if no request has sent it: the stream
// ended before its first request.
func (s *Stream) closeUnsentBody() {
	if !s.bodySent && s.req.Body != nil {
		s.req.Body.Close()
	}
	s.bodySent = true
}

// delay returns how long to wait before the next connection, after failures
// connections in a row that failed.
func (s *Stream) delay(failures int) time.Duration {
	base, maxDelay := s.c.retry(), s.c.maxDelay()
	d := base
	if s.retrySet {
		d = s.retry
	}
	if failures >= 2 {
		// Double from at least Retry, so that a server's retry of 0 does
		// not make a loop of requests.
		d = max(d, base)
		for range failures - 1 {
			if d > maxDelay/2 {
				d = maxDelay
				break
			}
			d *= 2
		}
	}
	// The jitter is inside the cap: the wait is lo plus up to half of lo,
	// with lo at most two thirds of maxDelay. Jitter added past the cap
	// would break it; jitter cut at the cap would be none at all where the
	// clients of a server down for long all are.
	lo := min(d, maxDelay/3*2)
	return min(lo+rand.N(lo/2+1), maxDelay)
}

// retry returns the Client's Retry, or its default.
func (c *Client) retry() time.Duration {
	if c.Retry == 0 {
		return DefaultRetry
	}
	return c.Retry
}

// maxDelay returns the Client's MaxDelay, or its default.
func (c *Client) maxDelay() time.Duration {
	if c.MaxDelay == 0 {
		return DefaultMaxDelay
	}
	return c.MaxDelay
}

// connect makes one request and hands its events to yield. It returns
// whether the connection was healthy, and what ended it: errStopped if yield
// asked to stop, a permanent error, or the error to reconnect after.
//
// A healthy connection delivered an event, or its stream stayed open for
// MaxDelay or longer: a quiet stream, which only heartbeats kept alive, is
// no failure. Bytes alone do not make it healthy: a server that answers
// "retry: 0", or its opening id line, and ends at once would otherwise be
// asked again at once, forever. A connection that lasts MaxDelay spaces its
// requests as far apart as the longest backoff would.
func (s *Stream) connect(ctx context.Context, yield func(sse.Event, error) bool) (healthy bool, err error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	idle := s.watchIdle(cancel)
	defer idle.stop()

	lastID := s.LastEventID()
	if wire.HeaderUnsafe(lastID) >= 0 { // net/http would refuse to send it
		return false, permanent{fmt.Errorf("%w: %.64q", ErrInvalidLastEventID, lastID)}
	}
	req := s.req.Clone(ctx) // with req's Body, which the first request sends
	if s.bodySent && s.req.GetBody != nil {
		if req.Body, err = s.req.GetBody(); err != nil {
			return false, permanent{fmt.Errorf("sseclient: GetBody: %w", err)}
		}
	}
	s.bodySent = true // by hc.Do, which closes it
	if req.Header.Get("Accept") == "" {
		req.Header.Set("Accept", "text/event-stream")
	}
	if req.Header.Get("Cache-Control") == "" {
		req.Header.Set("Cache-Control", "no-cache")
	}
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	} else {
		req.Header.Del("Last-Event-ID")
	}
	hc := s.c.HTTPClient
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return false, idle.cause(ctx, err)
	}
	defer resp.Body.Close()
	if err := checkResponse(resp, idle.reader(resp.Body), func() { cancel(errSlowErrorBody) }); err != nil {
		return false, permanent{err}
	}
	opened := time.Now()
	delivered := false
	defer func() {
		healthy = delivered || time.Since(opened) >= s.c.maxDelay()
	}()

	r := NewReader(idle.reader(resp.Body))
	r.MaxEventSize = s.c.MaxEventSize
	r.SetLastEventID(lastID)
	defer func() {
		s.setLastEventID(r.LastEventID())
		if d, ok := r.Retry(); ok {
			s.retry, s.retrySet = d, true
		}
	}()
	for {
		ev, err := r.Next()
		if errors.Is(err, ErrEventTooLarge) {
			return false, permanent{err}
		}
		if err != nil {
			return false, idle.cause(ctx, err)
		}
		delivered = true
		s.setLastEventID(r.LastEventID())
		idle.pause()
		ok := yield(ev, nil)
		idle.resume()
		if !ok || s.c.Done != nil && s.c.Done(ev) {
			return false, errStopped
		}
	}
}

// checkResponse returns the error that ends the stream for a response that
// does not open one; for a status error, it reads the start of the body from
// body, and calls abort to end the reads if that takes too long.
func checkResponse(resp *http.Response, body io.Reader, abort func()) error {
	switch {
	case resp.StatusCode == http.StatusNoContent:
		return ErrNoContent
	case resp.StatusCode != http.StatusOK:
		return statusError(resp, body, abort)
	}
	return checkContentType(resp.Header.Values("Content-Type"))
}

// idleWatch ends a connection, by cancelling its context with
// ErrIdleTimeout, once no byte has arrived for the idle timeout. The zero
// idleWatch watches nothing.
type idleWatch struct {
	timeout time.Duration
	timer   *time.Timer
	start   time.Time    // when the request was made
	last    atomic.Int64 // when the last byte arrived, since start, or paused
	stopped atomic.Bool
}

// paused, as idleWatch.last, stops the clock while the caller has an event.
const paused = -1

// watchIdle starts the idle timeout of a connection, if the Client has one.
func (s *Stream) watchIdle(cancel context.CancelCauseFunc) *idleWatch {
	w := &idleWatch{timeout: s.c.IdleTimeout}
	if w.timeout <= 0 {
		return w
	}
	w.start = time.Now()
	w.timer = time.AfterFunc(w.timeout, func() {
		last := w.last.Load()
		switch quiet := time.Since(w.start) - time.Duration(last); {
		case w.stopped.Load():
		case last == paused:
			w.timer.Reset(w.timeout)
		case quiet < w.timeout:
			w.timer.Reset(w.timeout - quiet)
		default:
			cancel(ErrIdleTimeout)
		}
	})
	return w
}

func (w *idleWatch) stop() {
	if w.timer != nil {
		w.stopped.Store(true)
		w.timer.Stop()
	}
}

func (w *idleWatch) pause() {
	if w.timer != nil {
		w.last.Store(paused)
	}
}

func (w *idleWatch) resume() {
	if w.timer != nil {
		w.last.Store(int64(time.Since(w.start)))
	}
}

// reader returns body, which restarts the idle clock with every byte read.
func (w *idleWatch) reader(body io.Reader) io.Reader {
	if w.timer == nil {
		return body
	}
	return &idleReader{body, w}
}

// cause returns ErrIdleTimeout for an error the idle timeout caused, and err
// otherwise.
func (w *idleWatch) cause(ctx context.Context, err error) error {
	if context.Cause(ctx) == ErrIdleTimeout {
		return ErrIdleTimeout
	}
	return err
}

type idleReader struct {
	r io.Reader
	w *idleWatch
}

func (r *idleReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if n > 0 {
		r.w.last.Store(int64(time.Since(r.w.start)))
	}
	return n, err
}
