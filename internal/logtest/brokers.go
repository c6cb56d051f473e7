package logtest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lightsse/sse"
	"github.com/lightsse/sse/internal/brokertest"
	"github.com/lightsse/sse/internal/ssetest"
	"github.com/lightsse/sse/ssebroker"
)

// RunBrokers runs, as subtests of t, the tests of a deployment of several
// Instances, each a Broker on its own Process's Log of one topic, read by
// Clients over real sockets: every client of every instance gets the
// log's events, in its one order, with its ids; across reconnections to
// other instances, an instance's death, and histories older than what the
// Broker or the Log keep. start starts an empty Store for each subtest.
func RunBrokers(t *testing.T, start func(t *testing.T) Store) {
	runEach(t, start, []subtest{
		{"OneOrder", testBrokersOneOrder},
		{"ClientsReconnectElsewhere", testBrokersClientsReconnectElsewhere},
		{"InstanceKilled", testBrokersInstanceKilled},
		{"ClientOlderThanRetention", testBrokersClientOlderThanRetention},
	})
}

// keeping returns a function that opens Processes of st that keep keep
// events.
func keeping(st Store, keep int) func(t *testing.T) Process {
	return func(t *testing.T) Process { return st.Open(t, keep) }
}

// expectLog checks that the log's events, data and ids (see LogEvents), are
// total, then has each of clients wait for total events and checks that it
// got exactly those, in order.
func expectLog(t testing.TB, clients []*Client, data, ids []string, total int) {
	t.Helper()
	if len(data) != total {
		t.Fatalf("the log holds %d events, want %d", len(data), total)
	}
	for _, c := range clients {
		c.WaitFor(fmt.Sprint(total, " events"), 60*time.Second, Count(total))
		c.CheckSequence(data, ids)
	}
}

// LogEvents returns the data and ids of the events log holds in its current
// epoch, from its first.
func LogEvents(t testing.TB, log ssebroker.Log) (data, ids []string) {
	t.Helper()
	head := Head(t, log)
	for pos := (ssebroker.Position{Epoch: head.Epoch}); pos.Offset < head.Offset; {
		wires, _, err := log.ReadAfter(context.Background(), pos, 1<<20)
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

// HeadID returns the id of log's head: a client that starts there gets
// every event published after it, whenever its stream opens.
func HeadID(t testing.TB, log ssebroker.Log) string {
	t.Helper()
	return Head(t, log).String()
}

// Three Brokers publish 10,002 events at once, from four goroutines each:
// every client of every instance gets them all, in one order, with the
// same ids.
func testBrokersOneOrder(t *testing.T, st Store) {
	const perInstance, publishers, perClientInstance = 3334, 4, 2
	ins := NewInstances(t, 3, keeping(st, 20000), nil)
	start := HeadID(t, ins[0].Log)
	total := 3 * perInstance
	var clients []*Client
	var wg sync.WaitGroup
	ctx, cancel := context.WithCancel(context.Background())
	defer wg.Wait()
	defer cancel()
	for _, in := range ins {
		for i := range perClientInstance {
			c := NewClient(t, fmt.Sprint(in.Name, i), start)
			clients = append(clients, c)
			wg.Go(func() { c.Session(ctx, in, func(n int, _ ssetest.Event) bool { return n < total }) })
		}
	}
	var pub sync.WaitGroup
	for i, in := range ins {
		for p := range publishers {
			pub.Go(func() {
				base := i * perInstance
				for n := p; n < perInstance; n += publishers {
					if err := in.Broker.Publish(sse.Event{Data: strconv.Itoa(base + n)}); err != nil {
						t.Error(err)
						return
					}
				}
			})
		}
	}
	pub.Wait()
	data, ids := LogEvents(t, ins[0].Log)
	expectLog(t, clients, data, ids, total)
}

// Clients that move between instances, resuming with their Last-Event-ID,
// get every event once: no gap, no duplicate. Small Broker histories make
// replay come from the Log too.
func testBrokersClientsReconnectElsewhere(t *testing.T, st Store) {
	const perInstance, clients = 1500, 6
	ins := NewInstances(t, 3, keeping(st, 10000), &ssebroker.Options{HistoryLen: 64})
	start := HeadID(t, ins[0].Log)
	total := 3 * perInstance
	var wg sync.WaitGroup
	defer wg.Wait() // after cancel, which ends the sessions
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var cs []*Client
	for i := range clients {
		c := NewClient(t, fmt.Sprint("client", i), start)
		cs = append(cs, c)
		rng := rand.New(rand.NewPCG(uint64(i), 1))
		wg.Go(func() { Reconnecting(ctx, c, ins, total, 400, rng) })
	}
	var pub sync.WaitGroup
	for i, in := range ins {
		pub.Go(func() { in.Publish(t, i*perInstance+1, (i+1)*perInstance) })
	}
	pub.Wait()
	data, ids := LogEvents(t, ins[0].Log)
	expectLog(t, cs, data, ids, total)
}

// An instance killed while its clients read and the others publish: its
// clients move on to the others, and get every event once.
func testBrokersInstanceKilled(t *testing.T, st Store) {
	const perInstance = 1500
	ins := NewInstances(t, 3, keeping(st, 10000), nil)
	start := HeadID(t, ins[0].Log)
	total := 2 * perInstance
	var wg sync.WaitGroup
	defer wg.Wait() // after cancel, which ends the sessions
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var cs []*Client
	for i := range 6 {
		c := NewClient(t, fmt.Sprint("client", i), start)
		cs = append(cs, c)
		// Each reads from one instance as long as it can, then moves on.
		wg.Go(func() {
			for j := i; ; j++ {
				have := c.Len()
				if have >= total || ctx.Err() != nil {
					return
				}
				in := ins[j%len(ins)]
				if in.Dead() {
					continue
				}
				c.Session(ctx, in, func(n int, _ ssetest.Event) bool { return have+n < total })
			}
		})
	}
	var pub sync.WaitGroup
	for i, in := range ins[1:] {
		pub.Go(func() {
			from := i*perInstance + 1
			in.Publish(t, from, from+perInstance/2-1)
			if i == 0 {
				ins[0].Kill() // mid-stream, while its clients read
			}
			in.Publish(t, from+perInstance/2, from+perInstance-1)
		})
	}
	pub.Wait()
	data, ids := LogEvents(t, ins[1].Log)
	expectLog(t, cs, data, ids, total)
}

// A client whose Last-Event-ID is older than what the log keeps gets a
// reset; one within it, every event after its id, from the Log where the
// Broker's history does not reach.
func testBrokersClientOlderThanRetention(t *testing.T, st Store) {
	const keep = 10
	pub := NewInstance(t, "A", st.Open(t, keep), nil)
	epoch := Head(t, pub.Log).Epoch
	pub.Publish(t, 1, 30)
	pub.Process.Trim(t)
	// Another instance, whose Broker holds only 4 events: a client past
	// those reads from the Log, or, past the Log too, gets a reset.
	in := NewInstance(t, "B", st.Open(t, keep), &ssebroker.Options{HistoryLen: 4})
	for _, tt := range []struct {
		lastID string
		want   []string
	}{
		{epoch + "-25", []string{"26", "27", "28", "29", "30"}},
		{epoch + "-20", []string{"21", "22", "23", "24", "25", "26", "27", "28", "29", "30"}},
		{epoch + "-19", []string{"reset"}}, // event 20 is gone: the log keeps 21 to 30
		{epoch + "-3", []string{"reset"}},
	} {
		c := NewClient(t, "client from "+tt.lastID, tt.lastID)
		c.Session(context.Background(), in, func(n int, _ ssetest.Event) bool { return n < len(tt.want) })
		if got := c.Numbers(); strings.Join(got, ",") != strings.Join(tt.want, ",") {
			t.Errorf("Last-Event-ID %s: got %v, want %v", tt.lastID, got, tt.want)
		}
	}
}

// ThreeListening starts three Instances, each on a Process that open
// opens, and each with a Client that reads from the topic's head until the
// test ends, and reconnects as a browser would should its stream end (the
// test may check that none did, with Client.Ends); waits until every Broker
// follows the Log; and publishes 10 events on each instance, which every
// client gets. It returns the instances, their clients, and the id the
// clients started from.
func ThreeListening(t *testing.T, open func(t *testing.T) Process, bo *ssebroker.Options) ([]*Instance, []*Client, string) {
	t.Helper()
	ins := NewInstances(t, 3, open, bo)
	start := HeadID(t, ins[0].Log)
	var wg sync.WaitGroup
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() { // before the instances' cleanups
		cancel() // ends the sessions
		wg.Wait()
	})
	var cs []*Client
	for _, in := range ins {
		c := NewClient(t, "client of "+in.Name, start)
		cs = append(cs, c)
		wg.Go(func() {
			for ctx.Err() == nil {
				if !c.Session(ctx, in, func(int, ssetest.Event) bool { return true }) {
					time.Sleep(20 * time.Millisecond)
				}
			}
		})
	}
	WaitFollowing(t, ins)
	for i, in := range ins {
		in.Publish(t, 10*i+1, 10*i+10)
	}
	for _, c := range cs {
		c.WaitFor("30 events", 20*time.Second, Count(30))
	}
	return ins, cs, start
}

// ServeManyTopics runs an instance on serve that serves topics topics, one
// Broker per topic, made when a stream of it opens and dropped when its
// last stream ends (OnIdle), as the Broker's doc suggests; pubs appends an
// event to every topic, as another instance would; open clients read the
// first open topics, from their heads, and each gets the one event then
// appended to its topic. ServeManyTopics returns with their streams open,
// for the test to count what the instance holds; the test's end closes
// them.
func ServeManyTopics(t *testing.T, serve, pubs Process, topics, open int) {
	t.Helper()
	var heads atomic.Int64
	var mu sync.Mutex
	brokers := make(map[string]*ssebroker.Broker)
	get := func(name string) *ssebroker.Broker {
		mu.Lock()
		defer mu.Unlock()
		b := brokers[name]
		if b == nil {
			b = brokertest.New(t, &ssebroker.Options{Log: countHeads(serve.Log(t, name), &heads), HistoryLen: 16, OnIdle: func() {
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
	var wg sync.WaitGroup
	for w := range 50 {
		wg.Go(func() {
			for i := w; i < topics; i += 50 {
				if _, err := pubs.Log(t, fmt.Sprint("user", i)).Append(context.Background(), []byte("data: x\n\n")); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	var readers sync.WaitGroup
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() { // before the server's and the Brokers'
		cancel() // ends the sessions
		readers.Wait()
	})
	var cs []*Client
	for i := range open {
		name := fmt.Sprint("user", i)
		c := NewClient(t, name, HeadID(t, pubs.Log(t, name)))
		cs = append(cs, c)
		in := At(name, hs.URL+"/events/"+name)
		readers.Go(func() { c.Session(ctx, in, func(int, ssetest.Event) bool { return true }) })
	}
	for deadline := time.Now().Add(20 * time.Second); heads.Load() < int64(open); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d Brokers follow their topic after 20 s", heads.Load(), open)
		}
	}
	for i := range open {
		if _, err := pubs.Log(t, fmt.Sprint("user", i)).Append(ctx, Wire(i)); err != nil {
			t.Fatal(err)
		}
	}
	for i, c := range cs {
		c.WaitFor("its event", 20*time.Second, Count(1))
		if got := c.Numbers(); len(got) != 1 || got[0] != strconv.Itoa(i) {
			t.Errorf("%s got %v, want [%d]", c.Name, got, i)
		}
	}
	mu.Lock()
	if n := len(brokers); n != open {
		t.Errorf("%d Brokers, want %d", n, open)
	}
	mu.Unlock()
}
