package pgstream

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/lightsse/sse"
	"github.com/lightsse/sse/internal/logtest"
)

// The tests in this file run a deployment as production would: several
// instances (logtest.Instance), each a Streams on its own pool, a Broker on
// the topic "room", and an HTTP server on 127.0.0.1; and clients that read
// the streams over real sockets with a spec-exact parser.

// TestBrokers runs the tests that every ssebroker.Log must pass with several
// Brokers on it, each on a database of its own.
func TestBrokers(t *testing.T) { logtest.RunBrokers(t, startStore) }

// withOptions returns a function that opens Streams on the database at url
// with o, for logtest.NewInstances.
func withOptions(url string, o *Options) func(t *testing.T) logtest.Process {
	return func(t *testing.T) logtest.Process { return process{newStreams(t, url, o)} }
}

// Events published in transactions reach every client if and only if the
// transaction commits, in commit order: here transactions that commit in
// the reverse of the order they began in, and others that roll back, on
// one instance, read by the clients of all three.
func TestBrokersTransactions(t *testing.T) {
	url := newDB(t)
	ins, cs, _ := logtest.ThreeListening(t, withOptions(url, nil), nil)
	tp := topicOf(ins[0])
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
	ins[1].Publish(t, 100, 100) // a plain Publish after them
	want = append(want, "100")
	data, _ := logtest.LogEvents(t, tp)
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
					if _, err := topicOf(in).PublishTx(context.Background(), tx, sse.Event{Data: data}); err != nil {
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
	data, ids := logtest.LogEvents(t, tp)
	if len(data) != 30+len(want)+120-len(rolledBack) {
		t.Errorf("the log holds %d events, want %d", len(data), 30+len(want)+120-len(rolledBack))
	}
	for _, d := range data {
		if rolledBack[d] {
			t.Errorf("the log holds %s, which was rolled back", d)
		}
	}
	for _, c := range cs {
		c.WaitFor(fmt.Sprint(len(data), " events"), 20*time.Second, logtest.Count(len(data)))
		time.Sleep(50 * time.Millisecond) // time for anything more to come
		c.CheckSequence(data, ids)
	}
}

// The listeners of every instance killed while events are published: the
// clients get every event, with no gap.
func TestBrokersListenersKilled(t *testing.T) {
	url := newDB(t)
	ins, cs, _ := logtest.ThreeListening(t, withOptions(url, &Options{PollInterval: time.Hour}), nil)
	var pub sync.WaitGroup
	for i, in := range ins {
		pub.Go(func() { in.Publish(t, 1000*(i+1), 1000*(i+1)+199) })
	}
	for range 3 {
		time.Sleep(20 * time.Millisecond)
		for _, in := range ins {
			killListener(t, streamsOf(in))
		}
	}
	pub.Wait()
	data, ids := logtest.LogEvents(t, ins[0].Log)
	for _, c := range cs {
		c.WaitFor(fmt.Sprint(len(data), " events"), 20*time.Second, logtest.Count(len(data)))
		c.CheckSequence(data, ids)
	}
	for _, in := range ins {
		if n := streamsOf(in).subs.connects.Load(); n < 2 {
			t.Errorf("%s: the listener connected %d times, want more than once", in.Name, n)
		}
	}
}

// 10,000 topics, 10 with an open stream, served by one instance with one
// Broker per open topic: the instance holds its pool's connections and one
// more, whatever the number of topics.
func TestBrokersManyTopics(t *testing.T) {
	url := newDB(t)
	const topics, open = 10000, 10
	s := newStreams(t, url, nil)    // its pool's MaxConns is 8
	pubs := newStreams(t, url, nil) // appends as another instance would
	logtest.ServeManyTopics(t, process{s}, process{pubs}, topics, open)
	ctx := t.Context()
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
}
