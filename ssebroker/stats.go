package ssebroker

import "sync/atomic"

// Stats is a snapshot of a Broker's counters since New, from
// Broker.Stats. Counters only grow, except Open. Every request that
// ServeHTTP answers with a stream (refused ones included) counts once in
// Opened and, when it is over, once in Ended, so that once all streams are
// gone, Opened equals Open plus the sum of Ended.
//
// It marshals to JSON. To publish it with expvar:
//
//	expvar.Publish("sse", expvar.Func(func() any { return broker.Stats() }))
//
// A Writer used alone counts nothing: a handler that wants figures counts its
// own streams and Send errors (an atomic counter around NewWriter and Close).
type Stats struct {
	Open          int64    `json:"open"`           // streams open now
	Opened        uint64   `json:"opened"`         // requests answered with a stream
	Ended         Ends     `json:"ended"`          // streams ended, by why
	Published     uint64   `json:"published"`      // events Publish took
	PublishErrors uint64   `json:"publish_errors"` // Publish calls that returned an error
	BytesWritten  uint64   `json:"bytes_written"`  // bytes written to streams, summed over streams
	Heartbeats    uint64   `json:"heartbeats"`     // heartbeat comments written, summed over streams
	Resumed       Resumes  `json:"resumed"`        // reconnections that resumed
	Resets        Resets   `json:"resets"`         // ResetEvents sent, by cause
	Log           LogStats `json:"log"`            // the Broker's dealings with its Log
}

// Ends counts ended streams by why they ended.
type Ends struct {
	ClientLeft    uint64 `json:"client_left"`    // the request ended, or a write failed but not by timeout
	WriteTimeout  uint64 `json:"write_timeout"`  // a write did not finish within Options.WriteTimeout
	FellBehind    uint64 `json:"fell_behind"`    // more than half the history behind, or past what it holds
	Closed        uint64 `json:"closed"`         // ended by Close
	RefusedFull   uint64 `json:"refused_full"`   // refused over MaxSubscribers
	RefusedClosed uint64 `json:"refused_closed"` // refused after Close
	LogFailed     uint64 `json:"log_failed"`     // the Log failed while the stream replayed from it
	Failed        uint64 `json:"failed"`         // a panic or runtime.Goexit while it was written
}

// Resumes counts streams whose Last-Event-ID resumed, by where their replay
// began.
type Resumes struct {
	History uint64 `json:"history"` // in the Broker's in-memory history
	Log     uint64 `json:"log"`     // in the Log, beyond it
}

// Resets counts ResetEvents by cause.
type Resets struct {
	UnknownID  uint64 `json:"unknown_id"`  // not an id of this history (or one LastEventID refuses)
	TooOld     uint64 `json:"too_old"`     // the events after it are gone
	LogFailed  uint64 `json:"log_failed"`  // the Log failed, or answered what cannot be right
	NewHistory uint64 `json:"new_history"` // mid-stream: the Log's history was lost, or lost events
}

// LogStats counts what a Broker's Log did; all zero without a Log.
type LogStats struct {
	Errors       uint64 `json:"errors"`        // failed or inconsistent Log calls
	GapsFilled   uint64 `json:"gaps_filled"`   // gaps in the feed filled from ReadAfter
	EventsFilled uint64 `json:"events_filled"` // events those fills brought
	NewHistories uint64 `json:"new_histories"` // new epochs, or gaps it could not fill
}

// Stats returns a snapshot of the Broker's counters. It takes no lock; each
// counter is read once, so counters that move together may be read between
// two moves.
func (b *Broker) Stats() Stats {
	c := &b.counts
	e := func(r endReason) uint64 { return c.ended[r].Load() }
	return Stats{
		Open:          b.open.Load(),
		Opened:        c.opened.Load(),
		Published:     c.published.Load(),
		PublishErrors: c.publishErrors.Load(),
		BytesWritten:  c.bytes.Load(),
		Heartbeats:    c.heartbeats.Load(),
		Ended: Ends{
			ClientLeft: e(endClientLeft), WriteTimeout: e(endWriteTimeout), FellBehind: e(endFellBehind),
			Closed: e(endClosed), RefusedFull: e(endRefusedFull), RefusedClosed: e(endRefusedClosed),
			LogFailed: e(endLogFailed), Failed: e(endFailed),
		},
		Resumed: Resumes{History: c.resumed[fromHistory].Load(), Log: c.resumed[fromLog].Load()},
		Resets: Resets{
			UnknownID: c.resets[resetUnknownID].Load(), TooOld: c.resets[resetTooOld].Load(),
			LogFailed: c.resets[resetLogFailed].Load(), NewHistory: c.resets[resetNewHistory].Load(),
		},
		Log: LogStats{
			Errors: c.logErrors.Load(), GapsFilled: c.gapsFilled.Load(),
			EventsFilled: c.eventsFilled.Load(), NewHistories: c.newHistories.Load(),
		},
	}
}

// endReason is why a stream ended; endNone while it has not.
type endReason uint8

const (
	endNone endReason = iota
	endClientLeft
	endWriteTimeout
	endFellBehind
	endClosed
	endRefusedFull
	endRefusedClosed
	endLogFailed
	endFailed
	numEnds
)

// Where a resume began, and why a ResetEvent was sent.
const (
	fromHistory = iota
	fromLog
)

const (
	resetUnknownID = iota
	resetTooOld
	resetLogFailed
	resetNewHistory
	numResets
)

// counters are a Broker's Stats as they grow: atomics on paths that exist
// anyway, so that counting takes no lock.
type counters struct {
	opened, published, publishErrors, bytes, heartbeats atomic.Uint64
	ended                                               [numEnds]atomic.Uint64
	resumed                                             [2]atomic.Uint64
	resets                                              [numResets]atomic.Uint64
	logErrors, gapsFilled, eventsFilled, newHistories   atomic.Uint64
}
