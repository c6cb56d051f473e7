package ssebroker

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lightsse/sse/internal/wire"
)

// pumpIdle is how long a pump waits for another stream to write before it
// exits; lingerFrom is how many open streams a Broker needs for its pumps to
// wait at all. A few streams, or one per user's Broker, write seldom enough
// that a new goroutine for each turn costs less than idle ones kept (a pump's
// stack, grown by its writes, is some KiB).
const (
	pumpIdle   = time.Second
	lingerFrom = 8
)

// A pumpPool runs the goroutines that write a Broker's streams.
//
// A write goes deep into net/http and the kernel and grows the stack of the
// goroutine that makes it, and a goroutine's stack, once grown, stays grown
// while the goroutine lives. A stream's handler goroutine lives as long as
// the stream, and most streams are idle most of the time: so handlers never
// write. Each hands its stream to a pump, a goroutine shared by all streams,
// and waits on a small stack. A pump lives only while there is writing to do.
//
// A stream is held by one pump at a time, from give until the pump hands it
// back (handoff.back); a pump holds one stream at a time. An idle pump
// waits for the next stream in idle, and exits after pumpIdle without one,
// when the last stream ends (release), or at Close (quit). So there are about
// as many pumps as writes in progress.
type pumpPool struct {
	idle    chan *stream  // idle pumps take streams to write from here
	quit    chan struct{} // closed by Close
	release broadcast     // notified when the last stream ends
	open    *atomic.Int64 // the Broker's open streams
}

func (p *pumpPool) init(open *atomic.Int64) {
	p.idle = make(chan *stream)
	p.quit = make(chan struct{})
	p.release.init()
	p.open = open
}

func (p *pumpPool) close() { close(p.quit) }

// give has a pump write s: an idle one, or a new one.
func (p *pumpPool) give(s *stream) {
	if !s.detached {
		s.lend()
	}
	select {
	case p.idle <- s:
	default:
		go p.pump(s)
	}
}

// pump writes s, then the streams handed to it, until next says to exit.
func (p *pumpPool) pump(s *stream) {
	idle := time.NewTimer(pumpIdle)
	defer idle.Stop()
	for s != nil {
		if s.detached {
			s.turnDetached()
		} else {
			s.turn()
		}
		s = p.next(idle, time.Now())
	}
}

// next waits for another stream for a pump that finished one at since. It
// returns nil, for the pump to exit, after pumpIdle without one, at Close, or
// when fewer than lingerFrom streams are open (so that no goroutine of the
// Broker outlives its streams for long, which a testing/synctest bubble
// also requires).
func (p *pumpPool) next(idle *time.Timer, since time.Time) *stream {
	release := p.release.wait()
	if p.open.Load() < lingerFrom {
		return nil // unsubscribe notifies release after the count drops to 0
	}
	for {
		select {
		case s := <-p.idle:
			return s
		case <-release:
			return nil
		case <-p.quit:
			return nil
		case <-idle.C:
			// The timer runs from when it was last armed; a pump that has
			// worked since then waits out the rest of the period.
			if !wire.WaitRest(idle, pumpIdle, time.Since(since)) {
				return nil
			}
		}
	}
}

// A handoff passes a stream between its handler goroutine and a pump. The
// handler lends the stream (in pumpPool.give) and waits in take; the pump
// writes it and hands it back with an outcome, after which it touches the
// stream no more.
type handoff struct {
	held sync.WaitGroup
	out  outcome
}

func (h *handoff) lend()            { h.held.Add(1) }
func (h *handoff) back(out outcome) { h.out = out; h.held.Done() }
func (h *handoff) take() outcome    { h.held.Wait(); return h.out }

// An outcome is how a pump's turn with a stream ended.
type outcome struct {
	wake  <-chan struct{} // the stream caught up: wait on this, then lend it again
	end   endReason       // with wake nil: why the stream ended
	fault *fault          // a panic or Goexit on the pump, for the handler to repeat
}

// A fault is a pump's panic, or its runtime.Goexit (panicked nil).
type fault struct{ panicked any }

func (f *fault) raise() {
	if f.panicked != nil {
		panic(f.panicked)
	}
	runtime.Goexit()
}

// A broadcast wakes every goroutine waiting on it, any number of times. A
// waiter takes the current channel from wait and then looks once more at
// what it waits for; notify, called after that thing changed, closes the
// channel and puts a new one in its place. It does so only if someone took
// the channel since the last notify, so that a notify with no one waiting
// costs no allocation.
type broadcast struct {
	ch      atomic.Pointer[chan struct{}]
	waiting atomic.Bool
}

func (c *broadcast) init() {
	ch := make(chan struct{})
	c.ch.Store(&ch)
}

func (c *broadcast) wait() <-chan struct{} {
	ch := *c.ch.Load()
	c.waiting.Store(true)
	return ch
}

func (c *broadcast) notify() {
	if c.waiting.Swap(false) {
		ch := make(chan struct{})
		close(*c.ch.Swap(&ch))
	}
}
