package pgstream

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/lightsse/sse/ssebroker"
)

// Appends made through Topic.Append wait in one queue; a few caller
// goroutines each take all that is waiting, up to a bound, and send it in
// one round trip: one pgx batch, which PostgreSQL runs as one transaction
// (the statements of a pipeline, up to its Sync, form an implicit
// transaction). So Appends that arrive while a round trip is under way
// share the next one, and throughput is bounded by PostgreSQL, not by round
// trips. Each caller of do waits with its own deadline, whatever happens to
// the round trip.

// callers is the number of round trips a Streams has under way at once.
const callers = 2

// Bounds on one round trip.
const (
	maxCalls     = 1024
	maxCallBytes = 1 << 20
)

// A call is one Append and its answer.
type call struct {
	topic *Topic
	wire  []byte

	pos ssebroker.Position // the answer
	err error

	done      chan struct{} // closed once the answer is set
	abandoned atomic.Bool   // the caller has given up: do not send it
	deadline  time.Time
	ctxBound  bool // the deadline is the caller's context's
}

// calls is the queue of Appends waiting for a round trip.
type calls struct {
	mu     sync.Mutex
	queue  []*call
	taken  int // calls handed to callers so far (for tests)
	closed bool
	ready  chan struct{} // holds a token while the queue may be non-empty
}

func (q *calls) init() { q.ready = make(chan struct{}, 1) }

func (q *calls) signal() {
	select {
	case q.ready <- struct{}{}:
	default:
	}
}

// add queues c, or reports false after close.
func (q *calls) add(c *call) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return false
	}
	q.queue = append(q.queue, c)
	q.signal()
	return true
}

// take returns the oldest waiting calls, up to the bounds of one round trip,
// leaving out those whose callers gave up. It returns nil once there are none
// and the queue is closed.
func (q *calls) take(quit <-chan struct{}) []*call {
	for {
		q.mu.Lock()
		n, size := 0, 0
		for n < len(q.queue) && n < maxCalls && (n == 0 || size < maxCallBytes) {
			size += len(q.queue[n].wire)
			n++
		}
		batch := make([]*call, 0, n)
		for _, c := range q.queue[:n] {
			if !c.abandoned.Load() {
				batch = append(batch, c)
			}
		}
		clear(q.queue[:n])
		q.queue = q.queue[n:]
		q.taken += n
		if len(q.queue) > 0 {
			q.signal() // for another caller
		}
		closed := q.closed
		q.mu.Unlock()
		if len(batch) > 0 {
			return batch
		}
		if closed {
			return nil
		}
		select {
		case <-q.ready:
		case <-quit:
		}
	}
}

// close fails every waiting call with ErrClosed, and makes add refuse.
func (q *calls) close() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.closed = true
	for _, c := range q.queue {
		c.err = ErrClosed
		close(c.done)
	}
	q.queue = nil
}

// Append adds wire to the topic's log as its newest event, in a transaction
// of its own, and returns the event's Position once that transaction has
// committed; every process that follows the topic is then notified.
// Appends that arrive together, for any topics of the Streams, share one
// round trip and one transaction. An Append to a topic with no row makes
// it, with a new epoch, and the event at offset 1.
//
// It waits while another transaction that appended to the topic is open
// (see AppendTx), for Options.Timeout at most.
//
// It returns ErrTimeout when PostgreSQL has not answered within
// Options.Timeout, the context's error when ctx ends first, ErrClosed
// after Close, and PostgreSQL's or the connection's error otherwise. After
// an error the event may or may not be in the log: a commit sent but not
// acknowledged (a lost connection, say) may have taken effect. An error
// that wraps a *pgconn.PgError of severity ERROR (a failed statement,
// which rolls the transaction back), or one for which pgconn.SafeToRetry
// reports true (nothing was sent), means the event is not in the log.
//
// Append does not modify wire, and keeps it only until it returns, with
// one exception: after an error, a round trip that was already sending
// wire when Append gave up may still read it, until that round trip ends
// (one that had not begun leaves the event out). So do not modify wire
// after an error; the Broker never does.
func (t *Topic) Append(ctx context.Context, wire []byte) (ssebroker.Position, error) {
	c := &call{topic: t, wire: wire}
	if err := t.s.do(ctx, c); err != nil {
		return ssebroker.Position{}, err
	}
	return c.pos, nil
}

// do queues c and waits for its answer, for Options.Timeout at most, or
// until ctx ends.
func (s *Streams) do(ctx context.Context, c *call) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.done = make(chan struct{})
	c.deadline = time.Now().Add(s.o.Timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(c.deadline) {
		c.deadline, c.ctxBound = d, true
	}
	timer := time.NewTimer(s.o.Timeout)
	defer timer.Stop()
	if !s.calls.add(c) {
		return ErrClosed
	}
	select {
	case <-c.done:
		var pgErr *pgconn.PgError
		if c.ctxBound && errors.Is(c.err, ErrTimeout) && !errors.As(c.err, &pgErr) {
			// PostgreSQL ran out the caller's deadline, not ours. (A
			// lock timeout keeps its error: it says nothing was done.)
			return context.DeadlineExceeded
		}
		return c.err
	case <-timer.C:
		c.abandoned.Store(true)
		return ErrTimeout
	case <-ctx.Done():
		c.abandoned.Store(true)
		return ctx.Err()
	}
}

// call sends the queued Appends to PostgreSQL until the Streams closes.
func (s *Streams) call() {
	defer s.wg.Done()
	for {
		batch := s.calls.take(s.ctx.Done())
		if batch == nil {
			return
		}
		s.roundTrip(batch)
	}
}

// A run is the Appends of one topic in one round trip, oldest first.
type run struct {
	topic string
	calls []*call
}

// maxDeadlockRetries bounds how often a round trip is sent again after
// PostgreSQL broke a deadlock by rolling it back (see roundTrip).
const maxDeadlockRetries = 3

// roundTrip sends batch in one transaction, and answers each call. It
// leaves out the calls whose callers have given up since take: a caller
// that has returned may be using an Append's wire again.
//
// Its statements lock the topics' rows in the order of their names, so
// that round trips never wait for each other in a cycle. A transaction of
// the application's that appends to several topics in another order may
// still wait for one while holding another that a round trip waits for:
// PostgreSQL then rolls one of them back (error 40P01), and if it is the
// round trip, it is sent again, which is safe since it took no effect.
func (s *Streams) roundTrip(batch []*call) {
	byTopic := make(map[string]*run)
	var runs []*run
	var deadline time.Time
	for _, c := range batch {
		if c.abandoned.Load() {
			continue
		}
		deadline = later(deadline, c.deadline)
		r := byTopic[c.topic.name]
		if r == nil {
			r = &run{topic: c.topic.name}
			byTopic[c.topic.name] = r
			runs = append(runs, r)
		}
		r.calls = append(r.calls, c)
	}
	if len(runs) == 0 {
		return
	}
	slices.SortFunc(runs, func(a, b *run) int {
		switch {
		case a.topic < b.topic:
			return -1
		case a.topic > b.topic:
			return 1
		}
		return 0
	})
	ctx, cancel := context.WithDeadline(s.ctx, deadline)
	defer cancel()
	var heads []head
	var err error
	for try := 0; ; try++ {
		heads, err = s.sendRuns(ctx, runs, deadline)
		var pgErr *pgconn.PgError
		if try == maxDeadlockRetries || !errors.As(err, &pgErr) || pgErr.Code != "40P01" {
			break
		}
	}
	err = s.callError(ctx, err)
	if err == nil {
		for i, r := range runs {
			wires := make([][]byte, len(r.calls))
			for j, c := range r.calls {
				wires[j] = c.wire
			}
			s.subs.committed(r.topic, heads[i], wires)
		}
	}
	for i, r := range runs {
		for j, c := range r.calls {
			c.err = err
			if err == nil {
				c.pos = ssebroker.Position{Epoch: heads[i].epoch, Offset: uint64(heads[i].offset) - uint64(len(r.calls)-1-j)}
			}
			close(c.done)
		}
	}
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// callError returns the error to answer a call with, for err, what a
// round trip or read on ctx returned.
func (s *Streams) callError(ctx context.Context, err error) error {
	var pgErr *pgconn.PgError
	switch {
	case err == nil:
		return nil
	case s.ctx.Err() != nil:
		return ErrClosed
	case errors.As(err, &pgErr) && pgErr.Code == "55P03":
		// lock_timeout: the topic's row stayed locked, by a transaction
		// of the application's that appended to it, until the deadline.
		return fmt.Errorf("%w: a transaction that appended to the topic is still open (%w)", ErrTimeout, err)
	case ctx.Err() != nil || isTimeout(err):
		return fmt.Errorf("%w: %w", ErrTimeout, err)
	}
	return err
}

// isTimeout reports a network timeout.
func isTimeout(err error) bool {
	var t interface{ Timeout() bool }
	return errors.As(err, &t) && t.Timeout()
}

// A head is the epoch of a topic and an offset in it.
type head struct {
	epoch  string
	offset int64
}

// sendRuns appends every run, in one implicit transaction, and returns the
// epoch and new head of each run's topic. Its first statement bounds how
// long the transaction waits for a row lock, to three quarters of the time
// left until the round trip's deadline: a lock held by an application's
// transaction then fails the round trip in PostgreSQL (error 55P03, and
// nothing done), and its callers learn why, before their own timers end
// them. (Past the deadline, pgx would close the connection and ask
// PostgreSQL to cancel the statement; but a cancel request can be lost,
// or come after the lock was granted.)
func (s *Streams) sendRuns(ctx context.Context, runs []*run, deadline time.Time) ([]head, error) {
	b := &pgx.Batch{}
	wait := max(time.Until(deadline).Milliseconds()*3/4, 1)
	b.Queue("SELECT set_config('lock_timeout', $1, true)", strconv.FormatInt(wait, 10))
	for _, r := range runs {
		wires := make([][]byte, len(r.calls))
		for i, c := range r.calls {
			wires[i] = c.wire
		}
		b.Queue(s.appendSQL(), r.topic, ssebroker.NewEpoch(), wires, s.n.channel)
	}
	br := s.pool.SendBatch(ctx, b)
	heads := make([]head, len(runs))
	_, err := br.Exec()
	for i := 0; err == nil && i < len(runs); i++ {
		err = br.QueryRow().Scan(&heads[i].epoch, &heads[i].offset, nil)
	}
	// The transaction commits at the batch's end: only Close says it did.
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}
	return heads, nil
}

// appendSQL is the statement that appends events to one topic: $1 the
// topic's name, $2 the epoch to give it if it has no row yet, $3 the
// events' wire forms, oldest first, $4 the channel to notify. It returns
// the topic's epoch and its new head, the offset of the last event of $3.
//
// The upsert updates the topic's row, or makes it: either way the row is
// locked until the transaction ends, and head counts the new events. (On
// conflict the identity of the row that was not inserted is spent: ids
// have gaps, which nothing minds.) The events take the offsets up to the new
// head. The notification, "<epoch> <head> <name>", reaches listeners once
// the transaction commits (and never if it does not).
func (s *Streams) appendSQL() string {
	return s.n.expand(`WITH t AS (
	INSERT INTO {topics} AS t (name, epoch, head) VALUES ($1, $2, cardinality($3::bytea[]))
	ON CONFLICT (name) DO UPDATE SET head = t.head + EXCLUDED.head
	RETURNING t.id, t.epoch, t.head
), e AS (
	INSERT INTO {events} (topic_id, "offset", wire)
	SELECT t.id, t.head - cardinality($3::bytea[]) + w.i, w.wire
	FROM t, unnest($3::bytea[]) WITH ORDINALITY AS w(wire, i)
)
SELECT t.epoch, t.head, pg_notify($4, t.epoch || ' ' || t.head || ' ' || $1) FROM t`)
}
