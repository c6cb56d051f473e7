package redisstream

import (
	"context"
	"testing"
	"time"

	"github.com/lightsse/sse/redisstream/internal/redistest"
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
		ReadTimeout:           2 * time.Second,
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

// appendUntil appends wire(n) to tp until an Append succeeds, and returns
// its time; it fails the test after timeout.
func appendUntil(t *testing.T, tp *Topic, n int, timeout time.Duration) time.Time {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
		_, err := tp.Append(ctx, wire(n))
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
	r, _ := follow(t, topic(t, streamsOn(t, failoverClient(t, d), &Options{Timeout: 500 * time.Millisecond}), "room"))
	r.wait("the head", 10*time.Second, (*reader).started)
	old := appendN(t, pub, 1, 3)[0].Epoch
	r.wait("3 events", 10*time.Second, func(r *reader) bool { return len(r.got) == 3 })
	d.Failover()
	// The first Append on the new master starts a new epoch.
	var at time.Time
	for n := 1000; ; n++ {
		ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
		p, err := pub.Append(ctx, wire(n))
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
		r.mu.Lock()
		live := r.live.Epoch != "" && r.live.Epoch != old
		r.mu.Unlock()
		if live {
			break
		}
		if time.Since(at) > 4*time.Second {
			t.Fatalf("no event appended on the new master reached the follower in %v", time.Since(at))
		}
		appendN(t, pub, n, n)
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
	appendN(t, tp, 1, 3)
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
