package pgstream

import (
	"context"
	"errors"
	"math"
	"time"

	"github.com/jackc/pgx/v5"
)

// Retention: a topic keeps a run of its newest events, with no gap (see
// Options.MaxLen and MaxAge). Trim deletes, for each topic, the events
// before the oldest it keeps: a prefix of its offsets, so what is left
// still has no gap, and ReadAfter from an id whose next event is gone
// returns nothing (the Broker resets the client).
//
// It takes no lock that an Append or a read waits for: a DELETE locks only
// the rows it deletes, which nobody else writes, and readers do not wait
// for it. It goes a chunk of topics at a time, each chunk one read and one
// round trip of DELETEs (one transaction), so that no transaction runs long
// but that of a topic with a long backlog to delete.

// trimTopics is how many topics one chunk covers.
const trimTopics = 100

// Trim deletes the events that Options.MaxLen and MaxAge no longer keep,
// and those of topic rows deleted by hand, and returns how many it
// deleted. The Streams does it every TrimInterval by itself; call Trim
// when TrimInterval is below 0. Streams that share the tables trim one at
// a time: a Trim that finds another under way returns 0 and no error at
// once.
//
// It returns ErrClosed after Close, the context's error when ctx ends,
// and PostgreSQL's or the connection's error otherwise. It is bounded by
// ctx alone; what it deleted before an error stays deleted.
func (s *Streams) Trim(ctx context.Context) (int64, error) {
	if s.ctx.Err() != nil {
		return 0, ErrClosed
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(s.ctx, cancel)()
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return 0, s.trimError(err)
	}
	defer conn.Release()
	key := s.n.lockKey + 1 // Migrate's is lockKey
	var mine bool
	if err := conn.QueryRow(ctx, "SELECT pg_try_advisory_lock($1)", key).Scan(&mine); err != nil {
		return 0, s.trimError(err)
	}
	if !mine {
		return 0, nil
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.o.Timeout)
		defer cancel()
		if _, err := conn.Exec(ctx, "SELECT pg_advisory_unlock($1)", key); err != nil {
			conn.Conn().Close(ctx) // the lock goes with the session
		}
	}()
	maxLen := int64(s.o.MaxLen)
	if maxLen < 0 {
		maxLen = math.MaxInt64 / 2
	}
	var cutoff *time.Time
	if s.o.MaxAge > 0 {
		t := time.Now().Add(-s.o.MaxAge)
		cutoff = &t
	}
	var total int64
	for last := int64(math.MinInt64); ; {
		rows, err := conn.Query(ctx, s.trimSQL(), last, trimTopics, maxLen, cutoff)
		if err != nil {
			return total, s.trimError(err)
		}
		var id, oldest int64
		var from *int64
		b := &pgx.Batch{}
		covered := false
		_, err = pgx.ForEachRow(rows, []any{&id, &from, &oldest}, func() error {
			covered, last = true, id
			switch {
			case from == nil: // no row: all its events
				b.Queue(s.n.expand(`DELETE FROM {events} WHERE topic_id = $1`), id)
			case oldest < *from:
				b.Queue(s.n.expand(`DELETE FROM {events} WHERE topic_id = $1 AND "offset" < $2`), id, *from)
			}
			return nil
		})
		if err != nil {
			return total, s.trimError(err)
		}
		if !covered {
			return total, nil
		}
		if b.Len() == 0 {
			continue
		}
		br := conn.SendBatch(ctx, b)
		for range b.Len() {
			tag, err := br.Exec()
			if err != nil {
				br.Close()
				return total, s.trimError(err)
			}
			total += tag.RowsAffected()
		}
		if err := br.Close(); err != nil {
			return total, s.trimError(err)
		}
	}
}

func (s *Streams) trimError(err error) error {
	if s.ctx.Err() != nil {
		return ErrClosed
	}
	return err
}

// trimSQL finds, for the histories (topic ids) after $1 that have events,
// up to $2 of them, in order, the first offset each keeps: the greater of
// head-$3+1 (the $3 newest) and the first offset appended at $4 or later
// (if $4 is not null), or null for an id that no row has (a topic row
// deleted by hand: all its events go); and its oldest offset, so that Trim
// deletes only where there is something to delete. Trim then deletes each
// history's offsets before the first it keeps, in a statement of its own,
// which walks the primary key's range and touches no other history.
//
// The ids come from the events, one index probe each (a loose index scan:
// PostgreSQL has no skip scan), so topics with no events cost nothing; the
// first offset kept by age, from a scan of the topic's oldest events that
// stops at the first young one.
func (s *Streams) trimSQL() string {
	return s.n.expand(`WITH RECURSIVE ids(id, n) AS (
	(SELECT topic_id, 1 FROM {events} WHERE topic_id > $1 ORDER BY topic_id LIMIT 1)
	UNION ALL
	SELECT (SELECT x.topic_id FROM {events} x WHERE x.topic_id > ids.id ORDER BY x.topic_id LIMIT 1), ids.n + 1
	FROM ids WHERE ids.id IS NOT NULL AND ids.n < $2
)
SELECT ids.id,
	CASE WHEN t.id IS NOT NULL THEN greatest(
		t.head - $3 + 1,
		coalesce((SELECT x."offset" FROM {events} x
			WHERE x.topic_id = t.id AND ($4::timestamptz IS NULL OR x.at >= $4)
			ORDER BY x."offset" LIMIT 1), t.head + 1)
	) END,
	(SELECT x."offset" FROM {events} x WHERE x.topic_id = ids.id ORDER BY x."offset" LIMIT 1)
FROM ids LEFT JOIN {topics} t ON t.id = ids.id
WHERE ids.id IS NOT NULL
ORDER BY ids.id`)
}

// trimEvery runs Trim every interval, until the Streams closes. A Trim
// that fails is tried again at the next.
func (s *Streams) trimEvery(interval time.Duration) {
	defer s.wg.Done()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
			_, _ = s.Trim(s.ctx)
		}
	}
}

// NewEpochs gives every topic a new epoch, with no events, and deletes
// every event, in one transaction: clients that come back with an id of the
// old histories get a reset, and followers, in every process, a new head
// (each topic's notification says so). Run it after the database went back
// in time (see Epochs), before the processes append again. It waits for
// the transactions that hold a topic's row lock.
//
// It returns ErrClosed after Close, and otherwise PostgreSQL's or the
// connection's error, in which case it changed nothing.
func (s *Streams) NewEpochs(ctx context.Context) error {
	if s.ctx.Err() != nil {
		return ErrClosed
	}
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		// gen_random_uuid draws from a strong source; md5 spreads its
		// 122 random bits over the 64 of the epoch.
		if _, err := tx.Exec(ctx, s.n.expand(`UPDATE {topics} SET id = DEFAULT, head = 0, epoch = left(md5(gen_random_uuid()::text), 16)`)); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, s.n.expand(`DELETE FROM {events}`)); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, s.n.expand(`SELECT count(pg_notify($1, epoch || ' 0 ' || name)) FROM {topics}`), s.n.channel)
		return err
	})
	if err != nil && errors.Is(err, context.Canceled) && s.ctx.Err() != nil {
		return ErrClosed
	}
	return err
}
