package ssebroker

// Parked streams.
//
// A stream that has caught up waits for something new to send parked in its
// Broker: in a list, with no goroutine of its own. Whoever changes what
// streams may send (Publish, the Log's feed, the heartbeat, Close) notifies
// them, and a goroutine started for it hands every parked stream to the
// pumps; so a Publish costs the same with no stream waiting or a hundred
// thousand, and never waits for a stream or a pump.

// ended, as a stream's parkAt, marks it over: no longer parked, nor ever again.
const ended = -2

// park puts s among the parked streams until the next notify, and reports
// true, unless a notify has come since s found nothing to send, when
// b.wakes was seen, or its client has left: then it reports false, and the
// pump goes on with s.
func (b *Broker) park(s *stream, seen uint64) bool {
	b.parkMu.Lock()
	defer b.parkMu.Unlock()
	// Counted before wakes is looked at: a notify that comes after the look
	// finds the count above zero and dispatches.
	b.nparked.Add(1)
	if b.wakes.Load() == seen {
		select {
		case <-s.wr.Done():
		default:
			s.parkAt = len(b.parked)
			b.parked = append(b.parked, s)
			return true
		}
	}
	b.nparked.Add(-1)
	return false
}

// kick hands s to the pumps if it is parked: its client left, and a pump
// ends it.
func (b *Broker) kick(s *stream) {
	b.parkMu.Lock()
	i := s.parkAt
	if i < 0 {
		b.parkMu.Unlock()
		return // on a pump, queued for one, or ended: it sees Done
	}
	last := b.parked[len(b.parked)-1]
	b.parked[i], last.parkAt = last, i
	b.parked[len(b.parked)-1] = nil
	b.parked = b.parked[:len(b.parked)-1]
	s.parkAt = -1
	b.nparked.Add(-1)
	b.parkMu.Unlock()
	b.pumps.give(s)
}

// notify wakes every stream waiting for something new to send: the parked
// ones, and those on their way to park, which then do not. b.mu is held, or
// the change it tells of is otherwise ordered before it.
func (b *Broker) notify() {
	b.wakes.Add(1)
	if b.nparked.Load() > 0 && !b.dispatching.Swap(true) {
		go b.dispatcher()
	}
}

// dispatch queues every parked stream for the pumps, and becomes a pump if
// none is free (b.dispatcher is it, as a value made once, which a go
// statement starts without allocating).
func (b *Broker) dispatch() {
	b.parkMu.Lock()
	b.dispatching.Store(false) // before the take: a later notify dispatches what parks after it
	list := b.parked
	for _, s := range list {
		s.parkAt = -1
	}
	b.nparked.Add(-int64(len(list)))
	p := &b.pumps
	p.mu.Lock()
	p.queue = append(p.queue, list...)
	clear(list)
	b.parked = list[:0]
	b.parkMu.Unlock()
	switch {
	case len(list) == 0:
		p.mu.Unlock()
	case p.free > 0:
		p.comeLocked()
	default:
		// No pump is free: this goroutine becomes one, rather than start
		// another (a Broker per user, with its one stream, so starts one
		// goroutine per event, not two).
		p.free++
		p.mu.Unlock()
		p.pump()
	}
}
