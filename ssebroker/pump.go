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
// while the goroutine lives. Most streams are idle most of the time, so no
// goroutine is kept per stream for writing: a stream that has something to
// send is queued for a pump, a goroutine shared by all streams, which
// writes it until it has caught up and then parks it (see park.go). A pump
// lives only while there is writing to do.
//
// A stream is held by one pump at a time, from the queue until it parks or
// ends. Whenever a pump takes a stream and more wait in the queue, it
// wakes a free pump for them, or starts one if none is free: a pump stuck in a
// write (a client that stopped reading) so never holds up the queue, and a
// burst of streams to write starts pumps one at a time, as they are needed,
// not one per stream. A free pump with nothing queued waits for more
// (wakeup), and exits after pumpIdle without any, at once in a Broker with
// fewer than lingerFrom open streams, when the last stream ends (release),
// or at Close (release too). So there are about as many pumps as writes in
// progress.
type pumpPool struct {
	mu    sync.Mutex
	queue []*stream // streams to write, from head on
	head  int
	free  int // pumps not holding a stream: on their way to the queue, or waiting

	start   func()        // p.pump, as a value made once: go start() allocates nothing
	wakeup  chan struct{} // holds a token when the queue may have streams for a waiting pump; made by the first pump to wait
	release broadcast     // notified when the last stream ends, and at Close
	b       *Broker       // whose pool this is: its open streams, and whether it is closed
}

func (p *pumpPool) init(b *Broker) {
	p.start = p.pump
	p.b = b
}

// close has the waiting pumps exit, Close having been called.
func (p *pumpPool) close() { p.release.notify() }

// give has a pump write s.
func (p *pumpPool) give(s *stream) {
	p.mu.Lock()
	p.queue = append(p.queue, s)
	p.comeLocked()
}

// comeLocked sees that a pump comes for the queue: a free one (woken if it
// waits), or a new one. It unlocks p.mu.
func (p *pumpPool) comeLocked() {
	if p.free > 0 {
		// A free pump that does not wait yet looks at the queue before it
		// does, under p.mu: only a waiting one needs the token.
		wakeup := p.wakeup
		p.mu.Unlock()
		select {
		case wakeup <- struct{}{}:
		default: // a token is there already, or no pump has waited yet
		}
		return
	}
	p.free++ // the new pump
	p.mu.Unlock()
	go p.start()
}

// pump writes queued streams, one at a time, until next says to exit.
func (p *pumpPool) pump() {
	var idle *time.Timer // made as the pump first waits
	defer func() {
		if idle != nil {
			idle.Stop()
		}
	}()
	for s := p.next(&idle, time.Now()); s != nil; s = p.next(&idle, time.Now()) {
		s.turn()
		p.mu.Lock()
		p.free++
		p.mu.Unlock()
	}
}

// next takes the next queued stream for a free pump, which finished its
// last at since, waiting for one if none is queued. It returns nil, for the
// pump to exit, after pumpIdle without one, at Close, or when fewer than
// lingerFrom streams are open (so that no goroutine of the Broker outlives
// its streams for long, which a testing/synctest bubble also requires).
func (p *pumpPool) next(idle **time.Timer, since time.Time) *stream {
	for {
		p.mu.Lock()
		if p.head < len(p.queue) {
			s := p.queue[p.head]
			p.queue[p.head] = nil
			switch p.head++; {
			case p.head == len(p.queue):
				p.queue, p.head = p.queue[:0], 0
			case p.head >= 1024 && p.head*2 >= len(p.queue):
				// A queue that never drains keeps to the streams in it.
				n := copy(p.queue, p.queue[p.head:])
				clear(p.queue[n:])
				p.queue, p.head = p.queue[:n], 0
			}
			p.free--
			if p.head < len(p.queue) {
				// Streams wait behind this one, whose write may get stuck:
				// another pump comes for them, free or new.
				p.comeLocked()
			} else {
				p.mu.Unlock()
			}
			return s
		}
		if p.b.open.Load() < lingerFrom || p.b.closed.Load() {
			p.free--
			p.mu.Unlock()
			return nil
		}
		// Only a Broker with lingerFrom streams or more gets here: the
		// channels that a waiting pump needs are made as one first waits.
		if p.wakeup == nil {
			p.wakeup = make(chan struct{}, 1)
		}
		wakeup := p.wakeup
		p.mu.Unlock()
		release := p.release.wait()
		if p.b.open.Load() < lingerFrom || p.b.closed.Load() {
			continue // went as we looked (unsubscribe and Close notify release after)
		}
		if *idle == nil {
			*idle = time.NewTimer(pumpIdle - time.Since(since))
		}
		select {
		case <-wakeup:
			continue
		case <-(*idle).C:
			// The timer runs from when it was last armed; a pump that has
			// worked since then waits out the rest of the period.
			if wire.WaitRest(*idle, pumpIdle, time.Since(since)) {
				continue
			}
			// Spent: a pump that goes on (a stream was queued as it gave up)
			// makes a new one as it next waits, or it would wait on this
			// one, which fires no more, until Close.
			*idle = nil
		case <-release:
		}
		p.mu.Lock()
		if p.head < len(p.queue) {
			p.mu.Unlock()
			continue // queued as it gave up: take it
		}
		p.free--
		p.mu.Unlock()
		return nil
	}
}

// An outcome is how a pump's turn with a stream ended.
type outcome struct {
	wait  bool      // the stream caught up: park it until the next notify
	wakes uint64    // with wait: the Broker's notifications when it looked
	end   endReason // without wait: why the stream ended
	fault *fault    // a panic or Goexit on the pump, for the handler to repeat
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

func (c *broadcast) wait() <-chan struct{} {
	p := c.ch.Load()
	if p == nil { // made by the first wait: a broadcast no one waits on costs nothing
		ch := make(chan struct{})
		if !c.ch.CompareAndSwap(nil, &ch) {
			p = c.ch.Load()
		} else {
			p = &ch
		}
	}
	c.waiting.Store(true)
	return *p
}

func (c *broadcast) notify() {
	if c.waiting.Swap(false) {
		ch := make(chan struct{})
		close(*c.ch.Swap(&ch))
	}
}
