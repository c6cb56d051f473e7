package pgtest

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
)

func TestMain(m *testing.M) { Main(m) }

// A row committed before a crash is there after the restart; a database of
// one test is dropped when it ends.
func TestCommittedSurvivesCrash(t *testing.T) {
	c := Start(t)
	url := c.NewDB(t)
	exec := func(sql string) int {
		t.Helper()
		conn, err := pgx.Connect(t.Context(), url)
		if err != nil {
			t.Fatalf("%v; log: %s", err, c.Log())
		}
		defer conn.Close(context.Background())
		var n int
		if err := conn.QueryRow(t.Context(), sql).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	exec("WITH c AS (SELECT 1) SELECT 0 FROM c") // a connection works
	conn, err := pgx.Connect(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(t.Context(), "CREATE TABLE x AS SELECT 7 AS n"); err != nil {
		t.Fatal(err)
	}
	conn.Close(context.Background())
	c.Crash()
	if err := c.Restart(); err != nil {
		t.Fatal(err)
	}
	if n := exec("SELECT n FROM x"); n != 7 {
		t.Errorf("after the crash, x holds %d, want 7", n)
	}
}
