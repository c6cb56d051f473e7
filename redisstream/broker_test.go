package redisstream

import (
	"encoding/json"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lightsse/sse/internal/logtest"

	"github.com/lightsse/sse/ssebroker"

	"github.com/lightsse/sse"
	"github.com/lightsse/sse/internal/ssetest"
	"github.com/lightsse/sse/redisstream/internal/redistest"
)

// The tests in this file run a deployment as production would: several
// instances (logtest.Instance), each a Streams on its own Redis client, a
// Broker on the topic "room", and an HTTP server on 127.0.0.1; and clients
// that read the streams over real sockets with a spec-exact parser.

// TestBrokers runs the tests that every ssebroker.Log must pass with several
// Brokers on it, each on a redis-server of its own.
func TestBrokers(t *testing.T) { logtest.RunBrokers(t, startStore) }

// withOptions returns a function that opens Streams on srv with o, for
// logtest.NewInstances.
func withOptions(srv *redistest.Server, o *Options) func(t *testing.T) logtest.Process {
	return func(t *testing.T) logtest.Process { return process{newStreams(t, srv, o)} }
}

// publishFails publishes on in while Redis cannot answer, and checks that
// Publish fails within its bound.
func publishFails(t *testing.T, in *logtest.Instance, n int, bound time.Duration) {
	t.Helper()
	start := time.Now()
	err := in.Broker.Publish(sse.Event{Data: strconv.Itoa(n)})
	logtest.Within(t, in.Name+": Publish while Redis cannot answer", time.Since(start), bound)
	if err == nil {
		t.Errorf("%s: Publish while Redis cannot answer succeeded", in.Name)
	}
}

func TestBrokersRedisKilledAndRestartedEmpty(t *testing.T) {
	srv := redistest.Start(t)
	const timeout = 300 * time.Millisecond
	ins, cs, start := logtest.ThreeListening(t, withOptions(srv, &Options{Timeout: timeout}), nil)
	oldEpoch, _, _ := strings.Cut(start, "-")
	before, _ := logtest.LogEvents(t, ins[0].Log)
	srv.Kill()
	for i, in := range ins {
		publishFails(t, in, 100+i, timeout)
	}
	srv.Restart() // empty
	for _, c := range cs {
		c.WaitFor("a reset", 30*time.Second, func(evs []ssetest.Event) bool { return evs[len(evs)-1].Type == ssebroker.ResetEvent })
	}
	for i, in := range ins {
		in.Publish(t, 200+10*i+1, 200+10*i+10)
	}
	after, afterIDs := logtest.LogEvents(t, ins[0].Log)
	if len(after) != 30 {
		t.Fatalf("the new log holds %d events, want 30", len(after))
	}
	want := append(append(before, "reset"), after...)
	for _, c := range cs {
		c.WaitFor("61 events", 20*time.Second, logtest.Count(61))
		if got := c.Numbers(); strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("%s:\ngot  %s\nwant %s", c.Name, logtest.Clip(got), logtest.Clip(want))
		}
		for i, ev := range c.Events()[31:] {
			if ev.LastEventID != afterIDs[i] {
				t.Errorf("%s: event %d after the reset has id %q, want %q", c.Name, i, ev.LastEventID, afterIDs[i])
			}
		}
		if ends := c.Ends(); len(ends) > 0 {
			t.Errorf("%s: its stream ended (%v), as Redis went and came back", c.Name, ends)
		}
	}
	// A client that comes back with an id of the lost history is told so.
	late := logtest.NewClient(t, "late", oldEpoch+"-30")
	late.Session(t.Context(), ins[1], func(int, ssetest.Event) bool { return false })
	if got := late.Numbers(); len(got) != 1 || got[0] != "reset" {
		t.Errorf("a client with an id of the lost epoch got %v first, want a reset", got)
	}
}

func TestBrokersRedisPaused(t *testing.T) {
	srv := redistest.Start(t)
	const timeout = 500 * time.Millisecond
	ins, cs, _ := logtest.ThreeListening(t, withOptions(srv, &Options{Timeout: timeout, MaxLen: 10000}),
		&ssebroker.Options{Stream: sse.Options{Heartbeat: time.Second}})
	var read []int64
	for _, c := range cs {
		read = append(read, c.Bytes())
	}
	srv.Pause()
	pausedAt := time.Now()
	for i, in := range ins {
		publishFails(t, in, 100+i, timeout)
	}
	time.Sleep(5*time.Second - time.Since(pausedAt))
	for i, c := range cs {
		if ends := c.Ends(); len(ends) > 0 {
			t.Errorf("%s: its stream ended during the pause: %v", c.Name, ends)
		}
		if c.Bytes() == read[i] {
			t.Errorf("%s: nothing read during the 5 s pause: no heartbeat", c.Name)
			for _, in := range ins {
				st, _ := json.Marshal(in.Broker.Stats())
				t.Logf("%s: %s", in.Name, st)
			}
		}
	}
	srv.Resume()
	for i, in := range ins {
		in.Publish(t, 200+10*i+1, 200+10*i+10)
	}
	// The Publish calls that timed out may have taken effect when Redis
	// resumed: whatever the log holds, each client has, in its order.
	data, ids := logtest.LogEvents(t, ins[0].Log)
	for _, c := range cs {
		c.WaitFor(fmt.Sprint(len(data), " events"), 20*time.Second, logtest.Count(len(data)))
		c.CheckSequence(data, ids)
	}
}

// 10,000 topics, 10 with an open stream, served by one instance with one
// Broker per open topic: the instance holds a fixed few connections to
// Redis, subscribes only to the open topics' channels, and runs no
// goroutine per topic.
func TestBrokersManyTopics(t *testing.T) {
	srv := redistest.Start(t)
	a := admin(t, srv)
	const topics, open = 10000, 10
	before := runtime.NumGoroutine()
	s := newStreams(t, srv, nil)
	pubs := newStreams(t, srv, nil) // appends as another instance would
	logtest.ServeManyTopics(t, process{s}, process{pubs}, topics, open)
	ctx := t.Context()
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
}
