package sserun

import "time"

// An expiry holds the finished runs of a process in the order they are to
// be forgotten. Every run is kept for the same retention, so that order is
// the order they finished in: a queue, which the calls of Start and
// ServeHTTP empty from the front as its runs come due. So a finished run
// costs no goroutine and no timer to forget.
type expiry struct {
	q    []expiring
	head int // q[:head] are gone
}

type expiring struct {
	at time.Time
	st *run
}

// add queues st, to be forgotten at at, which is no earlier than any queued.
func (e *expiry) add(at time.Time, st *run) { e.q = append(e.q, expiring{at, st}) }

// due takes the first run that is due at now off the queue, or returns nil.
func (e *expiry) due(now time.Time) *run {
	if e.head == len(e.q) || e.q[e.head].at.After(now) {
		return nil
	}
	st := e.q[e.head].st
	e.q[e.head] = expiring{}
	e.head++
	if e.head == len(e.q) {
		e.q, e.head = e.q[:0], 0
	} else if e.head >= 1024 && e.head*2 >= len(e.q) {
		n := copy(e.q, e.q[e.head:])
		clear(e.q[n:])
		e.q, e.head = e.q[:n], 0
	}
	return st
}
