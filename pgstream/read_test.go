package pgstream

import (
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lightsse/sse/internal/logtest"
	"github.com/lightsse/sse/ssebroker"
)

// ReadAfter returns readRows events at most, whatever its limit.
func TestReadAfterStopsAtReadRows(t *testing.T) {
	url := newDB(t)
	tp := topic(t, newStreams(t, url, nil), "room")
	epoch := logtest.AppendN(t, tp, 1, 9)[0].Epoch
	many := make([]*call, readRows+10)
	for i := range many {
		many[i] = &call{topic: tp, wire: logtest.Wire(10 + i), done: make(chan struct{}), deadline: time.Now().Add(time.Minute)}
	}
	tp.s.roundTrip(many)
	wires, head, err := tp.ReadAfter(t.Context(), ssebroker.Position{Epoch: epoch, Offset: 2}, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	if len(wires) != readRows || logtest.Number(t, wires[0]) != 3 || head.Offset != 9+readRows+10 {
		t.Errorf("ReadAfter after 2: %d events from %d, head %v; want %d from 3, head %d", len(wires), logtest.Number(t, wires[0]), head, readRows, 9+readRows+10)
	}
}

// A read of a topic nobody has appended to gives it a row, with a new
// epoch, which every Streams then shares, and the first Append keeps.
func TestReadMakesRow(t *testing.T) {
	url := newDB(t)
	a := topic(t, newStreams(t, url, nil), "fresh")
	h, err := a.Head(t.Context())
	if err != nil || !logtest.ValidEpoch(h.Epoch) || h.Offset != 0 {
		t.Fatalf("Head of a new topic: %v, %v; want a new epoch, offset 0", h, err)
	}
	b := topic(t, newStreams(t, url, nil), "fresh")
	wires, h2, err := b.ReadAfter(t.Context(), ssebroker.Position{Epoch: "0123456789abcdef", Offset: 3}, 100)
	if err != nil || len(wires) != 0 || h2 != h {
		t.Errorf("ReadAfter by another Streams: %d events, head %v, %v; want none, head %v", len(wires), h2, err, h)
	}
	if p := logtest.AppendN(t, b, 1, 1)[0]; p != (ssebroker.Position{Epoch: h.Epoch, Offset: 1}) {
		t.Errorf("first Append at %v, want %s-1", p, h.Epoch)
	}
}

// A follower far behind catches up in reads of readTopicBytes or
// readPerTopic events at most, with no gap.
func TestFollowCatchesUpInParts(t *testing.T) {
	url := newDB(t)
	s, refuse := refusingListener(t, url, &Options{PollInterval: time.Hour})
	r, _ := logtest.Follow(t, topic(t, s, "room"))
	r.Wait("the head", 10*time.Second, logtest.Started)
	refuse.Store(true)
	polls := s.subs.polls.Load()
	killListener(t, s)
	for s.subs.polls.Load() == polls { // the poll when it goes down
		time.Sleep(time.Millisecond)
	}
	// Behind by more than readPerTopic small events, then by more than
	// readTopicBytes of large ones.
	pub := topic(t, newStreams(t, url, nil), "room")
	logtest.AppendN(t, pub, 1, readPerTopic+10)
	big := strings.Repeat("z", 100<<10)
	for i := range 5 {
		if _, err := pub.Append(t.Context(), []byte("data: "+strconv.Itoa(1000+i)+"\ndata: "+big+"\n\n")); err != nil {
			t.Fatal(err)
		}
	}
	logtest.AppendN(t, pub, 2000, 2000)
	refuse.Store(false)
	r.Wait("every event", 20*time.Second, func(s *logtest.State) bool { return s.Last == readPerTopic+10+5+1 })
	if s := r.State(); s.Gaps > 0 || len(s.Errs) > 0 || len(s.Got) != readPerTopic+10+5+1 {
		t.Errorf("%d events, %d gaps, errors %v; want %d, no gap", len(s.Got), s.Gaps, s.Errs, readPerTopic+10+5+1)
	}
}

// One read of a follower takes readPerTopic events of a topic at most, and
// stops at the first that reaches readTopicBytes.
func TestReadManyBounds(t *testing.T) {
	url := newDB(t)
	s := newStreams(t, url, nil)
	small, large := topic(t, s, "small"), topic(t, s, "large")
	e1 := logtest.AppendN(t, small, 1, readPerTopic+5)[0].Epoch
	var e2 string
	for i := range 5 { // 100 KiB each
		p, err := large.Append(t.Context(), []byte("data: "+strconv.Itoa(i)+"\ndata: "+strings.Repeat("z", 100<<10)+"\n\n"))
		if err != nil {
			t.Fatal(err)
		}
		e2 = p.Epoch
	}
	res, err := s.readMany(t.Context(), []cursor{{"small", e1, 2}, {"large", e2, 0}, {"none", "", 0}}, readPerTopic)
	if err != nil {
		t.Fatal(err)
	}
	if r := res[0]; !r.found || len(r.wires) != readPerTopic || logtest.Number(t, r.wires[0]) != 3 || r.head.offset != readPerTopic+5 {
		t.Errorf("small: %d events from %d, head %v; want %d from 3", len(r.wires), logtest.Number(t, r.wires[0]), r.head, readPerTopic)
	}
	if r := res[1]; !r.found || len(r.wires) != 3 || r.head.offset != 5 {
		t.Errorf("large: %d events of 100 KiB, head %v; want 3 (the third reaches 256 KiB), head 5", len(r.wires), r.head)
	}
	if res[2].found {
		t.Error("a topic with no row found")
	}
}

// A read visits only the rows it returns, whatever plan PostgreSQL picks:
// here with statistics older than the table's growth (a table never
// analyzed, grown by 100,000 events), and custom plans, which then sorted
// every event after the cursor.
func TestReadsVisitFewRows(t *testing.T) {
	url := newDB(t)
	s := newStreams(t, url, &Options{TrimInterval: -1})
	epoch := logtest.AppendN(t, topic(t, s, "room"), 1, 1)[0].Epoch
	conn, err := s.pool.Acquire(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	for _, sql := range []string{
		"ALTER TABLE sse_events SET (autovacuum_enabled = false)",
		`INSERT INTO sse_events (topic_id, "offset", wire)
			SELECT 1, g, convert_to('data: ' || g || E'\n\n', 'UTF8') FROM generate_series(2, 100001) g`,
		"UPDATE sse_topics SET head = 100001",
		"SET plan_cache_mode = force_custom_plan",
	} {
		if _, err := conn.Exec(t.Context(), sql); err != nil {
			t.Fatal(err)
		}
	}
	for _, tt := range []struct {
		name string
		sql  string
		args []any
		want int // rows returned, and the most a node may visit (plus one)
	}{
		{"ReadAfter", s.readSQL(), []any{"room", epoch, int64(10), 1 << 30, readRows}, readRows},
		{"a follower's read", s.readManySQL(), []any{[]string{"room"}, []string{epoch}, []int64{10}, readPerTopic, readTopicBytes}, readPerTopic},
	} {
		var plan string
		if err := conn.QueryRow(t.Context(), "EXPLAIN (ANALYZE, FORMAT JSON) "+tt.sql, tt.args...).Scan(&plan); err != nil {
			t.Fatal(err)
		}
		most := 0
		for _, m := range regexp.MustCompile(`"Actual Rows": (\d+)`).FindAllStringSubmatch(plan, -1) {
			n, _ := strconv.Atoi(m[1])
			most = max(most, n)
		}
		if most > tt.want+1 {
			t.Errorf("%s of %d events 10 events after the start of 100,000: a node of its plan visited %d rows", tt.name, tt.want, most)
		}
	}
}
