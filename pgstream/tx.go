package pgstream

import (
	"context"
	"fmt"
	"regexp"

	"github.com/jackc/pgx/v5"

	"github.com/lightsse/sse"
	ssewire "github.com/lightsse/sse/internal/wire"
	"github.com/lightsse/sse/ssebroker"
)

// AppendTx adds wire to the topic's log as its newest event, inside tx, the
// caller's transaction, and returns the Position the event will have if tx
// commits. The event is then visible, to ReadAfter and to every follower,
// if and only if tx commits: together with whatever else tx wrote. Clients
// get the topic's events in the order their transactions committed, with
// no gap.
//
// From AppendTx until tx ends, tx holds the topic's row lock: every other
// Append to the topic, in any process, waits until tx commits or rolls back
// (its offsets come after tx's, or, if tx rolls back, take the same ones).
// So append late in the transaction, and keep the transaction short. A
// transaction that appends to several topics should append to them in the
// order of their names (byte order, as Go compares strings): two
// transactions that lock the same topics in opposite orders wait for each
// other, and PostgreSQL rolls one of them back (error 40P01).
//
// Under REPEATABLE READ or SERIALIZABLE, AppendTx fails with a
// serialization failure (error 40001) if another transaction has appended
// to the topic since tx's snapshot was taken: run tx again, as those
// levels require. READ COMMITTED, PostgreSQL's default, never fails so.
//
// It returns ErrClosed after Close, and otherwise PostgreSQL's or the
// connection's error; after an error, tx is aborted (as after any failed
// statement): roll it back. It is bounded by ctx alone, not by
// Options.Timeout. wire is not kept after AppendTx returns.
func (t *Topic) AppendTx(ctx context.Context, tx pgx.Tx, wire []byte) (ssebroker.Position, error) {
	if t.s.ctx.Err() != nil {
		return ssebroker.Position{}, ErrClosed
	}
	var h head
	err := tx.QueryRow(ctx, t.s.appendSQL(), t.name, ssebroker.NewEpoch(), [][]byte{wire}, t.s.n.channel).Scan(&h.epoch, &h.offset, nil)
	if err != nil {
		return ssebroker.Position{}, err
	}
	return ssebroker.Position{Epoch: h.epoch, Offset: uint64(h.offset)}, nil
}

// PublishTx is AppendTx for an event: it encodes e as Broker.Publish does,
// and appends it inside tx. Clients get it, with its Position as its id
// unless e.ID is set, if and only if tx commits.
//
// It refuses, before tx sees anything, what Broker.Publish refuses: an
// event that Event.AppendText cannot write (its error), and an ID that a
// client could not resume from (an error matching sse.ErrInvalidID: longer
// than sse.MaxLastEventIDLen, beginning or ending with a space or tab,
// holding a control byte other than tab, or shaped like the ids a Broker
// gives). Otherwise it returns what AppendTx returns.
func (t *Topic) PublishTx(ctx context.Context, tx pgx.Tx, e sse.Event) (ssebroker.Position, error) {
	if err := checkID(e.ID); err != nil {
		return ssebroker.Position{}, err
	}
	wire, err := e.AppendText(nil)
	if err != nil {
		return ssebroker.Position{}, err
	}
	return t.AppendTx(ctx, tx, wire)
}

// positionShape is the shape of the ids a Broker gives.
var positionShape = regexp.MustCompile(`^[0-9a-f]{16}-[0-9]{1,20}$`)

// checkID refuses what Broker.Publish refuses in an ID beyond what
// Event.AppendText does (ssebroker's checkID, which is not exported).
func checkID(id string) error {
	if id == "" {
		return nil
	}
	blank := func(c byte) bool { return c == ' ' || c == '\t' }
	switch {
	case len(id) > sse.MaxLastEventIDLen:
		return fmt.Errorf("%w: %d bytes, over MaxLastEventIDLen: a client could not resume from it", sse.ErrInvalidID, len(id))
	case blank(id[0]) || blank(id[len(id)-1]):
		return fmt.Errorf("%w: %q begins or ends with a space or tab, which the Last-Event-ID header loses", sse.ErrInvalidID, id)
	case positionShape.MatchString(id):
		return fmt.Errorf("%w: %q has the shape of the ids a Broker gives, which resume by position", sse.ErrInvalidID, id)
	}
	if i := ssewire.HeaderUnsafe(id); i >= 0 {
		return fmt.Errorf("%w: byte %d is %q: net/http answers 400 to a Last-Event-ID that holds it", sse.ErrInvalidID, i, id[i])
	}
	return nil
}
