package logtest

import (
	"context"
	"fmt"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/lightsse/sse/ssebroker"
)

// epochShape is the shape of an epoch, as ssebroker.Position documents it.
var epochShape = regexp.MustCompile(`^[0-9a-f]{16}$`)

// ValidEpoch reports whether epoch has the shape ssebroker.Position gives
// an epoch: 16 lowercase hexadecimal digits.
func ValidEpoch(epoch string) bool { return epochShape.MatchString(epoch) }

// A Follower follows a Log as a Broker does: it keeps the events (Numbers
// of test events) in log order, fills a gap from ReadAfter, ignores
// repeats, and starts over on a new epoch. It records all it sees, for the
// test to check, and counts as errors what breaks ssebroker.Log's contract
// for Follow: an epoch of another shape, an event before the first head, a
// gap ReadAfter cannot fill.
type Follower struct {
	t   testing.TB
	log ssebroker.Log

	mu     sync.Mutex
	s      State
	change chan struct{} // closed and replaced at each change
}

// State is what a Follower has seen.
type State struct {
	Epoch  string             // the epoch it follows
	Last   uint64             // the offset of the last event it has, in Epoch
	Got    []int              // the events' Numbers, in the order received
	Resets []string           // the epochs it started over in, after the first
	Heads  int                // calls of deliver(head, nil)
	Start  uint64             // the offset of the first head
	Gaps   int                // gaps it filled with ReadAfter
	Live   ssebroker.Position // where the last event deliver was handed was
	Errs   []error            // what broke the contract
}

// Follow starts a Follower of log. It returns it, and the stop that Follow
// returned, which the test's end calls too.
func Follow(t testing.TB, log ssebroker.Log) (*Follower, func()) {
	f := &Follower{t: t, log: log, change: make(chan struct{})}
	stop := log.Follow(f.deliver)
	t.Cleanup(stop)
	return f, stop
}

func (f *Follower) deliver(pos ssebroker.Position, wire []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	defer func() {
		close(f.change)
		f.change = make(chan struct{})
	}()
	s := &f.s
	if !ValidEpoch(pos.Epoch) {
		s.Errs = append(s.Errs, fmt.Errorf("deliver(%v): bad epoch", pos))
		return
	}
	if wire == nil {
		if s.Heads == 0 {
			s.Start = pos.Offset
		}
		s.Heads++
	} else if s.Heads == 0 {
		s.Errs = append(s.Errs, fmt.Errorf("deliver(%v, event) before any deliver(head, nil)", pos))
	} else {
		s.Live = pos
	}
	if pos.Epoch != s.Epoch {
		if s.Epoch != "" {
			s.Resets = append(s.Resets, pos.Epoch)
		}
		s.Epoch, s.Last = pos.Epoch, 0
		if wire == nil {
			s.Last = pos.Offset // a new follower starts at the head
			return
		}
	}
	if pos.Offset <= s.Last {
		return // a repeat
	}
	if want := pos.Offset; wire == nil || want > s.Last+1 {
		// A gap: fill it from the log, up to pos (inclusive if it is
		// an event, since we have it).
		if wire != nil {
			want--
		}
		if want > s.Last {
			s.Gaps++
			f.fill(want)
		}
		if wire == nil {
			return
		}
		if s.Last != pos.Offset-1 {
			return // the fill failed: the event would leave a gap
		}
	}
	s.Got = append(s.Got, Number(f.t, wire))
	s.Last = pos.Offset
}

// fill reads from the log the events after s.Last up to offset to.
func (f *Follower) fill(to uint64) {
	s := &f.s
	for s.Last < to {
		wires, _, err := f.log.ReadAfter(context.Background(), ssebroker.Position{Epoch: s.Epoch, Offset: s.Last}, 64<<10)
		if err != nil {
			s.Errs = append(s.Errs, fmt.Errorf("ReadAfter: %w", err))
			return
		}
		if len(wires) == 0 {
			s.Errs = append(s.Errs, fmt.Errorf("ReadAfter(%s-%d): gone", s.Epoch, s.Last))
			return
		}
		for _, w := range wires {
			if s.Last == to {
				break
			}
			s.Got = append(s.Got, Number(f.t, w))
			s.Last++
		}
	}
}

// Wait waits until cond holds of the Follower's State, and returns a copy
// of that State. cond runs under the Follower's lock, and must not keep
// its argument. Wait fails the test after timeout.
func (f *Follower) Wait(what string, timeout time.Duration, cond func(s *State) bool) State {
	f.t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		f.mu.Lock()
		ok, change := cond(&f.s), f.change
		var s State
		if ok {
			s = f.s.clone()
		}
		f.mu.Unlock()
		if ok {
			return s
		}
		select {
		case <-change:
		case <-deadline.C:
			s := f.State()
			f.t.Fatalf("waited %v for %s: epoch %s, last %d, %d events, %d heads, %d gaps, resets %v, errors %v",
				timeout, what, s.Epoch, s.Last, len(s.Got), s.Heads, s.Gaps, s.Resets, s.Errs)
		}
	}
}

// State returns a copy of the Follower's State now.
func (f *Follower) State() State {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.s.clone()
}

func (s *State) clone() State {
	c := *s
	c.Got = append([]int(nil), s.Got...)
	c.Resets = append([]string(nil), s.Resets...)
	c.Errs = append([]error(nil), s.Errs...)
	return c
}

// Forget drops the events the Follower has got so far from its State's
// Got: CheckLog then compares the events it gets from now on.
func (f *Follower) Forget() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.s.Got = nil
}

// Started is a condition for Wait: the Follower has had its first head.
func Started(s *State) bool { return s.Heads > 0 }

// Got is a condition for Wait: the Follower has got exactly n events.
func Got(n int) func(s *State) bool {
	return func(s *State) bool { return len(s.Got) == n }
}

// CheckLog fails the test unless the Follower has got exactly the events of
// the log from offset from+1 of its epoch to its head, in order (no gap, no
// repeat, no reordering), stands at the head, and has seen no error.
func (f *Follower) CheckLog(from uint64) {
	f.t.Helper()
	epoch := f.State().Epoch
	var want []int
	var head ssebroker.Position
	for pos := (ssebroker.Position{Epoch: epoch, Offset: from}); ; {
		wires, h, err := f.log.ReadAfter(context.Background(), pos, 1<<20)
		if err != nil {
			f.t.Fatal(err)
		}
		head = h
		if len(wires) == 0 {
			break
		}
		for _, w := range wires {
			want = append(want, Number(f.t, w))
		}
		pos.Offset += uint64(len(wires))
	}
	s := f.State()
	if head.Epoch != s.Epoch || s.Last != head.Offset {
		f.t.Errorf("follower at %s-%d, log head %v", s.Epoch, s.Last, head)
	}
	if len(s.Errs) > 0 {
		f.t.Errorf("follower errors: %v", s.Errs)
	}
	if fmt.Sprint(s.Got) != fmt.Sprint(want) {
		f.t.Errorf("follower got %d events, log holds %d after offset %d:\ngot  %v\nwant %v", len(s.Got), len(want), from, Clip(s.Got), Clip(want))
	}
}

// CheckUpTo fails the test unless the Follower, which started at offset
// from and has reached to, got exactly the log's events from from+1 to to
// first, with no error and no gap to fill.
func (f *Follower) CheckUpTo(from, to uint64) {
	f.t.Helper()
	epoch := f.State().Epoch
	var want []int
	for pos := (ssebroker.Position{Epoch: epoch, Offset: from}); pos.Offset < to; {
		wires, _, err := f.log.ReadAfter(context.Background(), pos, 1<<20)
		if err != nil || len(wires) == 0 {
			f.t.Fatalf("ReadAfter(%v): %d events, %v", pos, len(wires), err)
		}
		for _, w := range wires {
			if pos.Offset < to {
				want = append(want, Number(f.t, w))
				pos.Offset++
			}
		}
	}
	s := f.State()
	if len(s.Errs) > 0 || s.Gaps > 0 {
		f.t.Errorf("follower errors: %v; %d gaps", s.Errs, s.Gaps)
	}
	if got := s.Got[:min(len(s.Got), len(want))]; fmt.Sprint(got) != fmt.Sprint(want) {
		f.t.Errorf("follower from offset %d got %v, the log holds %v", from, Clip(got), Clip(want))
	}
}
