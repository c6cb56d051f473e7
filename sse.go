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
// delay the others. With a [Log] shared by several processes, Brokers in all
// of them serve one stream. [Broker.Stats] counts what a Broker does.
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
//   - Authentication: EventSource sends cookies but cannot send an
//     Authorization header. Check the cookie (or a token in the query string)
//     before NewWriter or Broker.ServeHTTP; a 401 then stops the browser for
//     good, which suits "log in again".
//   - A request whose client vanished without closing its connection keeps
//     its context: net/http notices a closed connection only while it reads.
//     The heartbeat's write ends it, so keep heartbeats on; set
//     http.Server.ReadHeaderTimeout, and BrokerOptions.MaxSubscribers to bound
//     what such requests hold meanwhile.
package sse

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	mathrand "math/rand/v2"
	"net/http"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// ---- Ids and positions ---------------------------------------------------

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

// ResetEvent is the type of the event a Broker sends, first, to a client whose
// Last-Event-ID it cannot resume from: an id from another Broker or an earlier
// run, a made-up one, or one so old that the events after it are gone. Its
// Data is the id after which events were lost (the one the client sent, or
// empty when LastEventID refused the header), and its ID the position from
// which the stream goes on. The client should fill the gap another way
// (reload its state, say). Listen for it with addEventListener("reset", ...).
//
// A Broker with a Log also sends it in the middle of a stream when the Log's
// history is lost (its epoch changes) or loses events this Broker had not yet
// delivered.
const ResetEvent = "reset"

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
func (p Position) String() string { return string(appendPosition(nil, p)) }

// epochLen is the length of an epoch: 64 random bits in hexadecimal. At that
// width two of even a billion Brokers share an epoch with a probability
// under 3%, and two of a million under one in 30 million.
const epochLen = 16

// newEpoch returns a new random epoch.
func newEpoch() string {
	var b [epochLen / 2]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand documents it)
	return hex.EncodeToString(b[:])
}

// validEpoch reports whether s has the shape of an epoch.
func validEpoch(s string) bool {
	if len(s) != epochLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// parsePosition returns the Position an id names, if it has the shape of one:
// an epoch, a dash and 1 to 20 decimal digits that fit in a uint64.
func parsePosition(id string) (Position, bool) {
	if len(id) < epochLen+2 || len(id) > epochLen+21 || id[epochLen] != '-' || !validEpoch(id[:epochLen]) {
		return Position{}, false
	}
	digits := id[epochLen+1:]
	for i := 0; i < len(digits); i++ {
		if digits[i] < '0' || digits[i] > '9' {
			return Position{}, false
		}
	}
	off, err := strconv.ParseUint(digits, 10, 64)
	return Position{Epoch: id[:epochLen], Offset: off}, err == nil
}

// ---- Logs ----------------------------------------------------------------

// A Log is an ordered history of events kept outside the Broker: Redis
// Streams, a table, a file. With a Log, the Broker numbers nothing itself.
// Publish appends each event to the Log, which gives it its Position; the
// Log hands every event back, from whichever process appended it, through
// Follow; and the Log serves replay older than the Broker's in-memory
// history through ReadAfter. Brokers in several processes that share one Log
// serve one stream: the same events, in the same order, with the same ids.
// Within one process, a Log that persists its events lets clients resume
// across restarts, from a history longer than memory holds.
//
// A wire form, in every method, is one whole event as [Event.AppendText]
// encodes it. It begins with an id line only when the publisher set its own
// Event.ID; otherwise the Broker writes "id: " and the event's Position
// before it. The Log keeps the bytes as they are.
//
// The Broker checks what a Log hands it: a Position whose epoch has another
// shape, a wire form that is not one event, or events past the head that
// ReadAfter reports count as errors of the Log (Stats.Log.Errors), and a
// client is told of what they cost it with a ResetEvent, never left with a
// silent gap.
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
	// from any process, in log order, until stop is called. It returns at
	// once; delivery runs in the background. Its first call, once the log
	// can be reached, is deliver(head, nil): the log's newest event is at
	// head. After any break in the feed (a lost connection, say) it calls
	// deliver(head, nil) again. It may skip events or repeat ones it
	// delivered before: the Broker fills a gap with ReadAfter and ignores
	// repeats. Calls to deliver do not overlap, and deliver may call
	// ReadAfter. The Broker keeps wire and never modifies it.
	//
	// stop returns once no call to deliver is running, and none is made
	// after it; the log then runs no goroutine for this Follow. (So deliver
	// never calls stop.)
	//
	// When the head it hands over has a new epoch, the Broker starts its
	// history there and sends its streams a ResetEvent: events of the new
	// epoch appended before the feed saw it are behind that point, so
	// clients reload rather than miss them in silence.
	Follow(deliver func(pos Position, wire []byte)) (stop func())
}

// ---- The Broker ----------------------------------------------------------

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
	// The history grows as events come, so an idle Broker holds little; one
	// Broker per user wants a small HistoryLen.
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
	// after that long without an event, every stream gets a comment line.
	Stream Options
	// Log, if set, owns the Broker's history: Publish appends to it, events
	// reach the streams as the Log hands them back, and replay older than
	// the Broker's own history is read from it. Brokers in several processes
	// that share a Log serve one stream. See Log.
	Log Log
	// OnIdle, if set, is called each time the Broker's last open stream ends,
	// on the goroutine of that stream's request, before ServeHTTP returns.
	// It lets an application drop a Broker that nobody listens to (see
	// Broker's doc, "One Broker per user"). A new stream may open at any
	// moment, even while OnIdle runs: check Subscribers under the lock that
	// guards the application's own map.
	OnIdle func()
}

// A Broker is an http.Handler that streams the events given to Publish to
// every client connected to it, and lets reconnecting clients resume. Make
// one with NewBroker (the zero Broker is not ready for use); all its methods
// are safe to call from many goroutines at once.
//
// It answers GET with a stream, HEAD with the stream's headers alone, and any
// other method with 405 Method Not Allowed. A GET that declares a body (which
// EventSource never sends) gets 400 Bad Request.
//
// # Delivery
//
// Publish encodes an event once and appends it to the Broker's history, a
// ring bounded by BrokerOptions.HistoryLen and HistoryBytes. Each stream is
// a position in that history. When there is something to send, one of the
// Broker's pump goroutines writes everything from the stream's position to
// the newest event in one write and one flush; meanwhile the handler's
// goroutine only waits. Publish never writes to a connection, so no client can
// slow it or another client, and a stream holds no queue of its own. A large
// event is written from the history's own bytes, so a thousand clients that
// stopped reading hold no copies of it.
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
// An event published with an empty ID gets its Position as its id,
// "<epoch>-<offset>": without a Log, the epoch is a random word chosen by
// NewBroker and the offset counts events from 1. A client that reconnects
// with such an id gets every event after it, then live events, with no gap
// and no duplicate. An event published with its own ID keeps it, and a
// client reconnecting with it resumes the same way while the event is in the
// history, provided no other event in the history has the same ID. Any other
// Last-Event-ID (unknown, repeated, from another Broker or an earlier
// process, older than the history and the Log, or one that LastEventID
// refuses) gets a first event of type ResetEvent, then live events.
//
// A client without a Last-Event-ID gets live events only. Its stream opens
// with an id line alone, which sets its last event ID and dispatches nothing,
// so that it resumes from there even if the stream ends before its first
// event.
//
// # Several processes
//
// With BrokerOptions.Log, the Log numbers the events instead and owns the
// epoch, and Brokers in several processes that share it serve one stream (a
// Redis implementation is the module github.com/lightsse/sse/redisstream).
// The Broker then follows the Log while it has open streams, delivers what
// the Log hands it, in the Log's order, and serves replay beyond its own
// history from the Log. Publish returns once the Log has the event; this
// Broker's streams get it when the Log hands it back, as every other
// process's do.
//
// # One Broker per user
//
// Every stream of a Broker gets every event: to send events to one user or
// topic only, give each its own Broker, in a map guarded by a mutex. Their
// epochs differ, so an id from one topic's stream resumes nothing of
// another's. Set a small HistoryLen, and drop a Broker whose last stream has
// ended with BrokerOptions.OnIdle (see the Broker example). Any client that
// may subscribe to a Broker can replay its whole history, since the epoch is
// in every id: check who may subscribe before ServeHTTP, per Broker.
//
// # Closing
//
// Close ends every stream after it has sent what was published before Close,
// and a retry field telling its client to wait a random time up to
// CloseRetry before reconnecting; a request after Close gets the retry and no
// events (a 200, since a browser would not retry after a 503). To end streams
// when the server shuts down:
//
//	srv.RegisterOnShutdown(func() { broker.Close() })
//
// # Goroutines
//
// Each stream waits in its request's handler goroutine and is written by a
// pump: a goroutine the Broker starts when a stream has something to send and
// no pump is free. Pumps are shared by all streams, so there are about as many
// as writes in progress at once (one per CPU, plus one per client slow to
// read); a pump exits after a second with nothing to write, when the last
// stream ends, or at Close. A panic while a pump writes a stream (in a Log,
// say) is raised again on that stream's handler goroutine, where net/http
// reports it: an error wrapping the value, with the pump's stack, or
// http.ErrAbortHandler unchanged; a runtime.Goexit likewise. The Broker's
// other activity is its heartbeat timer, whose callback runs briefly when it
// fires, rests while no stream is open, and is stopped by Close; and, with a
// Log, the Log's Follow while streams are open.
type Broker struct {
	// Settings, fixed by NewBroker.
	historyLen   int
	historyBytes int
	maxSubs      int64
	closeRetry   time.Duration
	opts         Options // each stream's Writer's; the Broker keeps the heartbeat
	heartbeat    time.Duration
	log          Log
	onIdle       func()

	ctx    context.Context // ends at Close: bounds every call to the Log
	cancel context.CancelFunc

	// Streams read these without a lock, so that no stream, however it is
	// scheduled, can make Publish wait.
	hist   atomic.Pointer[ring] // the history; with a Log, nil until its head is known
	wake   broadcast            // notified when a stream may have something new to send
	closed atomic.Bool
	beats  atomic.Uint64 // heartbeats so far
	open   atomic.Int64  // open streams
	subs   atomic.Int64  // open streams whose start is fixed (Subscribers)
	pumps  pumpPool
	counts counters

	// mu is held briefly by Publish, the Log's deliveries, subscribe, the
	// heartbeat and Close, never across a call to the Log or a write.
	mu        sync.Mutex
	scratch   []byte      // Publish's encoding buffer
	last      time.Time   // when the last event was published, or beat sent
	beatTimer *time.Timer // nil without a heartbeat
	beating   bool        // beatTimer is armed

	feedMu   sync.Mutex // serializes starting and stopping the Log's Follow
	stopFeed func()     // stops the Log's Follow; nil when not following
}

// NewBroker returns a Broker with an empty history: a new epoch, or with a
// Log, the Log's.
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
	b := &Broker{
		historyLen:   o.HistoryLen,
		historyBytes: o.HistoryBytes,
		maxSubs:      int64(max(o.MaxSubscribers, 0)),
		closeRetry:   o.CloseRetry,
		opts:         o.Stream,
		heartbeat:    heartbeatOf(&o.Stream),
		log:          o.Log,
		onIdle:       o.OnIdle,
	}
	b.ctx, b.cancel = context.WithCancel(context.Background())
	b.wake.init()
	b.pumps.init(&b.open)
	if b.log == nil {
		b.hist.Store(b.newRing(newEpoch(), 0))
	}
	if b.heartbeat > 0 {
		b.beatTimer = time.AfterFunc(b.heartbeat, b.beat)
		b.beatTimer.Stop() // armed by the first stream
	}
	return b
}

// Publish sends e to every open stream and keeps it for replay. It encodes e
// once, never waits for a client, and is safe to call from many goroutines;
// streams receive events in the order their Publish calls took effect.
//
// It returns the error from [Event.AppendText] for an event that cannot be
// written faithfully, or ErrInvalidID for an ID that a client could not
// resume from: longer than MaxLastEventIDLen, beginning or ending with a
// space or tab (which net/http trims from the header that brings it back),
// holding a control byte other than tab (net/http answers a header that holds
// one with 400, and a browser then gives up), or shaped as the ids the Broker
// gives, "<epoch>-<offset>" (16 lowercase hex
// digits, a dash, decimal digits), which resume by position. After Close it
// returns ErrClosed. The event is then neither delivered nor kept.
//
// With a Log, Publish waits for the Log's Append, which Close cancels, and
// returns its error; as the Log's doc says, an error then means the event may
// not be in the Log, and so may still reach the streams. PublishContext
// bounds that wait with a context.
func (b *Broker) Publish(e Event) error { return b.PublishContext(b.ctx, e) }

// PublishContext is Publish, with ctx bounding the wait for the Broker's Log:
// when ctx ends first, it returns ctx's error. Without a Log, Publish never
// waits, and ctx is not used.
func (b *Broker) PublishContext(ctx context.Context, e Event) error {
	plain, err := checkPublished(&e)
	if err == nil {
		if b.log != nil {
			err = b.publishToLog(ctx, &e, plain)
		} else {
			err = b.publishHere(&e, plain)
		}
	}
	if err != nil {
		b.counts.publishErrors.Add(1)
		return err
	}
	b.counts.published.Add(1)
	return nil
}

// checkPublished returns what Publish refuses in e, and whether e is plain
// (see Event.plain), which saves its encoding a second look.
func checkPublished(e *Event) (plain bool, err error) {
	if plain = e.plain(); !plain {
		if err := e.validateExact(); err != nil {
			return false, err
		}
	}
	id := e.ID
	switch {
	case id == "":
		return plain, nil
	case len(id) > MaxLastEventIDLen:
		return false, fieldError(ErrInvalidID, "%d bytes, over MaxLastEventIDLen: a client could not resume from it", len(id))
	case isBlank(id[0]) || isBlank(id[len(id)-1]):
		return false, fieldError(ErrInvalidID, "%q begins or ends with a space or tab, which the Last-Event-ID header loses", id)
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; (c < ' ' && c != '\t') || c == 0x7f {
			return false, fieldError(ErrInvalidID, "byte %d is %q: net/http answers 400 to a Last-Event-ID that holds it, and a browser then gives up", i, c)
		}
	}
	if _, ok := parsePosition(id); ok {
		return false, fieldError(ErrInvalidID, "%q has the shape of the ids a Broker gives, which resume by position", id)
	}
	return plain, nil
}

func isBlank(c byte) bool { return c == ' ' || c == '\t' }

// publishHere numbers e itself, the Broker having no Log.
func (b *Broker) publishHere(e *Event, plain bool) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed.Load() {
		return ErrClosed
	}
	r := b.hist.Load()
	buf := b.scratch[:0]
	if e.ID == "" {
		buf = appendIDLine(buf, Position{r.epoch, r.head.Load() + 1})
	}
	buf = e.appendChecked(buf, plain)
	wire := make([]byte, len(buf))
	copy(wire, buf)
	if cap(buf) <= maxKeptBuffer {
		b.scratch = buf
	}
	b.pushLocked(r, wire, e.ID)
	return nil
}

// publishToLog appends e to the Log, where the Broker's feed finds it. The
// call ends with ctx, or at Close.
func (b *Broker) publishToLog(ctx context.Context, e *Event, plain bool) error {
	if b.closed.Load() {
		return ErrClosed
	}
	if ctx != b.ctx {
		var cancel context.CancelFunc
		ctx, cancel = context.WithCancel(ctx)
		defer cancel()
		defer context.AfterFunc(b.ctx, cancel)()
	}
	if _, err := b.log.Append(ctx, e.appendChecked(nil, plain)); err != nil {
		if b.closed.Load() {
			return ErrClosed
		}
		if ctx.Err() == nil {
			b.counts.logErrors.Add(1)
		}
		return err
	}
	return nil
}

// pushLocked appends wire, whose publisher ID is id, to r and wakes the
// streams. b.mu is held.
func (b *Broker) pushLocked(r *ring, wire []byte, id string) {
	r.push(&entry{wire: wire, id: id}, b.historyLen, b.historyBytes)
	if b.beatTimer != nil {
		b.last = time.Now()
	}
	b.wake.notify()
}

// Subscribers returns the number of open streams that every later Publish
// reaches: once it counts a stream, an event published after it returned
// reaches that stream (or its client gets a ResetEvent saying it was lost).
// A stream counts from the moment its place in the history is fixed, which
// is as it opens, or with a Log whose head the Broker does not know yet,
// once the Log has told it.
func (b *Broker) Subscribers() int { return int(b.subs.Load()) }

// Close ends every stream, each after the events published before Close and
// a retry field with a random delay up to BrokerOptions.CloseRetry, and makes
// later requests get only such a retry and Publish return ErrClosed. It
// cancels the Broker's calls to its Log. It returns at once, without waiting
// for streams to end, and always returns nil. It is safe to call at any
// time, from any goroutine, more than once.
func (b *Broker) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed.Swap(true) {
		return nil
	}
	b.cancel()
	b.wake.notify() // after closed: a stream that misses it sees closed
	b.pumps.close()
	if b.beatTimer != nil {
		b.beatTimer.Stop()
	}
	return nil
}

// ServeHTTP streams events to the client until it leaves, falls behind, or
// the Broker closes. It resumes from the request's Last-Event-ID as described
// on Broker. HEAD gets the stream's headers and no body; a method other than
// GET and HEAD gets 405 with an Allow header, and a GET with a body 400. If
// the ResponseWriter cannot flush, or BrokerOptions.Stream holds a Retry that
// NewWriter refuses, it answers 500.
func (b *Broker) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet:
	case http.MethodHead:
		writeStreamHeader(w)
		return
	default:
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "sse: an event stream is read with GET", http.StatusMethodNotAllowed)
		return
	}
	if r.ContentLength != 0 {
		// A declared body that never comes would block the stream's first
		// write inside net/http, past every write deadline: net/http reads
		// what is left of a body before it answers on a connection it
		// keeps, so this answer closes the connection instead.
		// (HTTP/1 only: over HTTP/2, Connection: close would end every
		// stream of the connection.)
		if r.ProtoMajor == 1 {
			w.Header().Set("Connection", "close")
		}
		http.Error(w, "sse: a request for an event stream has no body", http.StatusBadRequest)
		return
	}
	sw, err := newWriter(w, r, &b.opts)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	s := &stream{b: b, w: sw, req: r, beats: b.beats.Load()}
	if refused := b.subscribe(s); refused != endNone {
		b.refuse(w, r, refused)
		return
	}
	end := endFailed // unless serve returns: a pump's panic or Goexit
	defer func() {
		sw.Close()
		b.unsubscribe(s, end)
	}()
	end = s.serve()
}

// subscribe counts a new stream in, or says why it is refused. Where the
// history is known, it fixes the stream's start here, under the mutex that
// Publish holds to append, so that every event published after it reaches
// the stream: a pump places the stream later, from this start.
func (b *Broker) subscribe(s *stream) endReason {
	b.mu.Lock()
	switch {
	case b.closed.Load():
		b.mu.Unlock()
		return endRefusedClosed
	case b.maxSubs > 0 && b.open.Load() >= b.maxSubs:
		b.mu.Unlock()
		return endRefusedFull
	}
	b.open.Add(1)
	if r := b.hist.Load(); r != nil {
		s.fix(r)
	}
	b.counts.opened.Add(1)
	if b.beatTimer != nil && !b.beating {
		b.beating = true
		b.beatTimer.Reset(b.heartbeat)
	}
	b.mu.Unlock()
	if b.log != nil {
		b.syncFeed()
	}
	return endNone
}

// unsubscribe counts s out, for the reason it ended. When none is left, the
// idle pumps exit, the Log is no longer followed, and OnIdle runs.
func (b *Broker) unsubscribe(s *stream, end endReason) {
	b.counts.ended[end].Add(1)
	if s.start != nil {
		b.subs.Add(-1)
	}
	if b.open.Add(-1) != 0 {
		return
	}
	b.pumps.release.notify()
	if b.log != nil {
		b.syncFeed()
	}
	if b.onIdle != nil {
		b.onIdle()
	}
}

// refuse answers a request the Broker cannot serve (closed or full) with a
// retry and no events, so the browser comes back later.
func (b *Broker) refuse(w http.ResponseWriter, r *http.Request, why endReason) {
	b.counts.opened.Add(1)
	b.counts.ended[why].Add(1)
	sw, err := NewWriter(w, r, &Options{Retry: b.jitter(), Heartbeat: -1, WriteTimeout: b.opts.WriteTimeout})
	if err == nil {
		sw.Close()
	}
}

// jitter returns a random delay in (0, closeRetry], in whole milliseconds.
func (b *Broker) jitter() time.Duration {
	ms := int64(b.closeRetry / time.Millisecond)
	return time.Duration(1+mathrand.Int64N(ms)) * time.Millisecond
}

// beat runs when the heartbeat timer fires. After a whole period without an
// event it has every stream send a comment; otherwise it waits out the rest
// of the period. It lets the timer rest while no stream is open.
func (b *Broker) beat() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed.Load() || waitRest(b.beatTimer, b.heartbeat, time.Since(b.last)) {
		return
	}
	if b.open.Load() == 0 {
		b.beating = false // no stream subscribes while mu is held: the next re-arms it
		return
	}
	b.beats.Add(1)
	b.last = time.Now()
	b.wake.notify()
	b.beatTimer.Reset(b.heartbeat)
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

// ---- Counters ------------------------------------------------------------

// Stats is a snapshot of a Broker's counters since NewBroker, from
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

// ---- Streams -------------------------------------------------------------

// maxBatch is how many bytes a stream gathers for one write; bigEvent is the
// size from which an event is written from the history's own bytes rather
// than copied into a batch, so that streams stuck in a write hold no copies
// of large events.
const (
	maxBatch = 32 << 10
	bigEvent = maxBatch / 2
)

var batchPool = sync.Pool{New: func() any { b := make([]byte, 0, maxBatch); return &b }}

// A stream is one client's position in a Broker's history. Its handler
// goroutine waits in serve while one of the Broker's pumps writes it (see
// pumpPool for why).
type stream struct {
	b   *Broker
	w   *Writer
	req *http.Request

	ring   *ring  // the history it reads; nil until placed in one
	cursor uint64 // offset of the next event to send, in ring, or in epoch when ring is nil
	start  *ring  // the history when the stream's start was fixed; nil before
	from   uint64 // start's head then: the stream sends every event after it
	epoch  string // with ring nil, once placed: the epoch of the Log it reads
	beats  uint64 // the Broker's heartbeats this stream has sent, or skipped

	opened   bool // the headers are written
	placed   bool // the stream knows where in the history it starts
	sent     bool // an event has been sent: a reset is no longer possible at the start
	caughtUp bool // the stream has reached the newest event once
	resumed  bool // its resume is counted

	handoff
}

// serve has pumps write the stream, and waits between their turns for
// something new to send, until the stream ends. It returns why it ended, and
// only when no pump holds the stream, so nothing writes to the response
// after the handler returns.
func (s *stream) serve() endReason {
	for {
		s.b.pumps.give(s)
		out := s.take()
		switch {
		case out.fault != nil:
			out.fault.raise() // where net/http recovers it, as from any handler
		case out.wake == nil:
			return out.end
		}
		select {
		case <-out.wake:
		case <-s.w.done:
			return endClientLeft
		}
	}
}

// turn writes what the stream has to send, until it catches up or ends, and
// hands the stream back with the outcome. It runs on a pump.
func (s *stream) turn() {
	var out outcome
	finished := false
	defer func() {
		if !finished {
			// A panic (in a Log, say) or runtime.Goexit is the handler's to
			// report: serve raises it again there.
			out = outcome{end: endFailed, fault: &fault{panicked: pumpPanic(recover())}}
		}
		s.back(out)
	}()
	out = s.writeAll()
	finished = true
}

// pumpPanic returns what to panic with on the handler's goroutine for p, a
// pump's panic: an error wrapping p with the pump's stack, or
// http.ErrAbortHandler unchanged, which net/http treats as a quiet abort. It
// returns nil for nil, which is a runtime.Goexit.
func pumpPanic(p any) any {
	if p == nil || p == http.ErrAbortHandler {
		return p
	}
	err, ok := p.(error)
	if !ok {
		err = fmt.Errorf("%v", p)
	}
	return fmt.Errorf("sse: panic while writing a stream: %w\n%s", err, debug.Stack())
}

// A step is what a stream's read found: bytes to write, then whether to go
// on, wait, or end.
type step struct {
	batch []byte          // whole events, or lines of the stream's own, copied
	big   []byte          // then one large event, from the history's own bytes
	wake  <-chan struct{} // nothing more to send now: wait on this
	end   endReason       // the stream ends once batch is written
}

// writeAll is turn's work: it reads and writes until the stream has caught up
// or ended.
func (s *stream) writeAll() outcome {
	for {
		bp := batchPool.Get().(*[]byte)
		dst := (*bp)[:0]
		if !s.opened {
			dst = appendRetry(dst, s.b.opts.Retry)
		}
		own := len(dst) // the opening retry, not yet written
		st := s.next(dst)
		var err error
		switch {
		case !s.opened && (s.placed || len(st.batch) > own || len(st.big) > 0 || st.end != endNone):
			// The headers go out once the stream knows where it starts (or
			// has something to say before: a heartbeat), even with nothing
			// else to send, so that the client's open event fires: an event
			// published after open reaches it.
			s.opened = true
			writeStreamHeader(s.w.w)
			fallthrough
		case s.opened && (len(st.batch) > 0 || len(st.big) > 0):
			if err = s.w.sendWire(st.batch, st.big); err == nil {
				s.b.counts.bytes.Add(uint64(len(st.batch) + len(st.big)))
			}
		}
		if cap(st.batch) <= 2*maxBatch {
			*bp = st.batch[:0]
			batchPool.Put(bp)
		}
		switch {
		case err != nil:
			return outcome{end: writeEnd(err)}
		case st.end != endNone:
			return outcome{end: st.end}
		case st.wake != nil:
			return outcome{wake: st.wake}
		}
	}
}

// writeEnd returns why a failed write ended a stream.
func writeEnd(err error) endReason {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return endWriteTimeout
	}
	return endClientLeft // ErrClosed (the request ended), or a broken connection
}

// next appends to dst what the stream has to send now, from its cursor on,
// and advances the cursor: events (up to maxBatch bytes, or one large event),
// a heartbeat, or the closing retry. It takes no lock. With nothing to send
// it returns the channel to wait on, or, if something came in as it looked,
// nothing at all, and the caller reads again.
func (s *stream) next(dst []byte) step {
	if s.ring == nil {
		return s.place(dst)
	}
	b, r := s.b, s.ring
	closed := b.closed.Load() // before head: once closed, head moves no more
	if head := r.head.Load(); s.cursor <= head {
		tail := r.tail.Load()
		switch {
		case s.cursor < tail:
			return s.leaveRing(dst)
		case s.caughtUp && r.lagging(s.cursor, head, max(b.historyLen/2, 1), max(b.historyBytes/2, 1)):
			return step{batch: dst, end: endFellBehind}
		}
		return s.gather(dst, head)
	}
	if cur := b.hist.Load(); cur != r && cur != nil {
		// The Log's history was replaced: say so, then go on with every event
		// of the new one.
		b.counts.resets[resetNewHistory].Add(1)
		return s.resetTo(dst, cur, cur.tail.Load()-1, s.lastSent(r))
	}
	if closed {
		return step{batch: appendRetry(dst, b.jitter()), end: endClosed}
	}
	if beats := b.beats.Load(); s.beats != beats {
		s.beats = beats
		b.counts.heartbeats.Add(1)
		return step{batch: append(dst, heartbeatLine...)}
	}
	wake := b.wake.wait()
	if r.head.Load() >= s.cursor || b.beats.Load() != s.beats || b.closed.Load() || b.hist.Load() != r {
		return step{batch: dst} // came in as we looked: read again
	}
	s.caughtUp = true
	return step{batch: dst, wake: wake}
}

// gather appends the events from the cursor to head, up to maxBatch bytes; or,
// when the next is a large one, returns it to be written from the ring.
func (s *stream) gather(dst []byte, head uint64) step {
	r, n := s.ring, 0
	for ; s.cursor <= head; s.cursor++ {
		e := r.get(s.cursor)
		if e == nil { // dropped as we read: send what we have, then see
			if n > 0 {
				break
			}
			return s.leaveRing(dst)
		}
		if len(e.wire) >= bigEvent {
			if n == 0 {
				s.cursor++
				s.sent = true
				return step{batch: dst, big: e.wire}
			}
			break
		}
		if n > 0 && len(dst)+len(e.wire) > maxBatch {
			break
		}
		dst = append(dst, e.wire...)
		n++
	}
	s.sent = true
	s.beats = s.b.beats.Load() // the events just read are traffic enough
	return step{batch: dst}
}

// leaveRing handles a stream whose next event the ring no longer holds: with
// a Log it reads on from the Log; without, it has fallen behind for good.
func (s *stream) leaveRing(dst []byte) step {
	if s.b.log == nil {
		return step{batch: dst, end: endFellBehind}
	}
	s.epoch, s.ring = s.ring.epoch, nil
	return s.readLog(dst)
}

// place finds where in the history a new stream starts, from its request's
// Last-Event-ID, and appends what it sends first: nothing for a client that
// resumes, an id line alone for a new client, a ResetEvent for one that
// cannot resume. With a Log it may read the Log, or wait for the Log's head.
func (s *stream) place(dst []byte) step {
	b := s.b
	if s.placed {
		return s.readLog(dst)
	}
	if b.closed.Load() {
		return step{batch: appendRetry(dst, b.jitter()), end: endClosed}
	}
	r := b.hist.Load()
	if r == nil { // with a Log whose head is not known yet
		return s.idle(dst, nil)
	}
	s.placed = true
	if s.start == nil {
		s.fix(r)
	}
	lastID := LastEventID(s.req)
	if lastID == "" {
		if s.req.Header.Get("Last-Event-ID") != "" {
			// A header LastEventID refuses (too long, not UTF-8) is an id we
			// cannot resume from, not the absence of one.
			b.counts.resets[resetUnknownID].Add(1)
			return s.resetTo(dst, r, s.startIn(r), "")
		}
		head := s.startIn(r)
		s.ring, s.cursor = r, head+1
		return step{batch: appendPlace(dst, Position{r.epoch, head})}
	}
	if p, ok := parsePosition(lastID); ok {
		head, tail := r.head.Load(), r.tail.Load()
		if p.Epoch == r.epoch && p.Offset <= head && p.Offset+1 >= tail {
			s.countResume(fromHistory)
			s.ring, s.cursor = r, p.Offset+1
			return step{batch: dst}
		}
		if b.log != nil {
			// Read from the Log next time round, once the headers are out:
			// the Log may be slow, and the client should see its stream open.
			s.epoch, s.cursor = p.Epoch, p.Offset+1
			return step{batch: dst}
		}
		cause := resetUnknownID
		if p.Epoch == r.epoch && p.Offset < head {
			cause = resetTooOld
		}
		b.counts.resets[cause].Add(1)
		return s.resetTo(dst, r, s.startIn(r), lastID)
	}
	b.mu.Lock() // the publisher ids' index changes with the history
	ref, ok := r.byID[lastID]
	b.mu.Unlock()
	if ok && ref.count == 1 {
		s.countResume(fromHistory)
		s.ring, s.cursor = r, ref.offset+1
		return step{batch: dst}
	}
	b.counts.resets[resetUnknownID].Add(1)
	return s.resetTo(dst, r, s.startIn(r), lastID)
}

// fix fixes the stream's start at r's head and counts the stream in
// Subscribers: every event published from now on is at a later offset, in r
// or in a history that replaces it (whose streams get a ResetEvent).
func (s *stream) fix(r *ring) {
	s.start, s.from = r, r.head.Load()
	s.b.subs.Add(1)
}

// startIn returns the offset after which a stream that does not resume
// starts in r: its fixed start, or r's head if r replaced that history.
func (s *stream) startIn(r *ring) uint64 {
	if r == s.start {
		return s.from
	}
	return r.head.Load()
}

// countResume counts the stream's resume, once, as beginning in from.
func (s *stream) countResume(from int) {
	if !s.resumed {
		s.resumed = true
		s.b.counts.resumed[from].Add(1)
	}
}

// lastSent returns the id of the last event the stream sent from r, which
// it read up to its cursor.
func (s *stream) lastSent(r *ring) string {
	if e := r.get(s.cursor - 1); e != nil && e.id != "" {
		return e.id
	}
	return Position{r.epoch, s.cursor - 1}.String()
}

// resetTo appends a ResetEvent and places the stream in r after offset at:
// after is the id after which the client lost events.
func (s *stream) resetTo(dst []byte, r *ring, at uint64, after string) step {
	s.ring, s.cursor, s.sent = r, at+1, true
	return step{batch: appendReset(dst, Position{r.epoch, at}, after)}
}

// readLog reads the events after the stream's position from the Log, for a
// stream whose next event is older than the ring holds, or from an epoch
// this Broker has not seen. Once the Log has nothing more, the stream joins
// the ring. What the Log cannot give is a ResetEvent: at once if the stream
// has sent nothing, else when its client reconnects (the stream ends).
func (s *stream) readLog(dst []byte) step {
	b := s.b
	if r := b.hist.Load(); r != nil && r.epoch == s.epoch && s.cursor >= r.tail.Load() && s.cursor <= r.head.Load()+1 {
		s.ring = r // the ring has the rest
		return step{batch: dst}
	}
	after := Position{s.epoch, s.cursor - 1}
	ctx, cancel := s.logContext()
	wires, head, err := b.log.ReadAfter(ctx, after, maxBatch)
	cancel()
	if err != nil {
		select {
		case <-s.w.done:
			return step{batch: dst, end: endClientLeft}
		default:
		}
		if b.closed.Load() {
			return step{batch: appendRetry(dst, b.jitter()), end: endClosed}
		}
		// The Log cannot be read now: the stream stays open, with its
		// heartbeats, and asks again when something happens (an event, a
		// heartbeat, the feed coming back), to go on with no gap.
		b.counts.logErrors.Add(1)
		return s.idle(dst, b.hist.Load())
	}
	if err := checkRead(after, wires, head); err != nil {
		b.counts.logErrors.Add(1)
		return s.logFailed(dst, head, after)
	}
	switch {
	case len(wires) > 0:
		if !s.sent {
			s.countResume(fromLog)
		}
		for i, w := range wires {
			if _, own := ownID(w); !own {
				dst = appendIDLine(dst, Position{s.epoch, s.cursor + uint64(i)})
			}
			dst = append(dst, w...)
		}
		s.cursor += uint64(len(wires))
		s.sent = true
		return step{batch: dst}
	case head.Epoch == after.Epoch && head.Offset == after.Offset:
		// Nothing after the stream's position: it goes on in the ring, once
		// the ring has its epoch (the Log's feed may lag the Log).
		r := b.hist.Load()
		if r != nil && r.epoch == s.epoch {
			if s.cursor < r.tail.Load() {
				// The ring, which the Log fed, has dropped events that the Log
				// says it does not have: it cannot be right.
				b.counts.logErrors.Add(1)
				return s.logFailed(dst, head, after)
			}
			if !s.sent {
				s.countResume(fromHistory)
			}
			s.ring = r
			return step{batch: dst}
		}
		return s.idle(dst, r)
	}
	// The Log holds neither the event after the stream's position nor that
	// position as its head: the events are gone, or the id was made up.
	if s.sent {
		return step{batch: dst, end: endFellBehind}
	}
	cause := resetTooOld
	if head.Epoch != after.Epoch || after.Offset > head.Offset {
		cause = resetUnknownID
	}
	b.counts.resets[cause].Add(1)
	return s.resetToLog(dst, head, after)
}

// idle has a stream that is not in the ring wait for anything new: an
// event, a heartbeat (which it sends), a history other than seen, or Close.
func (s *stream) idle(dst []byte, seen *ring) step {
	b := s.b
	if beats := b.beats.Load(); s.beats != beats {
		s.beats = beats
		b.counts.heartbeats.Add(1)
		dst = append(dst, heartbeatLine...)
	}
	wake := b.wake.wait()
	if b.closed.Load() || b.beats.Load() != s.beats || b.hist.Load() != seen {
		return step{batch: dst} // came in as we looked: read again
	}
	return step{batch: dst, wake: wake}
}

// logFailed ends a stream that the Log failed, or resets it if it has sent
// nothing yet.
func (s *stream) logFailed(dst []byte, head, after Position) step {
	if s.sent {
		return step{batch: dst, end: endLogFailed}
	}
	s.b.counts.resets[resetLogFailed].Add(1)
	return s.resetToLog(dst, head, after)
}

// resetToLog resets a stream that has sent nothing, to the ring's newest
// event, or, before the ring is known, to the Log's head (the stream then
// joins the ring when it comes).
func (s *stream) resetToLog(dst []byte, head Position, after Position) step {
	from := LastEventID(s.req)
	if r := s.b.hist.Load(); r != nil {
		return s.resetTo(dst, r, s.startIn(r), from)
	}
	if !validEpoch(head.Epoch) { // the Log failed: no position to give
		head = after
	}
	s.epoch, s.cursor, s.sent = head.Epoch, head.Offset+1, true
	return step{batch: appendReset(dst, head, from)}
}

// checkRead returns an error if what ReadAfter returned cannot be right.
func checkRead(after Position, wires [][]byte, head Position) error {
	if !validEpoch(head.Epoch) {
		return fmt.Errorf("sse: Log.ReadAfter: head %q has no epoch", head)
	}
	if len(wires) == 0 {
		return nil
	}
	if head.Epoch != after.Epoch || head.Offset < after.Offset || uint64(len(wires)) > head.Offset-after.Offset {
		return fmt.Errorf("sse: Log.ReadAfter: %d events after %v, past the head %v", len(wires), after, head)
	}
	for i, w := range wires {
		if !oneEvent(w) {
			return fmt.Errorf("sse: Log.ReadAfter: event %d after %v is not one encoded event", i+1, after)
		}
	}
	return nil
}

// logContext returns a context for a call to the Log on the stream's behalf:
// it ends when the client leaves, when the Broker closes, or after a
// heartbeat period.
func (s *stream) logContext() (context.Context, context.CancelFunc) {
	// A call that hangs must not keep the stream from its heartbeats: it
	// gets a heartbeat period, after which the stream sends one and asks
	// again.
	limit := s.b.heartbeat
	if limit <= 0 {
		limit = DefaultHeartbeat
	}
	ctx, cancel := context.WithTimeout(s.req.Context(), limit)
	stop := context.AfterFunc(s.b.ctx, cancel)
	return ctx, func() { stop(); cancel() }
}

// ---- Pumps ---------------------------------------------------------------

// pumpIdle is how long a pump waits for another stream to write before it
// exits.
const pumpIdle = time.Second

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
	s.lend()
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
		s.turn()
		s = p.next(idle, time.Now())
	}
}

// next waits for another stream for a pump that finished one at since. It
// returns nil, for the pump to exit, after pumpIdle without one, at Close, or
// when no stream is open (so that no goroutine of the Broker outlives its
// streams for long, which a testing/synctest bubble also requires).
func (p *pumpPool) next(idle *time.Timer, since time.Time) *stream {
	release := p.release.wait()
	if p.open.Load() == 0 {
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
			if !waitRest(idle, pumpIdle, time.Since(since)) {
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

// ---- The feed from a Log -------------------------------------------------

// syncFeed follows the Log while the Broker has open streams, and stops
// following it when it has none: a Broker nobody listens to costs the Log
// nothing. Its history goes with the feed, since it would go stale.
func (b *Broker) syncFeed() {
	b.feedMu.Lock()
	defer b.feedMu.Unlock()
	switch want := b.open.Load() > 0; {
	case want && b.stopFeed == nil:
		// The feed's calls to the Log end with it: stop waits for a
		// delivery, and a delivery may be filling a gap.
		ctx, cancel := context.WithCancel(b.ctx)
		stop := b.log.Follow(func(pos Position, wire []byte) { b.deliver(ctx, pos, wire) })
		b.stopFeed = func() { cancel(); stop() }
	case !want && b.stopFeed != nil:
		b.stopFeed()
		b.stopFeed = nil
		b.mu.Lock()
		b.hist.Store(nil)
		b.mu.Unlock()
	}
}

// fillBatch is how many bytes of events the feed reads from the Log at once
// to fill a gap.
const fillBatch = 1 << 20

// deliver takes what the Log's Follow hands the Broker: an event at pos, or,
// with wire nil, the Log's head. It puts events in the history in the Log's
// order, fills a gap from the Log before it goes on, and starts a new history
// (its streams get a ResetEvent) for a new epoch, a head behind its own, or a
// gap the Log no longer holds. If the Log fails while it fills a gap, it
// drops the delivery: the next one finds the gap again. ctx ends with the
// feed.
func (b *Broker) deliver(ctx context.Context, pos Position, wire []byte) {
	if b.closed.Load() {
		return
	}
	if !validEpoch(pos.Epoch) || (wire != nil && (pos.Offset == 0 || !oneEvent(wire))) {
		b.counts.logErrors.Add(1)
		return
	}
	last := pos.Offset // the Log holds every event up to last before this one
	if wire != nil {
		last--
	}
	r := b.hist.Load()
	switch {
	case r == nil:
		r = b.replace(pos.Epoch, last)
	case r.epoch != pos.Epoch || (wire == nil && last < r.head.Load()):
		b.counts.newHistories.Add(1)
		r = b.replace(pos.Epoch, last)
	case last > r.head.Load():
		switch b.fill(ctx, r, last) {
		case fillFailed:
			return
		case fillLost:
			b.counts.newHistories.Add(1)
			r = b.replace(pos.Epoch, last)
		}
	}
	if r == nil || wire == nil || pos.Offset != r.head.Load()+1 {
		return // closed, a head, or a repeat
	}
	wire, id := numbered(pos, wire)
	b.mu.Lock()
	if !b.closed.Load() {
		b.pushLocked(r, wire, id)
	}
	b.mu.Unlock()
}

// numbered returns the wire form to keep for the event at pos, and the ID
// its publisher gave it: an event without one gets its position as its id.
func numbered(pos Position, wire []byte) ([]byte, string) {
	if id, own := ownID(wire); own {
		return wire, id
	}
	line := len("id: -\n") + len(pos.Epoch) + 20 // 20: the digits of the largest offset
	return append(appendIDLine(make([]byte, 0, line+len(wire)), pos), wire...), ""
}

// replace starts a new history at head, the position before its first event.
// It returns nil, and changes nothing, once the Broker is closed: streams
// then end with what they have.
func (b *Broker) replace(epoch string, head uint64) *ring {
	r := b.newRing(epoch, head)
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed.Load() {
		return nil
	}
	b.hist.Store(r)
	b.wake.notify()
	return r
}

// What fill did.
const (
	fillDone   = iota // the gap is filled
	fillFailed        // the Log failed, or the feed or the Broker ended
	fillLost          // the Log no longer holds the events
)

// fill reads the events after r's head up to last from the Log into r.
func (b *Broker) fill(ctx context.Context, r *ring, last uint64) int {
	for {
		after := Position{r.epoch, r.head.Load()}
		if after.Offset >= last {
			b.counts.gapsFilled.Add(1)
			return fillDone
		}
		wires, head, err := b.log.ReadAfter(ctx, after, fillBatch)
		if err == nil {
			err = checkRead(after, wires, head)
		}
		switch {
		case err != nil:
			if ctx.Err() == nil {
				b.counts.logErrors.Add(1)
			}
			return fillFailed
		case len(wires) == 0:
			return fillLost
		}
		wires = wires[:min(uint64(len(wires)), last-after.Offset)]
		b.mu.Lock()
		if b.closed.Load() {
			b.mu.Unlock()
			return fillFailed
		}
		for i, w := range wires {
			w, id := numbered(Position{r.epoch, after.Offset + 1 + uint64(i)}, w)
			b.pushLocked(r, w, id)
		}
		b.mu.Unlock()
		b.counts.eventsFilled.Add(uint64(len(wires)))
	}
}

// ---- The ring ------------------------------------------------------------

// An entry is one event in a Broker's history. It does not change once
// published.
type entry struct {
	offset uint64 // its place in the history
	wire   []byte // the encoded event
	id     string // the event's own ID, if the publisher set one
	end    uint64 // bytes published up to and including this event
}

// A ring holds the most recent events of one epoch, by offset. Publishers
// change it under the Broker's mutex, one at a time; streams read it with
// atomic loads only. It grows by doubling up to its bound in events, so a
// quiet Broker holds little.
type ring struct {
	epoch string
	slots atomic.Pointer[[]atomic.Pointer[entry]]
	head  atomic.Uint64 // offset of the newest event; tail-1 when none
	tail  atomic.Uint64 // offset of the oldest event held; head+1 when none

	// Under the Broker's mutex.
	bytes int              // bytes held
	total uint64           // bytes ever pushed
	byID  map[string]idRef // events held that carry their publisher's own ID
}

// An idRef indexes the events in the history that carry one publisher ID.
type idRef struct {
	offset uint64 // the newest
	count  int    // how many: more than one, and the ID says no position
}

// newRing returns an empty ring of epoch whose first event will be at head+1.
func (b *Broker) newRing(epoch string, head uint64) *ring {
	r := &ring{epoch: epoch}
	slots := make([]atomic.Pointer[entry], min(b.historyLen, 64))
	r.slots.Store(&slots)
	r.head.Store(head)
	r.tail.Store(head + 1)
	return r
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
// maxLen events or maxBytes bytes are held (never the newest).
func (r *ring) push(e *entry, maxLen, maxBytes int) {
	slots := *r.slots.Load()
	if head, tail := r.head.Load(), r.tail.Load(); head+1-tail == uint64(len(slots)) {
		if len(slots) < maxLen {
			slots = r.grow(min(2*len(slots), maxLen))
		} else {
			r.drop()
		}
	}
	r.total += uint64(len(e.wire))
	e.end = r.total
	e.offset = r.head.Load() + 1
	slots[e.offset%uint64(len(slots))].Store(e)
	r.head.Store(e.offset)
	r.bytes += len(e.wire)
	if e.id != "" {
		if r.byID == nil {
			r.byID = make(map[string]idRef)
		}
		r.byID[e.id] = idRef{offset: e.offset, count: r.byID[e.id].count + 1}
	}
	for r.bytes > maxBytes && r.tail.Load() < e.offset {
		r.drop()
	}
}

// drop lets go of the oldest event; a stream writing it keeps it alive.
func (r *ring) drop() {
	tail := r.tail.Load()
	e := r.get(tail)
	if e.id != "" {
		if ref := r.byID[e.id]; ref.count > 1 {
			r.byID[e.id] = idRef{offset: ref.offset, count: ref.count - 1}
		} else {
			delete(r.byID, e.id)
		}
	}
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
