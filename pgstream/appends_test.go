package pgstream

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/lightsse/sse/internal/logtest"
	"github.com/lightsse/sse/ssebroker"
)

// Appends from many goroutines of three Streams to one topic take the
// offsets 1 to n, each once: no gap, no repeat.
func TestConcurrentAppendsNoGap(t *testing.T) {
	url := newDB(t)
	const perStreams, workers = 400, 8
	var mu sync.Mutex
	var offsets []uint64
	var wg sync.WaitGroup
	for i := range 3 {
		tp := topic(t, newStreams(t, url, nil), "room")
		for w := range workers {
			wg.Go(func() {
				for n := w; n < perStreams; n += workers {
					p, err := tp.Append(context.Background(), logtest.Wire(i*perStreams+n))
					if err != nil {
						t.Error(err)
						return
					}
					mu.Lock()
					offsets = append(offsets, p.Offset)
					mu.Unlock()
				}
			})
		}
	}
	wg.Wait()
	slices.Sort(offsets)
	for i, o := range offsets {
		if o != uint64(i+1) {
			t.Fatalf("offsets, sorted, have %d at %d: a gap or a repeat", o, i)
		}
	}
	if len(offsets) != 3*perStreams {
		t.Fatalf("%d Appends answered, want %d", len(offsets), 3*perStreams)
	}
}

// A batchCounter counts the batches a pool sends, and the statements in
// them.
type batchCounter struct{ batches, queries atomic.Int64 }

func (b *batchCounter) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	return ctx
}
func (b *batchCounter) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}
func (b *batchCounter) TraceBatchStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceBatchStartData) context.Context {
	b.batches.Add(1)
	b.queries.Add(int64(d.Batch.Len()))
	return ctx
}
func (b *batchCounter) TraceBatchQuery(context.Context, *pgx.Conn, pgx.TraceBatchQueryData) {}
func (b *batchCounter) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData)     {}

// lockTopics appends to each topic named in a transaction it leaves open,
// so that every other Append to them waits; the test's end rolls it back.
func lockTopics(t *testing.T, s *Streams, names ...string) pgx.Tx {
	t.Helper()
	tx, err := s.pool.Begin(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tx.Rollback(context.Background()) })
	for _, name := range names {
		if _, err := topic(t, s, name).AppendTx(t.Context(), tx, logtest.Wire(0)); err != nil {
			t.Fatal(err)
		}
	}
	return tx
}

func TestAppendsShareRoundTrips(t *testing.T) {
	url := newDB(t)
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	var count batchCounter
	cfg.ConnConfig.Tracer = &count
	pool, err := pgxpool.NewWithConfig(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	s, err := New(pool, &Options{Timeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	tops := []*Topic{topic(t, s, "a"), topic(t, s, "b"), topic(t, s, "c")}
	logtest.AppendN(t, tops[0], 1, 1) // the statements prepared
	// With the topics locked by an open transaction, the first calls wait
	// in the callers' round trips, and every later one in the queue: once
	// the transaction ends, those share one.
	tx := lockTopics(t, newStreams(t, url, nil), "a", "b", "c")
	count.batches.Store(0)
	count.queries.Store(0)
	s.calls.mu.Lock()
	taken0 := s.calls.taken
	s.calls.mu.Unlock()
	const n = 300
	var wg sync.WaitGroup
	offsets := make([][]uint64, len(tops))
	var mu sync.Mutex
	for i := range n {
		wg.Go(func() {
			tp := tops[i%len(tops)]
			p, err := tp.Append(t.Context(), logtest.Wire(i))
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			offsets[i%len(tops)] = append(offsets[i%len(tops)], p.Offset)
			mu.Unlock()
		})
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		s.calls.mu.Lock()
		queued, taken := len(s.calls.queue), s.calls.taken-taken0
		s.calls.mu.Unlock()
		if queued+taken == n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d Appends queued", queued+taken, n)
		}
	}
	if err := tx.Rollback(t.Context()); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	// At most: one round trip per caller for the first arrivals, one for
	// the rest; in each, the lock_timeout, and one statement per topic.
	if b, q := count.batches.Load(), count.queries.Load(); b > callers+1 || q > (callers+1)*int64(1+len(tops)) {
		t.Errorf("%d Appends to %d topics took %d round trips of %d statements in all; want at most %d and %d", n, len(tops), b, q, callers+1, (callers+1)*(1+len(tops)))
	}
	for i, offs := range offsets {
		slices.Sort(offs)
		first := uint64(1)
		if i == 0 {
			first = 2 // after the Append before
		}
		for j, o := range offs {
			if o != first+uint64(j) {
				t.Errorf("topic %d: offsets %v, want %d to %d", i, offs, first, first+uint64(len(offs))-1)
				break
			}
		}
	}
}

// An Append that waits for a topic locked by an open transaction fails
// before its deadline, saying why, and takes no effect, even once the
// transaction ends: its round trip's lock_timeout ends it in PostgreSQL.
func TestAppendFailsWhileTopicLocked(t *testing.T) {
	url := newDB(t)
	const timeout = time.Second
	tp := topic(t, newStreams(t, url, &Options{Timeout: timeout}), "room")
	logtest.AppendN(t, tp, 1, 1)
	tx := lockTopics(t, newStreams(t, url, nil), "room")
	start := time.Now()
	_, err := tp.Append(t.Context(), logtest.Wire(2))
	logtest.Within(t, "Append to a locked topic", time.Since(start), timeout)
	var pgErr *pgconn.PgError
	if !errors.Is(err, ErrTimeout) || !errors.As(err, &pgErr) || pgErr.Code != "55P03" {
		t.Errorf("Append to a locked topic: %v, want ErrTimeout wrapping PostgreSQL's lock_not_available", err)
	}
	// Likewise with a context that ends before Options.Timeout.
	ctx, cancel := context.WithTimeout(t.Context(), timeout/2)
	defer cancel()
	_, err = tp.Append(ctx, logtest.Wire(3))
	if !errors.As(err, &pgErr) || pgErr.Code != "55P03" {
		t.Errorf("Append to a locked topic, with a shorter context: %v, want PostgreSQL's lock_not_available", err)
	}
	if err := tx.Rollback(t.Context()); err != nil {
		t.Fatal(err)
	}
	logtest.AppendN(t, tp, 4, 4)
	if got := logtest.Numbers(t, tp); fmt.Sprint(got) != "[1 4]" {
		t.Errorf("the log holds %v, want [1 4]: not the Appends that failed", got)
	}
}

// An Append whose caller has given up (its timeout, its context) is left out
// of the round trip that takes it: its caller may be using wire again.
func TestAbandonedAppendNotSent(t *testing.T) {
	url := newDB(t)
	s := newStreams(t, url, nil)
	tp := topic(t, s, "room")
	epoch := logtest.AppendN(t, tp, 1, 1)[0].Epoch
	newCall := func(n int) *call {
		return &call{topic: tp, wire: logtest.Wire(n), done: make(chan struct{}), deadline: time.Now().Add(s.o.Timeout)}
	}
	gone, kept := newCall(2), newCall(3)
	gone.abandoned.Store(true)
	s.roundTrip([]*call{gone, kept})
	<-kept.done
	if kept.err != nil || kept.pos != (ssebroker.Position{Epoch: epoch, Offset: 2}) {
		t.Errorf("the Append sent: %v, %v; want %s-2", kept.pos, kept.err, epoch)
	}
	if got := logtest.Numbers(t, tp); fmt.Sprint(got) != "[1 3]" {
		t.Errorf("the log holds %v, want [1 3]: not the abandoned event 2", got)
	}
}

// A round trip locks its topics in the order of their names. An
// application's transaction that locks them in the other order makes a
// deadlock, which PostgreSQL breaks by rolling one back: when that is the
// round trip, it is sent again, and both succeed.
func TestRoundTripRetriedAfterDeadlock(t *testing.T) {
	url := newDB(t)
	s := newStreams(t, url, nil)
	a, b := topic(t, s, "a"), topic(t, s, "b")
	logtest.AppendN(t, a, 1, 1)
	logtest.AppendN(t, b, 1, 1)
	app := newPool(t, url)
	tx, err := app.Begin(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(context.Background())
	// The round trip's backend, not this one, looks for the deadlock
	// (after the cluster's deadlock_timeout, 100 ms), and rolls back its
	// own transaction.
	if _, err := tx.Exec(t.Context(), "SET LOCAL deadlock_timeout = '1min'"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.AppendTx(t.Context(), tx, logtest.Wire(20)); err != nil { // b first
		t.Fatal(err)
	}
	calls := []*call{
		{topic: a, wire: logtest.Wire(2), done: make(chan struct{}), deadline: time.Now().Add(10 * time.Second)},
		{topic: b, wire: logtest.Wire(2), done: make(chan struct{}), deadline: time.Now().Add(10 * time.Second)},
	}
	var wg sync.WaitGroup
	wg.Go(func() { s.roundTrip(calls) }) // locks a, waits for b
	waitForLockWait(t, app)
	// Then a, which the round trip holds: a deadlock. The round trip is
	// rolled back; the transaction then gets a.
	if _, err := a.AppendTx(t.Context(), tx, logtest.Wire(20)); err != nil {
		t.Fatalf("AppendTx(a): %v", err)
	}
	if err := tx.Commit(t.Context()); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	for _, c := range calls {
		if c.err != nil || c.pos.Offset != 3 {
			t.Errorf("Append to %s after the deadlock: %v, %v; want offset 3", c.topic.name, c.pos, c.err)
		}
	}
	if ga, gb := logtest.Numbers(t, a), logtest.Numbers(t, b); fmt.Sprint(ga, gb) != "[1 20 2] [1 20 2]" {
		t.Errorf("logs %v %v, want [1 20 2] [1 20 2]", ga, gb)
	}
}

// waitForLockWait waits until some session of the database waits for a
// row lock.
func waitForLockWait(t *testing.T, pool *pgxpool.Pool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		var n int
		err := pool.QueryRow(t.Context(), `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&n)
		if err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("no session waits for a lock after 10 s")
		}
	}
}

// An Append whose round trip fails with an error of PostgreSQL's took no
// effect, and says so.
func TestAppendErrorFromPostgres(t *testing.T) {
	url := newDB(t)
	s := newStreams(t, url, nil)
	tp := topic(t, s, "room")
	logtest.AppendN(t, tp, 1, 1)
	if _, err := s.pool.Exec(t.Context(), `ALTER TABLE sse_events ADD CONSTRAINT small CHECK (length(wire) < 100)`); err != nil {
		t.Fatal(err)
	}
	_, err := tp.Append(t.Context(), make([]byte, 200))
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "23514" {
		t.Errorf("Append that breaks a constraint: %v, want PostgreSQL's check_violation", err)
	}
	if p := logtest.AppendN(t, tp, 2, 2)[0]; p.Offset != 2 {
		t.Errorf("next Append at %v, want offset 2: the failed one took none", p)
	}
}
