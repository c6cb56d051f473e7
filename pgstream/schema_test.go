package pgstream

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/lightsse/sse"
	"github.com/lightsse/sse/internal/logtest"
)

// schema.sql, the migration for the defaults, is what SchemaSQL(nil)
// writes: the file cannot drift from the code.
func TestSchemaFileUpToDate(t *testing.T) {
	file, err := os.ReadFile("schema.sql")
	if err != nil {
		t.Fatal(err)
	}
	want, err := SchemaSQL(nil)
	if err != nil {
		t.Fatal(err)
	}
	if string(file) != want {
		t.Errorf("schema.sql differs from SchemaSQL(nil); write it again:\n%s", want)
	}
}

// Migrate may run again, and in several processes at once.
func TestMigrateAgainAndAtOnce(t *testing.T) {
	url := newDB(t)
	tp := topic(t, newStreams(t, url, nil), "room")
	logtest.AppendN(t, tp, 1, 3)
	var wg sync.WaitGroup
	for range 4 {
		pool := newPool(t, url)
		wg.Go(func() {
			if err := Migrate(context.Background(), pool, nil); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if got := logtest.Numbers(t, tp); fmt.Sprint(got) != "[1 2 3]" {
		t.Errorf("after Migrate again, the log holds %v, want [1 2 3]", got)
	}
}

// The tables go where Schema and Prefix say; topics of one name in two
// schemas are two topics, whose followers hear only their own.
func TestSchemaAndPrefix(t *testing.T) {
	url := newDB(t)
	pool := newPool(t, url)
	other := &Options{Schema: "Other 'Schema'", Prefix: "ev_"}
	if err := Migrate(t.Context(), pool, other); err != nil {
		t.Fatal(err)
	}
	var tables []string
	rows, _ := pool.Query(t.Context(), `SELECT table_schema || '.' || table_name FROM information_schema.tables
		WHERE table_schema IN ('public', 'Other ''Schema''') ORDER BY 1`)
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(tables, " "); got != "Other 'Schema'.ev_events Other 'Schema'.ev_topics public.sse_events public.sse_topics" {
		t.Errorf("tables: %s", got)
	}
	def, oth := topic(t, newStreams(t, url, nil), "room"), topic(t, newStreams(t, url, other), "room")
	rd, _ := logtest.Follow(t, def)
	ro, _ := logtest.Follow(t, oth)
	rd.Wait("the head", 10*time.Second, logtest.Started)
	ro.Wait("the head", 10*time.Second, logtest.Started)
	logtest.AppendN(t, def, 1, 2)
	logtest.AppendN(t, oth, 10, 10)
	rd.Wait("2 events", 10*time.Second, logtest.Got(2))
	ro.Wait("1 event", 10*time.Second, logtest.Got(1))
	pd, _ := def.Head(t.Context())
	po, _ := oth.Head(t.Context())
	if pd.Epoch == po.Epoch || pd.Offset != 2 || po.Offset != 1 {
		t.Errorf("heads %v and %v: want two topics, with 2 events and 1", pd, po)
	}
	if n := newNames("s", "p_"); n.channel != "s.p_events" || newNames(strings.Repeat("s", 60), "p_").channel == n.channel {
		t.Errorf("channel names: %q", n.channel)
	}
	if c := newNames(strings.Repeat("s", 63), strings.Repeat("p", 40)).channel; len(c) > maxIdentifier {
		t.Errorf("channel name of %d bytes, over PostgreSQL's %d", len(c), maxIdentifier)
	}
}

// A role with the privileges schema.sql names, and no more, can use
// everything a Streams does.
func TestPrivilegesDocumented(t *testing.T) {
	url := newDB(t) // the role outlives it, in the test's throwaway cluster
	admin := newPool(t, url)
	role := fmt.Sprintf("app%d", time.Now().UnixNano())
	for _, sql := range []string{
		"CREATE ROLE " + role + " LOGIN",
		"GRANT USAGE ON SCHEMA public TO " + role,
		"GRANT SELECT, INSERT, UPDATE, DELETE ON sse_topics, sse_events TO " + role,
	} {
		if _, err := admin.Exec(t.Context(), sql); err != nil {
			t.Fatal(err)
		}
	}
	appURL := strings.Replace(url, "postgres@", role+"@", 1)
	s := newStreams(t, appURL, &Options{MaxLen: 2})
	tp := topic(t, s, "room")
	// A schema the role owns, without the right to create schemas: it
	// runs the migration for it itself.
	if _, err := admin.Exec(t.Context(), "CREATE SCHEMA own AUTHORIZATION "+role); err != nil {
		t.Fatal(err)
	}
	if err := Migrate(t.Context(), s.pool, &Options{Schema: "own"}); err != nil {
		t.Errorf("Migrate by the schema's owner: %v", err)
	}
	r, _ := logtest.Follow(t, tp)
	r.Wait("the head", 10*time.Second, logtest.Started)
	logtest.AppendN(t, tp, 1, 3)
	tx, err := s.pool.Begin(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tp.PublishTx(t.Context(), tx, sse.Event{Data: "4"}); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(t.Context()); err != nil {
		t.Fatal(err)
	}
	r.Wait("4 events", 10*time.Second, logtest.Got(4))
	if n, err := s.Trim(t.Context()); err != nil || n != 2 {
		t.Errorf("Trim: %d, %v; want 2 deleted", n, err)
	}
	if err := s.NewEpochs(t.Context()); err != nil {
		t.Errorf("NewEpochs: %v", err)
	}
}
