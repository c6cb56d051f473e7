package logtest

import (
	"context"
	"io"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lightsse/sse/internal/ssetest"
	"github.com/lightsse/sse/ssebroker"
)

// A Client reads the stream of Instances over real sockets with a
// spec-exact parser, reconnecting with its last event ID whenever a
// connection ends, and records every event it dispatches, when it came,
// why each session ended, and the bytes it read.
type Client struct {
	Name string

	t      *testing.T
	http   *http.Client
	lastID string // the Last-Event-ID for the next connection

	mu     sync.Mutex
	events []ssetest.Event
	at     []time.Time  // when each event came
	ends   []error      // why each session ended
	bytes  atomic.Int64 // bytes read, heartbeats included
	change chan struct{}
}

// NewClient returns a Client whose first connection sends lastID as its
// Last-Event-ID (none if empty).
func NewClient(t *testing.T, name, lastID string) *Client {
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	return &Client{Name: name, t: t, http: &http.Client{Transport: tr}, lastID: lastID, change: make(chan struct{})}
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n *atomic.Int64
}

func (c countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// Session reads one connection to in until it ends, ctx ends, or keep says
// to stop after an event (the nth of the session). It reports whether it
// connected; a connection that is not an event stream fails the test.
func (c *Client) Session(ctx context.Context, in *Instance, keep func(n int, ev ssetest.Event) bool) bool {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", in.URL, nil)
	if c.lastID != "" {
		req.Header.Set("Last-Event-ID", c.lastID)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		c.t.Errorf("%s: GET %s: status %d, Content-Type %q", c.Name, in.Name, resp.StatusCode, resp.Header.Get("Content-Type"))
		return false
	}
	rd := ssetest.NewReader(countingReader{resp.Body, &c.bytes})
	for n := 1; ; n++ {
		ev, err := rd.Next()
		if rd.LastEventID != "" {
			c.lastID = rd.LastEventID
		}
		if err != nil {
			c.mu.Lock()
			c.ends = append(c.ends, err)
			c.mu.Unlock()
			return true
		}
		c.mu.Lock()
		c.events = append(c.events, ev)
		c.at = append(c.at, time.Now())
		close(c.change)
		c.change = make(chan struct{})
		c.mu.Unlock()
		if !keep(n, ev) {
			return true
		}
	}
}

// Events returns a copy of the events the Client has dispatched.
func (c *Client) Events() []ssetest.Event {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.events)
}

// Len returns how many events the Client has dispatched.
func (c *Client) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.events)
}

// Arrivals returns when each event came: Arrivals()[i] for Events()[i]. A
// later call returns at least as many.
func (c *Client) Arrivals() []time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.at)
}

// Ends returns why each session so far ended.
func (c *Client) Ends() []error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.ends)
}

// Bytes returns how many bytes the Client has read, heartbeats included.
func (c *Client) Bytes() int64 { return c.bytes.Load() }

// Numbers returns the data of the Client's events, "reset" for a reset.
func (c *Client) Numbers() []string {
	var out []string
	for _, ev := range c.Events() {
		if ev.Type == ssebroker.ResetEvent {
			out = append(out, "reset")
		} else {
			out = append(out, ev.Data)
		}
	}
	return out
}

// WaitFor waits until cond holds of the Client's events; it fails the test
// after timeout.
func (c *Client) WaitFor(what string, timeout time.Duration, cond func(evs []ssetest.Event) bool) {
	c.t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		c.mu.Lock()
		ok, change := cond(c.events), c.change
		n := len(c.events)
		c.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-change:
		case <-deadline.C:
			c.t.Fatalf("%s: waited %v for %s; has %d events: %s", c.Name, timeout, what, n, Clip(c.Numbers()))
		}
	}
}

// Count is a condition for WaitFor: at least n events.
func Count(n int) func([]ssetest.Event) bool {
	return func(evs []ssetest.Event) bool { return len(evs) >= n }
}

// CheckSequence fails the test unless the Client got exactly the log's
// events, whose data and ids LogEvents returned, in the log's order, with
// the log's ids: no gap, no repeat, no reordering, no reset.
func (c *Client) CheckSequence(data, ids []string) {
	c.t.Helper()
	var got, gotIDs []string
	for _, ev := range c.Events() {
		if ev.Type == ssebroker.ResetEvent {
			c.t.Errorf("%s: got a reset (data %q, id %q)", c.Name, ev.Data, ev.LastEventID)
			continue
		}
		got, gotIDs = append(got, ev.Data), append(gotIDs, ev.LastEventID)
	}
	if strings.Join(got, ",") != strings.Join(data, ",") {
		c.t.Errorf("%s: %d events, the log holds %d:\ngot  %s\nwant %s", c.Name, len(got), len(data), Clip(got), Clip(data))
		return
	}
	if strings.Join(gotIDs, ",") != strings.Join(ids, ",") {
		c.t.Errorf("%s: ids differ from the log's:\ngot  %s\nwant %s", c.Name, Clip(gotIDs), Clip(ids))
	}
}

// Reconnecting runs c: it reads from a random live Instance of ins, other
// than the last, drops the connection after a random number of events (at
// most maxRun), and reconnects with its Last-Event-ID, until it has total
// events or ctx ends.
func Reconnecting(ctx context.Context, c *Client, ins []*Instance, total, maxRun int, rng *rand.Rand) {
	last := -1
	for {
		have := c.Len()
		if have >= total || ctx.Err() != nil {
			return
		}
		i := rng.IntN(len(ins))
		if i == last || ins[i].Dead() {
			continue
		}
		last = i
		run := 1 + rng.IntN(maxRun)
		if !c.Session(ctx, ins[i], func(n int, _ ssetest.Event) bool { return n < run && have+n < total }) {
			time.Sleep(10 * time.Millisecond) // that instance is going away
		}
	}
}
