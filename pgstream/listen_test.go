package pgstream

import (
	"context"
	"errors"
	neturl "net/url"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/lightsse/sse/internal/logtest"
)

// waitListening waits until s's listener has made its first connection.
func waitListening(t *testing.T, s *Streams) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); s.subs.listener.Load() == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the listener has not connected after 10 s")
		}
	}
}

// killListener ends the backend of s's listener, as an administrator (or
// an idle-session timeout, or a pooler) would, and waits until it has. It
// waits first for the listener's first connection, if need be.
func killListener(t *testing.T, s *Streams) {
	t.Helper()
	waitListening(t, s)
	pid := s.subs.listener.Load()
	var ok bool
	if err := s.pool.QueryRow(t.Context(), "SELECT pg_terminate_backend($1, 5000)", pid).Scan(&ok); err != nil || !ok {
		t.Fatalf("pg_terminate_backend(%d): %v, %v", pid, ok, err)
	}
}

// The listener's connection killed: the listener connects again, and its
// followers get, with no gap, what was appended while it was down.
func TestListenerKilled(t *testing.T) {
	url := newDB(t)
	s := newStreams(t, url, &Options{PollInterval: time.Hour}) // no polling: catching up alone
	r, _ := logtest.Follow(t, topic(t, s, "room"))
	r.Wait("the head", 10*time.Second, logtest.Started)
	pub := topic(t, newStreams(t, url, nil), "room")
	logtest.AppendN(t, pub, 1, 3)
	r.Wait("3 events", 10*time.Second, logtest.Got(3))
	for round := range 3 {
		killListener(t, s)
		logtest.AppendN(t, pub, 10*round+4, 10*round+13) // while it is down, and as it comes back
		r.Wait("10 more events", 20*time.Second, func(s *logtest.State) bool { return len(s.Got) == 3+10*(round+1) })
	}
	r.CheckLog(0)
	if n := s.subs.connects.Load(); n != 4 {
		t.Errorf("the listener connected %d times, want 4", n)
	}
	if s := r.State(); s.Gaps > 0 || s.Heads != 4 {
		t.Errorf("follower had %d gaps and %d heads; want none, and 4 (the first, and one after each reconnection)", s.Gaps, s.Heads)
	}
}

// refusingListener returns a Streams on url whose listener connects only
// while refuse is false.
func refusingListener(t *testing.T, url string, o *Options) (*Streams, *atomic.Bool) {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	refuse := new(atomic.Bool)
	cfg.BeforeConnect = func(_ context.Context, cc *pgx.ConnConfig) error {
		if refuse.Load() && cc.RuntimeParams["application_name"] == listenerName {
			return errors.New("refused by the test")
		}
		return nil
	}
	pool, err := pgxpool.NewWithConfig(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	s, err := New(pool, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, refuse
}

// Events appended while the listener was down, and not polled (PollInterval
// is an hour), come with no notification: once it LISTENs again, it reads
// them.
func TestListenerCatchesUpOnReconnect(t *testing.T) {
	url := newDB(t)
	s, refuse := refusingListener(t, url, &Options{PollInterval: time.Hour})
	r, _ := logtest.Follow(t, topic(t, s, "room"))
	r.Wait("the head", 10*time.Second, logtest.Started)
	pub := topic(t, newStreams(t, url, nil), "room")
	logtest.AppendN(t, pub, 1, 3)
	r.Wait("3 events", 10*time.Second, logtest.Got(3))
	refuse.Store(true)
	polls := s.subs.polls.Load()
	killListener(t, s)
	for deadline := time.Now().Add(10 * time.Second); s.subs.polls.Load() == polls; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) { // the poll the loop makes when the listener goes down
			t.Fatal("no poll after the listener went down")
		}
	}
	logtest.AppendN(t, pub, 4, 6)
	time.Sleep(200 * time.Millisecond)
	if got := r.State().Got; len(got) != 3 {
		t.Errorf("with no listener and no poll, the follower got %v", got)
	}
	refuse.Store(false)
	r.Wait("the 3 events appended while down", 10*time.Second, logtest.Got(6))
	r.CheckLog(0)
}

// While the listener cannot connect, followers still get every event, by
// polling, every PollInterval; once it can, it listens again.
func TestPollsWhileListenerDown(t *testing.T) {
	url := newDB(t)
	const poll = 100 * time.Millisecond
	s, refuse := refusingListener(t, url, &Options{PollInterval: poll})
	r, _ := logtest.Follow(t, topic(t, s, "room"))
	r.Wait("the head", 10*time.Second, logtest.Started)
	pub := topic(t, newStreams(t, url, nil), "room")
	logtest.AppendN(t, pub, 1, 3)
	r.Wait("3 events", 10*time.Second, logtest.Got(3))
	refuse.Store(true)
	killListener(t, s)
	polls := s.subs.polls.Load()
	for i := 4; i <= 8; i++ {
		logtest.AppendN(t, pub, i, i)
		start := time.Now()
		r.Wait("the event, by polling", 10*time.Second, logtest.Got(i))
		if d := time.Since(start); d > poll+time.Second {
			t.Errorf("event %d came %v after its Append, want about PollInterval (%v)", i, d, poll)
		}
	}
	if n := s.subs.polls.Load() - polls; n < 3 {
		t.Errorf("%d polls while the listener was down, want several", n)
	}
	if n := s.subs.connects.Load(); n != 1 {
		t.Errorf("the listener connected %d times while refused, want only the first", n)
	}
	refuse.Store(false)
	for deadline := time.Now().Add(10 * time.Second); s.subs.connects.Load() < 2; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the listener did not connect again within 10 s")
		}
	}
	time.Sleep(poll) // the loop has its up
	polls = s.subs.polls.Load()
	logtest.AppendN(t, pub, 9, 9)
	r.Wait("event 9", 10*time.Second, logtest.Got(9))
	time.Sleep(3 * poll)
	if n := s.subs.polls.Load() - polls; n > 0 {
		t.Errorf("%d polls once the listener was back, want none", n)
	}
	r.CheckLog(0)
}

// A listening connection on which nothing, not even the answer to a query,
// comes for pingAfter+Timeout is replaced: a peer lost without a reset (a
// dead host, a dropped route) would otherwise leave it silent for good.
// (Timeout also bounds the new connection's dial, authentication and
// LISTEN: 300 ms was too short for that beside two CPU burners.)
func TestDeadConnectionReplaced(t *testing.T) {
	after := pingAfter
	t.Cleanup(func() { pingAfter = after }) // after the Streams has closed
	pingAfter = 100 * time.Millisecond
	url := newDB(t)
	u, err := neturl.Parse(url)
	if err != nil {
		t.Fatal(err)
	}
	px := logtest.NewProxy(t, u.Host)
	u.Host = px.Addr()
	s := newStreams(t, u.String(), &Options{Timeout: 2 * time.Second})
	t.Cleanup(px.Close) // before the pool's, which would wait for its frozen connections
	r, _ := logtest.Follow(t, topic(t, s, "room"))
	r.Wait("the head", 10*time.Second, logtest.Started)
	px.Freeze() // every connection so far now carries nothing, and never closes
	pub := topic(t, newStreams(t, url, nil), "room")
	logtest.AppendN(t, pub, 1, 3)
	r.Wait("3 events, on new connections", 20*time.Second, logtest.Got(3))
	r.CheckLog(0)
	for deadline := time.Now().Add(10 * time.Second); s.subs.connects.Load() < 2; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the listener has not connected again after 10 s")
		}
	}
}
