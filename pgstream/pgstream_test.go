package pgstream

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/lightsse/sse/internal/logtest"
	"github.com/lightsse/sse/pgstream/internal/pgtest"
	"github.com/lightsse/sse/ssebroker"
)

// TestMain runs the tests on one PostgreSQL cluster, started by the first
// test that needs it and stopped after the last, and fails the run if any
// goroutine, of a Streams or of pgx, outlives the tests.
func TestMain(m *testing.M) { pgtest.Main(m) }

// newDB makes a database for the test, with the tables of the default
// Options, and returns its URL.
func newDB(t *testing.T) string {
	t.Helper()
	url := pgtest.Start(t).NewDB(t)
	if err := Migrate(t.Context(), newPool(t, url), nil); err != nil {
		t.Fatal(err)
	}
	return url
}

// newPool returns a pool of url, closed when the test ends.
func newPool(t *testing.T, url string) *pgxpool.Pool {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	cfg.MaxConns = 8
	cfg.ConnConfig.ConnectTimeout = 2 * time.Second
	p, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

// newStreams returns a Streams on a pool of its own (as another process
// would have), closed when the test ends, before its pool.
func newStreams(t *testing.T, url string, opts *Options) *Streams {
	t.Helper()
	s, err := New(newPool(t, url), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func topic(t testing.TB, s *Streams, name string) *Topic {
	t.Helper()
	tp, err := s.Topic(name)
	if err != nil {
		t.Fatal(err)
	}
	return tp
}

func TestTopicNames(t *testing.T) {
	s := &Streams{}
	for _, name := range []string{"room", "user:42", "a b", "{x}", "日本", strings.Repeat("x", MaxTopicLen)} {
		if tp, err := s.Topic(name); err != nil || tp.Name() != name {
			t.Errorf("Topic(%q): %v", name, err)
		}
	}
	for _, name := range []string{"", "a\nb", "a\x00b", "\xff", "a\u0085b", strings.Repeat("x", MaxTopicLen+1)} {
		if _, err := s.Topic(name); !errors.Is(err, ErrInvalidTopic) {
			t.Errorf("Topic(%q): %v, want ErrInvalidTopic", name, err)
		}
	}
}

func TestNewRefusesOptions(t *testing.T) {
	pool, err := pgxpool.New(context.Background(), "postgres://nowhere.invalid/x")
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	for _, o := range []Options{
		{Prefix: "Sse_"},
		{Prefix: "sse-"},
		{Prefix: "1sse"},
		{Prefix: strings.Repeat("a", 41)},
		{Schema: strings.Repeat("s", 64)},
		{Schema: "a\x00b"},
		{Schema: "a$$b"},
		{MaxAge: -time.Second},
		{Timeout: -time.Second},
		{PollInterval: -time.Second},
	} {
		if s, err := New(pool, &o); !errors.Is(err, ErrInvalidOptions) {
			t.Errorf("New(%+v): %v, want ErrInvalidOptions", o, err)
			if s != nil {
				s.Close()
			}
		}
		if _, err := SchemaSQL(&o); !errors.Is(err, ErrInvalidOptions) {
			t.Errorf("SchemaSQL(%+v): %v, want ErrInvalidOptions", o, err)
		}
	}
	if err := Migrate(t.Context(), nil, nil); !errors.Is(err, ErrInvalidOptions) {
		t.Errorf("Migrate(nil pool): %v, want ErrInvalidOptions", err)
	}
	if s, err := New(nil, nil); !errors.Is(err, ErrInvalidOptions) {
		t.Errorf("New(nil, nil): %v, want ErrInvalidOptions", err)
		if s != nil {
			s.Close()
		}
	}
	for _, o := range []Options{{Prefix: "a_1"}, {Schema: "My 'Schema'"}, {MaxLen: -1, TrimInterval: -1}} {
		s, err := New(pool, &o)
		if err != nil {
			t.Errorf("New(%+v): %v", o, err)
			continue
		}
		s.Close()
	}
}

func TestClosed(t *testing.T) {
	url := newDB(t)
	s := newStreams(t, url, nil)
	tp := topic(t, s, "room")
	r, _ := logtest.Follow(t, tp)
	r.Wait("the head", 10*time.Second, logtest.Started)
	tx, err := s.pool.Begin(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(context.Background())
	s.Close()
	if _, err := tp.Append(t.Context(), logtest.Wire(1)); !errors.Is(err, ErrClosed) {
		t.Errorf("Append after Close: %v, want ErrClosed", err)
	}
	if _, _, err := tp.ReadAfter(t.Context(), ssebroker.Position{}, 1); !errors.Is(err, ErrClosed) {
		t.Errorf("ReadAfter after Close: %v, want ErrClosed", err)
	}
	if _, err := tp.AppendTx(t.Context(), tx, logtest.Wire(1)); !errors.Is(err, ErrClosed) {
		t.Errorf("AppendTx after Close: %v, want ErrClosed", err)
	}
	if _, err := s.Trim(t.Context()); !errors.Is(err, ErrClosed) {
		t.Errorf("Trim after Close: %v, want ErrClosed", err)
	}
	if err := s.NewEpochs(t.Context()); !errors.Is(err, ErrClosed) {
		t.Errorf("NewEpochs after Close: %v, want ErrClosed", err)
	}
	called := false
	stop := tp.Follow(func(ssebroker.Position, []byte) { called = true })
	stop()
	if called {
		t.Error("Follow after Close called deliver")
	}
	s.Close() // again: no effect
}
