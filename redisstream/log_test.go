package redisstream

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/lightsse/sse/ssebroker"

	"github.com/lightsse/sse/internal/leakcheck"
	"github.com/lightsse/sse/internal/logtest"
	"github.com/lightsse/sse/redisstream/internal/redistest"
	"github.com/redis/go-redis/v9"
)

// TestMain fails the run if any goroutine, of a Streams or of a go-redis
// client, outlives the tests. It silences go-redis's log of failovers, which
// the topology tests cause on purpose.
func TestMain(m *testing.M) {
	redis.SetLogger(quiet{})
	leakcheck.Main(m)
}

type quiet struct{}

func (quiet) Printf(context.Context, string, ...any) {}

// newClient returns a go-redis client of srv, closed when the test ends. It
// logs in as redistest.User, whose ACL is the least privilege that the
// package doc documents.
func newClient(t *testing.T, srv *redistest.Server) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{
		Addr:                  srv.Addr(),
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

// newStreams returns a Streams on a client of its own (as another process
// would have), closed when the test ends, before its client.
func newStreams(t *testing.T, srv *redistest.Server, opts *Options) *Streams {
	t.Helper()
	s, err := New(newClient(t, srv), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func topic(t testing.TB, s *Streams, name string) *Topic {
	t.Helper()
	tp, err := s.Topic(name)
	if err != nil {
		t.Fatal(err)
	}
	return tp
}

// ReadAfter reads on past one XRANGE page of its script (100 entries).
func TestReadAfterPastOnePage(t *testing.T) {
	srv := redistest.Start(t)
	tp := topic(t, newStreams(t, srv, nil), "room")
	epoch := logtest.AppendN(t, tp, 1, 250)[0].Epoch
	wires, _, err := tp.ReadAfter(t.Context(), ssebroker.Position{Epoch: epoch, Offset: 2}, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if len(wires) != 248 || logtest.Number(t, wires[0]) != 3 || logtest.Number(t, wires[247]) != 250 {
		t.Errorf("ReadAfter after 2: %d events, want 3 to 250", len(wires))
	}
}

func TestMaxLenTrims(t *testing.T) {
	srv := redistest.Start(t)
	tp := topic(t, newStreams(t, srv, &Options{MaxLen: 10}), "room")
	ps := logtest.AppendN(t, tp, 1, 25)
	epoch := ps[0].Epoch
	wires, head, err := tp.ReadAfter(t.Context(), ssebroker.Position{Epoch: epoch, Offset: 15}, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if len(wires) != 10 || logtest.Number(t, wires[0]) != 16 {
		t.Errorf("ReadAfter(15) with MaxLen 10 after 25 events: %d events, want 16 to 25", len(wires))
	}
	wires, head2, err := tp.ReadAfter(t.Context(), ssebroker.Position{Epoch: epoch, Offset: 14}, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if len(wires) != 0 || head2 != head || head.Offset != 25 {
		t.Errorf("ReadAfter(14): %d events, head %v; want none (event 15 trimmed), head %s-25", len(wires), head2, epoch)
	}
}

func TestNewEpochWhenKeysLost(t *testing.T) {
	srv := redistest.Start(t)
	a := admin(t, srv)
	s := newStreams(t, srv, nil)
	tp := topic(t, s, "room")
	old := logtest.AppendN(t, tp, 1, 3)[0].Epoch
	for _, lose := range []struct {
		name string
		do   func() error
	}{
		{"FLUSHALL", func() error { return a.FlushAll(t.Context()).Err() }},
		{"meta deleted (eviction, IdleTTL)", func() error { return a.Del(t.Context(), tp.keys[1]).Err() }},
	} {
		t.Run(lose.name, func(t *testing.T) {
			logtest.AppendN(t, tp, 1, 3)
			if err := lose.do(); err != nil {
				t.Fatal(err)
			}
			p := logtest.AppendN(t, tp, 4, 4)[0]
			if p.Epoch == old || p.Offset != 1 || !logtest.ValidEpoch(p.Epoch) {
				t.Errorf("first Append after losing the keys: %v, want a new epoch, offset 1", p)
			}
			wires, head, err := tp.ReadAfter(t.Context(), ssebroker.Position{Epoch: old, Offset: 1}, 1<<20)
			if err != nil || len(wires) != 0 || head != p {
				t.Errorf("ReadAfter in the old epoch: %d events, head %v, %v; want none, head %v", len(wires), head, err, p)
			}
			if n, err := a.XLen(t.Context(), tp.keys[0]).Result(); err != nil || n != 1 {
				t.Errorf("the stream holds %d entries, %v; want only the new epoch's one", n, err)
			}
			old = p.Epoch
		})
	}
}

// A Redis restarted from an older snapshot keeps the topic's epoch, and
// would give the lost offsets again, to other events. But a restarted Redis
// has a new replication id: the topic was numbered by another history, and
// the first Append after the restart starts a new epoch, whichever Streams
// makes it, even one that never saw the lost offsets. Until then, reads see
// what the snapshot holds: events the old history numbered.
func TestNewEpochWhenRedisRestarts(t *testing.T) {
	srv := redistest.Start(t)
	a := topic(t, newStreams(t, srv, nil), "a")
	old := logtest.AppendN(t, a, 1, 3)[0].Epoch
	srv.Save()
	logtest.AppendN(t, a, 4, 5)
	srv.Restart() // back to offset 3, in the same epoch
	blind := topic(t, newStreams(t, srv, nil), "a")
	if h, err := blind.Head(t.Context()); err != nil || h != (ssebroker.Position{Epoch: old, Offset: 3}) {
		t.Errorf("Head after the restart: %v, %v; want %s-3, what the snapshot holds", h, err, old)
	}
	p := logtest.AppendN(t, blind, 6, 6)[0]
	if p.Epoch == old || p.Offset != 1 {
		t.Errorf("Append after the restart, by a Streams that never saw a-4: %v; want a new epoch, offset 1", p)
	}
	if h, err := a.Head(t.Context()); err != nil || h != p {
		t.Errorf("Head after that Append: %v, %v; want %v", h, err, p)
	}
	if got := logtest.NumbersIn(t, a, p.Epoch); fmt.Sprint(got) != "[6]" {
		t.Errorf("the new epoch holds %v, want [6]: the old history's events are deleted", got)
	}
}

// A Redis that goes back in time in the same history (here, an older DUMP of
// the topic's keys RESTOREd) keeps the topic's epoch. A Streams that saw an
// offset Redis no longer holds, in an Append's reply or a read's head, starts
// a new epoch instead; one that never saw it cannot know.
func TestNewEpochWhenRedisGoesBack(t *testing.T) {
	srv := redistest.Start(t)
	adm := admin(t, srv)
	s := newStreams(t, srv, nil)
	a, b := topic(t, s, "a"), topic(t, s, "b")
	readsB := topic(t, newStreams(t, srv, nil), "b")
	oldA := logtest.AppendN(t, a, 1, 3)[0].Epoch
	oldB := logtest.AppendN(t, b, 1, 3)[0].Epoch
	dumps := make(map[string]string)
	for _, key := range append(append([]string{}, a.keys...), b.keys...) {
		d, err := adm.Dump(t.Context(), key).Result()
		if err != nil {
			t.Fatal(err)
		}
		dumps[key] = d
	}
	logtest.AppendN(t, a, 4, 5)
	logtest.AppendN(t, b, 4, 5)
	if h, err := readsB.Head(t.Context()); err != nil || h != (ssebroker.Position{Epoch: oldB, Offset: 5}) {
		t.Fatalf("Head of b: %v, %v; want %s-5", h, err, oldB)
	}
	for key, d := range dumps { // back to offset 3 of both topics, in the same epochs
		if err := adm.RestoreReplace(t.Context(), key, 0, d).Err(); err != nil {
			t.Fatal(err)
		}
	}
	blind := topic(t, newStreams(t, srv, nil), "a")
	if h, err := blind.Head(t.Context()); err != nil || h != (ssebroker.Position{Epoch: oldA, Offset: 3}) {
		t.Errorf("Head of a from a Streams that never saw a-4: %v, %v; want %s-3", h, err, oldA)
	}
	if p := logtest.AppendN(t, a, 6, 6)[0]; p.Epoch == oldA || p.Offset != 1 {
		t.Errorf("Append to a by the Streams that saw a-5: %v; want a new epoch, offset 1", p)
	}
	h, err := readsB.Head(t.Context())
	if err != nil || h.Epoch == oldB || h.Offset != 0 {
		t.Errorf("Head of b by the Streams that saw b-5: %v, %v; want a new epoch, offset 0", h, err)
	}
	if n, err := adm.XLen(t.Context(), b.keys[0]).Result(); err != nil || n != 0 {
		t.Errorf("b's stream holds %d entries, %v; want none: they belong to the lost history", n, err)
	}
}

// A replica promoted to master (a failover) holds the history the old master
// had sent it, and perhaps not the newest events: replication is
// asynchronous, and the old master may even go on taking Appends (paused
// past the failover, then resumed; or a Sentinel failover, which does not
// stop it). So the new master's first Append, whichever Streams makes it,
// starts a new epoch: the same offsets never name two events. Until then,
// reads on it see the events the old master numbered, and sent it.
func TestNewEpochAfterPromotion(t *testing.T) {
	master := redistest.Start(t, "--repl-diskless-sync-delay", "0")
	replica := redistest.Start(t, "--replicaof", "127.0.0.1", fmt.Sprint(master.Port()))
	waitReplica(t, master) // its replication id is the one that numbers the topic
	onMaster := topic(t, newStreams(t, master, nil), "room")
	old := logtest.AppendN(t, onMaster, 1, 3)[0].Epoch
	if n, err := admin(t, master).Wait(t.Context(), 1, 10*time.Second).Result(); err != nil || n != 1 {
		t.Fatalf("WAIT 1: %d, %v", n, err)
	}
	replica.Must("REPLICAOF", "NO", "ONE")
	onReplica := topic(t, newStreams(t, replica, nil), "room")
	r, _ := logtest.Follow(t, onReplica)
	r.Wait("the head", 10*time.Second, logtest.Started)
	if got := logtest.NumbersIn(t, onReplica, old); fmt.Sprint(got) != "[1 2 3]" {
		t.Errorf("the promoted replica holds %v in the old epoch, want [1 2 3]", got)
	}
	// Both now take Appends: the old master goes on in its epoch, the new
	// one in its own.
	pm := logtest.AppendN(t, onMaster, 4, 4)[0]
	pr := logtest.AppendN(t, topic(t, newStreams(t, replica, nil), "room"), 104, 104)[0]
	if pm != (ssebroker.Position{Epoch: old, Offset: 4}) || pr.Epoch == old || pr.Offset != 1 {
		t.Errorf("Appends to the old master and to the promoted replica: %v and %v; want %s-4, and a new epoch at 1", pm, pr, old)
	}
	r.Wait("the new epoch", 10*time.Second, func(s *logtest.State) bool { return s.Epoch == pr.Epoch && s.Last == 1 })
	if resets := r.State().Resets; len(resets) != 1 {
		t.Errorf("the follower on the promoted replica had the resets %v, want one, to %s", resets, pr.Epoch)
	}
	wires, head, err := onReplica.ReadAfter(t.Context(), ssebroker.Position{Epoch: old, Offset: 1}, 1<<20)
	if err != nil || len(wires) != 0 || head != pr {
		t.Errorf("ReadAfter(%s-1) on the promoted replica: %d events, head %v, %v; want none, head %v", old, len(wires), head, err, pr)
	}
}

// Likewise for a Streams that only follows the topic: the head it reads once
// its Pub/Sub connection is back starts a new epoch, before any Append.
func TestFollowNewEpochWhenRedisGoesBack(t *testing.T) {
	srv := redistest.Start(t)
	pub := topic(t, newStreams(t, srv, nil), "room")
	r, _ := logtest.Follow(t, topic(t, newStreams(t, srv, nil), "room"))
	r.Wait("the head", 10*time.Second, logtest.Started)
	old := logtest.AppendN(t, pub, 1, 3)[0].Epoch
	srv.Save()
	logtest.AppendN(t, pub, 4, 5)
	r.Wait("5 events", 10*time.Second, logtest.Got(5))
	srv.Restart() // back to offset 3, in the same epoch
	epoch := r.Wait("a new epoch", 10*time.Second, func(s *logtest.State) bool { return len(s.Resets) == 1 }).Epoch
	if h, err := pub.Head(t.Context()); err != nil || h != (ssebroker.Position{Epoch: epoch, Offset: 0}) || epoch == old {
		t.Errorf("Head after the follower's new epoch: %v, %v; want %s-0, a new epoch", h, err, epoch)
	}
}

func TestIdleTTL(t *testing.T) {
	srv := redistest.Start(t)
	a := admin(t, srv)
	s := newStreams(t, srv, &Options{IdleTTL: time.Hour})
	tp := topic(t, s, "room")
	logtest.AppendN(t, tp, 1, 1)
	for _, key := range tp.keys {
		ttl, err := a.PTTL(t.Context(), key).Result()
		if err != nil || ttl <= 59*time.Minute || ttl > time.Hour {
			t.Errorf("PTTL %s = %v, %v; want about an hour", key, ttl, err)
		}
	}
	plain := newStreams(t, srv, nil)
	tp2 := topic(t, plain, "other")
	logtest.AppendN(t, tp2, 1, 1)
	for _, key := range tp2.keys {
		if ttl, err := a.PTTL(t.Context(), key).Result(); err != nil || ttl != -1 {
			t.Errorf("without IdleTTL, PTTL %s = %v, %v; want none (-1)", key, ttl, err)
		}
	}
}

// A read of a topic nobody has appended to gives it an epoch, in a meta
// hash that expires (after IdleTTL or an hour, whichever is longer), so
// that reads of made-up topics do not fill Redis; an Append makes it last
// as any topic's keys do.
func TestReadMakesNoLastingKey(t *testing.T) {
	srv := redistest.Start(t)
	a := admin(t, srv)
	for _, tt := range []struct {
		idle, want time.Duration
	}{
		{0, time.Hour},
		{time.Minute, time.Hour},
		{2 * time.Hour, 2 * time.Hour},
	} {
		t.Run(fmt.Sprint("IdleTTL ", tt.idle), func(t *testing.T) {
			s := newStreams(t, srv, &Options{IdleTTL: tt.idle})
			for i, read := range []func(tp *Topic) error{
				func(tp *Topic) error { _, err := tp.Head(t.Context()); return err },
				func(tp *Topic) error {
					_, _, err := tp.ReadAfter(t.Context(), ssebroker.Position{Epoch: "0123456789abcdef", Offset: 3}, 1)
					return err
				},
			} {
				tp := topic(t, s, fmt.Sprint("read-", tt.idle, "-", i))
				if err := read(tp); err != nil {
					t.Fatal(err)
				}
				ttl, err := a.PTTL(t.Context(), tp.keys[1]).Result()
				if err != nil || ttl <= tt.want-time.Minute || ttl > tt.want {
					t.Errorf("read %d: PTTL of the meta hash = %v, %v; want about %v", i, ttl, err, tt.want)
				}
				if n, err := a.Exists(t.Context(), tp.keys[0]).Result(); err != nil || n != 0 {
					t.Errorf("read %d: the stream exists (%d, %v)", i, n, err)
				}
			}
			tp := topic(t, s, fmt.Sprint("read-", tt.idle, "-0"))
			logtest.AppendN(t, tp, 1, 1)
			for _, key := range tp.keys {
				ttl, err := a.PTTL(t.Context(), key).Result()
				if tt.idle == 0 && (err != nil || ttl != -1) {
					t.Errorf("after an Append, PTTL %s = %v, %v; want none (-1)", key, ttl, err)
				}
				if tt.idle > 0 && (err != nil || ttl <= tt.idle-time.Second || ttl > tt.idle) {
					t.Errorf("after an Append, PTTL %s = %v, %v; want IdleTTL, %v", key, ttl, err, tt.idle)
				}
			}
		})
	}
}

func TestTopicNames(t *testing.T) {
	client := redis.NewClient(&redis.Options{})
	defer client.Close()
	s, err := New(client, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, name := range []string{"room", "user:42", "a b", "日本", strings.Repeat("x", MaxTopicLen)} {
		tp, err := s.Topic(name)
		if err != nil {
			t.Errorf("Topic(%q): %v", name, err)
			continue
		}
		if want := "sse:{" + name + "}:log"; tp.keys[0] != want {
			t.Errorf("Topic(%q) stream key %q, want %q", name, tp.keys[0], want)
		}
	}
	for _, name := range []string{"", "a{b", "a}b", "{x}", "a\nb", "a\x00b", "\xff", strings.Repeat("x", MaxTopicLen+1)} {
		if _, err := s.Topic(name); !errors.Is(err, ErrInvalidTopic) {
			t.Errorf("Topic(%q): %v, want ErrInvalidTopic", name, err)
		}
	}
}

func TestNewRefusesOptions(t *testing.T) {
	client := redis.NewClient(&redis.Options{})
	defer client.Close()
	for _, o := range []Options{
		{Prefix: "a{b}:"},
		{MaxLen: -1},
		{Timeout: -time.Second},
		{IdleTTL: -time.Second},
		{IdleTTL: time.Microsecond},
		{MaxEventBytes: -1},
	} {
		if s, err := New(client, &o); !errors.Is(err, ErrInvalidOptions) {
			t.Errorf("New(%+v): %v, want ErrInvalidOptions", o, err)
			if s != nil {
				s.Close()
			}
		}
	}
	for _, c := range []redis.UniversalClient{nil, (*redis.Client)(nil), (*redis.ClusterClient)(nil)} {
		if s, err := New(c, nil); !errors.Is(err, ErrInvalidOptions) {
			t.Errorf("New(%#v, nil): %v, want ErrInvalidOptions", c, err)
			if s != nil {
				s.Close()
			}
		}
	}
}

func TestClosed(t *testing.T) {
	srv := redistest.Start(t)
	s := newStreams(t, srv, nil)
	tp := topic(t, s, "room")
	r, _ := logtest.Follow(t, tp)
	r.Wait("the head", 10*time.Second, logtest.Started)
	s.Close()
	if _, err := tp.Append(t.Context(), logtest.Wire(1)); !errors.Is(err, ErrClosed) {
		t.Errorf("Append after Close: %v, want ErrClosed", err)
	}
	if _, _, err := tp.ReadAfter(t.Context(), ssebroker.Position{}, 1); !errors.Is(err, ErrClosed) {
		t.Errorf("ReadAfter after Close: %v, want ErrClosed", err)
	}
	called := false
	stop := tp.Follow(func(ssebroker.Position, []byte) { called = true })
	stop()
	if called {
		t.Error("Follow after Close called deliver")
	}
	s.Close() // again: no effect
}

// Another client's XADD to a topic's stream, with an automatic id (a
// timestamp) or one of its own, leaves an entry past the topic's head, which
// the next Append's id would have to follow. The Append deletes such entries,
// which are none of the topic's events, and goes on in the same epoch.
func TestForeignEntriesRemoved(t *testing.T) {
	srv := redistest.Start(t)
	a := admin(t, srv)
	tp := topic(t, newStreams(t, srv, nil), "room")
	epoch := logtest.AppendN(t, tp, 1, 2)[0].Epoch
	for i, id := range []string{"*", "4-0", "99-0"} {
		if err := a.XAdd(t.Context(), &redis.XAddArgs{Stream: tp.keys[0], ID: id, Values: []string{"x", "y"}}).Err(); err != nil {
			t.Fatal(err)
		}
		n := 3 + i
		p, err := tp.Append(t.Context(), logtest.Wire(n))
		if err != nil || p != (ssebroker.Position{Epoch: epoch, Offset: uint64(n)}) {
			t.Fatalf("Append after another client's XADD %s: %v, %v; want %s-%d", id, p, err, epoch, n)
		}
	}
	if got := logtest.NumbersIn(t, tp, epoch); fmt.Sprint(got) != "[1 2 3 4 5]" {
		t.Errorf("the log holds %v, want [1 2 3 4 5]", got)
	}
	if n, err := a.XLen(t.Context(), tp.keys[0]).Result(); err != nil || n != 5 {
		t.Errorf("the stream holds %d entries, %v; want only the topic's 5", n, err)
	}
}

func TestEventTooLargeRefused(t *testing.T) {
	srv := redistest.Start(t)
	tp := topic(t, newStreams(t, srv, &Options{MaxEventBytes: 100}), "room")
	epoch := logtest.AppendN(t, tp, 1, 1)[0].Epoch
	if p, err := tp.Append(t.Context(), []byte("data: "+strings.Repeat("x", 93)+"\n\n")); !errors.Is(err, ErrEventTooLarge) {
		t.Errorf("Append of 101 bytes with MaxEventBytes 100: %v, %v; want ErrEventTooLarge", p, err)
	}
	if p, err := tp.Append(t.Context(), []byte("data: "+strings.Repeat("x", 92)+"\n\n")); err != nil || p.Offset != 2 {
		t.Errorf("Append of 100 bytes with MaxEventBytes 100: %v, %v; want offset 2", p, err)
	}
	if h, err := tp.Head(t.Context()); err != nil || h != (ssebroker.Position{Epoch: epoch, Offset: 2}) {
		t.Errorf("Head %v, %v; want %s-2: the event refused is not in the log", h, err, epoch)
	}
}

// A followed topic whose keys are deleted (eviction, IdleTTL, by hand) while
// its feed stays up gets a new epoch at the next Append; the follower reads
// it, and starts over there.
func TestFollowTopicDeleted(t *testing.T) {
	srv := redistest.Start(t)
	tp := topic(t, newStreams(t, srv, nil), "room")
	r, _ := logtest.Follow(t, tp)
	r.Wait("the head", 10*time.Second, logtest.Started)
	pub := topic(t, newStreams(t, srv, nil), "room")
	old := logtest.AppendN(t, pub, 1, 3)[0].Epoch
	r.Wait("3 events", 10*time.Second, logtest.Got(3))
	if err := admin(t, srv).Del(t.Context(), tp.keys...).Err(); err != nil {
		t.Fatal(err)
	}
	p := logtest.AppendN(t, pub, 4, 5)[0]
	if p.Epoch == old || p.Offset != 1 {
		t.Fatalf("Append after the keys were deleted: %v, want a new epoch at 1", p)
	}
	r.Wait("the new epoch's events", 10*time.Second, func(s *logtest.State) bool { return s.Epoch == p.Epoch && s.Last == 2 })
	logtest.AppendN(t, pub, 6, 6)
	r.Wait("event 6", 10*time.Second, func(s *logtest.State) bool { return s.Last == 3 })
	if s := r.State(); len(s.Resets) != 1 || len(s.Errs) > 0 {
		t.Errorf("resets %v, errors %v; want one reset, no error", s.Resets, s.Errs)
	}
}

// The package doc shows the ACL that every test's Streams logs in with.
func TestACLDocumented(t *testing.T) {
	src, err := os.ReadFile("redisstream.go")
	if err != nil {
		t.Fatal(err)
	}
	var doc []string
	in := false
	for _, line := range strings.Split(string(src), "\n") {
		switch {
		case strings.HasPrefix(line, "//\tACL SETUSER "):
			in = true
		case in && !strings.HasPrefix(line, "//\t  "):
			in = false
		}
		if in {
			doc = append(doc, strings.Fields(strings.TrimPrefix(line, "//"))...)
		}
	}
	want := append(strings.Fields("ACL SETUSER sse on >secret"), strings.Fields(redistest.ACL)...)
	if strings.Join(doc, " ") != strings.Join(want, " ") {
		t.Errorf("the package doc's ACL:\n%s\nthe tests' (redistest.ACL):\n%s", strings.Join(doc, " "), strings.Join(want, " "))
	}
}
