package pgstream

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/lightsse/sse"
	"github.com/lightsse/sse/internal/logtest"
	"github.com/lightsse/sse/ssebroker"
)

// begin starts a transaction on s's pool, rolled back at the test's end if
// still open.
func begin(t *testing.T, s *Streams) pgx.Tx {
	t.Helper()
	tx, err := s.pool.Begin(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tx.Rollback(context.Background()) })
	return tx
}

func appendTx(t *testing.T, tp *Topic, tx pgx.Tx, n int) ssebroker.Position {
	t.Helper()
	p, err := tp.AppendTx(t.Context(), tx, logtest.Wire(n))
	if err != nil {
		t.Fatalf("AppendTx %d: %v", n, err)
	}
	return p
}

// An event appended in a transaction that rolls back is never seen, by a
// follower or a read; its offset goes to the next event.
func TestRollbackNeverSeen(t *testing.T) {
	url := newDB(t)
	s := newStreams(t, url, nil)
	tp := topic(t, s, "room")
	r, _ := logtest.Follow(t, topic(t, newStreams(t, url, nil), "room"))
	r.Wait("the head", 10*time.Second, logtest.Started)
	tx := begin(t, s)
	p := appendTx(t, tp, tx, 1)
	if _, err := tx.Exec(t.Context(), "SELECT 1"); err != nil { // the application's own work
		t.Fatal(err)
	}
	if h, err := tp.Head(t.Context()); err != nil || h.Offset != 0 {
		t.Errorf("Head while the transaction is open: %v, %v; want offset 0", h, err)
	}
	if err := tx.Rollback(t.Context()); err != nil {
		t.Fatal(err)
	}
	q := logtest.AppendN(t, tp, 2, 2)[0]
	if p.Offset != 1 || q != p {
		t.Errorf("the rolled-back event had %v, the next %v; want both at offset 1", p, q)
	}
	r.Wait("1 event", 10*time.Second, func(s *logtest.State) bool { return len(s.Got) >= 1 })
	time.Sleep(100 * time.Millisecond) // time for anything else to come
	r.CheckLog(0)
	if got := r.State().Got; fmt.Sprint(got) != "[2]" {
		t.Errorf("follower got %v, want [2]", got)
	}
}

// Transactions that commit in another order than they began, or than
// they appended, give their events offsets in commit order: a follower
// gets them so, with no gap, and no offset is left unused when one rolls
// back.
func TestCommitOrder(t *testing.T) {
	url := newDB(t)
	s := newStreams(t, url, nil)
	tp := topic(t, s, "room")
	r, _ := logtest.Follow(t, topic(t, newStreams(t, url, nil), "room"))
	r.Wait("the head", 10*time.Second, logtest.Started)

	// 1 begins first and appends last; 2 begins second and commits
	// first.
	t1, t2 := begin(t, s), begin(t, s)
	if _, err := t1.Exec(t.Context(), "SELECT 1"); err != nil {
		t.Fatal(err)
	}
	p2 := appendTx(t, tp, t2, 2)
	if err := t2.Commit(t.Context()); err != nil {
		t.Fatal(err)
	}
	p1 := appendTx(t, tp, t1, 1)
	if err := t1.Commit(t.Context()); err != nil {
		t.Fatal(err)
	}

	// 3 appends, then 4 appends (and waits for 3), then 3 commits after
	// more work: 4 comes after 3.
	t3, t4 := begin(t, s), begin(t, s)
	p3 := appendTx(t, tp, t3, 3)
	p4c := goAppendTx(t, tp, t4, 4)
	waitForLockWait(t, s.pool)
	if _, err := t3.Exec(t.Context(), "SELECT pg_sleep(0.05)"); err != nil {
		t.Fatal(err)
	}
	if err := t3.Commit(t.Context()); err != nil {
		t.Fatal(err)
	}
	p4 := <-p4c
	if err := t4.Commit(t.Context()); err != nil {
		t.Fatal(err)
	}

	// 5 appends, 6 waits for it, 5 rolls back: 6 takes 5's offset.
	t5, t6 := begin(t, s), begin(t, s)
	p5 := appendTx(t, tp, t5, 5)
	p6c := goAppendTx(t, tp, t6, 6)
	waitForLockWait(t, s.pool)
	if err := t5.Rollback(t.Context()); err != nil {
		t.Fatal(err)
	}
	p6 := <-p6c
	if err := t6.Commit(t.Context()); err != nil {
		t.Fatal(err)
	}

	got := []uint64{p2.Offset, p1.Offset, p3.Offset, p4.Offset, p5.Offset, p6.Offset}
	if fmt.Sprint(got) != "[1 2 3 4 5 5]" {
		t.Errorf("offsets of 2, 1, 3, 4, 5 (rolled back), 6: %v; want [1 2 3 4 5 5]", got)
	}
	r.Wait("5 events", 10*time.Second, func(s *logtest.State) bool { return len(s.Got) >= 5 })
	r.CheckLog(0)
	if s := r.State(); fmt.Sprint(s.Got) != "[2 1 3 4 6]" || s.Gaps > 0 {
		t.Errorf("follower got %v with %d gaps, want [2 1 3 4 6] with none", s.Got, s.Gaps)
	}
}

// goAppendTx runs AppendTx in a goroutine; the channel gets its Position.
func goAppendTx(t *testing.T, tp *Topic, tx pgx.Tx, n int) <-chan ssebroker.Position {
	c := make(chan ssebroker.Position, 1)
	go func() {
		p, err := tp.AppendTx(context.Background(), tx, logtest.Wire(n))
		if err != nil {
			t.Errorf("AppendTx %d: %v", n, err)
		}
		c <- p
	}()
	return c
}

// Many transactions at once, of many lengths, some rolled back, beside
// plain Appends: followers in three processes get exactly the committed
// events, in the log's order, with no gap; the log holds exactly them.
func TestTransactionsAtOnce(t *testing.T) {
	url := newDB(t)
	const writers, each = 12, 25
	var readers []*logtest.Follower
	var tops []*Topic
	for range 3 {
		s := newStreams(t, url, nil)
		tp := topic(t, s, "room")
		r, _ := logtest.Follow(t, tp)
		readers, tops = append(readers, r), append(tops, tp)
	}
	for _, r := range readers {
		r.Wait("the head", 10*time.Second, logtest.Started)
	}
	var mu sync.Mutex
	var committed []int
	var wg sync.WaitGroup
	for w := range writers {
		tp := tops[w%3]
		rng := rand.New(rand.NewPCG(uint64(w), 7))
		wg.Go(func() {
			for i := range each {
				n := w*1000 + i
				if w%4 == 0 { // a plain Append
					if _, err := tp.Append(context.Background(), logtest.Wire(n)); err != nil {
						t.Error(err)
						return
					}
					mu.Lock()
					committed = append(committed, n)
					mu.Unlock()
					continue
				}
				err := pgx.BeginFunc(context.Background(), tp.s.pool, func(tx pgx.Tx) error {
					time.Sleep(time.Duration(rng.IntN(3)) * time.Millisecond) // work before
					if _, err := tp.AppendTx(context.Background(), tx, logtest.Wire(n)); err != nil {
						return err
					}
					time.Sleep(time.Duration(rng.IntN(2)) * time.Millisecond) // and after
					if rng.IntN(4) == 0 {
						return errRolledBack
					}
					return nil
				})
				switch {
				case err == nil:
					mu.Lock()
					committed = append(committed, n)
					mu.Unlock()
				case !errors.Is(err, errRolledBack):
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	got := logtest.Numbers(t, tops[0])
	if a, b := slices.Sorted(slices.Values(got)), slices.Sorted(slices.Values(committed)); fmt.Sprint(a) != fmt.Sprint(b) {
		t.Errorf("the log holds %d events, %d were committed:\nlog       %v\ncommitted %v", len(a), len(b), logtest.Clip(a), logtest.Clip(b))
	}
	for _, r := range readers {
		r.Wait(fmt.Sprint(len(got), " events"), 20*time.Second, func(s *logtest.State) bool { return len(s.Got) >= len(got) })
		r.CheckLog(0)
	}
}

var errRolledBack = errors.New("rolled back on purpose")

func TestPublishTx(t *testing.T) {
	url := newDB(t)
	s := newStreams(t, url, nil)
	tp := topic(t, s, "room")
	tx := begin(t, s)
	for _, e := range []sse.Event{
		{ID: strings.Repeat("x", sse.MaxLastEventIDLen+1), Data: "x"},
		{ID: " x", Data: "x"},
		{ID: "x\t", Data: "x"},
		{ID: "a\x01b", Data: "x"},
		{ID: "a\x7fb", Data: "x"},
		{ID: "0123456789abcdef-12", Data: "x"},
	} {
		if _, err := tp.PublishTx(t.Context(), tx, e); !errors.Is(err, sse.ErrInvalidID) {
			t.Errorf("PublishTx(%q): %v, want sse.ErrInvalidID", e.ID, err)
		}
	}
	if _, err := tp.PublishTx(t.Context(), tx, sse.Event{Data: "x", Type: "a\nb"}); !errors.Is(err, sse.ErrInvalidType) {
		t.Errorf("PublishTx with a newline in its type: %v, want sse.ErrInvalidType", err)
	}
	// None of them reached tx, which goes on.
	p, err := tp.PublishTx(t.Context(), tx, sse.Event{ID: "msg-7", Type: "chat", Data: "hello\nworld"})
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(t.Context()); err != nil {
		t.Fatal(err)
	}
	wires, _, err := tp.ReadAfter(t.Context(), ssebroker.Position{Epoch: p.Epoch}, 1<<20)
	if err != nil || len(wires) != 1 {
		t.Fatalf("ReadAfter: %d events, %v", len(wires), err)
	}
	if want := "id: msg-7\nevent: chat\ndata: hello\ndata: world\n\n"; string(wires[0]) != want {
		t.Errorf("the log holds %q, want %q", wires[0], want)
	}
}

// Under REPEATABLE READ, an AppendTx to a topic appended to since the
// transaction's snapshot fails with a serialization failure, and takes no
// effect.
func TestAppendTxRepeatableRead(t *testing.T) {
	url := newDB(t)
	s := newStreams(t, url, nil)
	tp := topic(t, s, "room")
	logtest.AppendN(t, tp, 1, 1)
	tx, err := s.pool.BeginTx(t.Context(), pgx.TxOptions{IsoLevel: pgx.RepeatableRead})
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(context.Background())
	if _, err := tx.Exec(t.Context(), "SELECT count(*) FROM sse_topics"); err != nil { // the snapshot
		t.Fatal(err)
	}
	logtest.AppendN(t, tp, 2, 2)
	_, err = tp.AppendTx(t.Context(), tx, logtest.Wire(3))
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "40001" {
		t.Errorf("AppendTx after a concurrent Append, under REPEATABLE READ: %v, want a serialization failure (40001)", err)
	}
	tx.Rollback(t.Context())
	if got := logtest.Numbers(t, tp); fmt.Sprint(got) != "[1 2]" {
		t.Errorf("the log holds %v, want [1 2]", got)
	}
}
