package redisstream

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/lightsse/sse"
	"github.com/lightsse/sse/internal/brokertest"
	"github.com/lightsse/sse/internal/logtest"
	"github.com/lightsse/sse/redisstream/internal/redistest"
	"github.com/lightsse/sse/ssebroker"
	"github.com/redis/go-redis/v9"
)

// failoverClient returns a go-redis client of the master that the Sentinels
// of d name, logged in as redistest.User; closed when the test ends.
func failoverClient(t *testing.T, d *redistest.Sentinel) *redis.Client {
	t.Helper()
	c := redis.NewFailoverClient(&redis.FailoverOptions{
		MasterName:            d.Name,
		SentinelAddrs:         d.Addrs(),
		Username:              redistest.User,
		Password:              redistest.Password,
		ContextTimeoutEnabled: true,
		DialTimeout:           time.Second,
		ReadTimeout:           2 * time.Second,
		MaxRetries:            -1,
	})
	t.Cleanup(func() { c.Close() })
	return c
}

// clusterClient returns a go-redis client of c, logged in as
// redistest.User; closed when the test ends.
func clusterClient(t *testing.T, c *redistest.Cluster) *redis.ClusterClient {
	t.Helper()
	cc := redis.NewClusterClient(&redis.ClusterOptions{
		Addrs:                 c.Addrs(),
		Username:              redistest.User,
		Password:              redistest.Password,
		ContextTimeoutEnabled: true,
		DialTimeout:           time.Second,
		ReadTimeout:           time.Second,
		MaxRetries:            -1,
	})
	t.Cleanup(func() { cc.Close() })
	return cc
}

// streamsOn returns a Streams on client, closed when the test ends (before
// the client).
func streamsOn(t *testing.T, client redis.UniversalClient, o *Options) *Streams {
	t.Helper()
	s, err := New(client, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// appendUntil appends logtest.Wire(n) to tp until an Append succeeds, and returns
// its time; it fails the test after timeout.
func appendUntil(t *testing.T, tp *Topic, n int, timeout time.Duration) time.Time {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
		_, err := tp.Append(ctx, logtest.Wire(n))
		cancel()
		if err == nil {
			return time.Now()
		}
		if time.Now().After(deadline) {
			t.Fatalf("Append still fails after %v: %v", timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// After a Sentinel failover that leaves the old master running (an
// operator's SENTINEL FAILOVER), go-redis moves its command connections to
// the new master, but not its Pub/Sub connection, on which no message comes
// any more. The Streams finds its feed on a Redis that is not the master,
// and moves it: the followers get live events again within seconds.
func TestSentinelFeedFollowsMaster(t *testing.T) {
	d := redistest.StartSentinel(t)
	pub := topic(t, streamsOn(t, failoverClient(t, d), &Options{Timeout: 500 * time.Millisecond}), "room")
	r, _ := logtest.Follow(t, topic(t, streamsOn(t, failoverClient(t, d), &Options{Timeout: 500 * time.Millisecond}), "room"))
	r.Wait("the head", 10*time.Second, logtest.Started)
	old := logtest.AppendN(t, pub, 1, 3)[0].Epoch
	r.Wait("3 events", 10*time.Second, logtest.Got(3))
	d.Failover()
	// The first Append on the new master starts a new epoch.
	var at time.Time
	for n := 1000; ; n++ {
		ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
		p, err := pub.Append(ctx, logtest.Wire(n))
		cancel()
		if err == nil && p.Epoch != old {
			at = time.Now()
			break
		}
		if n > 1000+20*50 {
			t.Fatal("no Append reached a new master in 20 s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	for n := 2000; ; n++ {
		live := r.State().Live
		if live.Epoch != "" && live.Epoch != old {
			break
		}
		if time.Since(at) > 4*time.Second {
			t.Fatalf("no event appended on the new master reached the follower in %v", time.Since(at))
		}
		logtest.AppendN(t, pub, n, n)
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("live events reach the follower %v after the first Append on the new master", time.Since(at).Round(time.Millisecond))
}

// When a Cluster master dies, its replica takes over within a few seconds;
// go-redis keeps sending a pipeline to the dead master until it reloads its
// map of the slots (every 60 s, or on a MOVED, which a dead master never
// sends). Appends to the topics of its slots resume within about 2 s of
// the promotion: the Streams has go-redis reload the map when a round trip
// fails, and sends again what Redis did not run.
func TestClusterAppendsResumeAfterPromotion(t *testing.T) {
	c := redistest.StartCluster(t, 3, 1)
	tp := topic(t, streamsOn(t, clusterClient(t, c), &Options{Timeout: 500 * time.Millisecond}), "room")
	logtest.AppendN(t, tp, 1, 3)
	master := c.MasterOf(c.Slot(tp.keys[0]))
	replica := c.ReplicaOf(master)
	master.Kill()
	killed := time.Now()
	promoted := make(chan time.Time, 1)
	go func() { promoted <- redistest.WaitMaster(replica, 30*time.Second) }()
	resumed := appendUntil(t, tp, 4, 40*time.Second)
	at := <-promoted
	if at.IsZero() {
		t.Fatal("the replica is not a master 30 s after its master was killed")
	}
	t.Logf("master killed; replica promoted %v later; Appends resumed %v after the promotion",
		at.Sub(killed).Round(time.Millisecond), resumed.Sub(at).Round(time.Millisecond))
	if d := resumed.Sub(at); d > 3*time.Second {
		t.Errorf("Appends resumed %v after the promotion, want at most about 2 s", d)
	}
}

// ---- Failovers under load --------------------------------------------------

// The tests below run a deployment as production would, on a Redis Cluster
// or a Sentinel deployment: three instances, each a Streams on its own
// go-redis client with a Broker per topic behind an HTTP server; each
// instance publishes to the topic under test, and clients read it, moving
// from instance to instance with their Last-Event-ID. Then a failover:
// every event whose Publish succeeded must reach every client, unless the
// client got a reset after that Publish began; no two events may come under
// one id; and the time until Publish works again is measured.

// A deployment is three instances on one Redis deployment.
type deployment struct {
	t     *testing.T
	nodes []*dnode
}

// A dnode is one instance of a deployment.
type dnode struct {
	name    string
	streams *Streams
	srv     *httptest.Server

	mu      sync.Mutex
	brokers map[string]*ssebroker.Broker // by topic
}

func newDeployment(t *testing.T, client func() redis.UniversalClient) *deployment {
	d := &deployment{t: t}
	for i := range 3 {
		n := &dnode{name: string(rune('A' + i)), brokers: make(map[string]*ssebroker.Broker)}
		n.streams = streamsOn(t, client(), &Options{Timeout: 500 * time.Millisecond, MaxLen: 100000})
		mux := http.NewServeMux()
		mux.HandleFunc("GET /t/{topic}", func(w http.ResponseWriter, r *http.Request) {
			n.broker(t, r.PathValue("topic")).ServeHTTP(w, r)
		})
		n.srv = httptest.NewServer(mux)
		t.Cleanup(n.srv.Close)
		t.Cleanup(func() { // first: ends the streams
			n.mu.Lock()
			defer n.mu.Unlock()
			for _, b := range n.brokers {
				b.Close()
			}
		})
		d.nodes = append(d.nodes, n)
	}
	return d
}

// broker returns the node's Broker of topic, made at the first call.
func (n *dnode) broker(t *testing.T, name string) *ssebroker.Broker {
	n.mu.Lock()
	defer n.mu.Unlock()
	b := n.brokers[name]
	if b == nil {
		b = brokertest.New(t, &ssebroker.Options{Log: topic(t, n.streams, name), HistoryLen: 256})
		n.brokers[name] = b
	}
	return b
}

// A publication is one call of Publish.
type publication struct {
	data       string
	start, end time.Time
	err        error
}

// A load is publishing and reading one topic of a deployment.
type load struct {
	d       *deployment
	topic   string
	clients []*logtest.Client
	cancel  context.CancelFunc
	stop    chan struct{}
	pubs    sync.WaitGroup
	readers sync.WaitGroup

	mu  sync.Mutex
	log [][]publication // by node
}

// start has every node publish to topic, an event every 5 ms, and
// clients read it, each moving to another node after a random run of
// events; it returns once every client has had an event.
func (d *deployment) start(name string, clients int) *load {
	t := d.t
	l := &load{d: d, topic: name, stop: make(chan struct{}), log: make([][]publication, len(d.nodes))}
	var ctx context.Context
	ctx, l.cancel = context.WithCancel(context.Background())
	t.Cleanup(l.end)
	head := logtest.HeadID(t, topic(t, d.nodes[0].streams, name))
	var ins []*logtest.Instance
	for _, n := range d.nodes {
		n.broker(t, name)
		ins = append(ins, logtest.At(n.name, n.srv.URL+"/t/"+name))
	}
	for i := range clients {
		c := logtest.NewClient(t, fmt.Sprint(name, "/client", i), head)
		l.clients = append(l.clients, c)
		rng := rand.New(rand.NewPCG(uint64(i), 7))
		l.readers.Go(func() { logtest.Reconnecting(ctx, c, ins, 1<<30, 300, rng) })
	}
	for i, n := range d.nodes {
		b := n.broker(t, name)
		l.pubs.Go(func() {
			for seq := 0; ; seq++ {
				select {
				case <-l.stop:
					return
				default:
				}
				p := publication{data: fmt.Sprint(n.name, "-", seq), start: time.Now()}
				p.err = b.Publish(sse.Event{Data: p.data})
				p.end = time.Now()
				l.mu.Lock()
				l.log[i] = append(l.log[i], p)
				l.mu.Unlock()
				time.Sleep(5 * time.Millisecond)
			}
		})
	}
	for _, c := range l.clients {
		c.WaitFor("a first event", 20*time.Second, logtest.Count(1))
	}
	return l
}

// end stops the publishers and the clients.
func (l *load) end() {
	select {
	case <-l.stop:
		return
	default:
	}
	close(l.stop)
	l.pubs.Wait()
	l.cancel()
	l.readers.Wait()
}

// outage returns when, after fault, Publish worked again on every node: for
// each node, the end of its first successful Publish begun after its last
// failed one (fault itself if none failed), the zero time if one never
// did; and the number of failed Publishes.
func (l *load) outage(fault time.Time) (resumed time.Time, failed int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	resumed = fault
	for _, ps := range l.log {
		var lastFail time.Time
		for _, p := range ps {
			if p.err != nil && p.end.After(fault) {
				lastFail, failed = p.end, failed+1
			}
		}
		if lastFail.IsZero() {
			continue
		}
		i := slices.IndexFunc(ps, func(p publication) bool { return p.err == nil && p.start.After(lastFail) })
		if i < 0 {
			return time.Time{}, failed // never resumed
		}
		if ps[i].end.After(resumed) {
			resumed = ps[i].end
		}
	}
	return resumed, failed
}

// check stops the load once every client has every event published (or a
// reset after its Publish began), waiting up to 30 s, and fails the test
// for each event a client lacks, each id that named two events, and each
// event a client got twice.
func (l *load) check() {
	t := l.d.t
	t.Helper()
	close(l.stop)
	l.pubs.Wait()
	var problems []string
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if problems = l.problems(); len(problems) == 0 || time.Now().After(deadline) {
			break
		}
	}
	l.cancel()
	l.readers.Wait()
	for i, p := range problems {
		if i == 20 {
			t.Errorf("%s: and %d more", l.topic, len(problems)-20)
			break
		}
		t.Errorf("%s: %s", l.topic, p)
	}
	var acked, failed, resets, events int
	for _, ps := range l.log {
		for _, p := range ps {
			if p.err == nil {
				acked++
			} else {
				failed++
			}
		}
	}
	for _, c := range l.clients {
		evs := c.Events()
		events += len(evs)
		for _, ev := range evs {
			if ev.Type == ssebroker.ResetEvent {
				resets++
			}
		}
	}
	t.Logf("%s: %d Publishes succeeded, %d failed; %d clients got %d events, %d of them resets", l.topic, acked, failed, len(l.clients), events, resets)
}

// problems returns what the clients have so far that breaks the rules.
func (l *load) problems() []string {
	l.mu.Lock()
	var acked []publication
	for _, ps := range l.log {
		for _, p := range ps {
			if p.err == nil {
				acked = append(acked, p)
			}
		}
	}
	l.mu.Unlock()
	var out []string
	byID := make(map[string]string) // the data each id named
	for _, c := range l.clients {
		evs, at := c.Events(), c.Arrivals()
		got := make(map[string]bool)
		seen := make(map[string]bool)
		var resets []time.Time
		for i, ev := range evs {
			if ev.Type == ssebroker.ResetEvent {
				resets = append(resets, at[i])
				continue
			}
			if d, ok := byID[ev.LastEventID]; ok && d != ev.Data {
				out = append(out, fmt.Sprintf("id %s named two events: %q and %q", ev.LastEventID, d, ev.Data))
			}
			byID[ev.LastEventID] = ev.Data
			if seen[ev.LastEventID] {
				out = append(out, fmt.Sprintf("%s got %s (%q) twice", c.Name, ev.LastEventID, ev.Data))
			}
			seen[ev.LastEventID], got[ev.Data] = true, true
		}
		for _, p := range acked {
			if got[p.data] || slices.ContainsFunc(resets, func(r time.Time) bool { return !r.Before(p.start) }) {
				continue
			}
			out = append(out, fmt.Sprintf("%s lacks %q, published at %s, with no reset since", c.Name, p.data, p.start.Format("15:04:05.000")))
		}
	}
	return out
}

// failover runs one scenario on topic: starts the load, lets it run a
// second, calls fault, then heal (which returns when the replica took over,
// or the zero time), and checks the load. It logs, and returns, how long
// Publish was out after fault, and after the takeover.
func (d *deployment) failover(name string, fault func(), heal func() time.Time) (out, afterTakeover time.Duration) {
	t := d.t
	l := d.start(name, 3)
	time.Sleep(time.Second)
	at := time.Now()
	fault()
	took := heal()
	time.Sleep(2 * time.Second) // publishing on the new master
	resumed, failed := l.outage(at)
	l.check()
	if resumed.IsZero() {
		t.Errorf("%s: Publish failed on some instance until the end, %d failures", name, failed)
		return time.Hour, time.Hour
	}
	out = resumed.Sub(at)
	if !took.IsZero() {
		afterTakeover = max(resumed.Sub(took), 0)
		t.Logf("%s: the replica took over %v after the fault; Publish worked again on every instance %v after the fault, %v after the takeover (%d Publishes failed)",
			name, took.Sub(at).Round(time.Millisecond), out.Round(time.Millisecond), afterTakeover.Round(time.Millisecond), failed)
	} else {
		t.Logf("%s: Publish worked again on every instance %v after the fault (%d Publishes failed)", name, out.Round(time.Millisecond), failed)
	}
	return out, afterTakeover
}

// Sentinel: an operator's SENTINEL FAILOVER, which leaves the old master
// running; the master paused past the failover (SIGSTOP 5 s), then resumed;
// the master killed.
func TestSentinelFailovers(t *testing.T) {
	d := redistest.StartSentinel(t)
	dep := newDeployment(t, func() redis.UniversalClient { return failoverClient(t, d) })
	waitTakeover := func(replica *redistest.Server) func() time.Time {
		return func() time.Time { return redistest.WaitMaster(replica, 30*time.Second) }
	}

	// SENTINEL FAILOVER does not stop the old master: until go-redis moves
	// to the new one, Appends go on there, and are lost. Redis's guard,
	// min-replicas-to-write, makes it refuse them once its replica has
	// left it (NOREPLICAS), and the Streams sends them again, to the new
	// master. (Without it, a run lost 4 acknowledged events, which a client
	// already in the new epoch was never told of.)
	master := d.Current()
	replica := d.Other(master)
	master.Must("CONFIG", "SET", "min-replicas-to-write", "1")
	out, _ := dep.failover("manual", d.Failover, waitTakeover(replica))
	logtest.Within(t, "Publish out after SENTINEL FAILOVER", out, time.Second)
	redistest.Follow(t, master, replica) // the Sentinels would, 10 s or so later
	master.Must("CONFIG", "SET", "min-replicas-to-write", "0")

	master, replica = replica, master
	var paused time.Time
	_, after := dep.failover("pause", func() {
		master.Pause()
		paused = time.Now()
	}, func() time.Time {
		took := redistest.WaitMaster(replica, 30*time.Second)
		time.Sleep(time.Until(paused.Add(5 * time.Second))) // past the takeover
		master.Resume()
		return took
	})
	logtest.Within(t, "Publish out after the takeover (paused master)", after, time.Second)
	redistest.Follow(t, master, replica)

	master, replica = replica, master
	_, after = dep.failover("kill", master.Kill, waitTakeover(replica))
	logtest.Within(t, "Publish out after the takeover (killed master)", after, time.Second)
}

// Cluster (3 masters, 3 replicas, cluster-node-timeout 2 s): a manual
// failover (CLUSTER FAILOVER on the replica); a master paused past the
// failover (SIGSTOP 6 s), then resumed, when it runs the Appends it had
// queued before it learns it was demoted; a master killed; and a reshard
// that moves a topic's slot to another master, one key at a time. Each on a
// topic of its own, served by the master it fails.
func TestClusterFailovers(t *testing.T) {
	c := redistest.StartCluster(t, 3, 1)
	dep := newDeployment(t, func() redis.UniversalClient { return clusterClient(t, c) })
	// One topic on each master, and one more.
	byMaster := make(map[*redistest.Server][]string)
	for i := 0; len(byMaster) < 3 || len(byMaster[c.Nodes[0]]) < 2; i++ {
		name := fmt.Sprint("t", i)
		m := c.MasterOf(c.Slot("sse:{" + name + "}:log"))
		byMaster[m] = append(byMaster[m], name)
	}
	takeover := func(replica *redistest.Server) func() time.Time {
		return func() time.Time { return redistest.WaitMaster(replica, 30*time.Second) }
	}

	m := c.Nodes[0]
	r := c.ReplicaOf(m)
	out, _ := dep.failover(byMaster[m][0], func() { r.Must("CLUSTER", "FAILOVER") }, takeover(r))
	logtest.Within(t, "Publish out after CLUSTER FAILOVER", out, time.Second)
	c.WaitHealthy(30 * time.Second)

	m = c.Nodes[1]
	r = c.ReplicaOf(m)
	var paused time.Time
	_, after := dep.failover(byMaster[m][0], func() {
		m.Pause()
		paused = time.Now()
	}, func() time.Time {
		took := takeover(r)()
		time.Sleep(time.Until(paused.Add(6 * time.Second)))
		m.Resume()
		return took
	})
	// A reload of go-redis's slot map that asks the paused master waits
	// for its ReadTimeout (1 s here), and may do so more than once.
	logtest.Within(t, "Publish out after the takeover (paused master)", after, 3*time.Second)
	c.WaitHealthy(30 * time.Second)

	m = c.Nodes[2]
	r = c.ReplicaOf(m)
	_, after = dep.failover(byMaster[m][0], m.Kill, takeover(r))
	logtest.Within(t, "Publish out after the takeover (killed master)", after, time.Second)

	// The reshard: the second topic of the first master (a replica now)
	// moves to the third (the killed master's replica).
	name := byMaster[c.Nodes[0]][1]
	slot := c.Slot("sse:{" + name + "}:log")
	from, to := c.MasterOf(slot), c.MasterOf(c.Slot("sse:{"+byMaster[c.Nodes[2]][0]+"}:log"))
	out, _ = dep.failover(name, func() { c.MoveSlot(slot, from, to, 300*time.Millisecond) }, func() time.Time { return time.Time{} })
	logtest.Within(t, "Publish out during a reshard", out, time.Second)
}
