package pgstream

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/lightsse/sse/ssebroker"
)

// Reads go straight to the pool, one statement each: a statement sees one
// snapshot, so the head it reads from a topic's row and the events it reads
// up to that head are of one moment, and every event up to the head is
// there (an Append commits its events and its head together).
//
// A read of n events after offset a asks for the offsets a+1 to a+n, not
// "after a, the first n": offsets have no gaps, so that is the same, and
// it bounds the rows PostgreSQL visits whatever plan it picks. (Planned
// with statistics older than the table's growth, "the first n after a"
// became a bitmap scan of every event after a, sorted on disk: 300 ms a
// read for a follower 500,000 events behind, which then fell further
// behind.)

// readRows bounds the events one read returns, whatever their size.
const readRows = 4096

// readTopicBytes bounds what readMany reads of one topic: it stops at the
// first event that reaches it. (The rest is read next.)
const readTopicBytes = 256 << 10

// ReadAfter returns the events of the topic that follow after, in order and
// without a gap, until they hold at least limit bytes or reach the head (4096
// events at most); and the head, the Position of the topic's newest event.
// It returns no events when after is the head or past it, when after.Epoch
// is not the topic's epoch, or when the log no longer holds the event at
// after.Offset+1 (trimmed: see Options.MaxLen). It sees only committed
// events. A topic with no row gets one, with a new epoch and no events.
//
// It returns ErrTimeout when PostgreSQL has not answered within
// Options.Timeout, the context's error when ctx ends first, ErrClosed
// after Close, and PostgreSQL's or the connection's error otherwise.
func (t *Topic) ReadAfter(ctx context.Context, after ssebroker.Position, limit int) ([][]byte, ssebroker.Position, error) {
	ctx, cancel := t.s.callContext(ctx)
	defer cancel()
	for made := false; ; made = true {
		wires, head, found, err := t.read(ctx, after, limit)
		if err != nil {
			return nil, ssebroker.Position{}, t.s.callError(ctx, err)
		}
		if found || made {
			return wires, head, nil
		}
		if err := t.s.makeRows(ctx, []string{t.name}); err != nil {
			return nil, ssebroker.Position{}, t.s.callError(ctx, err)
		}
	}
}

// Head returns the Position of the topic's newest committed event (Offset 0
// if its epoch has none yet), giving the topic a row as ReadAfter does. It
// returns the same errors as ReadAfter.
func (t *Topic) Head(ctx context.Context) (ssebroker.Position, error) {
	_, head, err := t.ReadAfter(ctx, ssebroker.Position{}, 0)
	return head, err
}

// callContext returns ctx bounded by Options.Timeout, and ended by Close.
func (s *Streams) callContext(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(ctx, s.o.Timeout)
	stop := context.AfterFunc(s.ctx, cancel)
	return ctx, func() {
		stop()
		cancel()
	}
}

// read runs readSQL. found is false when the topic has no row: a read
// made after someone deleted the row finds none again, and makes it again.
func (t *Topic) read(ctx context.Context, after ssebroker.Position, limit int) (wires [][]byte, head ssebroker.Position, found bool, err error) {
	if s := t.s; s.ctx.Err() != nil {
		return nil, ssebroker.Position{}, false, ErrClosed
	}
	from := int64(after.Offset)
	if after.Offset > 1<<62 {
		from = 1 << 62 // past any head; and beyond, PostgreSQL's bigint ends
	}
	rows, err := t.s.pool.Query(ctx, t.s.readSQL(), t.name, after.Epoch, from, limit, readRows)
	if err != nil {
		return nil, ssebroker.Position{}, false, err
	}
	var (
		epoch  string
		h      int64
		offset *int64
		wire   []byte
	)
	want := from + 1
	_, err = pgx.ForEachRow(rows, []any{&epoch, &h, &offset, &wire}, func() error {
		found = true
		if offset != nil && *offset == want { // else trimmed: none, as for a gap
			wires = append(wires, wire)
			want++
		}
		return nil
	})
	if err != nil || !found {
		return nil, ssebroker.Position{}, false, err
	}
	if h < 0 {
		return nil, ssebroker.Position{}, false, fmt.Errorf("pgstream: topic %q has head %d", t.name, h)
	}
	return wires, ssebroker.Position{Epoch: epoch, Offset: uint64(h)}, true, nil
}

// readSQL reads a topic's epoch and head ($1: its name), and, if $2 is its
// epoch, its events after offset $3, until they hold at least $4 bytes, $5
// at most. It returns one row per event (epoch, head, offset, wire), or one
// with no event, or none when the topic has no row.
func (s *Streams) readSQL() string {
	return s.n.expand(`SELECT t.epoch, t.head, e."offset", e.wire
FROM {topics} t
LEFT JOIN LATERAL (
	SELECT x."offset", x.wire,
		sum(length(x.wire)) OVER (ORDER BY x."offset" ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) - length(x.wire) AS before
	FROM {events} x
	WHERE x.topic_id = t.id AND t.epoch = $2 AND x."offset" > $3 AND x."offset" <= least(t.head, $3 + $5)
	ORDER BY x."offset"
	LIMIT $5
) e ON e.before < $4
WHERE t.name = $1
ORDER BY e."offset"`)
}

// makeRows gives each of the topics named that has no row one, with a new
// epoch and no events. It makes them in the order of their names' bytes,
// as round trips lock topics, so that the two never wait for each other in
// a cycle.
func (s *Streams) makeRows(ctx context.Context, topics []string) error {
	epochs := make([]string, len(topics))
	for i := range epochs {
		epochs[i] = ssebroker.NewEpoch()
	}
	_, err := s.pool.Exec(ctx, s.n.expand(`INSERT INTO {topics} (name, epoch)
SELECT * FROM unnest($1::text[], $2::text[]) AS u(name, epoch) ORDER BY u.name COLLATE "C"
ON CONFLICT (name) DO NOTHING`), topics, epochs)
	return err
}

// A cursor is where a follower of a topic stands: the epoch it follows,
// and the offset of the last event it was handed.
type cursor struct {
	topic string
	epoch string
	after int64
}

// A readResult is what readMany found of one topic.
type readResult struct {
	found bool     // the topic has a row
	head  head     // its epoch and head
	wires [][]byte // the events after the cursor, if in its epoch and still held
}

// readMany reads, in one statement, the head of each topic of cs and, for
// each whose epoch is the cursor's, its events after the cursor, perTopic
// at most, and only until they hold at least readTopicBytes. A topic whose
// next event is gone (trimmed) has no events.
func (s *Streams) readMany(ctx context.Context, cs []cursor, perTopic int) ([]readResult, error) {
	names := make([]string, len(cs))
	epochs := make([]string, len(cs))
	afters := make([]int64, len(cs))
	for i, c := range cs {
		names[i], epochs[i], afters[i] = c.topic, c.epoch, c.after
	}
	rows, err := s.pool.Query(ctx, s.readManySQL(), names, epochs, afters, perTopic, readTopicBytes)
	if err != nil {
		return nil, err
	}
	out := make([]readResult, len(cs))
	var (
		i      int64
		epoch  string
		h      int64
		offset *int64
		wire   []byte
	)
	_, err = pgx.ForEachRow(rows, []any{&i, &epoch, &h, &offset, &wire}, func() error {
		if i < 1 || int(i) > len(cs) {
			return errors.New("pgstream: readMany: row of no topic")
		}
		r := &out[i-1]
		r.found, r.head = true, head{epoch: epoch, offset: h}
		if offset != nil && *offset == cs[i-1].after+int64(len(r.wires))+1 {
			r.wires = append(r.wires, wire)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// readManySQL reads, for each topic $1[i] and cursor ($2[i], $3[i]), the
// topic's epoch and head and, if the cursor's epoch is the topic's, the
// events after it, $4 at most, until they hold at least $5 bytes: one row
// per event, or one with no event (i, epoch, head, offset, wire); none
// for a topic with no row.
func (s *Streams) readManySQL() string {
	return s.n.expand(`SELECT a.i, t.epoch, t.head, e."offset", e.wire
FROM unnest($1::text[], $2::text[], $3::bigint[]) WITH ORDINALITY AS a(name, epoch, after, i)
JOIN {topics} t ON t.name = a.name
LEFT JOIN LATERAL (
	SELECT x."offset", x.wire,
		sum(length(x.wire)) OVER (ORDER BY x."offset" ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) - length(x.wire) AS before
	FROM {events} x
	WHERE x.topic_id = t.id AND t.epoch = a.epoch AND x."offset" > a.after AND x."offset" <= least(t.head, a.after + $4)
	ORDER BY x."offset"
	LIMIT $4
) e ON e.before < $5
ORDER BY a.i, e."offset"`)
}
