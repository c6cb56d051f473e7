package redisstream

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lightsse/sse"
	"github.com/lightsse/sse/internal/leakcheck"
	"github.com/lightsse/sse/redisstream/internal/redistest"
	"github.com/redis/go-redis/v9"
)

// TestMain fails the run if any goroutine, of a Streams or of a go-redis
// client, outlives the tests.
func TestMain(m *testing.M) { leakcheck.Main(m) }

// newClient returns a go-redis client of srv, closed when the test ends.
func newClient(t *testing.T, srv *redistest.Server) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{
		Addr:                  srv.Addr(),
		ContextTimeoutEnabled: true,
		DialTimeout:           time.Second,
		ReadTimeout:           2 * time.Second,
		MaxRetries:            -1,
	})
	t.Cleanup(func() { c.Close() })
	return c
}

// newStreams returns a Streams on a client of its own (as another process
// would have), closed when the test ends, before its client.
func newStreams(t *testing.T, srv *redistest.Server, opts *Options) *Streams {
	t.Helper()
	s, err := New(newClient(t, srv), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func topic(t *testing.T, s *Streams, name string) *Topic {
	t.Helper()
	tp, err := s.Topic(name)
	if err != nil {
		t.Fatal(err)
	}
	return tp
}

func appendN(t *testing.T, tp *Topic, from, to int) []sse.Position {
	t.Helper()
	var ps []sse.Position
	for i := from; i <= to; i++ {
		p, err := tp.Append(t.Context(), wire(i))
		if err != nil {
			t.Fatalf("Append %d: %v", i, err)
		}
		ps = append(ps, p)
	}
	return ps
}

// wire returns the wire form of the test's event number n.
func wire(n int) []byte { return []byte("data: " + strconv.Itoa(n) + "\n\n") }

// number reads n back from wire(n).
func number(t testing.TB, w []byte) int {
	t.Helper()
	s, ok := strings.CutPrefix(string(w), "data: ")
	n, err := strconv.Atoi(strings.TrimSuffix(s, "\n\n"))
	if !ok || err != nil {
		t.Fatalf("unexpected wire %q", w)
	}
	return n
}

var epochShape = regexp.MustCompile(`^[0-9a-f]{16}$`)

func TestAppendAndReadAfter(t *testing.T) {
	srv := redistest.Start(t)
	tp := topic(t, newStreams(t, srv, nil), "room")
	ps := appendN(t, tp, 1, 3)
	epoch := ps[0].Epoch
	if !epochShape.MatchString(epoch) {
		t.Fatalf("epoch %q is not 16 lowercase hex digits", epoch)
	}
	for i, p := range ps {
		if p != (sse.Position{Epoch: epoch, Offset: uint64(i + 1)}) {
			t.Errorf("Append %d: Position %v, want %s-%d", i+1, p, epoch, i+1)
		}
	}
	head := sse.Position{Epoch: epoch, Offset: 3}
	for _, tt := range []struct {
		name  string
		after sse.Position
		want  []int
	}{
		{"from the start", sse.Position{Epoch: epoch}, []int{1, 2, 3}},
		{"after the first", sse.Position{Epoch: epoch, Offset: 1}, []int{2, 3}},
		{"at the head", head, nil},
		{"past the head", sse.Position{Epoch: epoch, Offset: 9}, nil},
		{"another epoch", sse.Position{Epoch: "0123456789abcdef", Offset: 1}, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			wires, h, err := tp.ReadAfter(t.Context(), tt.after, 1<<20)
			if err != nil {
				t.Fatal(err)
			}
			if h != head {
				t.Errorf("head %v, want %v", h, head)
			}
			var got []int
			for _, w := range wires {
				got = append(got, number(t, w))
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("events %v, want %v", got, tt.want)
			}
		})
	}
}

// A reader follows a topic as a Broker does: it keeps the events in log
// order, fills a gap from ReadAfter, ignores repeats, and starts over on a
// new epoch. It records everything, for the test to check.
type reader struct {
	t  testing.TB
	tp *Topic

	mu     sync.Mutex
	epoch  string
	last   uint64
	got    []int    // the events, in the order received
	resets []string // the epochs it started over in, after the first
	heads  int      // calls of deliver(head, nil)
	gaps   int      // gaps it filled with ReadAfter
	errs   []error
	change chan struct{} // closed and replaced at each change
}

func follow(t testing.TB, tp *Topic) (*reader, func()) {
	r := &reader{t: t, tp: tp, change: make(chan struct{})}
	stop := tp.Follow(r.deliver)
	t.Cleanup(stop)
	return r, stop
}

func (r *reader) deliver(pos sse.Position, wire []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	defer func() {
		close(r.change)
		r.change = make(chan struct{})
	}()
	if !epochShape.MatchString(pos.Epoch) {
		r.errs = append(r.errs, fmt.Errorf("deliver(%v): bad epoch", pos))
		return
	}
	if wire == nil {
		r.heads++
	}
	if pos.Epoch != r.epoch {
		if r.epoch != "" {
			r.resets = append(r.resets, pos.Epoch)
		}
		r.epoch, r.last = pos.Epoch, 0
		if wire == nil {
			r.last = pos.Offset // a new follower starts at the head
			return
		}
	}
	if pos.Offset <= r.last {
		return // a repeat
	}
	if want := pos.Offset; wire == nil || want > r.last+1 {
		// A gap: fill it from the log, up to pos (inclusive if it is
		// an event, since we have it).
		if wire != nil {
			want--
		}
		if want > r.last {
			r.gaps++
			r.fill(want)
		}
		if wire == nil {
			return
		}
		if r.last != pos.Offset-1 {
			return // the fill failed: the event would leave a gap
		}
	}
	r.got = append(r.got, number(r.t, wire))
	r.last = pos.Offset
}

// fill reads from the log the events after r.last up to offset to.
func (r *reader) fill(to uint64) {
	for r.last < to {
		wires, _, err := r.tp.ReadAfter(context.Background(), sse.Position{Epoch: r.epoch, Offset: r.last}, 64<<10)
		if err != nil {
			r.errs = append(r.errs, fmt.Errorf("ReadAfter: %w", err))
			return
		}
		if len(wires) == 0 {
			r.errs = append(r.errs, fmt.Errorf("ReadAfter(%s-%d): gone", r.epoch, r.last))
			return
		}
		for _, w := range wires {
			if r.last == to {
				break
			}
			r.got = append(r.got, number(r.t, w))
			r.last++
		}
	}
}

// wait waits until cond, called under the reader's lock, holds; it fails
// the test after timeout.
func (r *reader) wait(what string, timeout time.Duration, cond func(r *reader) bool) {
	r.t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		r.mu.Lock()
		ok, change := cond(r), r.change
		r.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-change:
		case <-deadline.C:
			r.mu.Lock()
			defer r.mu.Unlock()
			r.t.Fatalf("waited %v for %s: epoch %s, last %d, %d events, %d heads, %d gaps, resets %v, errors %v",
				timeout, what, r.epoch, r.last, len(r.got), r.heads, r.gaps, r.resets, r.errs)
		}
	}
}

func (r *reader) started() bool { return r.heads > 0 }

func TestFollowDeliversAppends(t *testing.T) {
	srv := redistest.Start(t)
	s := newStreams(t, srv, nil)
	tp := topic(t, s, "room")
	appendN(t, tp, 1, 2) // before Follow: not delivered
	r, _ := follow(t, tp)
	r.wait("the head", 10*time.Second, (*reader).started)
	appendN(t, tp, 3, 5)
	r.wait("3 events", 10*time.Second, func(r *reader) bool { return len(r.got) == 3 })
	r.mu.Lock()
	defer r.mu.Unlock()
	if fmt.Sprint(r.got) != "[3 4 5]" || r.gaps != 0 || len(r.errs) > 0 {
		t.Errorf("got %v with %d gaps, errors %v; want [3 4 5] and no gap", r.got, r.gaps, r.errs)
	}
}
