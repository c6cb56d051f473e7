package pgstream

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lightsse/sse/ssebroker"
)

// Follow has the topic call deliver with every event appended to it from
// now on, by any process, in log order, until stop is called, as
// [ssebroker.Log] describes. Its first call, once PostgreSQL has answered a
// read of the topic's head, is deliver(head, nil). It hands over every event
// after that head, with no gap, and calls deliver(head, nil) again where it
// cannot: when the topic has a new epoch (its row was deleted, or NewEpochs
// ran), when the events after the last it handed over are gone (trimmed
// while it could not read them), and when the head is behind the last it
// handed over (the database went back in time); and, once caught up, after
// its listening connection was lost. Calls to deliver, for all topics of a Streams, are made one at a
// time from one goroutine: a deliver that blocks delays the others. deliver
// must not call stop, nor Close.
//
// stop returns once no call to deliver is running, and none is made after
// it; it is safe to call more than once. After Close, Follow returns a stop
// that does nothing, and deliver is never called.
func (t *Topic) Follow(deliver func(pos ssebroker.Position, wire []byte)) (stop func()) {
	f := &follower{topic: t, deliver: deliver}
	if !t.s.subs.request(feedRequest{join: f}) {
		return func() {}
	}
	return func() {
		f.once.Do(func() {
			f.mu.Lock() // waits for a deliver under way
			f.stopped = true
			f.mu.Unlock()
			t.s.subs.request(feedRequest{leave: f})
		})
	}
}

// A follower is one call of Follow.
type follower struct {
	topic   *Topic
	deliver func(ssebroker.Position, []byte)
	once    sync.Once

	mu      sync.Mutex // held while deliver runs
	stopped bool

	started bool // the loop's: it has had its first deliver(head, nil)
}

// call runs deliver unless the follower has stopped.
func (f *follower) call(pos ssebroker.Position, wire []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.stopped {
		f.deliver(pos, wire)
	}
}

// A feed is one followed topic of a Streams, and what its followers have
// been handed: every event up to offset, in epoch. All its followers stand
// there (but those not yet started).
type feed struct {
	topic     *Topic
	followers []*follower
	known     bool   // epoch and offset are set: the topic's epoch,
	epoch     string // and the offset of the last event handed over
	offset    int64
	dirty     bool // events may follow offset: read them
	rehead    bool // once caught up, hand the head to every follower
	retry     time.Time
}

type feedRequest struct{ join, leave *follower }

// An item is what the listener hands the loop: a notification, or news of
// its connection; or what a caller hands it: the events of a round trip
// that committed.
type item struct {
	kind  itemKind
	topic string   // note, local: the topic appended to
	epoch string   // note, local: its epoch
	head  int64    // note, local: its head
	wires [][]byte // local: the events up to head, oldest first
}

type itemKind uint8

const (
	note  itemKind = iota // a topic was appended to
	up                    // the listener is LISTENing, on a new connection
	down                  // the listener's connection is lost
	local                 // this Streams appended to a topic, and committed
)

// Bounds of the loop's work.
const (
	inboxLen     = 1024 // notifications the listener may read ahead of the loop
	maxDrain     = 4096 // items the loop takes in before it reads
	readTopics   = 256  // topics per read
	readPerTopic = 256  // events per topic per read
	maxRounds    = 16   // reads before the loop looks at its requests again
)

// How the listener checks that its connection is alive: after pingAfter
// with no notification, it sends a query, which must be answered within
// Options.Timeout. (A variable, for tests.)
var pingAfter = 5 * time.Second

// feeds hands the events appended to followed topics to their followers.
// Follow and stop leave requests; one goroutine, the loop, does everything
// else: it reads heads and events, calls deliver. Another, the listener,
// holds the LISTENing connection and hands the loop each notification; the
// callers hand it what their round trips committed (see committed).
type feeds struct {
	s *Streams

	mu      sync.Mutex
	reqs    []feedRequest
	running bool // the loop has been started
	closed  bool
	kick    chan struct{} // holds a token while reqs may be non-empty
	quit    chan struct{} // closed by close

	inbox chan item

	followedMu sync.RWMutex
	followed   map[string]bool // the topics of feeds, for the callers

	heads    atomic.Int64 // calls of deliver(head, nil) so far, for tests
	connects atomic.Int64 // connections the listener made and LISTENed on, for tests
	polls    atomic.Int64 // polls while the listener was down, for tests
	listener atomic.Int32 // the listener's backend's pid, for tests

	// The loop's own.
	feeds     map[string]*feed
	listening bool // the listener has been started
	up        bool // its connection LISTENs
	wasUp     bool // it did once
	pollAt    time.Time
}

func newFeeds(s *Streams) *feeds {
	return &feeds{
		s:        s,
		kick:     make(chan struct{}, 1),
		quit:     make(chan struct{}),
		inbox:    make(chan item, inboxLen),
		feeds:    make(map[string]*feed),
		followed: make(map[string]bool),
	}
}

// request hands r to the loop, starting it if need be. It never blocks for
// long, and reports false after close.
func (fs *feeds) request(r feedRequest) bool {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if fs.closed {
		return false
	}
	fs.reqs = append(fs.reqs, r)
	if !fs.running {
		fs.running = true
		fs.s.wg.Add(1)
		go fs.loop()
	}
	select {
	case fs.kick <- struct{}{}:
	default:
	}
	return true
}

// close makes the loop, and the listener, end.
func (fs *feeds) close() {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if !fs.closed {
		fs.closed = true
		close(fs.quit)
	}
}

func (fs *feeds) loop() {
	defer fs.s.wg.Done()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		select {
		case <-fs.quit:
			return
		case <-fs.kick:
			fs.handleRequests()
		case it := <-fs.inbox:
			fs.handle(it)
		drain:
			for range maxDrain {
				select {
				case it := <-fs.inbox:
					fs.handle(it)
				default:
					break drain
				}
			}
		case <-timer.C:
		}
		if !fs.listening && len(fs.feeds) > 0 {
			fs.listening = true
			fs.pollAt = time.Now() // until the listener is up
			fs.s.wg.Add(1)
			go fs.listen()
		}
		if !fs.up && len(fs.feeds) > 0 && !time.Now().Before(fs.pollAt) {
			// No notifications: read every topic, now and then.
			fs.pollAt = time.Now().Add(fs.s.o.PollInterval)
			fs.polls.Add(1)
			for _, fd := range fs.feeds {
				fd.dirty = true
			}
		}
		fs.catchUp()
		timer.Reset(fs.nextCheck())
	}
}

// handleRequests takes in the joins and leaves of followers.
func (fs *feeds) handleRequests() {
	fs.mu.Lock()
	reqs := fs.reqs
	fs.reqs = nil
	fs.mu.Unlock()
	for _, r := range reqs {
		if f := r.join; f != nil {
			fd := fs.feeds[f.topic.name]
			if fd == nil {
				fd = &feed{topic: f.topic}
				fs.feeds[f.topic.name] = fd
				fs.followedMu.Lock()
				fs.followed[f.topic.name] = true
				fs.followedMu.Unlock()
			}
			fd.followers = append(fd.followers, f)
			continue
		}
		f := r.leave
		fd := fs.feeds[f.topic.name]
		if fd == nil {
			continue
		}
		for i, g := range fd.followers {
			if g == f {
				fd.followers = append(fd.followers[:i], fd.followers[i+1:]...)
				break
			}
		}
		if len(fd.followers) == 0 {
			delete(fs.feeds, f.topic.name)
			fs.followedMu.Lock()
			delete(fs.followed, f.topic.name)
			fs.followedMu.Unlock()
		}
	}
}

// handle takes in one item from the listener.
func (fs *feeds) handle(it item) {
	switch it.kind {
	case note:
		if fd := fs.feeds[it.topic]; fd != nil && (!fd.known || it.epoch != fd.epoch || it.head > fd.offset) {
			fd.dirty = true
		}
	case up:
		// What was appended before the LISTEN took effect came with no
		// notification: read it. After a break, once caught up, tell the
		// followers the head (as ssebroker.Log asks after any break, though
		// they missed nothing).
		for _, fd := range fs.feeds {
			fd.dirty, fd.rehead, fd.retry = true, fs.wasUp, time.Time{}
		}
		fs.up, fs.wasUp = true, true
	case down:
		if fs.up {
			fs.up = false
			fs.pollAt = time.Now()
		}
	case local:
		fd := fs.feeds[it.topic]
		first := it.head - int64(len(it.wires)) + 1
		switch {
		case fd == nil || fd.due(time.Now()) || it.epoch != fd.epoch || first <= fd.offset:
			// Not followed; or a read is due, which gets these; or
			// handed over already (or of another epoch, which a read
			// will sort out, as the notification asks one).
		case first > fd.offset+1:
			fd.dirty = true // events before these: read them all
		default:
			fs.handEvents(fd, it.wires)
		}
	}
}

// committed hands the loop the events that a round trip of this Streams
// appended to topic and committed, up to head, so that the followers of
// the topic in this process get them without waiting for the notification,
// and a read. It copies wires (their callers may use them again once
// answered), and never waits: should the loop be that far behind, the
// notification will do.
func (fs *feeds) committed(topic string, h head, wires [][]byte) {
	fs.followedMu.RLock()
	followed := fs.followed[topic]
	fs.followedMu.RUnlock()
	if !followed {
		return
	}
	size := 0
	for _, w := range wires {
		size += len(w)
	}
	buf := make([]byte, 0, size) // one copy for all: the Broker keeps them
	kept := make([][]byte, len(wires))
	for i, w := range wires {
		buf = append(buf, w...)
		kept[i] = buf[len(buf)-len(w) : len(buf) : len(buf)]
	}
	select {
	case fs.inbox <- item{kind: local, topic: topic, epoch: h.epoch, head: h.offset, wires: kept}:
	default:
	}
}

// due reports whether fd needs a read.
func (fd *feed) due(now time.Time) bool {
	if now.Before(fd.retry) {
		return false
	}
	if fd.dirty || !fd.known {
		return true
	}
	for _, f := range fd.followers {
		if !f.started {
			return true
		}
	}
	return false
}

// catchUp reads what the feeds that need it are behind, readTopics at a
// time, and hands it to their followers; for maxRounds reads at most, after
// which nextCheck has the loop come back at once.
func (fs *feeds) catchUp() {
	for round := 0; round < maxRounds; round++ {
		now := time.Now()
		var due []*feed
		for _, fd := range fs.feeds {
			if fd.due(now) {
				due = append(due, fd)
				if len(due) == readTopics {
					break
				}
			}
		}
		if len(due) == 0 {
			return
		}
		cs := make([]cursor, len(due))
		for i, fd := range due {
			cs[i] = cursor{topic: fd.topic.name, epoch: fd.epoch, after: fd.offset}
		}
		ctx, cancel := fs.s.callContext(context.Background())
		res, err := fs.s.readMany(ctx, cs, readPerTopic)
		var missing []string
		if err == nil {
			for i, fd := range due {
				if !res[i].found {
					missing = append(missing, fd.topic.name)
					continue
				}
				fs.apply(fd, res[i])
			}
			if len(missing) > 0 {
				err = fs.s.makeRows(ctx, missing)
			}
		}
		cancel()
		if err != nil {
			// PostgreSQL cannot be read: these feeds wait, and their
			// followers with them; nothing is lost, since the next read
			// starts at the same cursor.
			retry := time.Now().Add(min(fs.s.o.PollInterval, 500*time.Millisecond))
			for _, fd := range due {
				fd.retry = retry
			}
		}
		select {
		case <-fs.quit:
			return
		default:
		}
	}
}

// apply hands the followers of fd what a read found.
func (fs *feeds) apply(fd *feed, r readResult) {
	fd.retry = time.Time{}
	h := r.head
	if !fd.known || h.epoch != fd.epoch || h.offset < fd.offset {
		// A first head; or a new epoch; or a head behind the one the
		// followers have (the database went back in time): either way
		// they start from this head.
		fd.known, fd.epoch, fd.offset, fd.dirty, fd.rehead = true, h.epoch, h.offset, false, false
		fs.handHead(fd, true)
		return
	}
	fs.handEvents(fd, r.wires)
	switch {
	case fd.offset < h.offset && len(r.wires) > 0:
		fd.dirty = true // more to read
	case fd.offset < h.offset:
		// The events after the cursor are gone (trimmed): the followers
		// go on from the head, and find the gap.
		fd.offset, fd.dirty = h.offset, false
		fs.handHead(fd, true)
	default:
		fd.dirty = false
		if fd.rehead {
			fd.rehead = false
			fs.handHead(fd, true)
		}
	}
	fs.handHead(fd, false)
}

// handEvents hands the followers of fd that have started the events that
// follow its offset, and moves the offset past them.
func (fs *feeds) handEvents(fd *feed, wires [][]byte) {
	for i, w := range wires {
		pos := ssebroker.Position{Epoch: fd.epoch, Offset: uint64(fd.offset) + 1 + uint64(i)}
		for _, f := range fd.followers {
			if f.started {
				f.call(pos, w)
			}
		}
	}
	fd.offset += int64(len(wires))
}

// handHead calls deliver(head, nil) for the followers of fd that have not
// started, or, with all, for every follower; and starts them.
func (fs *feeds) handHead(fd *feed, all bool) {
	pos := ssebroker.Position{Epoch: fd.epoch, Offset: uint64(fd.offset)}
	for _, f := range fd.followers {
		if all || !f.started {
			f.started = true
			f.call(pos, nil)
			fs.heads.Add(1)
		}
	}
}

// nextCheck returns how long the loop may wait before it must poll, or
// retry a read.
func (fs *feeds) nextCheck() time.Duration {
	if len(fs.feeds) == 0 {
		return time.Hour
	}
	now := time.Now()
	next := now.Add(time.Hour)
	if !fs.up {
		next = fs.pollAt
	}
	for _, fd := range fs.feeds {
		if fd.due(now) {
			return 0
		}
		if !fd.retry.IsZero() && fd.retry.Before(next) {
			next = fd.retry
		}
	}
	return max(next.Sub(now), time.Millisecond)
}

// parseNote reads a notification's payload, "<epoch> <head> <topic>".
func parseNote(payload string) (item, bool) {
	epoch, rest, ok1 := strings.Cut(payload, " ")
	h, name, ok2 := strings.Cut(rest, " ")
	n, err := strconv.ParseInt(h, 10, 64)
	if !ok1 || !ok2 || err != nil {
		return item{}, false
	}
	return item{kind: note, topic: name, epoch: epoch, head: n}, true
}
