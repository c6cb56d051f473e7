package redisstream

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lightsse/sse/internal/brokertest"
	"github.com/lightsse/sse/internal/logtest"

	"github.com/lightsse/sse/ssebroker"

	"github.com/lightsse/sse"
	"github.com/lightsse/sse/internal/ssetest"
	"github.com/lightsse/sse/redisstream/internal/redistest"
)

// The tests in this file run a deployment as production would: several
// instances, each a Streams on its own Redis client, a Broker on the topic
// "room", and an HTTP server on 127.0.0.1; and clients that read the streams
// over real sockets with a spec-exact parser.

// An instance is one process of the deployment.
type instance struct {
	name    string
	streams *Streams
	topic   *Topic
	broker  *ssebroker.Broker
	srv     *httptest.Server
	dead    atomic.Bool
}

// newInstance starts an instance on Redis srv; the test's end stops it.
func newInstance(t *testing.T, name string, srv *redistest.Server, o *Options, bo *ssebroker.Options) *instance {
	t.Helper()
	in := &instance{name: name, streams: newStreams(t, srv, o)}
	in.topic = topic(t, in.streams, "room")
	var opts ssebroker.Options
	if bo != nil {
		opts = *bo
	}
	opts.Log = in.topic
	in.broker = brokertest.New(t, &opts)
	in.srv = httptest.NewServer(in.broker)
	t.Cleanup(in.srv.Close)                 // after the Broker's streams have ended
	t.Cleanup(func() { in.broker.Close() }) // first
	return in
}

func newInstances(t *testing.T, n int, srv *redistest.Server, o *Options, bo *ssebroker.Options) []*instance {
	var ins []*instance
	for i := range n {
		ins = append(ins, newInstance(t, string(rune('A'+i)), srv, o, bo))
	}
	return ins
}

// waitFollowing waits until every instance's Broker follows the Log (its
// feed has had the Log's head), so that a stream that has caught up reads
// from the Broker's history, not from the Log: only then does it stay open
// while Redis does not answer.
func waitFollowing(t *testing.T, ins []*instance) {
	t.Helper()
	for _, in := range ins {
		for deadline := time.Now().Add(20 * time.Second); in.streams.subs.heads.Load() == 0; time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: its Broker does not follow the Log after 20 s", in.name)
			}
		}
	}
}

// kill stops the instance as a crash would for its clients: their
// connections break, with no retry field.
func (in *instance) kill() {
	in.dead.Store(true)
	in.srv.CloseClientConnections()
	in.broker.Close()
	in.srv.Close()
	in.streams.Close()
}

// publish publishes the events numbered from to to (inclusive) on in.
func (in *instance) publish(t *testing.T, from, to int) {
	for n := from; n <= to; n++ {
		if err := in.broker.Publish(sse.Event{Data: strconv.Itoa(n)}); err != nil {
			t.Errorf("%s: Publish %d: %v", in.name, n, err)
			return
		}
	}
}

// A client reads the stream from instances, reconnecting with its last event
// ID whenever a connection ends, and records every event it dispatches.
type client struct {
	t      *testing.T
	http   *http.Client
	name   string
	lastID string // the Last-Event-ID for the next connection

	mu     sync.Mutex
	events []ssetest.Event
	at     []time.Time  // when each event came
	ends   []error      // why each session ended
	bytes  atomic.Int64 // bytes read, heartbeats included
	change chan struct{}
}

func newClient2(t *testing.T, name, lastID string) *client {
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	return &client{t: t, http: &http.Client{Transport: tr}, name: name, lastID: lastID, change: make(chan struct{})}
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

// session reads one connection to in until it ends, ctx ends, or keep says
// to stop after an event. It reports whether it connected.
func (c *client) session(ctx context.Context, in *instance, keep func(n int, ev ssetest.Event) bool) bool {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", in.srv.URL, nil)
	if c.lastID != "" {
		req.Header.Set("Last-Event-ID", c.lastID)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		c.t.Errorf("%s: GET %s: status %d, Content-Type %q", c.name, in.name, resp.StatusCode, resp.Header.Get("Content-Type"))
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

// numbers returns the data of the client's events, "reset" for a reset.
func (c *client) numbers() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, ev := range c.events {
		if ev.Type == ssebroker.ResetEvent {
			out = append(out, "reset")
		} else {
			out = append(out, ev.Data)
		}
	}
	return out
}

// waitFor waits until cond holds of the client's events; it fails the test
// after timeout.
func (c *client) waitFor(what string, timeout time.Duration, cond func(evs []ssetest.Event) bool) {
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
			c.t.Fatalf("%s: waited %v for %s; has %d events: %s", c.name, timeout, what, n, clipS(c.numbers()))
		}
	}
}

func count(n int) func([]ssetest.Event) bool {
	return func(evs []ssetest.Event) bool { return len(evs) >= n }
}

func clipS(s []string) string {
	if len(s) > 40 {
		return fmt.Sprint(s[:20], " ... ", s[len(s)-20:])
	}
	return fmt.Sprint(s)
}

// logEvents returns the data and ids of the log's events after offset 0 of
// the topic's current epoch.
func logEvents(t *testing.T, tp *Topic) (data, ids []string) {
	t.Helper()
	head, err := tp.Head(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for pos := (ssebroker.Position{Epoch: head.Epoch}); pos.Offset < head.Offset; {
		wires, _, err := tp.ReadAfter(context.Background(), pos, 1<<20)
		if err != nil || len(wires) == 0 {
			t.Fatalf("ReadAfter(%v): %d events, %v", pos, len(wires), err)
		}
		for _, w := range wires {
			pos.Offset++
			evs, _ := ssetest.Parse(string(w))
			if len(evs) != 1 {
				t.Fatalf("log event %v: %q", pos, w)
			}
			data, ids = append(data, evs[0].Data), append(ids, pos.String())
		}
	}
	return data, ids
}

// checkSequence fails the test unless the client got exactly the log's
// events, in the log's order, with the log's ids: no gap, no repeat, no
// reordering, no reset.
func (c *client) checkSequence(data, ids []string) {
	c.t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	var got, gotIDs []string
	for _, ev := range c.events {
		if ev.Type == ssebroker.ResetEvent {
			c.t.Errorf("%s: got a reset (data %q, id %q)", c.name, ev.Data, ev.LastEventID)
			continue
		}
		got, gotIDs = append(got, ev.Data), append(gotIDs, ev.LastEventID)
	}
	if strings.Join(got, ",") != strings.Join(data, ",") {
		c.t.Errorf("%s: %d events, the log holds %d:\ngot  %s\nwant %s", c.name, len(got), len(data), clipS(got), clipS(data))
		return
	}
	if strings.Join(gotIDs, ",") != strings.Join(ids, ",") {
		c.t.Errorf("%s: ids differ from the log's:\ngot  %s\nwant %s", c.name, clipS(gotIDs), clipS(ids))
	}
}

// headID returns the id of the topic's head: a client that starts there gets
// every event published after it, whenever its stream opens.
func headID(t *testing.T, tp *Topic) string {
	t.Helper()
	h, err := tp.Head(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return h.String()
}

func TestBrokersOneOrder(t *testing.T) {
	srv := redistest.Start(t)
	const perInstance, publishers, perClientInstance = 3334, 4, 2
	ins := newInstances(t, 3, srv, &Options{MaxLen: 20000}, nil)
	start := headID(t, ins[0].topic)
	total := 3 * perInstance
	var clients []*client
	var wg sync.WaitGroup
	ctx, cancel := context.WithCancel(context.Background())
	defer wg.Wait()
	defer cancel()
	for _, in := range ins {
		for i := range perClientInstance {
			c := newClient2(t, fmt.Sprint(in.name, i), start)
			clients = append(clients, c)
			wg.Go(func() { c.session(ctx, in, func(n int, _ ssetest.Event) bool { return n < total }) })
		}
	}
	var pub sync.WaitGroup
	for i, in := range ins {
		for p := range publishers {
			pub.Go(func() {
				base := i * perInstance
				for n := p; n < perInstance; n += publishers {
					if err := in.broker.Publish(sse.Event{Data: strconv.Itoa(base + n)}); err != nil {
						t.Error(err)
						return
					}
				}
			})
		}
	}
	pub.Wait()
	data, ids := logEvents(t, ins[0].topic)
	if len(data) != total {
		t.Fatalf("the log holds %d events, want %d", len(data), total)
	}
	for _, c := range clients {
		c.waitFor(fmt.Sprint(total, " events"), 60*time.Second, count(total))
		c.checkSequence(data, ids)
	}
}

// reconnecting runs a client that reads from a random live instance, other
// than the last, drops the connection after a random number of events
// (at most maxRun), and reconnects with its Last-Event-ID, until it has
// total events or ctx ends.
func reconnecting(ctx context.Context, c *client, ins []*instance, total, maxRun int, rng *rand.Rand) {
	last := -1
	for {
		c.mu.Lock()
		have := len(c.events)
		c.mu.Unlock()
		if have >= total || ctx.Err() != nil {
			return
		}
		i := rng.IntN(len(ins))
		if i == last || ins[i].dead.Load() {
			continue
		}
		last = i
		run := 1 + rng.IntN(maxRun)
		if !c.session(ctx, ins[i], func(n int, _ ssetest.Event) bool { return n < run && have+n < total }) {
			time.Sleep(10 * time.Millisecond) // that instance is going away
		}
	}
}

func TestBrokersClientsReconnectElsewhere(t *testing.T) {
	srv := redistest.Start(t)
	const perInstance, clients = 1500, 6
	// Small Broker histories, so that replay comes from the Log too.
	ins := newInstances(t, 3, srv, &Options{MaxLen: 10000}, &ssebroker.Options{HistoryLen: 64})
	start := headID(t, ins[0].topic)
	total := 3 * perInstance
	var wg sync.WaitGroup
	defer wg.Wait() // after cancel, which ends the sessions
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var cs []*client
	for i := range clients {
		c := newClient2(t, fmt.Sprint("client", i), start)
		cs = append(cs, c)
		rng := rand.New(rand.NewPCG(uint64(i), 1))
		wg.Go(func() { reconnecting(ctx, c, ins, total, 400, rng) })
	}
	var pub sync.WaitGroup
	for i, in := range ins {
		pub.Go(func() { in.publish(t, i*perInstance+1, (i+1)*perInstance) })
	}
	pub.Wait()
	data, ids := logEvents(t, ins[0].topic)
	for _, c := range cs {
		c.waitFor(fmt.Sprint(total, " events"), 60*time.Second, count(total))
		c.checkSequence(data, ids)
	}
}

func TestBrokersInstanceKilled(t *testing.T) {
	srv := redistest.Start(t)
	const perInstance = 1500
	ins := newInstances(t, 3, srv, &Options{MaxLen: 10000}, nil)
	start := headID(t, ins[0].topic)
	total := 2 * perInstance
	var wg sync.WaitGroup
	defer wg.Wait() // after cancel, which ends the sessions
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var cs []*client
	for i := range 6 {
		c := newClient2(t, fmt.Sprint("client", i), start)
		cs = append(cs, c)
		// Each reads from one instance as long as it can, then moves on.
		wg.Go(func() {
			for j := i; ; j++ {
				c.mu.Lock()
				have := len(c.events)
				c.mu.Unlock()
				if have >= total || ctx.Err() != nil {
					return
				}
				in := ins[j%len(ins)]
				if in.dead.Load() {
					continue
				}
				c.session(ctx, in, func(n int, _ ssetest.Event) bool { return have+n < total })
			}
		})
	}
	var pub sync.WaitGroup
	for i, in := range ins[1:] {
		pub.Go(func() {
			from := i*perInstance + 1
			in.publish(t, from, from+perInstance/2-1)
			if i == 0 {
				ins[0].kill() // mid-stream, while its clients read
			}
			in.publish(t, from+perInstance/2, from+perInstance-1)
		})
	}
	pub.Wait()
	data, ids := logEvents(t, ins[1].topic)
	for _, c := range cs {
		c.waitFor(fmt.Sprint(total, " events"), 60*time.Second, count(total))
		c.checkSequence(data, ids)
	}
}

// publishFails publishes on in while Redis cannot answer, and checks that
// Publish fails within its bound.
func publishFails(t *testing.T, in *instance, n int, bound time.Duration) {
	t.Helper()
	start := time.Now()
	err := in.broker.Publish(sse.Event{Data: strconv.Itoa(n)})
	logtest.Within(t, in.name+": Publish while Redis cannot answer", time.Since(start), bound)
	if err == nil {
		t.Errorf("%s: Publish while Redis cannot answer succeeded", in.name)
	}
}

// threeListening starts three instances on srv, each with a client that
// reads from the topic's head until the test ends; waits until every Broker
// follows the Log; and publishes 10 events on each instance, which every
// client gets. It returns the instances, their clients, and the id the
// clients started from.
func threeListening(t *testing.T, srv *redistest.Server, o *Options, bo *ssebroker.Options) ([]*instance, []*client, string) {
	t.Helper()
	ins := newInstances(t, 3, srv, o, bo)
	start := headID(t, ins[0].topic)
	var wg sync.WaitGroup
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() { // before the instances' cleanups
		cancel() // ends the sessions
		wg.Wait()
	})
	var cs []*client
	for _, in := range ins {
		c := newClient2(t, "client of "+in.name, start)
		cs = append(cs, c)
		wg.Go(func() { c.session(ctx, in, func(int, ssetest.Event) bool { return true }) })
	}
	waitFollowing(t, ins)
	for i, in := range ins {
		in.publish(t, 10*i+1, 10*i+10)
	}
	for _, c := range cs {
		c.waitFor("30 events", 20*time.Second, count(30))
	}
	return ins, cs, start
}

func TestBrokersRedisKilledAndRestartedEmpty(t *testing.T) {
	srv := redistest.Start(t)
	const timeout = 300 * time.Millisecond
	ins, cs, start := threeListening(t, srv, &Options{Timeout: timeout}, nil)
	oldEpoch, _, _ := strings.Cut(start, "-")
	before, _ := logEvents(t, ins[0].topic)
	srv.Kill()
	for i, in := range ins {
		publishFails(t, in, 100+i, timeout)
	}
	srv.Restart() // empty
	for _, c := range cs {
		c.waitFor("a reset", 30*time.Second, func(evs []ssetest.Event) bool { return evs[len(evs)-1].Type == ssebroker.ResetEvent })
	}
	for i, in := range ins {
		in.publish(t, 200+10*i+1, 200+10*i+10)
	}
	after, afterIDs := logEvents(t, ins[0].topic)
	if len(after) != 30 {
		t.Fatalf("the new log holds %d events, want 30", len(after))
	}
	want := append(append(before, "reset"), after...)
	for _, c := range cs {
		c.waitFor("61 events", 20*time.Second, count(61))
		if got := c.numbers(); strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("%s:\ngot  %s\nwant %s", c.name, clipS(got), clipS(want))
		}
		c.mu.Lock()
		for i, ev := range c.events[31:] {
			if ev.LastEventID != afterIDs[i] {
				t.Errorf("%s: event %d after the reset has id %q, want %q", c.name, i, ev.LastEventID, afterIDs[i])
			}
		}
		c.mu.Unlock()
	}
	// A client that comes back with an id of the lost history is told so.
	late := newClient2(t, "late", oldEpoch+"-30")
	late.session(t.Context(), ins[1], func(int, ssetest.Event) bool { return false })
	if got := late.numbers(); len(got) != 1 || got[0] != "reset" {
		t.Errorf("a client with an id of the lost epoch got %v first, want a reset", got)
	}
}

func TestBrokersRedisPaused(t *testing.T) {
	srv := redistest.Start(t)
	const timeout = 500 * time.Millisecond
	ins, cs, _ := threeListening(t, srv, &Options{Timeout: timeout, MaxLen: 10000},
		&ssebroker.Options{Stream: sse.Options{Heartbeat: time.Second}})
	var read []int64
	for _, c := range cs {
		read = append(read, c.bytes.Load())
	}
	srv.Pause()
	pausedAt := time.Now()
	for i, in := range ins {
		publishFails(t, in, 100+i, timeout)
	}
	time.Sleep(5*time.Second - time.Since(pausedAt))
	for i, c := range cs {
		if c.bytes.Load() == read[i] {
			t.Errorf("%s: nothing read during the 5 s pause: no heartbeat", c.name)
			for _, in := range ins {
				st, _ := json.Marshal(in.broker.Stats())
				t.Logf("%s: %s", in.name, st)
			}
			c.mu.Lock()
			t.Logf("%s: sessions ended: %v", c.name, c.ends)
			c.mu.Unlock()
		}
	}
	srv.Resume()
	for i, in := range ins {
		in.publish(t, 200+10*i+1, 200+10*i+10)
	}
	// The Publish calls that timed out may have taken effect when Redis
	// resumed: whatever the log holds, each client has, in its order.
	data, ids := logEvents(t, ins[0].topic)
	for _, c := range cs {
		c.waitFor(fmt.Sprint(len(data), " events"), 20*time.Second, count(len(data)))
		c.checkSequence(data, ids)
	}
}

func TestBrokersClientOlderThanMaxLen(t *testing.T) {
	srv := redistest.Start(t)
	const maxLen = 10
	pub := newInstance(t, "A", srv, &Options{MaxLen: maxLen}, nil)
	start := headID(t, pub.topic)
	epoch, _, _ := strings.Cut(start, "-")
	pub.publish(t, 1, 30)
	// Another instance, whose Broker holds only 4 events: a client past
	// those reads from the Log, or, past the Log too, gets a reset.
	in := newInstance(t, "B", srv, &Options{MaxLen: maxLen}, &ssebroker.Options{HistoryLen: 4})
	for _, tt := range []struct {
		lastID string
		want   []string
	}{
		{epoch + "-25", []string{"26", "27", "28", "29", "30"}},
		{epoch + "-20", []string{"21", "22", "23", "24", "25", "26", "27", "28", "29", "30"}},
		{epoch + "-19", []string{"reset"}}, // event 20 is gone: MaxLen 10 keeps 21 to 30
		{epoch + "-3", []string{"reset"}},
	} {
		c := newClient2(t, "client from "+tt.lastID, tt.lastID)
		c.session(context.Background(), in, func(n int, _ ssetest.Event) bool { return n < len(tt.want) })
		if got := c.numbers(); strings.Join(got, ",") != strings.Join(tt.want, ",") {
			t.Errorf("Last-Event-ID %s: got %v, want %v", tt.lastID, got, tt.want)
		}
	}
}

func TestBrokersManyTopics(t *testing.T) {
	srv := redistest.Start(t)
	a := admin(t, srv)
	const topics, open = 10000, 10
	before := runtime.NumGoroutine()
	s := newStreams(t, srv, nil)
	// One Broker per topic, made when a stream opens, dropped when its last
	// stream ends (OnIdle), as the sse Broker's doc suggests.
	var mu sync.Mutex
	brokers := make(map[string]*ssebroker.Broker)
	get := func(name string) *ssebroker.Broker {
		mu.Lock()
		defer mu.Unlock()
		b := brokers[name]
		if b == nil {
			tp := topic(t, s, name)
			b = brokertest.New(t, &ssebroker.Options{Log: tp, HistoryLen: 16, OnIdle: func() {
				mu.Lock()
				defer mu.Unlock()
				if b := brokers[name]; b != nil && b.Subscribers() == 0 {
					b.Close()
					delete(brokers, name)
				}
			}})
			brokers[name] = b
		}
		return b
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /events/{topic}", func(w http.ResponseWriter, r *http.Request) {
		get(r.PathValue("topic")).ServeHTTP(w, r)
	})
	hs := httptest.NewServer(mux)
	t.Cleanup(hs.Close)
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, b := range brokers {
			b.Close()
		}
	})
	// Events in every topic, published as another instance would.
	pubs := newStreams(t, srv, nil)
	var wg sync.WaitGroup
	for w := range 50 {
		wg.Go(func() {
			for i := w; i < topics; i += 50 {
				if _, err := topic(t, pubs, fmt.Sprint("user", i)).Append(context.Background(), []byte("data: x\n\n")); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	var readers sync.WaitGroup
	defer readers.Wait() // after cancel, which ends the sessions
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var cs []*client
	for i := range open {
		name := fmt.Sprint("user", i)
		c := newClient2(t, name, headID(t, topic(t, pubs, name)))
		cs = append(cs, c)
		in := &instance{name: name, srv: &httptest.Server{URL: hs.URL + "/events/" + name}}
		readers.Go(func() { c.session(ctx, in, func(int, ssetest.Event) bool { return true }) })
	}
	for i := range open {
		if _, err := topic(t, pubs, fmt.Sprint("user", i)).Append(ctx, []byte("data: "+strconv.Itoa(i)+"\n\n")); err != nil {
			t.Fatal(err)
		}
	}
	for i, c := range cs {
		c.waitFor("its event", 20*time.Second, count(1))
		if got := c.numbers(); len(got) != 1 || got[0] != strconv.Itoa(i) {
			t.Errorf("%s got %v, want [%d]", c.name, got, i)
		}
	}
	chans, err := a.PubSubChannels(ctx, "sse:{*}:live").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(chans) != open {
		t.Errorf("%d channels subscribed, want %d: one per topic with an open stream", len(chans), open)
	}
	list, err := a.ClientList(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	conns := strings.Count(strings.TrimSpace(list), "\n") + 1
	// The admin client's, the publishing Streams' few, and this instance's:
	// its callers' and its Pub/Sub connection.
	if conns > 1+2*(callers+1)+4 {
		t.Errorf("%d connections to Redis, want at most %d", conns, 1+2*(callers+1)+4)
	}
	// Goroutines: per open stream, its handler's and net/http's, and the
	// client's reader and transport here; a fixed few per Streams; none per
	// topic.
	g := runtime.NumGoroutine() - before
	if g > open*6+40 {
		t.Errorf("%d goroutines for %d topics, %d open streams; want at most %d", g, topics, open, open*6+40)
	}
	t.Logf("%d topics, %d open streams: %d goroutines, %d Redis connections in all", topics, open, g, conns)
	mu.Lock()
	if n := len(brokers); n != open {
		t.Errorf("%d Brokers, want %d", n, open)
	}
	mu.Unlock()
}
