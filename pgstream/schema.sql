-- The tables of github.com/lightsse/sse/pgstream, schema version 1, for
-- pgstream.Options{Schema: "public", Prefix: "sse_"}
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
	IF NOT EXISTS (SELECT FROM pg_namespace WHERE nspname = 'public') THEN
		CREATE SCHEMA "public";
	END IF;
END
$$;

-- One row per topic.
CREATE TABLE IF NOT EXISTS "public"."sse_topics" (
	name  text   PRIMARY KEY,        -- the topic's name
	id    bigint GENERATED ALWAYS AS IDENTITY UNIQUE, -- its history, in "public"."sse_events"
	epoch text   NOT NULL,           -- 16 lowercase hexadecimal digits
	head  bigint NOT NULL DEFAULT 0  -- the offset of its newest event; 0: none yet
) WITH (fillfactor = 50);

-- One row per event kept.
CREATE TABLE IF NOT EXISTS "public"."sse_events" (
	topic_id bigint      NOT NULL,   -- "public"."sse_topics".id
	"offset" bigint      NOT NULL,   -- 1, 2, 3... in the topic's epoch
	at       timestamptz NOT NULL DEFAULT clock_timestamp(), -- for retention by age
	wire     bytea       NOT NULL,   -- the event as the Broker sends it, without its id line
	PRIMARY KEY (topic_id, "offset")
);
