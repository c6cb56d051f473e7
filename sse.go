// Package sse streams Server-Sent Events (text/event-stream) from net/http
// handlers, exactly as the WHATWG HTML standard's parser reads them.
//
// A browser opens a stream with new EventSource(url). The server answers with
// one long response and writes events into it; the browser reconnects by
// itself when the stream ends, sending the last event id it saw in a
// Last-Event-ID header so the server can resume.
//
// A handler that streams the time until the client leaves:
//
//	func clock(w http.ResponseWriter, r *http.Request) {
//		stream, err := sse.NewWriter(w, r, nil)
//		if err != nil {
//			http.Error(w, err.Error(), http.StatusInternalServerError)
//			return
//		}
//		defer stream.Close()
//		tick := time.NewTicker(time.Second)
//		defer tick.Stop()
//		for {
//			select {
//			case <-r.Context().Done():
//				return
//			case t := <-tick.C:
//				if err := stream.Send(sse.Event{Type: "time", Data: t.Format(time.RFC3339)}); err != nil {
//					return
//				}
//			}
//		}
//	}
//
// To send the same events to many clients, serve a [Broker] and call its
// Publish from anywhere:
//
//	broker := sse.NewBroker(nil)
//	srv := &http.Server{Addr: ":8080", Handler: broker}
//	srv.RegisterOnShutdown(func() { broker.Close() })
//	go srv.ListenAndServe()
//	broker.Publish(sse.Event{Type: "price", Data: `{"ACME":1234.5}`})
//
// A Broker keeps recent events, so a browser that reconnects with a
// Last-Event-ID header gets what it missed, and it never lets a slow client
// delay the others.
//
// # What goes on the wire
//
// [Event.AppendText] writes every field as "name: value" with LF line ends,
// splits Data at CRLF, LF and CR into data lines, and refuses, with an error
// naming the field, anything a client would read differently: CR or LF in an
// id or event name, NUL in an id, invalid UTF-8, a retry that is negative or
// under a millisecond. A refused event writes nothing and leaves the stream
// intact.
//
// # Deployment
//
//   - Proxies: the Writer sends X-Accel-Buffering: no, so nginx passes events
//     through at once, and a comment after 15 s of silence (Options.Heartbeat),
//     so load balancers with idle timeouts (60 s on AWS ALB, about 100 s on
//     Cloudflare) keep the stream open.
//   - http.Server.WriteTimeout would end every stream after that time; the
//     Writer replaces it with a deadline per write (Options.WriteTimeout), which
//     also ends a stream whose client stopped reading.
//   - HTTP/2: a browser holds at most six HTTP/1.1 connections per host, shared
//     by all its tabs, so a seventh stream waits. Serve over TLS and Go speaks
//     HTTP/2, where streams share one connection. The Writer never sends the
//     Connection or Keep-Alive headers, which HTTP/2 forbids.
//   - Shutdown: http.Server.Shutdown waits for responses to finish but does not
//     cancel their contexts, so open streams hold it until its deadline. End
//     them from http.Server.RegisterOnShutdown, or give the server a
//     BaseContext you cancel.
//   - A status other than 200 makes a browser give up for good; to make it come
//     back later, answer 200 with a retry (Options.Retry) and end the stream.
//     Status 204 tells it to stop reconnecting.
package sse

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	mathrand "math/rand/v2"
	"net/http"
	"runtime"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// MaxLastEventIDLen is the longest Last-Event-ID header LastEventID accepts, in
// bytes.
const MaxLastEventIDLen = 256

// LastEventID returns the Last-Event-ID header of r: the id of the last event a
// reconnecting client received. It returns "" when the header is absent, longer
// than MaxLastEventIDLen, or not an id an Event could carry (invalid UTF-8, or
// CR, LF or NUL), so whatever it returns is a valid Event.ID.
//
// The value comes from the network: look it up, never use it as a position you
// trust. (Go trims spaces around header values, so an id that begins or ends
// with a space does not come back intact.)
func LastEventID(r *http.Request) string {
	id := r.Header.Get("Last-Event-ID")
	if len(id) > MaxLastEventIDLen || (&Event{ID: id}).validate() != nil {
		return ""
	}
	return id
}

// ResetEvent is the type of the event a Broker sends first on a stream whose
// Last-Event-ID it cannot resume from: an id from another Broker or an earlier
// run, a made-up one, or one so old that the events after it are gone. Its Data
// is the id the client sent; the live events that follow come after a gap the
// client should fill another way (reload its state, say). Listen for it with
// addEventListener("reset", ...). (Data is empty when the header was one
// LastEventID refuses: too long, or not valid UTF-8.)
const ResetEvent = "reset"

// Defaults used when BrokerOptions leaves a field zero.
const (
	DefaultHistoryLen   = 16384
	DefaultHistoryBytes = 16 << 20
	DefaultCloseRetry   = 5 * time.Second
)

// BrokerOptions configure a Broker. A nil *BrokerOptions, and any zero field,
// means the default.
type BrokerOptions struct {
	// HistoryLen and HistoryBytes bound the history: the most recent events, in
	// their encoded form, that serve both replay and live delivery. The oldest
	// event is dropped when either bound is passed (the newest event is always
	// kept). Values below 1 mean DefaultHistoryLen and DefaultHistoryBytes.
	HistoryLen   int
	HistoryBytes int
	// MaxSubscribers caps the open streams; 0 means no cap. A request over the
	// cap is answered as one after Close is.
	MaxSubscribers int
	// CloseRetry bounds the reconnection delay a Broker gives each stream when
	// it closes: every client is told to wait a random time in (0, CloseRetry],
	// so that they do not all come back in the same instant. Values below 1 ms
	// mean DefaultCloseRetry.
	CloseRetry time.Duration
	// Stream configures each stream's Writer: write timeout and retry as for
	// NewWriter. Its Heartbeat is kept by the Broker for all streams at once:
	// after that long without a Publish, every stream gets a comment line.
	Stream Options
	// Store, if set, keeps events beyond the history, so that clients away
	// longer than the history holds can still resume. Publish waits for it.
	Store Store
}

// A Store keeps a Broker's events for replay beyond its in-memory history: a
// table, a Redis stream, a file. Events are keyed by the Broker's epoch (see
// Broker) and their offset, which counts up from 1 with no gaps.
//
// Its methods must be safe for concurrent use: streams call ReadAfter from
// their own goroutines, while Publish calls Append. The epoch is chosen at
// random by NewBroker, so a new process starts a new epoch and its clients
// get a reset: a Store extends history within one Broker's life, not across
// restarts.
type Store interface {
	// Append saves the wire form of the event at offset. The Broker calls it
	// from Publish, in offset order, and does not modify wire afterwards. An
	// error fails that Publish: the event is neither delivered nor kept.
	Append(epoch string, offset uint64, wire []byte) error
	// ReadAfter appends to dst the wire forms of the saved events of epoch
	// from offset after+1 on, in order and without a gap, stopping once it has
	// appended at least max bytes. It returns the extended slice and how many
	// events it appended: 0 means it does not hold the event at after+1.
	ReadAfter(dst []byte, epoch string, after uint64, max int) ([]byte, int, error)
}

// A Position is where an event sits in a Broker's history: the epoch of the
// history and the event's offset in it. An event the Broker numbers carries
// its Position as its id, "<epoch>-<offset>" (see String).
type Position struct {
	// Epoch names one unbroken history. It is 16 lowercase hexadecimal digits,
	// drawn at random when the history starts and changed whenever the
	// history is lost, so that an id from a lost history resumes nothing.
	Epoch string
	// Offset counts the epoch's events from 1, with no gaps; 0 is the
	// position before the first event.
	Offset uint64
}

// String returns the id of the event at p: its epoch, a dash, its offset.
func (p Position) String() string {
	return string(strconv.AppendUint(append([]byte(p.Epoch), '-'), p.Offset, 10))
}

// A Log is an ordered history of events kept outside the Broker: Redis
// Streams, a table, a file. With a Log, the Broker numbers nothing itself.
// Publish appends each event to the Log, which gives it its Position; the
// Log hands every event back, from whichever process appended it, through
// Follow; and the Log serves replay older than the Broker's in-memory
// history through ReadAfter. Brokers in several processes that share one Log
// serve one stream: the same events, in the same order, with the same ids.
//
// A wire form, in every method, is one whole event as [Event.AppendText]
// encodes it. It begins with an id line only when the publisher set its own
// Event.ID; otherwise the Broker writes "id: " and the event's Position
// before it. The Log keeps the bytes as they are.
//
// Its methods must be safe for concurrent use, and must return, with an
// error, when their context ends.
type Log interface {
	// Append adds wire to the log as its newest event and returns the
	// event's Position. An error means the event may not be in the log (a
	// timeout, say, leaves that unknown); Publish returns it.
	Append(ctx context.Context, wire []byte) (Position, error)

	// ReadAfter returns the wire forms of the events that follow after, in
	// order and without a gap: the events at after.Offset+1, +2, and so on
	// in after.Epoch, stopping once they hold at least max bytes. It also
	// returns the log's head, the Position of its newest event (Offset 0 if
	// the current epoch has none yet).
	//
	// It returns no events when after is the head, when after.Epoch is not
	// the log's current epoch, and when the log no longer holds the event at
	// after.Offset+1 (trimmed, or lost): the Broker then tells the client so
	// with a ResetEvent. An error means the log could not be read.
	ReadAfter(ctx context.Context, after Position, max int) (wires [][]byte, head Position, err error)

	// Follow has the log call deliver with the events appended from now on,
	// from any process, in log order, until stop is called. Its first call,
	// once the log can be reached, is deliver(head, nil): the log's newest
	// event is at head. After any break in the feed (a lost connection, say)
	// it calls deliver(head, nil) again. It may skip events or repeat ones it
	// delivered before: the Broker fills a gap with ReadAfter and ignores
	// repeats. Calls to deliver do not overlap, and deliver may call
	// ReadAfter. The Broker keeps wire and never modifies it.
	//
	// stop returns once no call to deliver is running, and none is made
	// after it; the log then runs no goroutine for this Follow.
	Follow(deliver func(pos Position, wire []byte)) (stop func())
}

// A Broker is an http.Handler that streams the events given to Publish to
// every client connected to it, and lets reconnecting clients resume. Make
// one with NewBroker (the zero Broker is not ready for use); all its methods
// are safe to call from many goroutines at once.
//
// # Delivery
//
// Publish encodes an event once and appends it to the Broker's history, a
// ring bounded by BrokerOptions.HistoryLen and HistoryBytes. Each stream is
// a position in that history. When there is something to send, one of the
// Broker's pump goroutines writes everything from the stream's position to
// the newest event in one write and one flush; meanwhile the handler's
// goroutine only waits. Publish never writes to a connection, so no client can
// slow it or another client, and a stream holds no queue of its own.
//
// A stream is ended when its client cannot keep up: when a write does not
// finish within the stream's WriteTimeout (a client that stopped reading), or
// when, after having caught up once, it falls more than half the history
// behind (by count or by bytes). The client reconnects by itself and resumes
// from its last id, losing nothing while the events it missed are still in the
// history. The defaults hold a burst of 8192 events or 8 MiB per stream: a
// burst larger than half the history, published faster than clients read it,
// ends even healthy streams, so size the history to twice your largest burst.
// A stream ended this way gets no retry field: its client reconnects after
// its reconnection time (Options.Retry, or the browser's default of 3 to 5 s).
//
// # Ids and replay
//
// An event published with an empty ID gets "<epoch>-<offset>": the epoch is a
// random word chosen by NewBroker, the offset counts events from 1. A client
// that reconnects with such an id gets every event after it, then live
// events, with no gap and no duplicate. An event published with its own ID
// keeps it, and a client reconnecting with it resumes the same way while the
// event is in the history, provided no other event in the history has the
// same ID. Any other Last-Event-ID (unknown, repeated, from another Broker or
// an earlier process, older than the history and the Store, or one that
// LastEventID refuses) gets a first event of type ResetEvent, then live
// events.
//
// A client without a Last-Event-ID gets live events only.
//
// # Isolation
//
// Every stream of a Broker gets every event: to send events to one user or
// topic only, give each its own Broker (a map guarded by a mutex, say). Their
// epochs differ, so an id from one topic's stream resumes nothing of another's.
//
// # Closing
//
// Close ends every stream after telling each client to wait a random time up
// to CloseRetry before reconnecting; a request after Close gets the same and no
// events (a 200 with a retry field, since a browser would not retry after a
// 503). To end streams when the server shuts down:
//
//	srv.RegisterOnShutdown(func() { broker.Close() })
//
// Each stream waits in its request's handler goroutine, and is written by a
// pump: a goroutine the Broker starts when a stream has something to send and
// no pump is free. Pumps are shared by all streams, so there are about as many
// as writes in progress at once (one per CPU, plus one per client slow to
// read); a pump exits after a second with nothing to write, when the last
// stream ends, or at Close. A panic while a pump writes a stream (in a Store,
// say) is raised again on that stream's handler goroutine, where net/http
// reports it: an error wrapping the value, with the pump's stack, or
// http.ErrAbortHandler unchanged; a runtime.Goexit likewise. The
// handler's goroutine, which lives as long as its stream, thus never writes
// and keeps a small stack: an idle stream costs two goroutines of 4 KiB and
// 2 KiB (net/http's), not one of 8 KiB and one of 2 KiB. The Broker's other
// activity is its heartbeat timer, whose callback runs briefly when it fires,
// rests while no stream is open, and is stopped by Close.
type Broker struct {
	epoch       string
	historyLen  int
	historyByte int
	maxSubs     int64
	closeRetry  time.Duration
	stream      Options // with Heartbeat off: the Broker beats for all
	heartbeat   time.Duration
	store       Store
	beatTimer   *time.Timer

	// Streams read these without a lock, so that no stream, however it is
	// scheduled, can make Publish wait.
	hist    ring                          // the history
	wake    atomic.Pointer[chan struct{}] // closed, and replaced, to wake streams
	waiting atomic.Bool                   // a stream may be waiting on wake
	closed  atomic.Bool
	pumps   chan *stream                  // idle pumps take streams to write from here
	quit    chan struct{}                 // closed by Close: idle pumps exit
	npumps  atomic.Int32                  // pumps running, for tests
	release atomic.Pointer[chan struct{}] // closed, and replaced, when the last stream ends
	beats   atomic.Uint64                 // heartbeats sent so far
	subs    atomic.Int64
	beating atomic.Bool // beatTimer is armed

	mu      sync.Mutex       // held by Publish, Close, the heartbeat and subscribe
	byID    map[string]idRef // events in hist that carry their own ID
	scratch []byte           // Publish's encoding buffer
	last    time.Time        // when the last event was published, or beat sent
}

// NewBroker returns a Broker with a new epoch and an empty history.
func NewBroker(opts *BrokerOptions) *Broker {
	var o BrokerOptions
	if opts != nil {
		o = *opts
	}
	if o.HistoryLen < 1 {
		o.HistoryLen = DefaultHistoryLen
	}
	if o.HistoryBytes < 1 {
		o.HistoryBytes = DefaultHistoryBytes
	}
	if o.CloseRetry < time.Millisecond {
		o.CloseRetry = DefaultCloseRetry
	}
	heartbeat := o.Stream.Heartbeat
	if heartbeat == 0 {
		heartbeat = DefaultHeartbeat
	}
	o.Stream.Heartbeat = -1
	b := &Broker{
		epoch:       newEpoch(),
		historyLen:  o.HistoryLen,
		historyByte: o.HistoryBytes,
		maxSubs:     int64(max(o.MaxSubscribers, 0)),
		closeRetry:  o.CloseRetry,
		stream:      o.Stream,
		heartbeat:   heartbeat,
		store:       o.Store,
		byID:        make(map[string]idRef),
		pumps:       make(chan *stream),
		quit:        make(chan struct{}),
	}
	b.hist.init(min(o.HistoryLen, 64))
	wake, release := make(chan struct{}), make(chan struct{})
	b.wake.Store(&wake)
	b.release.Store(&release)
	if heartbeat > 0 {
		b.beatTimer = time.AfterFunc(heartbeat, b.beat)
		b.beatTimer.Stop() // armed by the first stream
	}
	return b
}

func newEpoch() string {
	var b [4]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand documents it)
	return hex.EncodeToString(b[:])
}

// Publish sends e to every open stream and keeps it for replay. It encodes e
// once, never waits for a client, and is safe to call from many goroutines;
// streams receive events in the order their Publish calls took effect.
//
// It returns the error from [Event.AppendText] for an event that cannot be
// written faithfully, ErrInvalidID for an ID longer than MaxLastEventIDLen
// (LastEventID would not accept it back), an error from the Store's Append,
// or ErrClosed after Close; the event is then not delivered.
func (b *Broker) Publish(e Event) error {
	if err := e.validate(); err != nil {
		return err
	}
	if len(e.ID) > MaxLastEventIDLen {
		return fieldError(ErrInvalidID, "%d bytes, over MaxLastEventIDLen: a client could not resume from it", len(e.ID))
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed.Load() {
		return ErrClosed
	}
	offset := b.hist.head.Load() + 1
	buf := b.scratch[:0]
	if e.ID == "" {
		buf = b.appendID(append(buf, "id: "...), offset)
		buf = append(buf, '\n')
	}
	buf = e.appendWire(buf)
	wire := make([]byte, len(buf))
	copy(wire, buf)
	if cap(buf) <= maxKeptBuffer {
		b.scratch = buf
	}
	if b.store != nil {
		if err := b.store.Append(b.epoch, offset, wire); err != nil {
			return err
		}
	}
	b.hist.push(&entry{wire: wire, id: e.ID}, b.historyLen, b.historyByte, b.forget)
	if e.ID != "" {
		ref := b.byID[e.ID]
		b.byID[e.ID] = idRef{offset: offset, count: ref.count + 1}
	}
	if b.beatTimer != nil {
		b.last = time.Now()
	}
	b.wakeLocked()
	return nil
}

// wakeLocked wakes the streams waiting for something to send. A stream
// loads wake, then sets waiting, then looks at the history again; so either
// it sees what was just published, or this sees waiting and closes the
// channel it waits on.
func (b *Broker) wakeLocked() {
	if b.waiting.Swap(false) {
		wake := make(chan struct{})
		close(*b.wake.Swap(&wake))
	}
}

// beat runs when the heartbeat timer fires. After a whole period without a
// Publish it has every stream send a comment; otherwise it waits out the
// rest of the period. It lets the timer rest while no stream is open.
func (b *Broker) beat() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed.Load() {
		return
	}
	if quiet := time.Since(b.last); quiet < b.heartbeat {
		b.beatTimer.Reset(b.heartbeat - quiet)
		return
	}
	if b.subs.Load() == 0 {
		// No stream can subscribe while mu is held: the next one re-arms.
		b.beating.Store(false)
		return
	}
	b.beats.Add(1)
	b.last = time.Now()
	b.wakeLocked()
	b.beatTimer.Reset(b.heartbeat)
}

// An idRef indexes the events in the history that carry one publisher ID.
type idRef struct {
	offset uint64 // the newest
	count  int    // how many: more than one, and the ID says no position
}

// forget drops the index of an event leaving the history.
func (b *Broker) forget(e *entry) {
	if e.id == "" {
		return
	}
	if ref := b.byID[e.id]; ref.count > 1 {
		b.byID[e.id] = idRef{offset: ref.offset, count: ref.count - 1}
	} else {
		delete(b.byID, e.id)
	}
}

// appendID appends the id of the event at offset: epoch, dash, offset.
func (b *Broker) appendID(dst []byte, offset uint64) []byte {
	dst = append(dst, b.epoch...)
	dst = append(dst, '-')
	return strconv.AppendUint(dst, offset, 10)
}

// Subscribers returns the number of open streams.
func (b *Broker) Subscribers() int { return int(b.subs.Load()) }

// Close ends every stream, each after a retry field with a random delay up to
// BrokerOptions.CloseRetry, and makes later requests get only such a retry and
// Publish return ErrClosed. It returns at once, without waiting for streams to
// end, and always returns nil. It is safe to call at any time, from any
// goroutine, more than once.
func (b *Broker) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.closed.Load() {
		b.closed.Store(true) // before the wake: a stream that misses it sees this
		wake := make(chan struct{})
		close(*b.wake.Swap(&wake))
		close(b.quit)
		if b.beatTimer != nil {
			b.beatTimer.Stop()
		}
	}
	return nil
}

// ServeHTTP streams events to the client until it leaves, falls behind, or
// the Broker closes. It resumes from the request's Last-Event-ID as described
// on Broker; a new client's stream begins with an id field alone, which sets
// its last event ID and dispatches nothing, so that it can resume even if the
// stream ends before its first event. If the ResponseWriter cannot flush, or
// BrokerOptions.Stream holds a Retry that NewWriter refuses, it answers 500.
func (b *Broker) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s := b.start(w, r)
	if s == nil {
		return
	}
	defer b.unsubscribe()
	defer s.w.Close()
	s.serve()
}

// start registers a stream and prepares its response, or answers a request
// the Broker cannot serve and returns nil. It writes nothing: the stream's
// first write, on its pump, sends the headers and the opening bytes.
func (b *Broker) start(w http.ResponseWriter, r *http.Request) *stream {
	lastID := LastEventID(r)
	// A header LastEventID refuses (too long, not UTF-8) is an id we cannot
	// resume from, not the absence of one: it gets a reset.
	rejected := lastID == "" && r.Header.Get("Last-Event-ID") != ""
	cursor, reset, ok := b.subscribe(lastID)
	if !ok {
		b.refuse(w, r)
		return nil
	}
	sw, err := newWriter(w, r, &b.stream)
	if err != nil {
		b.unsubscribe()
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return nil
	}
	return &stream{b: b, w: sw, cursor: cursor, lastID: lastID, beats: b.beats.Load(), reset: reset || rejected}
}

// subscribe registers a stream and returns the offset of the first event it
// needs, and whether the client's lastID must be answered with a reset. It
// returns ok false when the Broker is closed or full.
func (b *Broker) subscribe(lastID string) (cursor uint64, reset, ok bool) {
	b.mu.Lock() // for a consistent history and byID; brief
	defer b.mu.Unlock()
	if b.closed.Load() {
		return 0, false, false
	}
	for n := b.subs.Load(); ; n = b.subs.Load() {
		if b.maxSubs > 0 && n >= b.maxSubs {
			return 0, false, false
		}
		if b.subs.CompareAndSwap(n, n+1) {
			break
		}
	}
	if b.beatTimer != nil && b.beating.CompareAndSwap(false, true) {
		b.beatTimer.Reset(b.heartbeat)
	}
	head := b.hist.head.Load()
	live := head + 1
	if lastID == "" {
		return live, false, true
	}
	if off, ok := b.parseID(lastID); ok && off <= head {
		if off+1 >= b.hist.tail.Load() || b.store != nil {
			return off + 1, false, true
		}
		return live, true, true
	}
	if ref, ok := b.byID[lastID]; ok && ref.count == 1 {
		return ref.offset + 1, false, true
	}
	return live, true, true
}

// parseID returns the offset in an id this Broker assigned.
func (b *Broker) parseID(id string) (uint64, bool) {
	n := len(b.epoch)
	if len(id) <= n+1 || id[:n] != b.epoch || id[n] != '-' {
		return 0, false
	}
	off, err := strconv.ParseUint(id[n+1:], 10, 64)
	return off, err == nil
}

// refuse answers a request the Broker cannot serve (closed or full) with a
// retry and no events, so the browser comes back later.
func (b *Broker) refuse(w http.ResponseWriter, r *http.Request) {
	sw, err := NewWriter(w, r, &Options{Retry: b.jitter(), Heartbeat: -1, WriteTimeout: b.stream.WriteTimeout})
	if err != nil {
		if errors.Is(err, http.ErrNotSupported) {
			http.Error(w, err.Error(), http.StatusInternalServerError)
		}
		return
	}
	sw.Close()
}

// jitter returns a random delay in (0, closeRetry], in whole milliseconds.
func (b *Broker) jitter() time.Duration {
	ms := int64(b.closeRetry / time.Millisecond)
	return time.Duration(1+mathrand.Int64N(ms)) * time.Millisecond
}

// maxBatch is how many bytes a stream gathers for one write (more when one
// event is larger).
const maxBatch = 32 << 10

var batchPool = sync.Pool{New: func() any { b := make([]byte, 0, maxBatch); return &b }}

// A stream is one client's position in a Broker's history.
//
// Its writes run on one of the Broker's pumps, not on the handler's goroutine:
// a write goes deep into net/http and the kernel, and a goroutine's stack, once
// grown, stays grown while the goroutine lives. The handler's goroutine, which
// lives as long as the stream, only waits, on a stack a few KiB smaller.
type stream struct {
	b        *Broker
	w        *Writer
	cursor   uint64 // offset of the next event to send
	lastID   string // the request's Last-Event-ID
	beats    uint64 // the Broker's heartbeats this stream has sent, or skipped
	sent     bool   // an event has been sent (a reset is no longer possible)
	caughtUp bool   // the stream has reached the newest event once
	reset    bool   // the stream opens with a reset
	opened   bool   // the headers and the opening are written
	over     bool   // set by the pump: the stream has ended
	goexited bool   // set by the pump: runtime.Goexit ran while it wrote

	pumping  sync.WaitGroup  // a pump is writing the stream
	wake     <-chan struct{} // set by the pump: what to wait on for more
	panicked any             // set by the pump: what to panic with, for a panic while it wrote
}

// readState says what a stream's read of the history found.
type readState int

const (
	readEvents readState = iota // events to send, or none and wait on wake
	readClosed                  // the Broker is closed
	readLost                    // the stream fell too far behind
	readStore                   // the next event is older than the history: ask the Store
)

// serve has a pump write whatever the stream has to send, then waits for the
// next event, heartbeat or Close, until the stream ends. It returns only when
// no pump is writing the stream, so nothing writes to the response after the
// handler returns.
func (s *stream) serve() {
	for {
		s.pumping.Add(1)
		select {
		case s.b.pumps <- s: // an idle pump takes it
		default:
			s.b.npumps.Add(1)
			go s.b.pump(s)
		}
		s.pumping.Wait()
		switch {
		case s.panicked != nil:
			panic(s.panicked) // where net/http recovers it, as from any handler
		case s.goexited:
			runtime.Goexit()
		case s.over:
			return
		}
		select {
		case <-s.wake:
		case <-s.w.done:
			return
		}
	}
}

// pumpIdle is how long a pump waits for another stream to write before it
// exits.
const pumpIdle = time.Second

// pump writes s, then the streams handed to it, until next says to exit: it
// has waited pumpIdle for one, the last stream has ended, or the Broker
// has closed. Pumps are shared by all of a Broker's
// streams: a stream needs one only while it has something to write, so a
// Broker runs about as many as there are writes in progress at once (one per
// CPU, plus one per client that is slow to read).
func (b *Broker) pump(s *stream) {
	defer b.npumps.Add(-1)
	idle := time.NewTimer(pumpIdle)
	defer idle.Stop()
	for s != nil {
		s.write()
		s = b.next(idle, time.Now())
	}
}

// next waits for another stream for a pump that finished one at since. It
// returns nil, for the pump to exit, after pumpIdle without one, at Close, or
// when the last stream ends (so that no goroutine of the Broker outlives its
// streams for long, which a testing/synctest bubble also requires).
func (b *Broker) next(idle *time.Timer, since time.Time) *stream {
	release := b.release.Load()
	if b.subs.Load() == 0 {
		return nil // unsubscribe closes release after the count drops to 0
	}
	for {
		select {
		case s := <-b.pumps:
			return s
		case <-*release:
			return nil
		case <-b.quit:
			return nil
		case <-idle.C:
			// The timer runs from when it was last armed; a pump that has
			// worked since then waits out the rest of the period.
			rest := pumpIdle - time.Since(since)
			if rest <= 0 {
				return nil
			}
			idle.Reset(rest)
		}
	}
}

// unsubscribe counts a stream out. When none is left it lets the idle pumps
// go: it closes the release channel they wait on, and replaces it.
func (b *Broker) unsubscribe() {
	if b.subs.Add(-1) == 0 {
		release := make(chan struct{})
		close(*b.release.Swap(&release))
	}
}

// write sends what the stream has to send, until it has caught up (it sets
// wake) or the stream ends (it sets over). It then releases the stream, and
// touches it no more.
func (s *stream) write() {
	finished := false
	defer func() {
		if !finished {
			// A panic (in a Store, say) or runtime.Goexit is the handler's to
			// report: serve raises it again there.
			s.over = true
			if p := recover(); p != nil {
				s.panicked = pumpPanic(p)
			} else {
				s.goexited = true
			}
		}
		s.pumping.Done()
	}()
	s.writeAll()
	finished = true
}

// pumpPanic returns what to panic with on the handler's goroutine for p, a
// pump's panic: an error wrapping p with the pump's stack, or
// http.ErrAbortHandler unchanged, which net/http treats as a quiet abort.
func pumpPanic(p any) any {
	if p == http.ErrAbortHandler {
		return p
	}
	err, ok := p.(error)
	if !ok {
		err = fmt.Errorf("%v", p)
	}
	return fmt.Errorf("sse: panic while writing a stream: %w\n%s", err, debug.Stack())
}

// writeAll is write's work.
func (s *stream) writeAll() {
	if !s.opened {
		// The headers, even with nothing else to send, so that the client's
		// open event fires at once.
		s.opened = true
		s.w.writeHeader()
		bp := batchPool.Get().(*[]byte)
		err := s.w.sendWire(s.appendOpening((*bp)[:0]))
		batchPool.Put(bp)
		if err != nil {
			s.over = true
			return
		}
	}
	for {
		bp := batchPool.Get().(*[]byte)
		batch, wake, state := s.read((*bp)[:0])
		if state == readStore {
			batch, state = s.readStore(batch)
		}
		var err error
		switch {
		case state == readClosed:
			err = s.w.sendWire(appendRetry(batch[:0], s.b.jitter()))
		case state == readLost:
			// Nothing to write: ending the stream makes the client reconnect
			// and resume from its last id.
		case len(batch) > 0:
			err = s.w.sendWire(batch)
			s.sent = true
		}
		if cap(batch) <= 4*maxBatch {
			*bp = batch[:0]
			batchPool.Put(bp)
		}
		if state != readEvents || err != nil {
			s.over = true
			return
		}
		if wake != nil {
			s.wake = wake
			return
		}
	}
}

// read appends to dst the events from the stream's cursor on, up to maxBatch
// bytes, and advances the cursor; or a heartbeat comment, if one is due. It
// takes no lock. When there is nothing to send it returns the channel that
// the next Publish closes, or, if something came in as it looked, nothing,
// and the caller reads again.
func (s *stream) read(dst []byte) ([]byte, <-chan struct{}, readState) {
	b, h := s.b, &s.b.hist
	if b.closed.Load() {
		return dst, nil, readClosed
	}
	if head := h.head.Load(); s.cursor <= head {
		switch {
		case s.cursor < h.tail.Load() && b.store != nil:
			return dst, nil, readStore
		case s.cursor < h.tail.Load():
			return dst, nil, readLost
		case s.caughtUp && h.lagging(s.cursor, head, max(b.historyLen/2, 1), max(b.historyByte/2, 1)):
			return dst, nil, readLost
		}
		for ; s.cursor <= head; s.cursor++ {
			e := h.get(s.cursor)
			if e == nil { // dropped as we read: send what we have, then say so
				if len(dst) > 0 {
					break
				}
				if b.store != nil {
					return dst, nil, readStore
				}
				return dst, nil, readLost
			}
			if len(dst) > 0 && len(dst)+len(e.wire) > maxBatch {
				break
			}
			dst = append(dst, e.wire...)
		}
		s.beats = b.beats.Load() // the events just read are traffic enough
		return dst, nil, readEvents
	}
	if beats := b.beats.Load(); s.beats != beats {
		s.beats = beats
		return append(dst, heartbeatLine...), nil, readEvents
	}
	wake := b.wake.Load()
	b.waiting.Store(true)
	if h.head.Load() >= s.cursor || b.beats.Load() != s.beats || b.closed.Load() {
		return dst, nil, readEvents // came in as we looked: read again
	}
	s.caughtUp = true
	return dst, *wake, readEvents
}

// readStore reads events older than the history from the Store. If the Store
// lacks them, a stream that has sent nothing yet is reset to live events; one
// that has is ended, and its client will be reset when it reconnects.
func (s *stream) readStore(dst []byte) ([]byte, readState) {
	out, n, err := s.b.store.ReadAfter(dst, s.b.epoch, s.cursor-1, maxBatch)
	if err != nil || n == 0 {
		if err == nil && !s.sent {
			s.cursor = s.b.hist.head.Load() + 1
			return s.appendReset(dst[:0]), readEvents
		}
		return dst[:0], readLost
	}
	s.cursor += uint64(n)
	return out, readEvents
}

// appendOpening appends what a stream sends first: the retry field, if
// BrokerOptions.Stream sets one, then a reset if the client's Last-Event-ID
// resumes nothing. A new client gets an id field alone, which sets its last
// event ID and dispatches nothing: should the stream end before its first
// event, the client still resumes where it began.
func (s *stream) appendOpening(dst []byte) []byte {
	dst = appendRetry(dst, s.b.stream.Retry)
	switch {
	case s.reset:
		dst = s.appendReset(dst)
	case s.lastID == "":
		dst = append(s.b.appendID(append(dst, "id: "...), s.cursor-1), "\n\n"...)
	}
	return dst
}

// appendReset appends the ResetEvent, with the id of the event before the
// stream's cursor, so that the client's next reconnection resumes from there.
// Its data is the client's Last-Event-ID, which LastEventID has checked.
func (s *stream) appendReset(dst []byte) []byte {
	id := string(s.b.appendID(nil, s.cursor-1))
	e := Event{ID: id, Type: ResetEvent, Data: s.lastID}
	s.sent = true
	return e.appendWire(dst)
}

// An entry is one published event in a Broker's history. It does not change
// once published.
type entry struct {
	offset uint64 // its place in the history
	wire   []byte // the encoded event
	id     string // the event's own ID, if the publisher set one
	end    uint64 // bytes published up to and including this event
}

// A ring holds the most recent events, by offset. Publishers change it under
// the Broker's mutex, one at a time; streams read it with atomic loads only.
// It grows by doubling up to its bound in events, so a quiet Broker holds
// little.
type ring struct {
	slots atomic.Pointer[[]atomic.Pointer[entry]]
	head  atomic.Uint64 // offset of the newest event; 0 before the first
	tail  atomic.Uint64 // offset of the oldest event held; head+1 when none
	bytes int           // bytes held (publishers only)
	total uint64        // bytes ever published (publishers only)
}

func (r *ring) init(n int) {
	slots := make([]atomic.Pointer[entry], n)
	r.slots.Store(&slots)
	r.tail.Store(1)
}

// get returns the event at offset, or nil if the ring does not hold it. A
// reader that has loaded head before calling get finds every event up to
// head still held: push stores a grown slice before the events it holds.
func (r *ring) get(offset uint64) *entry {
	slots := *r.slots.Load()
	e := slots[offset%uint64(len(slots))].Load()
	if e == nil || e.offset != offset {
		return nil
	}
	return e
}

// push appends e as the newest event, then drops the oldest while more than
// maxLen events or maxBytes bytes are held (never the newest). forget is told
// of each dropped event.
func (r *ring) push(e *entry, maxLen, maxBytes int, forget func(*entry)) {
	slots := *r.slots.Load()
	if head, tail := r.head.Load(), r.tail.Load(); head+1-tail == uint64(len(slots)) {
		if len(slots) < maxLen {
			slots = r.grow(min(2*len(slots), maxLen))
		} else {
			r.drop(forget)
		}
	}
	r.total += uint64(len(e.wire))
	e.end = r.total
	e.offset = r.head.Load() + 1
	slots[e.offset%uint64(len(slots))].Store(e)
	r.head.Store(e.offset)
	r.bytes += len(e.wire)
	for r.bytes > maxBytes && r.tail.Load() < e.offset {
		r.drop(forget)
	}
}

// drop lets go of the oldest event; a stream reading it keeps its copy.
func (r *ring) drop(forget func(*entry)) {
	tail := r.tail.Load()
	e := r.get(tail)
	forget(e)
	r.bytes -= len(e.wire)
	r.tail.Store(tail + 1)
	slots := *r.slots.Load()
	slots[tail%uint64(len(slots))].Store(nil)
}

func (r *ring) grow(n int) []atomic.Pointer[entry] {
	slots := make([]atomic.Pointer[entry], n)
	for off := r.tail.Load(); off <= r.head.Load(); off++ {
		slots[off%uint64(n)].Store(r.get(off))
	}
	r.slots.Store(&slots)
	return slots
}

// lagging reports whether a stream whose next event is at cursor is more than
// maxLen events or maxBytes bytes behind head. A stream with at most the
// newest event to send is never lagging.
func (r *ring) lagging(cursor, head uint64, maxLen, maxBytes int) bool {
	if cursor >= head {
		return false
	}
	if head+1-cursor > uint64(maxLen) {
		return true
	}
	first, last := r.get(cursor), r.get(head)
	if first == nil || last == nil {
		return false // moved on as we looked; the caller finds out
	}
	return last.end-(first.end-uint64(len(first.wire))) > uint64(maxBytes)
}
