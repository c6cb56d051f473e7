package pgstream

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/lightsse/sse/internal/logtest"
)

// stop, called while the loop is in another follower's deliver, returns at
// once, and the stopped follower gets nothing after it.
func TestNoDeliverAfterStop(t *testing.T) {
	url := newDB(t)
	s := newStreams(t, url, nil)
	logtest.NoDeliverAfterStop(t, topic(t, s, "room"), func() bool { return len(s.subs.inbox) > 0 })
}

// One listening connection per Streams, and a fixed few goroutines,
// whatever the number of topics followed or appended to.
func TestManyTopicsFewFollowed(t *testing.T) {
	url := newDB(t)
	const topics, followed = 10000, 10
	before := runtime.NumGoroutine()
	s := newStreams(t, url, nil)
	// Every topic appended to, in batches of calls, as a busy process
	// would.
	var wg sync.WaitGroup
	for w := range 50 {
		wg.Go(func() {
			for i := w; i < topics; i += 50 {
				if _, err := topic(t, s, fmt.Sprint("user:", i)).Append(context.Background(), logtest.Wire(i)); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	var readers []*logtest.Follower
	for i := range followed {
		r, _ := logtest.Follow(t, topic(t, s, fmt.Sprint("user:", i)))
		readers = append(readers, r)
	}
	for _, r := range readers {
		r.Wait("the head", 10*time.Second, logtest.Started)
	}
	for i := range followed {
		logtest.AppendN(t, topic(t, s, fmt.Sprint("user:", i)), 100000+i, 100000+i)
	}
	for i, r := range readers {
		r.Wait("its event", 10*time.Second, func(s *logtest.State) bool { return len(s.Got) == 1 && s.Got[0] == 100000+i })
	}
	waitListening(t, s)
	// Goroutines: the callers, the trimmer, the loop and the listener, and
	// pgxpool's own (a few); none per topic.
	if n := runtime.NumGoroutine() - before; n > callers+3+6 {
		t.Errorf("%d goroutines more than before the Streams; want at most %d", n, callers+3+6)
	}
	var conns, listeners int
	err := s.pool.QueryRow(t.Context(), `SELECT count(*), count(*) FILTER (WHERE application_name = $1)
		FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()`, listenerName).Scan(&conns, &listeners)
	if err != nil {
		t.Fatal(err)
	}
	// The pool's (at most its MaxConns, 8, of which this query holds one)
	// and the listener.
	if listeners != 1 || conns > 8 {
		t.Errorf("%d connections, %d listening; want at most 8 (the pool's MaxConns, and the listener), 1 listening", conns+1, listeners)
	}
	t.Logf("after %d Appends to %d topics, %d followed: %d goroutines more, %d connections", topics, topics, followed,
		runtime.NumGoroutine()-before, conns+1)
}

// A Streams hands what its own Appends committed to its followers at once,
// without the notification and a read: here its listener cannot connect,
// and it polls only every hour, yet its followers get every event. It
// hands them copies: the caller may use its buffer again.
func TestLocalAppendsNeedNoRead(t *testing.T) {
	url := newDB(t)
	s, refuse := refusingListener(t, url, &Options{PollInterval: time.Hour})
	refuse.Store(true)
	tp := topic(t, s, "room")
	r, _ := logtest.Follow(t, tp) // its first read: the poll before the listener is up
	r.Wait("the head", 10*time.Second, logtest.Started)
	buf := make([]byte, 0, 64)
	for i := 1; i <= 5; i++ {
		buf = append(buf[:0], logtest.Wire(i)...)
		if _, err := tp.Append(t.Context(), buf); err != nil {
			t.Fatal(err)
		}
	}
	copy(buf, "data: 666")
	r.Wait("5 events", 10*time.Second, logtest.Got(5))
	r.CheckLog(0)
	if n := s.subs.connects.Load(); n != 0 {
		t.Errorf("the listener connected %d times, want none", n)
	}
}
