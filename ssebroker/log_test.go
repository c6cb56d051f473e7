package ssebroker

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lightsse/sse"
	"github.com/lightsse/sse/internal/leakcheck"
	"github.com/lightsse/sse/internal/ssetest"
)

// ---- A Broker with a Log ---------------------------------------------------

// A Broker with a Log replays from the Log what is older than its own
// history, then goes on live; what the Log has lost is announced.
func TestBrokerLogServesOlderEvents(t *testing.T) {
	leakcheck.Check(t)
	log := newMemLog()
	b := newBroker(t, &Options{HistoryLen: 4, Log: log})
	srv := brokerServer(t, b)
	publishN(t, b, "", 20)
	epoch := log.head().Epoch
	cl := connect(t, srv.Client(), srv.URL, epoch+"-3")
	for i := 3; i < 20; i++ {
		cl.expect(t, strconv.Itoa(i))
	}
	_ = b.Publish(sse.Event{Data: "live"})
	if ev := cl.next(t); ev.Data != "live" || ev.LastEventID != epoch+"-21" {
		t.Fatalf("after the replay: %+v, want the live event with id %s-21", ev, epoch)
	}
	// Events the Log has dropped are announced, not skipped silently.
	log.trim(6)
	cl = connect(t, srv.Client(), srv.URL, epoch+"-4")
	if ev := cl.next(t); ev.Type != ResetEvent || ev.LastEventID != epoch+"-21" || ev.Data != epoch+"-4" {
		t.Fatalf("events gone from the Log: first event %+v, want a reset", ev)
	}
	if s := b.Stats(); s.Resumed.Log != 1 || s.Resets.TooOld != 1 {
		t.Errorf("stats: resumed %+v, resets %+v; want 1 resume from the Log, 1 reset too old", s.Resumed, s.Resets)
	}
}

// Two Brokers on one Log serve one stream: events published on either reach
// the clients of both, in one order, with the same ids, and a client resumes
// on the other.
func TestBrokersShareALog(t *testing.T) {
	leakcheck.Check(t)
	log := newMemLog()
	a, b := newBroker(t, &Options{Log: log}), newBroker(t, &Options{Log: log})
	srvA, srvB := brokerServer(t, a), brokerServer(t, b)
	onA, onB := connect(t, srvA.Client(), srvA.URL, ""), connect(t, srvB.Client(), srvB.URL, "")
	// connect returns once each stream knows where it starts.
	var wg sync.WaitGroup
	for _, br := range []*Broker{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 100 {
				if err := br.Publish(sse.Event{Data: fmt.Sprint(i)}); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	var seen [2][]ssetest.Event
	for i, cl := range []*client{onA, onB} {
		for range 200 {
			seen[i] = append(seen[i], cl.next(t))
		}
	}
	if !slices.Equal(seen[0], seen[1]) {
		t.Fatalf("the two Brokers' clients saw different streams")
	}
	for i, ev := range seen[0] {
		if want := fmt.Sprintf("%s-%d", log.head().Epoch, i+1); ev.LastEventID != want {
			t.Fatalf("event %d has id %q, want %q", i, ev.LastEventID, want)
		}
	}
	if n := len(b.hist.Load().ids()); n != 0 {
		t.Errorf("%d events without a publisher ID in the publisher ids' index", n)
	}
	// A client of A that saw half resumes on B.
	again := connect(t, srvB.Client(), srvB.URL, seen[0][99].LastEventID)
	for _, want := range seen[0][100:] {
		if ev := again.next(t); ev != want {
			t.Fatalf("resumed on the other Broker: %+v, want %+v", ev, want)
		}
	}
}

// A gap in the Log's feed is filled from the Log before later events go out.
func TestBrokerLogFillsGaps(t *testing.T) {
	leakcheck.Check(t)
	_, b, cl := withGap(t, 3)
	_ = b.Publish(sse.Event{Data: "next"})
	cl.expect(t, "missed 0", "missed 1", "missed 2", "next")
	if s := b.Stats().Log; s.GapsFilled != 1 || s.EventsFilled != 3 {
		t.Errorf("log stats %+v, want one gap of 3 events filled", s)
	}
}

// When the Log loses its history (a new epoch), open streams get a reset and
// go on in the new epoch; ids of the old one resume nothing.
func TestBrokerLogNewEpochResets(t *testing.T) {
	leakcheck.Check(t)
	log := newMemLog()
	b := newBroker(t, &Options{Log: log})
	srv := brokerServer(t, b)
	cl := connect(t, srv.Client(), srv.URL, "")
	publishN(t, b, "old ", 2)
	cl.expect(t, "old 0", "old 1")
	old := log.head()
	log.lose()
	_ = b.Publish(sse.Event{Data: "new"})
	ev := cl.next(t)
	if ev.Type != ResetEvent || ev.Data != old.String() {
		t.Fatalf("after the Log lost its history: %+v, want a reset from %v", ev, old)
	}
	cl.expect(t, "new")
	if got := cl.reader.LastEventID; got != log.head().String() {
		t.Errorf("last event id %q, want %q", got, log.head())
	}
	if ev := connect(t, srv.Client(), srv.URL, old.String()).next(t); ev.Type != ResetEvent {
		t.Errorf("an id of the lost epoch: %+v, want a reset", ev)
	}
}

// A Publish whose Log.Append fails returns the error; nothing is delivered.
func TestBrokerLogAppendErrorFailsPublish(t *testing.T) {
	leakcheck.Check(t)
	log := newMemLog()
	errDown := errors.New("log down")
	var down atomic.Bool
	down.Store(true)
	log.onAppend = func(context.Context) error {
		if down.Load() {
			return errDown
		}
		return nil
	}
	b := newBroker(t, &Options{Log: log})
	srv := brokerServer(t, b)
	cl := connect(t, srv.Client(), srv.URL, "")
	if err := b.Publish(sse.Event{Data: "lost"}); !errors.Is(err, errDown) {
		t.Fatalf("Publish: %v, want the Log's error", err)
	}
	down.Store(false)
	_ = b.Publish(sse.Event{Data: "kept"})
	if ev := cl.next(t); ev.Data != "kept" || ev.LastEventID != log.head().Epoch+"-1" {
		t.Errorf("got %+v, want the next event, at offset 1", ev)
	}
	if s := b.Stats(); s.PublishErrors != 1 || s.Published != 1 || s.Log.Errors != 1 {
		t.Errorf("stats: %d published, %d errors, log errors %d; want 1, 1, 1", s.Published, s.PublishErrors, s.Log.Errors)
	}
}

// A Log that blocks stalls nothing else: Close returns and new streams open
// while an Append is stuck, and a stream stuck in ReadAfter ends when its
// client leaves, and at Close.
func TestBrokerBlockingLogStallsNothing(t *testing.T) {
	leakcheck.Check(t)
	log := newMemLog()
	b := newBroker(t, &Options{HistoryLen: 2, Log: log})
	srv := brokerServer(t, b)
	publishN(t, b, "", 5)
	stuck := make(chan struct{}, 10)
	block := func(ctx context.Context) error {
		stuck <- struct{}{}
		<-ctx.Done()
		return ctx.Err()
	}

	// A stream whose replay waits on the Log ends when its client leaves.
	log.onRead = block
	cl := connect(t, srv.Client(), srv.URL, log.head().Epoch+"-1")
	<-stuck
	cl.cancel()
	waitFor(t, "the stream stuck in ReadAfter to end with its client", func() bool { return b.Subscribers() == 0 })

	// Another waits there, and an Append blocks too.
	cl = connect(t, srv.Client(), srv.URL, log.head().Epoch+"-1")
	<-stuck
	log.onAppend = block
	published := make(chan error, 1)
	go func() { published <- b.Publish(sse.Event{Data: "stuck"}) }()
	<-stuck
	// A new client gets its headers (connect returns) meanwhile.
	fresh := connect(t, srv.Client(), srv.URL, "")
	waitFor(t, "the new stream", func() bool { return b.Subscribers() == 2 })
	_ = b.Close() // returns with Append still blocked: it does not wait
	if err := <-published; !errors.Is(err, sse.ErrClosed) {
		t.Errorf("the Publish stuck in Append, at Close: %v, want sse.ErrClosed", err)
	}
	cl.ended(t)
	fresh.ended(t)
	waitFor(t, "every stream to end", func() bool { return b.Subscribers() == 0 })
}

// What a Log answers is checked: events past its own head, a wire form that
// is not one event, or a head with no epoch are its errors, and the client
// gets a reset, never a silent gap or a forged event.
func TestBrokerDistrustsLog(t *testing.T) {
	leakcheck.Check(t)
	event := []byte("data: forged\n\n")
	for _, tt := range []struct {
		name string
		read func(after Position) ([][]byte, Position)
	}{
		{"past the head", func(after Position) ([][]byte, Position) {
			return [][]byte{event, event}, Position{after.Epoch, after.Offset + 1}
		}},
		{"another epoch", func(after Position) ([][]byte, Position) {
			return [][]byte{event}, Position{"0000000000000000", after.Offset + 1}
		}},
		{"an empty event", func(after Position) ([][]byte, Position) {
			return [][]byte{{}}, Position{after.Epoch, after.Offset + 1}
		}},
		{"two events in one", func(after Position) ([][]byte, Position) {
			return [][]byte{[]byte("data: a\n\ndata: b\n\n")}, Position{after.Epoch, after.Offset + 1}
		}},
		{"a head with no epoch", func(after Position) ([][]byte, Position) {
			return nil, Position{"", 100}
		}},
		{"a head behind what the ring, which it fed, has dropped", func(after Position) ([][]byte, Position) {
			return nil, after
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			log := newMemLog()
			b := newBroker(t, &Options{HistoryLen: 2, Log: log})
			srv := brokerServer(t, b)
			publishN(t, b, "", 5)
			from := log.head().Epoch + "-1"
			log.read = func(after Position, _ int) ([][]byte, Position, error) {
				w, h := tt.read(after)
				return w, h, nil
			}
			cl := connect(t, srv.Client(), srv.URL, from)
			if ev := cl.next(t); ev.Type != ResetEvent || ev.Data != from {
				t.Fatalf("first event %+v, want a reset from %s", ev, from)
			}
			_ = b.Publish(sse.Event{Data: "live"})
			cl.expect(t, "live")
			if s := b.Stats(); s.Log.Errors != 1 || s.Resets.LogFailed != 1 {
				t.Errorf("stats: log errors %d, log-failed resets %d; want 1 and 1", s.Log.Errors, s.Resets.LogFailed)
			}
		})
	}
}

// A Log that fails while the feed fills a gap costs this delivery, not a
// reset: the next delivery finds the gap again and fills it.
func TestBrokerLogFillFailureIsRetried(t *testing.T) {
	leakcheck.Check(t)
	log, b, cl := withGap(t, 2)
	var failed atomic.Bool
	log.onRead = func(context.Context) error {
		if failed.CompareAndSwap(false, true) {
			return errors.New("log down for a moment")
		}
		return nil
	}
	_ = b.Publish(sse.Event{Data: "after"})
	waitFor(t, "the failed fill", failed.Load)
	_ = b.Publish(sse.Event{Data: "later"})
	cl.expect(t, "missed 0", "missed 1", "after", "later")
	if s := b.Stats(); s.Log.NewHistories != 0 || s.Resets.NewHistory != 0 || s.Log.Errors != 1 || s.Log.GapsFilled != 1 {
		t.Errorf("stats: log %+v, resets %+v; want one error, one gap filled, no new history", s.Log, s.Resets)
	}
}

// Close while the feed is stuck filling a gap ends the streams with their
// retry, and no false reset; and the last stream's end does not wait for
// the stuck fill.
func TestBrokerCloseDuringFill(t *testing.T) {
	leakcheck.Check(t)
	for _, how := range []string{"Close", "last stream ends"} {
		t.Run(how, func(t *testing.T) {
			log, b, cl := withGap(t, 2)
			stuck := make(chan struct{}, 1)
			log.onRead = func(ctx context.Context) error {
				stuck <- struct{}{}
				<-ctx.Done()
				return ctx.Err()
			}
			_ = b.Publish(sse.Event{Data: "after"})
			<-stuck // the feed is filling the gap, and waits
			if how == "Close" {
				_ = b.Close()
				if got := cl.ended(t); len(got) != 0 || cl.reader.Retry <= 0 {
					t.Errorf("after Close during a fill: events %+v, retry %v; want no event (no reset), a retry", got, cl.reader.Retry)
				}
			} else {
				cl.cancel()
			}
			waitFor(t, "the stream to end", func() bool { return b.Subscribers() == 0 })
			waitFor(t, "the feed to stop", func() bool { return log.follows.Load() == 0 })
			if s := b.Stats(); s.Log.NewHistories != 0 || s.Resets.NewHistory != 0 {
				t.Errorf("stats: log %+v, resets %+v; want no new history", s.Log, s.Resets)
			}
		})
	}
}

// Over HTTP/2 the refusal of a GET with a body leaves the connection, which
// the browser's other streams share, open.
func TestBrokerRefusedBodyKeepsHTTP2Connection(t *testing.T) {
	leakcheck.Check(t)
	b := newBroker(t, nil)
	srv := httptest.NewUnstartedServer(b)
	var conns atomic.Int32
	srv.Config.ConnState = func(_ net.Conn, state http.ConnState) {
		if state == http.StateNew {
			conns.Add(1)
		}
	}
	srv.EnableHTTP2 = true
	srv.StartTLS()
	t.Cleanup(func() { b.Close(); srv.Close() })
	c := srv.Client()
	req, _ := http.NewRequest("GET", srv.URL, strings.NewReader("body"))
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 400 || resp.ProtoMajor != 2 {
		t.Fatalf("GET with a body over %s: %d, want 400 over HTTP/2", resp.Proto, resp.StatusCode)
	}
	cl := connect(t, c, srv.URL, "")
	waitFor(t, "the stream", func() bool { return b.Subscribers() == 1 })
	_ = b.Publish(sse.Event{Data: "x"})
	cl.expect(t, "x")
	if n := conns.Load(); n != 1 {
		t.Errorf("%d connections for two requests: the refusal ended the first", n)
	}
}

// ---- The feed is a hint: what a Log's Follow hands over is checked --------

// handFed is a memLog whose Follow delivers only the Log's head, once, and
// then whatever the test hands it with feed: a subscription that a peer can
// publish to.
type handFed struct {
	*memLog
	deliver chan func(Position, []byte)
}

func newHandFed() *handFed {
	return &handFed{memLog: newMemLog(), deliver: make(chan func(Position, []byte), 1)}
}

func (h *handFed) Follow(deliver func(Position, []byte)) (stop func()) {
	deliver(h.head(), nil)
	h.deliver <- deliver
	return func() {}
}

// fedBroker returns a Broker on a handFed Log holding n events, a client
// placed in the Broker's history after them (so that it reads the ring, not
// the Log), and the Follow's deliver.
func fedBroker(t *testing.T, n int) (*handFed, *Broker, *client, func(Position, []byte)) {
	t.Helper()
	log := newHandFed()
	for i := range n {
		if _, err := log.Append(context.Background(), []byte(fmt.Sprintf("data: %d\n\n", i+1))); err != nil {
			t.Fatal(err)
		}
	}
	b := newBroker(t, &Options{Log: log})
	srv := brokerServer(t, b)
	cl := connect(t, srv.Client(), srv.URL, log.head().String())
	deliver := <-log.deliver
	waitFor(t, "the client's stream", func() bool { return b.Subscribers() == 1 })
	return log, b, cl, deliver
}

// appendAndFeed appends data to log and hands it to deliver, as the feed
// does; it returns the event's position.
func appendAndFeed(t *testing.T, log *handFed, deliver func(Position, []byte), data string) Position {
	t.Helper()
	w := []byte("data: " + data + "\n\n")
	pos, err := log.Append(context.Background(), w)
	if err != nil {
		t.Fatal(err)
	}
	deliver(pos, w)
	return pos
}

// An event the feed says is past the Log's head (a peer that can PUBLISH
// but not write the log, a misnumbered message) is not delivered, moves
// nothing, and the events that follow arrive under their own ids.
func TestBrokerFeedPastTheHeadIsDropped(t *testing.T) {
	leakcheck.Check(t)
	log, b, cl, deliver := fedBroker(t, 3)
	deliver(Position{log.head().Epoch, 1000000}, []byte("data: forged\n\n"))
	deliver(Position{log.head().Epoch, 1000001}, nil) // a head past the Log's, too
	pos := appendAndFeed(t, log, deliver, "4")
	if ev := cl.next(t); ev.Data != "4" || ev.Type == ResetEvent || ev.LastEventID != pos.String() {
		t.Fatalf("after a forged event: %+v, want event 4 at %v", ev, pos)
	}
	if s := b.Stats(); s.Log.Errors == 0 || s.Resets.NewHistory != 0 {
		t.Errorf("stats %+v: want Log errors counted and no new history", s.Log)
	}
}

// An event of an epoch the Log does not have starts no new history.
func TestBrokerFeedOfAnotherEpochIsDropped(t *testing.T) {
	leakcheck.Check(t)
	log, b, cl, deliver := fedBroker(t, 2)
	deliver(Position{"0123456789abcdef", 1}, []byte("data: forged\n\n"))
	pos := appendAndFeed(t, log, deliver, "3")
	if ev := cl.next(t); ev.Data != "3" || ev.LastEventID != pos.String() {
		t.Fatalf("after an event of another epoch: %+v, want event 3 at %v", ev, pos)
	}
	if s := b.Stats(); s.Log.NewHistories != 0 {
		t.Errorf("new histories %d, want 0", s.Log.NewHistories)
	}
}

// Two different events never go out under one id: a second event at an
// offset the Broker has sent (a failed-over master's, say) makes a new
// history, with a ResetEvent, and then goes out.
func TestBrokerFeedDifferentEventAtAnOffsetResets(t *testing.T) {
	leakcheck.Check(t)
	log, _, cl, deliver := fedBroker(t, 2)
	pos := appendAndFeed(t, log, deliver, "3")
	cl.expect(t, "3")
	deliver(pos, []byte("data: another 3\n\n"))
	if ev := cl.next(t); ev.Type != ResetEvent || ev.Data != pos.String() {
		t.Fatalf("after another event at %v: %+v, want a reset after it", pos, ev)
	}
	if ev := cl.next(t); ev.Data != "another 3" || ev.LastEventID != pos.String() {
		t.Fatalf("after the reset: %+v, want the Log's new event at %v", ev, pos)
	}
	deliver(pos, []byte("data: another 3\n\n")) // a plain repeat: nothing
	next := appendAndFeed(t, log, deliver, "4")
	if ev := cl.next(t); ev.Data != "4" || ev.LastEventID != next.String() {
		t.Fatalf("then %+v, want event 4", ev)
	}
}

// A damaged event the Log holds (cut short, its line ends rewritten) is a
// ResetEvent for every stream, and the events after it flow: it does not
// stall the Broker for good.
func TestBrokerDamagedEventInTheLogResets(t *testing.T) {
	leakcheck.Check(t)
	for _, damaged := range []string{"data: cut short\n", "data: crlf\r\n\r\n", ""} {
		t.Run(fmt.Sprintf("%q", damaged), func(t *testing.T) {
			log, _, cl, deliver := fedBroker(t, 1)
			bad, err := log.Append(context.Background(), []byte(damaged))
			if err != nil {
				t.Fatal(err)
			}
			deliver(bad, []byte(damaged))
			next := appendAndFeed(t, log, deliver, "3")
			ev := cl.next(t)
			if ev.Type != ResetEvent {
				t.Fatalf("after a damaged event: %+v, want a reset", ev)
			}
			if ev := cl.next(t); ev.Data != "3" || ev.LastEventID != next.String() {
				t.Fatalf("after the reset: %+v, want event 3 at %v", ev, next)
			}
		})
	}
}

// A Log that answers, but slower than a heartbeat, still gets to answer: a
// stream that replays from it gets its events.
func TestBrokerSlowLogStillReplays(t *testing.T) {
	leakcheck.Check(t)
	log := newMemLog()
	b := newBroker(t, &Options{HistoryLen: 2, Log: log, Stream: sse.Options{Heartbeat: time.Second}})
	srv := brokerServer(t, b)
	publishN(t, b, "", 5)
	log.onRead = func(ctx context.Context) error {
		select {
		case <-time.After(1500 * time.Millisecond):
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	cl := connect(t, srv.Client(), srv.URL, log.head().Epoch+"-1")
	cl.expect(t, "1", "2", "3", "4")
}

// A stream that resumes from the Log, where the Log is ahead of what its feed
// has delivered, reads the Log to its head, then joins the ring and gets the
// rest as the feed delivers it: each event once, in order.
func TestBrokerReplayFromLogAheadOfTheFeed(t *testing.T) {
	leakcheck.Check(t)
	log := newHandFed()
	for i := range 5 {
		if _, err := log.Append(context.Background(), []byte(fmt.Sprintf("data: %d\n\n", i+1))); err != nil {
			t.Fatal(err)
		}
	}
	b := newBroker(t, &Options{HistoryLen: 8, Log: log})
	srv := brokerServer(t, b)
	first := connect(t, srv.Client(), srv.URL, "") // starts the feed: the ring is at 5
	deliver := <-log.deliver
	waitFor(t, "the first stream", func() bool { return b.Subscribers() == 1 })
	for i := 6; i <= 7; i++ { // in the Log, not yet delivered
		if _, err := log.Append(context.Background(), []byte(fmt.Sprintf("data: %d\n\n", i))); err != nil {
			t.Fatal(err)
		}
	}
	cl := connect(t, srv.Client(), srv.URL, log.head().Epoch+"-1")
	cl.expect(t, "2", "3", "4", "5", "6", "7")
	waitFor(t, "the resumed stream", func() bool { return b.Subscribers() == 2 })
	eight := appendAndFeed(t, log, deliver, "8") // the feed fills 6 and 7 first
	if ev := cl.next(t); ev.Data != "8" || ev.LastEventID != eight.String() {
		t.Fatalf("after the Log's head: %+v, want event 8 at %v", ev, eight)
	}
	first.expect(t, "6", "7", "8")
	if s := b.Stats(); s.Resumed.Log != 1 || s.Log.GapsFilled != 1 {
		t.Errorf("resumed %+v, gaps filled %d; want 1 from the Log, 1 gap", s.Resumed, s.Log.GapsFilled)
	}
}

// PublishContext bounds the wait for a Log's Append with its context; the
// error says so, and the Broker counts no Log error for it.
func TestBrokerPublishContextBoundsTheLog(t *testing.T) {
	leakcheck.Check(t)
	log := newMemLog()
	log.onAppend = func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }
	b := newBroker(t, &Options{Log: log})
	defer b.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := b.PublishContext(ctx, sse.Event{Data: "x"}); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("PublishContext with a Log that hangs: %v, want context.DeadlineExceeded", err)
	}
	if s := b.Stats(); s.PublishErrors != 1 || s.Log.Errors != 0 {
		t.Errorf("publish errors %d, Log errors %d; want 1 and 0", s.PublishErrors, s.Log.Errors)
	}
}

// lateLog is a memLog whose Follow starts following only once release is
// closed: a Log that cannot be reached when the first stream opens.
type lateLog struct {
	*memLog
	release chan struct{}
}

func (l *lateLog) Follow(deliver func(Position, []byte)) (stop func()) {
	var mu sync.Mutex
	var inner func()
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		select {
		case <-l.release:
		case <-quit:
			return
		}
		mu.Lock()
		inner = l.memLog.Follow(deliver)
		mu.Unlock()
	}()
	return func() {
		close(quit)
		<-done
		mu.Lock()
		defer mu.Unlock()
		if inner != nil {
			inner()
		}
	}
}

// A client whose stream opened (its heartbeat went out) while the Log could
// not be reached may have missed events published meanwhile elsewhere: it
// gets a ResetEvent when the Log comes back, then live events, never a
// silent gap.
func TestBrokerStreamOpenedWhileLogDownResets(t *testing.T) {
	leakcheck.Check(t)
	log := &lateLog{memLog: newMemLog(), release: make(chan struct{})}
	b := newBroker(t, &Options{Log: log, Stream: sse.Options{Heartbeat: time.Second}})
	srv := brokerServer(t, b)
	cl := connect(t, srv.Client(), srv.URL, "") // returns once the heartbeat sent the headers
	if _, err := log.Append(context.Background(), []byte("data: elsewhere\n\n")); err != nil {
		t.Fatal(err)
	}
	close(log.release)
	waitFor(t, "the stream to be placed", func() bool { return b.Subscribers() == 1 })
	if ev := cl.next(t); ev.Type != ResetEvent || ev.LastEventID != log.head().String() {
		t.Fatalf("first event %+v, want a reset at the Log's head %v", ev, log.head())
	}
	_ = b.Publish(sse.Event{Data: "live"})
	cl.expect(t, "live")
}

// After a gap the Log no longer holds, the history goes on from the Log's
// head, not from where the feed says: an event the feed hands over at an
// offset the Log holds another event at is not sent under that id.
func TestBrokerFeedAfterATrimmedGap(t *testing.T) {
	leakcheck.Check(t)
	log, b, cl, deliver := fedBroker(t, 2)
	log.mu.Lock()
	log.keep = 3
	log.mu.Unlock()
	for range 8 { // offsets 3 to 10, appended elsewhere: the feed missed them
		if _, err := log.Append(context.Background(), []byte("data: real\n\n")); err != nil {
			t.Fatal(err)
		}
	}
	deliver(Position{log.head().Epoch, 9}, []byte("data: forged\n\n")) // the Log holds "real" at 9
	if ev := cl.next(t); ev.Type != ResetEvent || ev.LastEventID != log.head().String() {
		t.Fatalf("after a gap the Log lost: %+v, want a reset at the Log's head %v", ev, log.head())
	}
	eleven := appendAndFeed(t, log, deliver, "11")
	if ev := cl.next(t); ev.Data != "11" || ev.LastEventID != eleven.String() {
		t.Fatalf("then %+v, want event 11 (stats %+v)", ev, b.Stats().Log)
	}
}

// An event of an epoch the Log had, handed over after the Log started
// another, is not delivered: the feed's head brings the new history.
func TestBrokerFeedOfALostEpochIsDropped(t *testing.T) {
	leakcheck.Check(t)
	log, _, cl, deliver := fedBroker(t, 2)
	old := log.head().Epoch
	log.lose()
	for range 8 { // the new epoch's, which the feed has not handed over yet
		if _, err := log.Append(context.Background(), []byte("data: new\n\n")); err != nil {
			t.Fatal(err)
		}
	}
	deliver(Position{old, 7}, []byte("data: stale\n\n")) // past a gap: read from the Log
	deliver(log.head(), nil)
	if ev := cl.next(t); ev.Type != ResetEvent || ev.LastEventID != log.head().String() {
		t.Fatalf("after the Log's new epoch: %+v, want a reset at %v", ev, log.head())
	}
	nine := appendAndFeed(t, log, deliver, "new 9")
	if ev := cl.next(t); ev.Data != "new 9" || ev.LastEventID != nine.String() {
		t.Fatalf("then %+v, want the new epoch's next event", ev)
	}
}

// An id that a replaced history gave to another event resumes nothing: a
// client that saw the old event at an offset gets a reset, not the events
// after the Log's new one.
func TestBrokerIDOfAReplacedEventResets(t *testing.T) {
	leakcheck.Check(t)
	log, b, cl, deliver := fedBroker(t, 2)
	pos := appendAndFeed(t, log, deliver, "3")
	cl.expect(t, "3")
	log.mu.Lock()
	log.events[2] = []byte("data: another 3\n\n") // the Log's master lost "3"
	log.mu.Unlock()
	deliver(pos, []byte("data: another 3\n\n"))
	if ev := cl.next(t); ev.Type != ResetEvent {
		t.Fatalf("want a reset, got %+v", ev)
	}
	cl.expect(t, "another 3")
	srv := brokerServer(t, b)
	saw := connect(t, srv.Client(), srv.URL, pos.String()) // it had the old "3"
	if ev := saw.next(t); ev.Type != ResetEvent || ev.Data != pos.String() {
		t.Fatalf("a client that saw the old event at %v: %+v, want a reset", pos, ev)
	}
}

// stopGate is a memLog whose Follow's stop, once it has stopped, waits for
// proceed: a Broker that lost its last stream, still stopping its feed.
type stopGate struct {
	*memLog
	stopping, proceed chan struct{}
	once              sync.Once
}

func (g *stopGate) Follow(deliver func(Position, []byte)) (stop func()) {
	inner := g.memLog.Follow(deliver)
	return func() {
		inner()
		g.once.Do(func() {
			close(g.stopping)
			<-g.proceed
		})
	}
}

// A stream counted while the Broker's last one stops its feed, in the
// history that goes with the feed, gets a reset in the next: an event
// published after it was counted is not missed in silence.
func TestBrokerStreamCountedAsTheFeedStops(t *testing.T) {
	leakcheck.Check(t)
	log := &stopGate{memLog: newMemLog(), stopping: make(chan struct{}), proceed: make(chan struct{})}
	b := newBroker(t, &Options{Log: log})
	srv := brokerServer(t, b)
	a := connect(t, srv.Client(), srv.URL, "")
	waitFor(t, "the first stream", func() bool { return b.Subscribers() == 1 })
	a.cancel()
	<-log.stopping
	got := make(chan ssetest.Event, 1)
	go func() {
		defer close(got)
		resp, err := srv.Client().Get(srv.URL)
		if err != nil {
			return
		}
		defer resp.Body.Close()
		if ev, err := ssetest.NewReader(resp.Body).Next(); err == nil {
			got <- ev
		}
	}()
	waitFor(t, "the second stream to count", func() bool { return b.Subscribers() == 1 })
	_ = b.Publish(sse.Event{Data: "after it was counted"})
	close(log.proceed)
	// Without the reset, the stream's first event is one published once the
	// new feed runs: publish one then, and read what comes first.
	published := false
	for deadline := time.Now().Add(patience); time.Now().Before(deadline); {
		select {
		case ev := <-got:
			if ev.Type != ResetEvent && ev.Data != "after it was counted" {
				t.Fatalf("first event %+v: the event published after the stream counted was missed", ev)
			}
			return
		case <-time.After(10 * time.Millisecond):
		}
		if !published && log.follows.Load() == 1 && b.hist.Load() != nil {
			_ = b.Publish(sse.Event{Data: "later"})
			published = true
		}
	}
	t.Fatal("no event")
}
