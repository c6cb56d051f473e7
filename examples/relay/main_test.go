package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lightsse/sse/internal/brokertest"

	"github.com/lightsse/sse/ssebroker"
	"github.com/lightsse/sse/sseclient"

	"github.com/lightsse/sse"
	"github.com/lightsse/sse/internal/leakcheck"
)

// TestMain fails the run if the relay, a stream or a connection outlives its
// test.
func TestMain(m *testing.M) { leakcheck.Main(m) }

func TestPage(t *testing.T) {
	srv := httptest.NewServer(newMux(brokertest.New(t, nil), nil))
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), `new EventSource("/events")`) {
		t.Errorf("status %d, page %.100q", resp.StatusCode, body)
	}
}

// Events published upstream reach the browsers' stream with their type and
// data, under the relay's own ids; when the relay's upstream connection is
// cut, it resumes, and nothing is lost or doubled.
func TestRelay(t *testing.T) {
	upstream, downstream := brokertest.New(t, nil), brokertest.New(t, nil)
	defer upstream.Close()
	defer downstream.Close()
	cuts := make(chan context.CancelFunc, 10)
	mux := newMux(downstream, nil)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/upstream" {
			mux.ServeHTTP(w, r)
			return
		}
		ctx, cut := context.WithCancel(r.Context())
		cuts <- cut
		upstream.ServeHTTP(w, r.WithContext(ctx))
	}))
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	// The upstream's ids start with its epoch: a probe event shows it.
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/upstream", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the probe", func() bool { return upstream.Subscribers() == 1 })
	upstream.Publish(sse.Event{Data: "probe"})
	probe, err := sseclient.NewReader(resp.Body).Next()
	resp.Body.Close()
	<-cuts
	upstreamEpoch, _, _ := strings.Cut(probe.ID, "-")
	if err != nil || upstreamEpoch == "" {
		t.Fatalf("probe %+v, %v", probe, err)
	}
	waitFor(t, "the probe to leave", func() bool { return upstream.Subscribers() == 0 })

	_, relayDone := startRelay(t, ctx, srv.URL+"/upstream", "", downstream)
	const events = 100
	got := browser(ctx, srv.URL+"/events", events)
	waitFor(t, "the relay and the browser", func() bool { return upstream.Subscribers() == 1 && downstream.Subscribers() == 1 })

	for i := 1; i <= events; i++ {
		typ := ""
		if i%2 == 0 {
			typ = "even"
		}
		if err := upstream.Publish(sse.Event{Type: typ, Data: strconv.Itoa(i)}); err != nil {
			t.Fatal(err)
		}
		if i%25 == 0 {
			(<-cuts)() // the relay's upstream connection
		}
	}
	for i := 1; i <= events; i++ {
		select {
		case ev := <-got:
			want := relayed{Type: "message", Data: strconv.Itoa(i)}
			if i%2 == 0 {
				want.Type = "even"
			}
			if got := unwrap(t, ev); got != want || ev.ID == "" || strings.HasPrefix(ev.ID, upstreamEpoch) {
				t.Fatalf("event %d is %+v: want a message relaying %+v, with an id of the relay's Broker", i, ev, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("event %d did not arrive", i)
		}
	}
	cancel()
	if err := <-relayDone; !errors.Is(err, context.Canceled) {
		t.Errorf("relay returned %v, want context.Canceled", err)
	}
}

// A relay that stops, and starts again resuming from the upstream's last
// event ID when it stopped (what main logs, and -resume takes), relays what
// was published upstream in between: nothing is lost.
func TestRelayResumes(t *testing.T) {
	upstream, downstream := brokertest.New(t, nil), brokertest.New(t, nil)
	defer upstream.Close()
	defer downstream.Close()
	srv := httptest.NewServer(newMux(downstream, upstream))
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	got := browser(ctx, srv.URL+"/events", 10)
	waitFor(t, "the browser", func() bool { return downstream.Subscribers() == 1 })
	next := 1
	publish := func(n int) {
		for range n {
			if err := upstream.Publish(sse.Event{Data: strconv.Itoa(next)}); err != nil {
				t.Fatal(err)
			}
			next++
		}
	}
	receive := func(from, to int) {
		t.Helper()
		for i := from; i <= to; i++ {
			select {
			case ev := <-got:
				if got := unwrap(t, ev); got != (relayed{"message", strconv.Itoa(i)}) {
					t.Fatalf("event %+v, want a message relaying data %d", ev, i)
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("event %d did not arrive", i)
			}
		}
	}

	relayCtx, stopRelay := context.WithCancel(ctx)
	stream, relayDone := startRelay(t, relayCtx, srv.URL+"/upstream", "", downstream)
	waitFor(t, "the relay", func() bool { return upstream.Subscribers() == 1 })
	publish(5)
	receive(1, 5)
	stopRelay()
	if err := <-relayDone; !errors.Is(err, context.Canceled) {
		t.Errorf("relay returned %v", err)
	}
	resume := stream.LastEventID()
	if !strings.HasSuffix(resume, "-5") {
		t.Fatalf("the relay stopped at Last-Event-ID %q, want the upstream's id of event 5", resume)
	}
	waitFor(t, "the relay to leave", func() bool { return upstream.Subscribers() == 0 })

	publish(3) // while no relay runs
	_, relayDone = startRelay(t, ctx, srv.URL+"/upstream", resume, downstream)
	waitFor(t, "the relay", func() bool { return upstream.Subscribers() == 1 })
	publish(2)
	receive(6, 10)
	cancel()
	<-relayDone
}

// Events of any type, the chat's "chat" among them, reach the page: each is a
// message, the one type the page listens to besides the relay's own reset,
// and its data names the upstream event's type. (The page used to listen to
// message, time and reset alone, and showed nothing of the chat.)
func TestRelayEveryType(t *testing.T) {
	listens := pageListensTo(t)
	upstream, downstream := brokertest.New(t, nil), brokertest.New(t, nil)
	defer upstream.Close()
	defer downstream.Close()
	srv := httptest.NewServer(newMux(downstream, upstream))
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sent := []sse.Event{
		{Type: "chat", Data: `{"from":"ann","text":"hi"}`},
		{Data: "a message"},
		{Type: "time", Data: "2026-12-07T03:40:00Z"},
		{Type: "join", Data: "bob"},
		{Type: "message", Data: "named message"},
		{Type: "reset", Data: "an upstream's reset"},
		{Type: "x.y-z_1", Data: "line one\nline two"},
	}
	got := browser(ctx, srv.URL+"/events", len(sent))
	waitFor(t, "the browser", func() bool { return downstream.Subscribers() == 1 })
	_, done := startRelay(t, ctx, srv.URL+"/upstream", "", downstream)
	waitFor(t, "the relay", func() bool { return upstream.Subscribers() == 1 })
	for _, e := range sent {
		if err := upstream.Publish(e); err != nil {
			t.Fatal(err)
		}
	}
	for _, e := range sent {
		select {
		case ev := <-got:
			if !listens[cmp.Or(ev.Type, "message")] {
				t.Errorf("event %+v: the page does not listen to its type (it listens to %v)", ev, listens)
			}
			if r, want := unwrap(t, ev), (relayed{cmp.Or(e.Type, "message"), e.Data}); r != want {
				t.Errorf("event %+v relays %+v, want %+v", ev, r, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%+v did not arrive", e)
		}
	}
	cancel()
	<-done
}

// pageListensTo returns the event types the page's script listens to.
func pageListensTo(t *testing.T) map[string]bool {
	t.Helper()
	types := map[string]bool{}
	for _, m := range regexp.MustCompile(`addEventListener\("([^"]+)"`).FindAllStringSubmatch(page, -1) {
		types[m[1]] = true
	}
	if strings.Contains(page, "source.onmessage") {
		types["message"] = true
	}
	if !types["message"] || !types["reset"] {
		t.Fatalf("the page listens to %v; want message and reset at least", types)
	}
	return types
}

// unwrap returns what ev relays: the upstream event's type and data.
func unwrap(t *testing.T, ev sse.Event) relayed {
	t.Helper()
	var r relayed
	if ev.Type != "" {
		t.Errorf("relayed event %+v has type %q; the page listens to messages", ev, ev.Type)
	}
	if err := json.Unmarshal([]byte(ev.Data), &r); err != nil {
		t.Errorf("relayed event %+v: %v", ev, err)
	}
	return r
}

// startRelay relays the stream at url to b, resuming it from the Last-Event-ID
// resume unless it is "", until ctx is done; it returns the stream, and a
// channel that gets what relay returned.
func startRelay(t *testing.T, ctx context.Context, url, resume string, b *ssebroker.Broker) (*sseclient.Stream, chan error) {
	t.Helper()
	s, err := openUpstream(ctx, &sseclient.Client{Retry: time.Millisecond}, url, resume)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- relay(s, b) }()
	return s, done
}

// browser reads the stream at url until ctx is done, and sends each event
// on the channel it returns, which holds n.
func browser(ctx context.Context, url string, n int) chan sse.Event {
	got := make(chan sse.Event, n)
	go func() {
		req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
		for ev, err := range (&sseclient.Client{}).Events(req) {
			if err != nil {
				return
			}
			got <- ev
		}
	}()
	return got
}

// The clock publishes a time event each period.
func TestClock(t *testing.T) {
	b := brokertest.New(t, nil)
	defer b.Close()
	srv := httptest.NewServer(b)
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ticking := make(chan struct{})
	go func() {
		defer close(ticking)
		clock(ctx, b, time.Millisecond)
	}()
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL, nil)
	for ev, err := range (&sseclient.Client{}).Events(req) {
		if err != nil {
			t.Fatal(err)
		}
		if _, err := time.Parse(time.RFC3339, ev.Data); ev.Type != "time" || err != nil {
			t.Errorf("event %+v: %v", ev, err)
		}
		break
	}
	cancel()
	<-ticking
}

// waitFor polls cond until it holds, and fails t after 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited 10s for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}
