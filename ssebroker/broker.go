package ssebroker

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lightsse/sse"
	"github.com/lightsse/sse/internal/wire"
)

// Defaults used when Options leaves a field zero.
const (
	DefaultHistoryLen   = 16384
	DefaultHistoryBytes = 16 << 20
	DefaultCloseRetry   = 5 * time.Second
)

// Options configure a Broker. A nil *Options, and any zero field, means the
// default; a negative value means off where the field says so, and New
// refuses it (ErrInvalidOptions) where it does not.
type Options struct {
	// HistoryLen and HistoryBytes bound the history: the most recent events, in
	// their encoded form, that serve both replay and live delivery. The oldest
	// event is dropped when either bound is passed (the newest event is always
	// kept). 0 means DefaultHistoryLen and DefaultHistoryBytes. The history
	// grows as events come, so an idle Broker holds little; one Broker per
	// user wants a small HistoryLen.
	HistoryLen   int
	HistoryBytes int
	// MaxSubscribers caps the open streams. 0 means no cap. A request over
	// the cap is answered as one after Close is.
	MaxSubscribers int
	// CloseRetry bounds the reconnection delay a Broker gives each stream when
	// it closes: every client is told to wait a random time in (0, CloseRetry],
	// so that they do not all come back in the same instant. 0 means
	// DefaultCloseRetry; negative means no retry field (each client waits its
	// own reconnection time); a positive value under a millisecond is refused.
	CloseRetry time.Duration
	// Stream configures each stream's Writer: write timeout and retry as for
	// sse.NewWriter, whose rules they follow (a Retry NewWriter refuses, New
	// refuses). Its Heartbeat is kept by the Broker for all streams at once:
	// after that long without an event, every stream gets a comment line.
	Stream sse.Options
	// Log, if set, owns the Broker's history: Publish appends to it, events
	// reach the streams as the Log hands them back, and replay older than
	// the Broker's own history is read from it. Brokers in several processes
	// that share a Log serve one stream. See Log.
	Log Log
	// FromStart has a client without a Last-Event-ID start from the first
	// event of the current epoch, as if it resumed from "<epoch>-0",
	// instead of with live events only. It suits a stream that has a
	// beginning, like one run of a job. Its replay comes from the history,
	// or with a Log, from the Log; where neither holds the first event any
	// more, the client gets a ResetEvent (with empty Data) and live events,
	// as for an id too old. It does not count in Stats.Resumed.
	FromStart bool
	// OnIdle, if set, is called each time the Broker's last open stream ends,
	// on the goroutine of that stream's request, before ServeHTTP returns
	// (for a detached stream, on the Broker's goroutine that ended it).
	// It lets an application drop a Broker that nobody listens to (see
	// Broker's doc, "One Broker per user"). A new stream may open at any
	// moment, even while OnIdle runs: check Subscribers under the lock that
	// guards the application's own map.
	OnIdle func()
	// Detach has each HTTP/1.x stream leave net/http once it is accepted:
	// ServeHTTP takes the connection (http.ResponseController.Hijack),
	// returns, and the Broker writes the response itself, the same bytes
	// with Connection: close. An idle stream then costs a few KiB instead of
	// net/http's 20 or so: its connection, its place in the history, and one
	// goroutine on a small stack reading the connection, to learn at once
	// when the client leaves. Streams over HTTP/2, and where the
	// ResponseWriter cannot hijack (a middleware's wrapper without Unwrap,
	// http.TimeoutHandler), are served as without it.
	//
	// What changes for the code around ServeHTTP: a middleware sees it
	// return as the stream starts, with no status written through its
	// wrapper; the request's context ends then; http.Server's Shutdown and
	// Close neither wait for nor close detached streams (end them with
	// Close, as RegisterOnShutdown in Broker's doc shows: a stream stuck in
	// a write ends within its write timeout, which Detach therefore
	// requires: New refuses it with a negative Stream.WriteTimeout); the server's
	// ConnState hook sees the connection StateHijacked; a listener that
	// limits connections counts a detached stream until it ends, since the
	// Broker closes the connection then. OnIdle runs on a Broker goroutine,
	// and a panic while a detached stream is written is logged, as net/http
	// logs a handler's (to the server's ErrorLog), and ends that stream.
	Detach bool
}

// A Broker is an http.Handler that streams the events given to Publish to
// every client connected to it, and lets reconnecting clients resume. Make
// one with New (the zero Broker is not ready for use); all its methods
// are safe to call from many goroutines at once.
//
// It answers GET with a stream, HEAD with the stream's headers alone, and any
// other method with 405 Method Not Allowed. A GET that declares a body (which
// EventSource never sends) gets 400 Bad Request.
//
// # Delivery
//
// Publish encodes an event once and appends it to the Broker's history,
// bounded by Options.HistoryLen and HistoryBytes; each stream is a position
// in that history, and gets everything between its position and the newest
// event in one write. Publish never writes to a connection and never waits
// for a stream, so no client can slow it or another client. Clients that
// stopped reading hold no copies of large events.
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
// New and the offset counts events from 1. A client that reconnects
// with such an id gets every event after it, then live events, with no gap
// and no duplicate. An event published with its own ID keeps it, and a
// client reconnecting with it resumes the same way while the event is in the
// history, provided no other event in the history has the same ID. Any other
// Last-Event-ID (unknown, repeated, from another Broker or an earlier
// process, older than the history and the Log, or one that sse.LastEventID
// refuses) gets a first event of type ResetEvent, then live events.
//
// A client without a Last-Event-ID gets live events only, or with
// Options.FromStart, every event of the epoch from its first. A live-only
// stream opens with an id line alone, which sets its last event ID and
// dispatches nothing, so that it resumes from there even if the stream ends
// before its first event.
//
// # Several processes
//
// With Options.Log, the Log numbers the events instead and owns the
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
// another's. Set a small HistoryLen, and drop a Broker that has had no
// stream for a grace period, starting it with Options.OnIdle (see
// ExampleOptions_onIdle). Drop it at once, in OnIdle, and every reconnection
// (a network blip, a deploy, a stream ended for falling behind) finds a new
// Broker: a reset, and what was published in between is lost; a grace of
// 30 s fixed that, measured. Any client that may subscribe to a Broker can
// replay its whole history, since the epoch is in every id: check who may
// subscribe before ServeHTTP, per Broker.
//
// # Closing
//
// Close ends every stream after it has sent what was published before Close
// (a stream still replaying from a Log ends where it is, and its client
// resumes from there), and a retry field telling its client to wait a random
// time up to CloseRetry before reconnecting; a request after Close gets the retry and no
// events (a 200, since a browser would not retry after a 503). To end streams
// when the server shuts down:
//
//	srv.RegisterOnShutdown(func() { broker.Close() })
//
// # Goroutines
//
// Between writes a stream waits parked in the Broker, with no goroutine of
// its own, and its request's handler goroutine waits on a small stack for
// the stream to end; the writing is done by goroutines the Broker shares
// among its streams, about as many as writes in progress, which exit soon
// after they have nothing to write (at once in a Broker with few streams),
// when the last stream ends, or at Close. Publish starts one goroutine to
// hand the parked streams to them, so it does the same work with one
// stream waiting or a hundred thousand. A panic while a stream is written
// (in a Log, say) is raised again on that stream's handler goroutine, where
// net/http reports it: an error wrapping the value, with the stack where it
// happened, or http.ErrAbortHandler unchanged; a runtime.Goexit likewise. A
// detached stream (Options.Detach) has no handler goroutine, and a
// goroutine on a small stack reads its connection to learn when the client
// leaves.
// Besides, a Broker runs a heartbeat timer while streams are open, and,
// with a Log, the Log's Follow. No goroutine of a Broker outlives its last
// stream after Close.
type Broker struct {
	// The fields are in an order that wastes no padding: 504 bytes, in the
	// 512-byte size class, which one Broker per user pays for each user
	// (TestIdleBrokerSize).

	// Settings, fixed by New.
	historyLen    int
	historyBytes  int
	maxSubs       int64
	closeRetry    time.Duration
	opts          sse.Options // each stream's Writer's; the Broker keeps the heartbeat
	heartbeat     time.Duration
	log           Log
	onIdle        func()
	fromStart     bool
	detachStreams bool
	beating       bool // under mu: beatTimer is armed (it exists only then)

	lg *logSide // with a Log only: what the Broker keeps for it (see log.go)

	// Streams read these without a lock, so that no stream, however it is
	// scheduled, can make Publish wait.
	hist   atomic.Pointer[ring] // the history; with a Log, nil until its head is known
	wakes  atomic.Uint64        // notifications so far: a stream that saw n parks only while it is n (see park)
	beats  atomic.Uint64        // heartbeats so far
	open   atomic.Int64         // open streams
	subs   atomic.Int64         // open streams whose start is fixed (Subscribers)
	pumps  pumpPool
	counts counters

	// mu is held briefly by Publish, the Log's deliveries, subscribe, the
	// heartbeat and Close, never across a call to the Log or a write.
	mu        sync.Mutex
	last      time.Duration // when the last event was published, or beat sent, as time.Since(clockStart)
	beatTimer *time.Timer   // while streams are open, with a heartbeat; nil otherwise

	// Streams waiting for something to send (see park.go).
	parkMu      sync.Mutex
	parked      []*stream
	nparked     atomic.Int64
	dispatching atomic.Bool // a dispatch goroutine is on its way
	closed      atomic.Bool // Close was called (read by streams without a lock)
	dispatcher  func()      // b.dispatch
}

// clockStart is the time Broker.last counts from: a Duration is a third of
// a time.Time's size, and as monotonic.
var clockStart = time.Now()

// ErrInvalidOptions is returned by New for an Options field it cannot take;
// the error's text names the field.
var ErrInvalidOptions = errors.New("ssebroker: invalid options")

// New returns a Broker with an empty history: a new epoch, or with a
// Log, the Log's. It returns an error matching ErrInvalidOptions, and no
// Broker, for a field of opts that Options' rules refuse.
func New(opts *Options) (*Broker, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	if err := o.check(); err != nil {
		return nil, err
	}
	if o.HistoryLen == 0 {
		o.HistoryLen = DefaultHistoryLen
	}
	if o.HistoryBytes == 0 {
		o.HistoryBytes = DefaultHistoryBytes
	}
	b := &Broker{
		historyLen:    o.HistoryLen,
		historyBytes:  o.HistoryBytes,
		maxSubs:       int64(o.MaxSubscribers),
		closeRetry:    wire.Duration(o.CloseRetry, DefaultCloseRetry),
		opts:          o.Stream,
		heartbeat:     wire.HeartbeatOf(o.Stream.Heartbeat, sse.DefaultHeartbeat),
		log:           o.Log,
		onIdle:        o.OnIdle,
		fromStart:     o.FromStart,
		detachStreams: o.Detach,
	}
	if b.log != nil {
		b.lg = &logSide{}
		b.lg.ctx, b.lg.cancel = context.WithCancel(context.Background())
		b.lg.closing.done = make(chan struct{})
	}
	b.pumps.init(b)
	b.dispatcher = b.dispatch
	if b.log == nil {
		b.hist.Store(b.newRing(NewEpoch(), 0))
	}
	b.last = time.Since(clockStart) // so the first beat is a whole period after New, at least
	return b, nil
}

// Publish sends e to every open stream and keeps it for replay. It encodes e
// once, never waits for a client, and is safe to call from many goroutines;
// streams receive events in the order their Publish calls took effect.
//
// It returns the error from [Event.AppendText] for an event that cannot be
// written faithfully, or sse.ErrInvalidID for an ID that a client could not
// resume from: longer than sse.MaxLastEventIDLen, beginning or ending with a
// space or tab (which net/http trims from the header that brings it back),
// holding a control byte other than tab (net/http answers a header that holds
// one with 400, and a browser then gives up), or shaped as the ids the Broker
// gives, "<epoch>-<offset>" (16 lowercase hex
// digits, a dash, decimal digits), which resume by position. After Close it
// returns sse.ErrClosed. The event is then neither delivered nor kept.
//
// With a Log, Publish waits for the Log's Append, which Close cancels, and
// returns its error; as the Log's doc says, an error then means the event may
// not be in the Log, and so may still reach the streams. PublishContext
// bounds that wait with a context.
func (b *Broker) Publish(e sse.Event) error {
	if b.lg == nil {
		return b.PublishContext(context.Background(), e)
	}
	return b.PublishContext(b.lg.ctx, e)
}

// PublishContext is Publish, with ctx bounding the wait for the Broker's Log:
// when ctx ends first, it returns ctx's error. Without a Log, Publish never
// waits, and ctx is not used.
func (b *Broker) PublishContext(ctx context.Context, e sse.Event) error {
	err := checkID(e.ID)
	if err == nil {
		if b.log != nil {
			err = b.publishToLog(ctx, &e)
		} else {
			err = b.publishHere(&e)
		}
	}
	if err != nil {
		b.counts.publishErrors.Add(1)
		return err
	}
	b.counts.published.Add(1)
	return nil
}

// checkID returns why Publish refuses id, an Event's ID that AppendText
// accepts, or nil.
func checkID(id string) error {
	switch {
	case id == "":
		return nil
	case len(id) > sse.MaxLastEventIDLen:
		return idError("%d bytes, over sse.MaxLastEventIDLen: a client could not resume from it", len(id))
	case isBlank(id[0]) || isBlank(id[len(id)-1]):
		return idError("%q begins or ends with a space or tab, which the Last-Event-ID header loses", id)
	}
	if i := wire.HeaderUnsafe(id); i >= 0 {
		return idError("byte %d is %q: net/http answers 400 to a Last-Event-ID that holds it, and a browser then gives up", i, id[i])
	}
	if _, ok := parsePosition(id); ok {
		return idError("%q has the shape of the ids a Broker gives, which resume by position", id)
	}
	return nil
}

// idError wraps sse.ErrInvalidID with what is wrong in the ID.
func idError(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{sse.ErrInvalidID}, args...)...)
}

func isBlank(c byte) bool { return c == ' ' || c == '\t' }

// publishHere numbers e itself, the Broker having no Log. It encodes e
// before it takes the mutex, which it holds only to number and append.
func (b *Broker) publishHere(e *sse.Event) error {
	var scratch [512]byte // most events fit: no allocation but the kept copy
	buf, err := e.AppendText(scratch[:0])
	if err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed.Load() {
		return sse.ErrClosed
	}
	r := b.hist.Load()
	var line [64]byte // an id line: "id: ", 16 hex digits, "-", at most 20 digits, LF
	id := line[:0]
	if e.ID == "" {
		id = wire.AppendIDLine(id, r.epoch, r.head.Load()+1)
	}
	w := make([]byte, len(id)+len(buf))
	copy(w[copy(w, id):], buf)
	b.pushLocked(r, w, e.ID)
	return nil
}

// publishToLog appends e to the Log, where the Broker's feed finds it. The
// call ends with ctx, or at Close.
func (b *Broker) publishToLog(ctx context.Context, e *sse.Event) error {
	if b.closed.Load() {
		return sse.ErrClosed
	}
	w, err := e.AppendText(nil)
	if err != nil {
		return err
	}
	if ctx != b.lg.ctx {
		var cancel context.CancelFunc
		ctx, cancel = context.WithCancel(ctx)
		defer cancel()
		defer context.AfterFunc(b.lg.ctx, cancel)()
	}
	if _, err := b.log.Append(ctx, w); err != nil {
		if b.closed.Load() {
			return sse.ErrClosed
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
func (b *Broker) pushLocked(r *ring, w []byte, id string) {
	r.push(&entry{wire: w, id: id}, b.historyLen, b.historyBytes)
	if b.heartbeat > 0 {
		b.last = time.Since(clockStart)
	}
	b.notify()
}

// Subscribers returns the number of open streams that every later Publish
// reaches: once it counts a stream, an event published after it returned
// reaches that stream (or its client gets a ResetEvent saying it was lost).
// A stream counts from the moment its place in the history is fixed, which
// is as it opens, or with a Log whose head the Broker does not know yet,
// once the Log has told it.
func (b *Broker) Subscribers() int { return int(b.subs.Load()) }

// Close ends every stream, each after the events published before Close (a
// stream replaying from a Log: where it is) and a retry field with a random
// delay up to Options.CloseRetry (none if it is negative), and makes
// later requests get only such a retry and Publish return sse.ErrClosed. It
// cancels the Broker's calls to its Log. It returns at once, without waiting
// for streams to end, and always returns nil. It is safe to call at any
// time, from any goroutine, more than once.
func (b *Broker) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed.Swap(true) {
		return nil
	}
	if b.lg != nil {
		b.lg.cancel()
	}
	b.notify() // after closed: a stream that misses it sees closed
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
// the ResponseWriter cannot flush, it answers 500.
func (b *Broker) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet:
	case http.MethodHead:
		wire.WriteHeader(w)
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
	out, err := wire.NewStream(w, r, wire.Duration(b.opts.WriteTimeout, sse.DefaultWriteTimeout))
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	s := &stream{b: b, wr: out, ctx: r.Context(), beats: b.beats.Load(), parkAt: -1}
	if s.lastID = sse.LastEventID(r); s.lastID == "" && r.Header.Get("Last-Event-ID") != "" {
		s.badLastID = true
	}
	if refused := b.subscribe(s); refused != endNone {
		b.refuse(w, r, refused)
		return
	}
	if b.detach(s, r) {
		return
	}
	end := endFailed // unless serve returns: a pump's panic or Goexit
	defer func() {
		out.Finish()
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
	if b.heartbeat > 0 && !b.beating {
		// Made as the first stream opens, and dropped when the last has
		// gone (beat): an idle Broker keeps no timer.
		b.beating = true
		b.beatTimer = time.AfterFunc(b.heartbeat, b.beat)
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
	sw, err := sse.NewWriter(w, r, &sse.Options{Retry: b.jitter(), Heartbeat: -1, WriteTimeout: b.opts.WriteTimeout})
	if err == nil {
		sw.Close()
	}
}

// jitter returns a random delay in (0, closeRetry], in whole milliseconds.
func (b *Broker) jitter() time.Duration {
	ms := int64(b.closeRetry / time.Millisecond)
	if ms <= 0 {
		return 0 // no retry field
	}
	return time.Duration(1+rand.Int64N(ms)) * time.Millisecond
}

// check returns why New refuses o, or nil.
func (o *Options) check() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrInvalidOptions}, args...)...)
	}
	switch {
	case o.HistoryLen < 0:
		return bad("HistoryLen %d is negative", o.HistoryLen)
	case o.HistoryBytes < 0:
		return bad("HistoryBytes %d is negative", o.HistoryBytes)
	case o.MaxSubscribers < 0:
		return bad("MaxSubscribers %d is negative", o.MaxSubscribers)
	case o.CloseRetry > 0 && o.CloseRetry < time.Millisecond:
		return bad("CloseRetry %v is under a millisecond", o.CloseRetry)
	case o.Detach && o.Stream.WriteTimeout < 0:
		// A detached stream stuck in a write to a client that stopped reading
		// would outlive Close and the server's own Close, which cannot reach
		// a connection that left net/http.
		return bad("Detach needs a write timeout, and Stream.WriteTimeout %v is off", o.Stream.WriteTimeout)
	}
	if _, err := (sse.Event{Retry: o.Stream.Retry}).AppendText(nil); err != nil {
		return bad("Stream.Retry: %w", err)
	}
	return nil
}

// beat runs when the heartbeat timer fires. After a whole period without an
// event it has every stream send a comment; otherwise it waits out the rest
// of the period. With no stream open, it drops the timer: the next stream
// makes a new one.
func (b *Broker) beat() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed.Load() || wire.WaitRest(b.beatTimer, b.heartbeat, time.Since(clockStart)-b.last) {
		return
	}
	if b.open.Load() == 0 {
		b.beating, b.beatTimer = false, nil // no stream subscribes while mu is held: the next makes one
		return
	}
	b.beats.Add(1)
	b.last = time.Since(clockStart)
	b.notify()
	b.beatTimer.Reset(b.heartbeat)
}
