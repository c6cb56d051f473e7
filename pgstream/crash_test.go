package pgstream

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/lightsse/sse"
	"github.com/lightsse/sse/internal/logtest"
	"github.com/lightsse/sse/internal/ssetest"
	"github.com/lightsse/sse/pgstream/internal/pgtest"
	"github.com/lightsse/sse/ssebroker"
)

// PostgreSQL stopped hard (as pg_ctl stop -m immediate does) while three
// instances publish, then started again: every Publish that succeeded is in
// the log, and every client has the log's events, in its order, with its
// ids: it resumed, or was told with a reset, never left with a silent gap.
// A Publish that failed may be in the log or not (its commit may have been
// sent); the publishers send those again, as new events.
func TestBrokersPostgresCrash(t *testing.T) {
	cluster := pgtest.Start(t)
	url := newDB(t)
	const timeout = 500 * time.Millisecond
	ins, cs, _ := logtest.ThreeListening(t, withOptions(url, &Options{Timeout: timeout, PollInterval: 100 * time.Millisecond}), nil)
	var mu sync.Mutex
	acked := make(map[string]bool)
	var failed int
	stop := make(chan struct{})
	var pub sync.WaitGroup
	for _, in := range ins {
		pub.Go(func() {
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				data := fmt.Sprint(in.Name, n)
				ctx, cancel := context.WithTimeout(context.Background(), timeout)
				err := in.Broker.PublishContext(ctx, sse.Event{Data: data})
				cancel()
				mu.Lock()
				if err == nil {
					acked[data] = true
				} else {
					failed++
				}
				mu.Unlock()
				if err != nil {
					time.Sleep(20 * time.Millisecond)
				}
			}
		})
	}
	ackedNow := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(acked)
	}
	for ackedNow() < 300 {
		time.Sleep(5 * time.Millisecond)
	}
	cluster.Crash()
	crashedAt := ackedNow()
	time.Sleep(300 * time.Millisecond) // publishing fails meanwhile
	if err := cluster.Restart(); err != nil {
		t.Fatal(err)
	}
	for ackedNow() < crashedAt+300 {
		time.Sleep(5 * time.Millisecond)
	}
	close(stop)
	pub.Wait()

	data, ids := logtest.LogEvents(t, ins[0].Log)
	inLog := make(map[string]bool)
	for _, d := range data {
		inLog[d] = true
	}
	mu.Lock()
	var lost []string
	for d := range acked {
		if !inLog[d] {
			lost = append(lost, d)
		}
	}
	t.Logf("%d events in the log, %d Publish calls succeeded (%d before the crash), %d failed", len(data), len(acked), crashedAt, failed)
	mu.Unlock()
	if len(lost) > 0 {
		t.Errorf("%d acknowledged events are not in the log: %v", len(lost), lost)
	}
	for _, c := range cs {
		c.WaitFor(fmt.Sprint(len(data), " events"), 30*time.Second, func(evs []ssetest.Event) bool {
			return len(evs) > 0 && evs[len(evs)-1].LastEventID == ids[len(ids)-1]
		})
		checkNoSilentGap(t, c, data, ids)
	}
}

// checkNoSilentGap fails the test unless each of the client's events is
// the log's event at its id, and each follows the one before it in the
// log, or a reset.
func checkNoSilentGap(t *testing.T, c *logtest.Client, data, ids []string) {
	t.Helper()
	at := make(map[string]int, len(ids))
	for i, id := range ids {
		at[id] = i
	}
	evs := c.Events()
	prev, resets := -1, 0
	for i, ev := range evs {
		if ev.Type == ssebroker.ResetEvent {
			prev = -2
			resets++
			continue
		}
		j, ok := at[ev.LastEventID]
		switch {
		case !ok:
			t.Errorf("%s: event %d has id %q, which the log has not", c.Name, i, ev.LastEventID)
			return
		case data[j] != ev.Data:
			t.Errorf("%s: event %d, id %s, holds %q; the log, %q", c.Name, i, ev.LastEventID, ev.Data, data[j])
			return
		case prev != -2 && prev != -1 && j != prev+1:
			t.Errorf("%s: event %d, id %s, follows %s: a silent gap or a repeat", c.Name, i, ev.LastEventID, ids[prev])
			return
		}
		prev = j
	}
	if resets > 0 {
		t.Logf("%s: %d reset(s)", c.Name, resets)
	}
	// The client started at the head, before any event.
	if len(evs) == 0 || evs[0].LastEventID != ids[0] {
		t.Errorf("%s: does not begin with the log's first event, %s", c.Name, ids[0])
	}
}
