package sserun

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"path"
	"sync"
	"time"

	"github.com/lightsse/sse"
	"github.com/lightsse/sse/ssebroker"
)

// Defaults used when Options leaves a field zero.
const (
	DefaultRetention = 10 * time.Minute
	DefaultMaxBytes  = 16 << 20
)

// MaxIDLen is the longest run id, in bytes.
const MaxIDLen = 128

// Errors that errors.Is can match.
var (
	// ErrExists is returned by Start for an id that names a run already:
	// one of this Runs, kept until its retention ends, or, with
	// Options.NewLog, one whose Log holds events.
	ErrExists = errors.New("sserun: a run with this id exists")
	// ErrFinished is returned by Publish and Finish once the run is
	// finished.
	ErrFinished = errors.New("sserun: the run is finished")
	// ErrInvalidRunID is returned by Start for an id that is empty, longer
	// than MaxIDLen, or holds a byte other than ASCII letters, digits and
	// "-._~" (which a URL path carries as they are).
	ErrInvalidRunID = errors.New("sserun: invalid run id")
	// ErrTooLarge is returned by Publish and Finish when a run kept in
	// memory would hold more than Options.MaxBytes.
	ErrTooLarge = errors.New("sserun: run too large")
	// ErrInvalidOptions is returned by New for an Options field it cannot
	// take; the error's text names the field.
	ErrInvalidOptions = errors.New("sserun: invalid options")
)

// Options configure a Runs. A nil *Options, and any zero field, means the
// default; New refuses a negative Retention or MaxBytes, and a Stream that
// ssebroker.New would refuse, with an error matching ErrInvalidOptions.
type Options struct {
	// Retention is how long a finished run is kept after Finish, so that
	// viewers who come late, or come back, get it whole: DefaultRetention
	// (10 minutes) for 0. With NewLog, the Log's own expiry (redisstream's
	// IdleTTL) decides when the events are gone for every process; set
	// both to the same time.
	Retention time.Duration
	// MaxBytes bounds the encoded events of one run kept in memory
	// (DefaultMaxBytes, 16 MiB); Publish and Finish return ErrTooLarge past
	// it. With NewLog, the Log bounds them instead (redisstream's MaxLen:
	// make it at least the events of the longest run, plus one).
	MaxBytes int
	// NotFound answers a request for a run that does not exist, never
	// existed, or is gone after its retention, before any byte of a stream.
	// nil means 404 Not Found.
	NotFound http.Handler
	// Authorize, if set, is asked before anything else whether r may view
	// the run; an error gets 403 Forbidden and no stream, whether or not the
	// run exists. A run id in a URL is no secret: check a ticket here (see
	// the package doc).
	Authorize func(r *http.Request, runID string) error
	// QueryCursor, if set, names a query parameter that a request without
	// a Last-Event-ID header may carry in its stead, for a page that
	// rendered part of the run itself: "?lastEventId=<id>". It is checked
	// exactly as the header is. A request with the header ignores it.
	QueryCursor string
	// RunID returns the id of the run a request asks for. nil means the
	// path value "id" where the request's pattern has one
	// ("GET /runs/{id}/events"), else the last segment of the URL's path.
	RunID func(r *http.Request) string
	// NewLog, if set, returns the Log that keeps a run's events, for Runs
	// in several processes to serve one run: with redisstream, a Topic
	// named after the run. Start calls it on the process that does the
	// work, ServeHTTP on any process a viewer reaches. nil keeps each run
	// in this process's memory.
	NewLog func(runID string) (ssebroker.Log, error)
	// Stream configures each stream as ssebroker.Options.Stream does: write
	// timeout, heartbeat, and the retry sent first (1 s if zero: a viewer
	// whose stream broke, or fell more than 128 events behind a burst, comes
	// back after it, and resumes where it was).
	Stream sse.Options
}

// Runs is an http.Handler that serves the event streams of runs, and makes
// them: Start begins one, Run.Publish adds its events, Run.Finish ends it.
// Make one with New; its methods are safe for concurrent use. See the
// package doc for what a viewer gets.
type Runs struct {
	retention time.Duration
	maxBytes  int
	notFound  http.Handler
	authorize func(*http.Request, string) error
	cursor    string
	runID     func(*http.Request) string
	newLog    func(string) (ssebroker.Log, error)
	stream    sse.Options

	mu     sync.Mutex
	runs   map[string]*run
	expiry expiry // finished runs of this process, by when they are forgotten
	closed bool
}

// New returns a Runs with no run.
func New(opts *Options) (*Runs, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	switch {
	case o.Retention < 0:
		return nil, fmt.Errorf("%w: Retention %v is negative", ErrInvalidOptions, o.Retention)
	case o.MaxBytes < 0:
		return nil, fmt.Errorf("%w: MaxBytes %d is negative", ErrInvalidOptions, o.MaxBytes)
	}
	if _, err := (sse.Event{Retry: o.Stream.Retry}).AppendText(nil); err != nil {
		return nil, fmt.Errorf("%w: Stream.Retry: %w", ErrInvalidOptions, err)
	}
	if o.Retention == 0 {
		o.Retention = DefaultRetention
	}
	if o.MaxBytes == 0 {
		o.MaxBytes = DefaultMaxBytes
	}
	o.MaxBytes = min(o.MaxBytes, 1<<32-1) // a run's index holds 32-bit ends
	if o.NotFound == nil {
		o.NotFound = http.NotFoundHandler()
	}
	if o.RunID == nil {
		o.RunID = defaultRunID
	}
	if o.Stream.Retry == 0 {
		o.Stream.Retry = defaultStreamRetry
	}
	return &Runs{
		retention: o.Retention, maxBytes: o.MaxBytes, notFound: o.NotFound,
		authorize: o.Authorize, cursor: o.QueryCursor, runID: o.RunID,
		newLog: o.NewLog, stream: o.Stream,
		runs: make(map[string]*run),
	}, nil
}

func defaultRunID(r *http.Request) string {
	if id := r.PathValue("id"); id != "" {
		return id
	}
	return path.Base(r.URL.Path)
}

// validID reports whether id may name a run.
func validID(id string) bool {
	if id == "" || len(id) > MaxIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		switch c := id[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '.', c == '_', c == '~':
		default:
			return false
		}
	}
	return true
}

// Len returns the number of runs this process holds: its own, live or
// within their retention, and those of other processes that it is
// streaming now. Finished runs past their retention are counted until a
// call to Start or ServeHTTP forgets them.
func (rs *Runs) Len() int {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return len(rs.runs)
}

// Close ends every stream of every live run: each client is told to come
// back within a second, to this process or another. Later calls to Start,
// and Publish and Finish on runs of this process, return sse.ErrClosed.
// It returns at once and always returns nil; it is safe to call more than
// once. Give it to http.Server.RegisterOnShutdown.
func (rs *Runs) Close() error {
	rs.mu.Lock()
	rs.closed = true
	var bs []*ssebroker.Broker
	for _, st := range rs.runs {
		st.mu.Lock()
		if st.broker != nil {
			bs = append(bs, st.broker)
		}
		st.mu.Unlock()
	}
	rs.mu.Unlock()
	for _, b := range bs {
		b.Close()
	}
	return nil
}

// sweepLocked forgets the finished runs whose retention is over. rs.mu is
// held.
func (rs *Runs) sweepLocked(now time.Time) {
	for st := rs.expiry.due(now); st != nil; st = rs.expiry.due(now) {
		if rs.runs[st.id] == st {
			delete(rs.runs, st.id)
		}
	}
}

// newBroker returns the Broker that streams st's live events. Its options
// are New's, checked there, and fixed ones: ssebroker.New refuses none.
func (rs *Runs) newBroker(st *run) (*ssebroker.Broker, error) {
	return ssebroker.New(&ssebroker.Options{
		HistoryLen:   liveHistory,
		HistoryBytes: liveHistoryBytes,
		FromStart:    true,
		CloseRetry:   endRetry,
		Stream:       rs.stream,
		Log:          &feedLog{Log: st.log, rs: rs, st: st},
		OnIdle:       func() { rs.idle(st) },
	})
}

// liveHistory and liveHistoryBytes bound the recent events a live run's
// Broker keeps in its own history, for live delivery; replay comes from the
// run's Log. A viewer that falls half of them behind (a burst of 128
// events, or 32 KiB, published faster than it reads) has its stream ended,
// and resumes from the run's Log after its retry.
const (
	liveHistory      = 256
	liveHistoryBytes = 64 << 10
)

// defaultStreamRetry is the retry each stream of a run opens with, unless
// Options.Stream sets one: a viewer whose stream broke comes back after it.
const defaultStreamRetry = time.Second

// endRetry bounds the delay before a client whose stream a run's end
// closed reconnects, to be answered 204.
const endRetry = 500 * time.Millisecond

// lookup returns the run id names, or nil if there is none. With NewLog,
// it asks the Log about a run this process does not hold.
func (rs *Runs) lookup(ctx context.Context, id string) (*run, error) {
	if !validID(id) {
		return nil, nil
	}
	rs.mu.Lock()
	rs.sweepLocked(time.Now())
	st := rs.runs[id]
	rs.mu.Unlock()
	if st != nil || rs.newLog == nil {
		return st, nil
	}
	log, err := rs.newLog(id)
	if err != nil {
		return nil, err
	}
	end, epoch, exists, err := probe(ctx, log)
	if err != nil || !exists {
		return nil, err
	}
	st = &run{id: id, log: log, epoch: epoch, end: end}
	if end.Offset != 0 {
		return st, nil // finished: served from the Log, kept by none
	}
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if cur := rs.runs[id]; cur != nil {
		return cur, nil
	}
	if rs.closed {
		return st, nil // its stream is refused, with a retry
	}
	b, err := rs.newBroker(st)
	if err != nil {
		return nil, err
	}
	st.broker = b
	rs.runs[id] = st
	return st, nil
}

// idle runs when the last stream of st's Broker ends. The Broker of a
// finished run closes; a run of another process is dropped, unless a
// stream opened since.
func (rs *Runs) idle(st *run) {
	st.mu.Lock()
	done, b := st.end.Offset != 0, st.broker
	st.mu.Unlock()
	if done {
		rs.closeBroker(st)
		return
	}
	if st.owner || b == nil {
		return
	}
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if rs.runs[st.id] == st && b.Subscribers() == 0 {
		delete(rs.runs, st.id)
		b.Close()
	}
}

// ended records that st's Log holds its terminal event at end, once it is
// known, from whichever source. A run of another process is no longer held.
func (rs *Runs) ended(st *run, end ssebroker.Position) {
	st.mu.Lock()
	if st.end.Offset == 0 {
		st.end = end
	}
	st.mu.Unlock()
	if !st.owner {
		rs.mu.Lock()
		if rs.runs[st.id] == st {
			delete(rs.runs, st.id)
		}
		rs.mu.Unlock()
	}
}

// closeBroker closes st's Broker, once: its streams end after what they
// have, and their clients come back to the finished run.
func (rs *Runs) closeBroker(st *run) {
	st.mu.Lock()
	b := st.broker
	st.broker = nil
	st.mu.Unlock()
	if b != nil {
		b.Close()
	}
}
