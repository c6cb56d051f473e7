package pgstream

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lightsse/sse/internal/brokertest"

	"github.com/jackc/pgx/v5"

	"github.com/lightsse/sse"
	"github.com/lightsse/sse/internal/ssetest"
	"github.com/lightsse/sse/ssebroker"
)

// The tests in this file run a deployment as production would: several
// instances, each a Streams on its own pool, a Broker on the topic "room",
// and an HTTP server on 127.0.0.1; and clients that read the streams over
// real sockets with a spec-exact parser.

// An instance is one process of the deployment.
type instance struct {
	name    string
	streams *Streams
	topic   *Topic
	broker  *ssebroker.Broker
	srv     *httptest.Server
}

// newInstance starts an instance on the database at url; the test's end
// stops it.
func newInstance(t *testing.T, name, url string, o *Options, bo *ssebroker.Options) *instance {
	t.Helper()
	in := &instance{name: name, streams: newStreams(t, url, o)}
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

func newInstances(t *testing.T, n int, url string, o *Options, bo *ssebroker.Options) []*instance {
	var ins []*instance
	for i := range n {
		ins = append(ins, newInstance(t, string(rune('A'+i)), url, o, bo))
	}
	return ins
}

// waitFollowing waits until every instance's Broker follows the Log (its
// feed has had the Log's head).
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
	change chan struct{}
}

func newClient(t *testing.T, name, lastID string) *client {
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	return &client{t: t, http: &http.Client{Transport: tr}, name: name, lastID: lastID, change: make(chan struct{})}
}

// session reads one connection to url until it ends, ctx ends, or keep says
// to stop after an event. It reports whether it connected.
func (c *client) session(ctx context.Context, url string, keep func(n int, ev ssetest.Event) bool) bool {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	if c.lastID != "" {
		req.Header.Set("Last-Event-ID", c.lastID)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		c.t.Errorf("%s: GET %s: status %d, Content-Type %q", c.name, url, resp.StatusCode, resp.Header.Get("Content-Type"))
		return false
	}
	rd := ssetest.NewReader(resp.Body)
	for n := 1; ; n++ {
		ev, err := rd.Next()
		if rd.LastEventID != "" {
			c.lastID = rd.LastEventID
		}
		if err != nil {
			return true
		}
		c.mu.Lock()
		c.events = append(c.events, ev)
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

// Three Brokers publish 10,000 events at once, from four goroutines each:
// every client of every instance gets them all, in one order, with the
// same ids.
func TestBrokersOneOrder(t *testing.T) {
	url := newDB(t)
	const total, publishers, perClientInstance = 10000, 4, 2
	ins := newInstances(t, 3, url, &Options{MaxLen: total}, nil)
	start := headID(t, ins[0].topic)
	var clients []*client
	var wg sync.WaitGroup
	ctx, cancel := context.WithCancel(context.Background())
	defer wg.Wait()
	defer cancel()
	for _, in := range ins {
		for i := range perClientInstance {
			c := newClient(t, fmt.Sprint(in.name, i), start)
			clients = append(clients, c)
			wg.Go(func() { c.session(ctx, in.srv.URL, func(n int, _ ssetest.Event) bool { return n < total }) })
		}
	}
	var pub sync.WaitGroup
	for i, in := range ins {
		for p := range publishers {
			pub.Go(func() {
				for n := i*publishers + p; n < total; n += len(ins) * publishers {
					if err := in.broker.Publish(sse.Event{Data: strconv.Itoa(n)}); err != nil {
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

// reconnecting runs a client that reads from a random instance, other than
// the last, drops the connection after a random number of events
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
		if i == last {
			continue
		}
		last = i
		run := 1 + rng.IntN(maxRun)
		if !c.session(ctx, ins[i].srv.URL, func(n int, _ ssetest.Event) bool { return n < run && have+n < total }) {
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// Clients that move between instances, resuming with their Last-Event-ID,
// get every event once: no gap, no duplicate. Small Broker histories make
// replay come from the Log too.
func TestBrokersClientsMoveBetweenInstances(t *testing.T) {
	url := newDB(t)
	const perInstance, clients = 1000, 6
	ins := newInstances(t, 3, url, &Options{MaxLen: 10000}, &ssebroker.Options{HistoryLen: 64})
	start := headID(t, ins[0].topic)
	total := 3 * perInstance
	var wg sync.WaitGroup
	defer wg.Wait() // after cancel, which ends the sessions
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var cs []*client
	for i := range clients {
		c := newClient(t, fmt.Sprint("client", i), start)
		cs = append(cs, c)
		rng := rand.New(rand.NewPCG(uint64(i), 1))
		wg.Go(func() { reconnecting(ctx, c, ins, total, 300, rng) })
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

// threeListening starts three instances on url, each with a client that
// reads from the topic's head until the test ends; waits until every Broker
// follows the Log; and publishes 10 events on each instance, which every
// client gets. It returns the instances, their clients, and the id the
// clients started from.
func threeListening(t *testing.T, url string, o *Options, bo *ssebroker.Options) ([]*instance, []*client, string) {
	t.Helper()
	ins := newInstances(t, 3, url, o, bo)
	start := headID(t, ins[0].topic)
	var wg sync.WaitGroup
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() { // before the instances' cleanups
		cancel() // ends the sessions
		wg.Wait()
	})
	var cs []*client
	for _, in := range ins {
		c := newClient(t, "client of "+in.name, start)
		cs = append(cs, c)
		wg.Go(func() {
			// Reconnect as a browser would, should the stream end.
			for ctx.Err() == nil {
				if !c.session(ctx, in.srv.URL, func(int, ssetest.Event) bool { return true }) {
					time.Sleep(20 * time.Millisecond)
				}
			}
		})
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

// Events published in transactions reach every client if and only if the
// transaction commits, in commit order: here transactions that commit in
// the reverse of the order they began in, and others that roll back, on
// one instance, read by the clients of all three.
func TestBrokersTransactions(t *testing.T) {
	url := newDB(t)
	ins, cs, _ := threeListening(t, url, nil, nil)
	tp := ins[0].topic
	app := newPool(t, url) // the application's, with room for n transactions at once
	const n = 8
	txs := make([]pgx.Tx, n)
	for i := range txs {
		var err error
		if txs[i], err = app.Begin(t.Context()); err != nil {
			t.Fatal(err)
		}
		defer txs[i].Rollback(context.Background())
		if _, err := txs[i].Exec(t.Context(), "SELECT 1"); err != nil { // begun, in this order
			t.Fatal(err)
		}
	}
	var want []string
	for i := n - 1; i >= 0; i-- { // last begun, first to publish and commit
		if _, err := tp.PublishTx(t.Context(), txs[i], sse.Event{Data: fmt.Sprint("tx", i)}); err != nil {
			t.Fatal(err)
		}
		if i%3 == 0 {
			if err := txs[i].Rollback(t.Context()); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := txs[i].Commit(t.Context()); err != nil {
			t.Fatal(err)
		}
		want = append(want, fmt.Sprint("tx", i))
	}
	ins[1].publish(t, 100, 100) // a plain Publish after them
	want = append(want, "100")
	data, _ := logEvents(t, tp)
	if got := strings.Join(data[30:], ","); got != strings.Join(want, ",") {
		t.Errorf("the log holds %s after the first 30, want %s", got, strings.Join(want, ","))
	}

	// Then transactions at once, from every instance, each waiting for
	// the one before it to end, of random lengths: a quarter roll back.
	var wg sync.WaitGroup
	var mu sync.Mutex
	rolledBack := make(map[string]bool)
	for w := range 12 {
		in := ins[w%3]
		rng := rand.New(rand.NewPCG(uint64(w), 9))
		wg.Go(func() {
			for i := range 10 {
				data := fmt.Sprint("w", w, "-", i)
				err := pgx.BeginFunc(context.Background(), app, func(tx pgx.Tx) error {
					time.Sleep(time.Duration(rng.IntN(2)) * time.Millisecond)
					if _, err := in.topic.PublishTx(context.Background(), tx, sse.Event{Data: data}); err != nil {
						return err
					}
					time.Sleep(time.Duration(rng.IntN(2)) * time.Millisecond)
					if rng.IntN(4) == 0 {
						return errRolledBack
					}
					return nil
				})
				if errors.Is(err, errRolledBack) {
					mu.Lock()
					rolledBack[data] = true
					mu.Unlock()
				} else if err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	data, ids := logEvents(t, tp)
	if len(data) != 30+len(want)+120-len(rolledBack) {
		t.Errorf("the log holds %d events, want %d", len(data), 30+len(want)+120-len(rolledBack))
	}
	for _, d := range data {
		if rolledBack[d] {
			t.Errorf("the log holds %s, which was rolled back", d)
		}
	}
	for _, c := range cs {
		c.waitFor(fmt.Sprint(len(data), " events"), 20*time.Second, count(len(data)))
		time.Sleep(50 * time.Millisecond) // time for anything more to come
		c.checkSequence(data, ids)
	}
}

// The listeners of every instance killed while events are published: the
// clients get every event, with no gap.
func TestBrokersListenersKilled(t *testing.T) {
	url := newDB(t)
	ins, cs, _ := threeListening(t, url, &Options{PollInterval: time.Hour}, nil)
	var pub sync.WaitGroup
	for i, in := range ins {
		pub.Go(func() { in.publish(t, 1000*(i+1), 1000*(i+1)+199) })
	}
	for range 3 {
		time.Sleep(20 * time.Millisecond)
		for _, in := range ins {
			killListener(t, in.streams)
		}
	}
	pub.Wait()
	data, ids := logEvents(t, ins[0].topic)
	for _, c := range cs {
		c.waitFor(fmt.Sprint(len(data), " events"), 20*time.Second, count(len(data)))
		c.checkSequence(data, ids)
	}
	for _, in := range ins {
		if n := in.streams.subs.connects.Load(); n < 2 {
			t.Errorf("%s: the listener connected %d times, want more than once", in.name, n)
		}
	}
}

// A client whose Last-Event-ID is older than what the log keeps gets a
// reset; one within it, every event after its id.
func TestBrokersClientOlderThanRetention(t *testing.T) {
	url := newDB(t)
	o := &Options{MaxLen: 10, TrimInterval: -1}
	pub := newInstance(t, "A", url, o, nil)
	start := headID(t, pub.topic)
	epoch, _, _ := strings.Cut(start, "-")
	pub.publish(t, 1, 30)
	if _, err := pub.streams.Trim(t.Context()); err != nil {
		t.Fatal(err)
	}
	// Another instance, whose Broker holds only 4 events: a client past
	// those reads from the Log, or, past the Log too, gets a reset.
	in := newInstance(t, "B", url, o, &ssebroker.Options{HistoryLen: 4})
	for _, tt := range []struct {
		lastID string
		want   []string
	}{
		{epoch + "-25", []string{"26", "27", "28", "29", "30"}},
		{epoch + "-20", []string{"21", "22", "23", "24", "25", "26", "27", "28", "29", "30"}},
		{epoch + "-19", []string{"reset"}}, // event 20 is gone: MaxLen 10 keeps 21 to 30
		{epoch + "-3", []string{"reset"}},
	} {
		c := newClient(t, "client from "+tt.lastID, tt.lastID)
		c.session(context.Background(), in.srv.URL, func(n int, _ ssetest.Event) bool { return n < len(tt.want) })
		if got := c.numbers(); strings.Join(got, ",") != strings.Join(tt.want, ",") {
			t.Errorf("Last-Event-ID %s: got %v, want %v", tt.lastID, got, tt.want)
		}
	}
}

// 10,000 topics, 10 with an open stream, served by one instance with one
// Broker per open topic: the instance holds its pool's connections and one
// more, whatever the number of topics.
func TestBrokersManyTopics(t *testing.T) {
	url := newDB(t)
	const topics, open = 10000, 10
	s := newStreams(t, url, nil) // its pool's MaxConns is 8
	var mu sync.Mutex
	brokers := make(map[string]*ssebroker.Broker)
	get := func(name string) *ssebroker.Broker {
		mu.Lock()
		defer mu.Unlock()
		b := brokers[name]
		if b == nil {
			b = brokertest.New(t, &ssebroker.Options{Log: topic(t, s, name), HistoryLen: 16, OnIdle: func() {
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
	pubs := newStreams(t, url, nil)
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
		c := newClient(t, name, headID(t, topic(t, pubs, name)))
		cs = append(cs, c)
		readers.Go(func() { c.session(ctx, hs.URL+"/events/"+name, func(int, ssetest.Event) bool { return true }) })
	}
	for deadline := time.Now().Add(20 * time.Second); s.subs.heads.Load() < open; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d Brokers follow their topic after 20 s", s.subs.heads.Load(), open)
		}
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
	waitListening(t, s)
	// The instance's connections: its pool's (at most its MaxConns, 8),
	// and its listener; the publishing Streams' pool's, and no listener
	// (it follows nothing).
	var conns, listeners int32
	err := pubs.pool.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE application_name = $1)
		FROM pg_stat_activity WHERE datname = current_database() AND backend_type = 'client backend'`, listenerName).Scan(&conns, &listeners)
	if err != nil {
		t.Fatal(err)
	}
	mine := conns - pubs.pool.Stat().TotalConns()
	if mine > 8+1 || listeners != 1 {
		t.Errorf("the instance holds %d connections, want at most 9 (its pool's MaxConns, and its listener); %d listeners, want 1", mine, listeners)
	}
	t.Logf("%d topics, %d open streams: the instance holds %d connections", topics, open, mine)
	mu.Lock()
	if n := len(brokers); n != open {
		t.Errorf("%d Brokers, want %d", n, open)
	}
	mu.Unlock()
}
