package pgstream

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// The schema: two tables, in the Options' Schema, named with its Prefix.
//
// <prefix>topics has one row per topic: its epoch, and head, the offset of
// its newest event. Appends to a topic update its row, and so take its row
// lock, held until they commit: that is what numbers a topic's events in
// commit order, with no gap (see Topic.Append). id names the history the row
// describes: events belong to a history, not to a name, so that the events
// of a topic whose row was deleted never appear in a new history of the same
// name (the next Append makes a new row: a new id, a new epoch). The row is
// updated often: fillfactor leaves room on its page for the new versions, so
// that they are HOT updates, which touch no index.
//
// <prefix>events has one row per event kept: the history's id, the event's
// offset, when it was appended, and its wire form, byte for byte.
const schemaTemplate = `-- The tables of github.com/lightsse/sse/pgstream, schema version 1, for
-- pgstream.Options{Schema: {schemaLit}, Prefix: {prefixLit}}
-- (pgstream.SchemaSQL writes this for other names).
--
-- Run it once per database, before the first pgstream.New, in your
-- migration tool, or from Go with pgstream.Migrate; running it again
-- changes nothing. The role the application connects as needs USAGE on the
-- schema, and SELECT, INSERT, UPDATE and DELETE on both tables.
-- The schema, if it does not exist (a role may own it and lack the right
-- to create schemas, which CREATE SCHEMA IF NOT EXISTS checks first).
DO $$
BEGIN
	IF NOT EXISTS (SELECT FROM pg_namespace WHERE nspname = {schemaSQLLit}) THEN
		CREATE SCHEMA {schema};
	END IF;
END
$$;

-- One row per topic.
CREATE TABLE IF NOT EXISTS {topics} (
	name  text   PRIMARY KEY,        -- the topic's name
	id    bigint GENERATED ALWAYS AS IDENTITY UNIQUE, -- its history, in {events}
	epoch text   NOT NULL,           -- 16 lowercase hexadecimal digits
	head  bigint NOT NULL DEFAULT 0  -- the offset of its newest event; 0: none yet
) WITH (fillfactor = 50);

-- One row per event kept.
CREATE TABLE IF NOT EXISTS {events} (
	topic_id bigint      NOT NULL,   -- {topics}.id
	"offset" bigint      NOT NULL,   -- 1, 2, 3... in the topic's epoch
	at       timestamptz NOT NULL DEFAULT clock_timestamp(), -- for retention by age
	wire     bytea       NOT NULL,   -- the event as the Broker sends it, without its id line
	PRIMARY KEY (topic_id, "offset")
);
`

// names holds the quoted names of one schema's objects, and its channel.
type names struct {
	schemaLit, prefixLit string // as Go literals, for the schema's comments
	schemaSQLLit         string // the schema's name as an SQL string literal
	schema               string // quoted
	topics               string // quoted, qualified
	events               string // quoted, qualified
	channel              string // for LISTEN and pg_notify, unquoted
	lockKey              int64  // for the advisory locks of Migrate and Trim
}

func newNames(schema, prefix string) names {
	q := func(name string) string { return pgx.Identifier{schema, prefix + name}.Sanitize() }
	channel := schema + "." + prefix + "events"
	if len(channel) > maxIdentifier {
		// Channel names are identifiers: PostgreSQL cuts them at 63 bytes.
		sum := sha256.Sum256([]byte(channel))
		channel = "pgstream_" + hex.EncodeToString(sum[:16])
	}
	h := fnv.New64a()
	h.Write([]byte("pgstream\x00" + schema + "\x00" + prefix))
	return names{
		schemaLit:    strconv.Quote(schema),
		prefixLit:    strconv.Quote(prefix),
		schemaSQLLit: "'" + strings.ReplaceAll(schema, "'", "''") + "'",
		schema:       pgx.Identifier{schema}.Sanitize(),
		topics:       q("topics"),
		events:       q("events"),
		channel:      channel,
		lockKey:      int64(h.Sum64()),
	}
}

// maxIdentifier is the longest identifier PostgreSQL keeps whole, in bytes.
const maxIdentifier = 63

func (n names) expand(sql string) string {
	return strings.NewReplacer("{schema}", n.schema, "{topics}", n.topics, "{events}", n.events,
		"{schemaLit}", n.schemaLit, "{prefixLit}", n.prefixLit, "{schemaSQLLit}", n.schemaSQLLit).Replace(sql)
}

// SchemaSQL returns the SQL that makes the tables a Streams with opts uses
// (nil: the defaults, in the schema public), for a migration tool: run it
// once per database, before the first New. It creates the schema if need
// be, and only what does not exist yet, so running it again changes
// nothing. The file schema.sql in this module holds it for the defaults.
//
// The tables, for the defaults:
//
//   - public.sse_topics: one row per topic (name, id, epoch, head: the
//     offset of its newest event). Its row lock numbers the topic's events.
//   - public.sse_events: one row per event kept (topic_id, offset, at, wire).
//
// The role that New's pool connects as needs USAGE on the schema, and
// SELECT, INSERT, UPDATE and DELETE on both tables; the role that runs this
// SQL, CREATE on the schema, or on the database if the schema does not
// exist yet.
//
// It returns ErrInvalidOptions for Options that New refuses.
func SchemaSQL(opts *Options) (string, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return "", err
	}
	return newNames(o.Schema, o.Prefix).expand(schemaTemplate), nil
}

// Migrate runs SchemaSQL(opts) on pool, in one transaction, holding an
// advisory lock so that processes that start together do not run it at
// once. It returns ErrInvalidOptions for a nil pool or Options that New
// refuses, and PostgreSQL's error (a *pgconn.PgError) if the SQL fails, or
// the connection's.
func Migrate(ctx context.Context, pool *pgxpool.Pool, opts *Options) error {
	if pool == nil {
		return fmt.Errorf("%w: nil pool", ErrInvalidOptions)
	}
	o, err := opts.withDefaults()
	if err != nil {
		return err
	}
	n := newNames(o.Schema, o.Prefix)
	return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", n.lockKey); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, n.expand(schemaTemplate)); err != nil {
			return fmt.Errorf("pgstream: migration: %w", err)
		}
		return nil
	})
}
