package redisstream

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lightsse/sse/ssebroker"

	"github.com/redis/go-redis/v9"
)

// Follow has the topic call deliver with every event appended to it from now
// on, by any process, in log order, until stop is called, as [ssebroker.Log]
// describes. Its first call, once Redis has confirmed the subscription and
// answered a read of the head, is deliver(head, nil); it makes that call
// again whenever the feed may have missed events (the Pub/Sub connection
// broke, and is back), when the topic has a new epoch, and when the log no
// longer holds the events after those it handed over. Calls to deliver, for
// all topics of a Streams, are made one at a time from one goroutine: a
// deliver that blocks delays the others. deliver must not call stop, nor
// Close.
//
// The messages on the topic's channel are only hints that the log has new
// events: what deliver is handed comes from the topic's stream, read after
// the last event handed over. So anyone allowed to PUBLISH on the channel,
// but not to write the topic's keys, can make a Streams read the stream
// again, and nothing more.
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

	started bool // the loop: it has had deliver(head, nil) since its feed last broke
}

// call runs deliver unless the follower has stopped.
func (f *follower) call(pos ssebroker.Position, wire []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.stopped {
		f.deliver(pos, wire)
	}
}

// A feed is one subscribed channel: a topic that some follower follows. Its
// followers that have had their head (started) have been handed every event
// of the log up to pos; a message on the channel (a hint) marks the feed
// dirty, and the loop reads the events after pos from the stream.
//
// A feed stays unconfirmed until Redis confirms its SUBSCRIBE; if no
// confirmation has come by resend, the loop sends SUBSCRIBE again, for that
// channel alone, and waits twice as long for the next (up to
// maxSubscribeWait). So a channel that Redis refuses (an ACL, CLUSTERDOWN,
// LOADING) is asked for again now and then, and refuses no other.
type feed struct {
	topic     *Topic
	followers []*follower
	confirmed bool          // Redis confirmed the subscription on the current connection
	resend    time.Time     // when unconfirmed: when to send SUBSCRIBE (again); zero: at once
	wait      time.Duration // how long the next SUBSCRIBE waits for its confirmation
	retry     time.Time     // when to read the head again after a failed read

	pos    ssebroker.Position // the started followers have every event up to pos
	hasPos bool               // some follower has started since the feed last broke
	dirty  bool               // the log may hold events after pos
	odd    bool               // the last tail read found the topic not as pos expects

	events, read int // events read, and their bytes: sizes the tail reads
}

// maxSubscribeWait bounds how long a feed waits for a confirmation before
// it sends SUBSCRIBE again.
const maxSubscribeWait = time.Minute

type feedRequest struct{ join, leave *follower }

// An item is what the reader hands the loop: a *redis.Message,
// *redis.Subscription or *redis.Pong, a redis.Error (an error reply), or
// errBroken, read on the connection of generation gen.
type item struct {
	gen int
	msg any
}

// errBroken says that the Pub/Sub connection failed: events may have been
// missed.
var errBroken = errors.New("redisstream: Pub/Sub connection broken")

// How the loop checks that the Pub/Sub connection is alive: after
// pingAfter with nothing read on it, it sends a PING; if nothing at all has
// come back pingTimeout later, it replaces the connection. (Variables, for
// tests.)
var (
	pingAfter   = 5 * time.Second
	pingTimeout = 5 * time.Second
)

// inboxLen is how many items the reader may hand the loop ahead of it.
const inboxLen = 16

// maxDrain is how many items the loop handles before reading the heads of
// followers that wait for theirs, so that after a reconnection the heads of
// many topics are read in a few round trips.
const maxDrain = 512

// feeds hands the events published to followed topics to their followers.
// Follow and stop leave requests; one goroutine, the loop, does everything
// else: it subscribes and unsubscribes, reads heads, calls deliver. Another,
// the reader, reads the Pub/Sub connection into the inbox; it blocks, and
// Redis buffers, while the loop is busy.
//
// The inbox holds inboxLen items, each a message of up to about a round
// trip's worth of events (maxCallBytes, 1 MiB): a few MiB at most. Past
// them, Redis holds what waits, up to its client-output-buffer-limit for
// pubsub, then closes the connection: a break, after which the followers
// catch up from the log.
type feeds struct {
	s *Streams

	mu      sync.Mutex
	reqs    []feedRequest
	running bool // the loop has been started
	closed  bool
	kick    chan struct{} // holds a token while reqs may be non-empty
	quit    chan struct{} // closed by close

	inbox chan item

	heads       atomic.Int64 // calls of deliver(head, nil) so far, for tests
	replyErrors atomic.Int64 // error replies read on the Pub/Sub connection, for tests
	replaced    atomic.Int64 // Pub/Sub connections replaced, for tests
	count       atomic.Int64 // len(feeds), for the reader

	// The loop's own.
	ps       *redis.PubSub
	gen      int // of ps
	feeds    map[string]*feed
	lastRead time.Time // something came on ps
	pingSent time.Time // zero when no ping awaits an answer
	probe    probe
}

// A probe checks, every probeEvery while something is followed, that the
// Pub/Sub connection gets what is published on the master: it PUBLISHes a
// token to a channel of the Streams' own through a script (which runs on a
// master, as Appends do), and expects to be among its receivers, or, in a
// Cluster, where the master it reached may be another node, to receive the
// token within probeTimeout. go-redis moves its command connections to a new
// master after a failover, but not its Pub/Sub connection: one left on the
// old master, still running, gets nothing more (a Sentinel failover, until
// the Sentinels make it a replica, 10 s or more), and one left on a node
// that stopped answering (a paused master of a Cluster) gets nothing either.
// When a probe fails, the loop replaces the connection; the new one goes to
// the master, and the followers get their heads again.
type probe struct {
	channel   string        // the Streams' own channel, under its Prefix
	confirmed bool          // subscribed to on the current connection
	allowed   bool          // Redis has confirmed a subscription to it once: no ACL refuses it
	pending   bool          // a SUBSCRIBE was sent since the last unconfirm
	resend    time.Time     // when unconfirmed: when to send SUBSCRIBE again
	wait      time.Duration // how long the next SUBSCRIBE waits for its confirmation
	since     time.Time     // when unconfirmed: since the first SUBSCRIBE, or the break
	next      time.Time     // when to send the next probe
	seq       int
	token     string // of the probe under way
	sent      time.Time
	call      *call // the probe under way; nil when none
	echoed    bool  // its token came back on the connection
}

// How often the loop probes the Pub/Sub connection, and how long a probe
// may wait for its token. (Variables, for tests.)
var (
	probeEvery   = time.Second
	probeTimeout = time.Second
)

func newFeeds(s *Streams) *feeds {
	return &feeds{
		s:     s,
		kick:  make(chan struct{}, 1),
		quit:  make(chan struct{}),
		inbox: make(chan item, inboxLen),
		feeds: make(map[string]*feed),
		probe: probe{channel: s.prefix + "probe:" + ssebroker.NewEpoch()},
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

// close makes the loop, and the reader, end.
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
	defer func() {
		if fs.ps != nil {
			_ = fs.ps.Close()
		}
	}()
	timer := time.NewTimer(pingAfter)
	defer timer.Stop()
	for {
		var probed <-chan struct{} // closed once the probe under way is answered
		if c := fs.probe.call; c != nil && !answered(c) {
			probed = c.done
		}
		select {
		case <-fs.quit:
			return
		case <-probed:
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
			fs.check()
		}
		fs.resubscribe()
		fs.startWaiting()
		fs.checkProbe()
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
			fd := fs.feeds[f.topic.channel]
			if fd == nil {
				fd = &feed{topic: f.topic, wait: fs.s.timeout}
				fs.feeds[f.topic.channel] = fd
				fs.count.Store(int64(len(fs.feeds)))
			}
			fd.followers = append(fd.followers, f)
			continue
		}
		f := r.leave
		fd := fs.feeds[f.topic.channel]
		if fd == nil {
			continue
		}
		if i := indexOf(fd.followers, f); i >= 0 {
			fd.followers = append(fd.followers[:i], fd.followers[i+1:]...)
		}
		if len(fd.followers) == 0 {
			delete(fs.feeds, f.topic.channel)
			fs.count.Store(int64(len(fs.feeds)))
			if fs.ps != nil {
				channels := []string{f.topic.channel}
				if len(fs.feeds) == 0 {
					channels = append(channels, fs.probe.channel)
					fs.probe.unconfirm(time.Time{})
				}
				ctx, cancel := context.WithTimeout(fs.s.ctx, fs.s.timeout)
				// An error means a broken connection, which forgets
				// the channels anyway.
				_ = fs.ps.Unsubscribe(ctx, channels...)
				cancel()
			}
		}
	}
}

func indexOf(fs []*follower, f *follower) int {
	for i, g := range fs {
		if g == f {
			return i
		}
	}
	return -1
}

// handle takes in one item from the reader.
func (fs *feeds) handle(it item) {
	if it.gen != fs.gen {
		return // from a connection since replaced
	}
	// Anything read since the PING, its answer or not, shows the
	// connection alive.
	fs.lastRead, fs.pingSent = time.Now(), time.Time{}
	switch m := it.msg.(type) {
	case *redis.Message:
		if m.Channel == fs.probe.channel {
			if fs.probe.call != nil && m.Payload == fs.probe.token {
				fs.probe.echoed = true
			}
			return
		}
		fd := fs.feeds[m.Channel]
		if fd == nil {
			return
		}
		// A hint, which anyone allowed to PUBLISH could have sent: it
		// can make the loop read the stream, and do nothing else. One
		// that shows only events the followers have spares the read.
		epoch, last, ok := parseHint(m.Payload)
		if !ok || !fd.hasPos || epoch != fd.pos.Epoch || last > fd.pos.Offset {
			fd.dirty = true
		}
	case *redis.Subscription:
		if m.Channel == fs.probe.channel {
			fs.probe.confirmed = m.Kind == "subscribe" && len(fs.feeds) > 0
			if fs.probe.confirmed {
				fs.probe.allowed, fs.probe.wait = true, 0
			}
			return
		}
		fd := fs.feeds[m.Channel]
		if fd == nil {
			return
		}
		// A new subscription, or one go-redis made again on a new
		// connection: either way, events may have been missed since the
		// followers' heads. Read them again.
		fd.confirmed = m.Kind == "subscribe"
		fd.retry = time.Time{}
		if fd.confirmed {
			fd.wait = fs.s.timeout
		} else {
			fd.resend = time.Now().Add(fd.wait) // unless the SUBSCRIBE behind it comes
		}
		fd.unstart()
	case *redis.Pong:
	case redis.Error:
		// Redis refused a command, but the connection is fine. Which
		// command it was, the reply does not say: if a SUBSCRIBE, its feed
		// stays unconfirmed, and is sent again at its resend.
		fs.replyErrors.Add(1)
	default: // errBroken
		// go-redis subscribes again by itself on the new connection; a
		// feed whose confirmation has not come by resend is sent again.
		now := time.Now()
		for _, fd := range fs.feeds {
			fd.confirmed = false
			fd.resend = now.Add(fd.wait)
			fd.unstart()
		}
		fs.probe.unconfirm(now.Add(fs.s.timeout))
	}
}

// resubscribe opens the Pub/Sub connection if there is none, and sends
// SUBSCRIBE for the unconfirmed feeds whose resend has come: one channel
// per SUBSCRIBE, since Redis refuses a SUBSCRIBE whole when it refuses one
// of its channels. A second SUBSCRIBE to a channel is harmless; it is
// confirmed again.
func (fs *feeds) resubscribe() {
	now := time.Now()
	var due []*feed
	for _, fd := range fs.feeds {
		if !fd.confirmed && !now.Before(fd.resend) {
			due = append(due, fd)
		}
	}
	pr := &fs.probe
	probeDue := len(fs.feeds) > 0 && !pr.confirmed && !now.Before(pr.resend)
	if len(due) == 0 && !probeDue {
		return
	}
	if fs.ps == nil {
		fs.connect()
	}
	ctx, cancel := context.WithTimeout(fs.s.ctx, fs.s.timeout)
	defer cancel()
	if probeDue {
		// Sent again as a feed's SUBSCRIBE is: an ACL may refuse it.
		pr.wait = min(max(2*pr.wait, fs.s.timeout), maxSubscribeWait)
		pr.resend = now.Add(pr.wait)
		if !pr.pending {
			pr.pending, pr.since = true, now
		}
		if err := fs.ps.Subscribe(ctx, pr.channel); err != nil {
			pr.resend = now.Add(time.Second)
		}
	}
	for i, fd := range due {
		if err := fs.ps.Subscribe(ctx, fd.topic.channel); err != nil {
			// The connection failed (a refusal comes later, as a reply):
			// this feed and the rest, in a second.
			for _, fd := range due[i:] {
				fd.resend = now.Add(time.Second)
			}
			return
		}
		fd.resend = now.Add(fd.wait)
		fd.wait = min(2*fd.wait, maxSubscribeWait)
	}
}

// connect opens a new Pub/Sub connection, and a reader for it.
func (fs *feeds) connect() {
	fs.gen++
	fs.ps = fs.s.client.Subscribe(fs.s.ctx)
	fs.lastRead, fs.pingSent = time.Now(), time.Time{}
	fs.probe.unconfirm(time.Time{})
	fs.s.wg.Add(1)
	go fs.read(fs.ps, fs.gen)
}

// read hands the loop what comes on ps, until ps is closed. After a failed
// connection (go-redis reconnects and subscribes again by itself at the
// next Receive) it tells the loop once, and waits a little before trying
// again.
//
// An error reply (Redis refused a SUBSCRIBE: an ACL, CLUSTERDOWN, LOADING)
// is not a failure: the connection is fine, and the reply goes to the loop
// like any other. But go-redis, failing to reconnect (a refused AUTH,
// say), returns Redis's errors too, at once and over and over: so more
// error replies in a row than the loop has feeds (it sends at most one
// SUBSCRIBE per feed at a time), plus a margin, count as a failure.
func (fs *feeds) read(ps *redis.PubSub, gen int) {
	defer fs.s.wg.Done()
	failing, replies := false, int64(0)
	backoff := 50 * time.Millisecond
	for {
		msg, err := ps.Receive(fs.s.ctx)
		if errors.Is(err, redis.ErrClosed) || fs.s.ctx.Err() != nil {
			return
		}
		var reply redis.Error
		pause := false
		switch {
		case err == nil:
			failing, replies = false, 0
			backoff = 50 * time.Millisecond
		case !failing && errors.As(err, &reply) && replies < fs.count.Load()+16:
			replies++
			msg = reply
		default:
			msg = nil
			if !failing {
				failing = true
				msg = errBroken
			}
			pause = true
		}
		if msg != nil {
			select {
			case fs.inbox <- item{gen: gen, msg: msg}:
			case <-fs.quit:
				return
			}
		}
		if pause {
			backoff = min(2*backoff, time.Second)
			select {
			case <-time.After(backoff):
			case <-fs.quit:
				return
			}
		}
	}
}

// check sends a PING when the connection has been quiet for pingAfter, and
// replaces the connection when the PING has had no answer for pingTimeout;
// and retries what failed.
func (fs *feeds) check() {
	if fs.ps == nil || len(fs.feeds) == 0 {
		return
	}
	now := time.Now()
	switch {
	case len(fs.inbox) > 0:
		// The reader has read what the loop, busy in a deliver, has not
		// handled yet (a PONG, perhaps): the connection is alive.
	case !fs.pingSent.IsZero() && now.Sub(fs.pingSent) >= pingTimeout:
		// No answer: the connection may be dead without knowing it (a
		// lost peer sends no reset).
		fs.replace()
	case fs.pingSent.IsZero() && now.Sub(fs.lastRead) >= pingAfter:
		ctx, cancel := context.WithTimeout(fs.s.ctx, fs.s.timeout)
		_ = fs.ps.Ping(ctx)
		cancel()
		fs.pingSent = now
	}
	for _, fd := range fs.feeds {
		if !fd.retry.IsZero() && !now.Before(fd.retry) {
			fd.retry = time.Time{}
		}
	}
}

// replace closes the Pub/Sub connection and opens a new one, which
// subscribes to every feed; the followers get their heads again.
func (fs *feeds) replace() {
	fs.replaced.Add(1)
	_ = fs.ps.Close()
	fs.connect()
	for _, fd := range fs.feeds {
		fd.confirmed, fd.resend = false, time.Time{}
		fd.unstart()
	}
}

func (pr *probe) unconfirm(resend time.Time) {
	pr.confirmed, pr.pending, pr.resend, pr.since = false, false, resend, time.Now()
	pr.call, pr.echoed = nil, false
	pr.next = time.Now().Add(probeEvery)
}

// checkProbe sends a probe when one is due, and replaces the Pub/Sub
// connection when the probe under way shows it does not get what the master
// publishes: the master counted no receiver (outside a Cluster), or the
// token has not come back within probeTimeout. A probe whose PUBLISH failed
// shows nothing (Redis is down, or failing over): the next one will. A
// connection on which the probe channel, once allowed, stays unconfirmed
// for probeTimeout is replaced too: its node does not answer.
func (fs *feeds) checkProbe() {
	pr := &fs.probe
	if fs.ps == nil || len(fs.feeds) == 0 {
		return
	}
	now := time.Now()
	if !pr.confirmed {
		if pr.allowed && pr.pending && now.Sub(pr.since) >= max(probeTimeout, fs.s.timeout) {
			fs.replace()
		}
		return
	}
	if pr.call == nil {
		if now.Before(pr.next) {
			return
		}
		pr.seq++
		pr.token = strconv.Itoa(fs.gen) + "-" + strconv.Itoa(pr.seq)
		pr.sent, pr.echoed = now, false
		pr.call = &call{kind: probeCall, probe: pr.channel, token: pr.token}
		if !fs.s.start(pr.call) {
			pr.call = nil
		}
		return
	}
	stale := false
	switch c := pr.call; {
	case pr.echoed || answered(c) && c.err == nil && c.count > 0:
	case answered(c) && c.err != nil, !answered(c) && now.Sub(pr.sent) >= fs.s.timeout:
		c.abandoned.Store(true) // shows nothing
	case answered(c) && !fs.s.cluster:
		stale = true // the master has other subscribers: not this connection
	case now.Sub(pr.sent) >= probeTimeout:
		stale = answered(c) // the token has not come back
		if !stale {
			return
		}
	default:
		return // waiting for the answer, or the token
	}
	pr.call, pr.next = nil, pr.sent.Add(probeEvery)
	if stale {
		fs.replace()
	}
}

// nextCheck returns how long the loop may wait before it must check the
// connection, or retry something.
func (fs *feeds) nextCheck() time.Duration {
	if fs.ps == nil || len(fs.feeds) == 0 {
		return pingAfter
	}
	now := time.Now()
	next := fs.lastRead.Add(pingAfter)
	if !fs.pingSent.IsZero() {
		next = fs.pingSent.Add(pingTimeout)
	}
	if pr := &fs.probe; !pr.confirmed && pr.allowed && pr.pending {
		next = minTime(next, pr.since.Add(max(probeTimeout, fs.s.timeout)))
	} else if pr.confirmed && pr.call == nil {
		next = minTime(next, pr.next)
	} else if pr.call != nil {
		next = minTime(next, pr.sent.Add(min(probeTimeout, fs.s.timeout)))
	}
	for _, fd := range fs.feeds {
		if fd.dirty && fd.confirmed && fd.retry.IsZero() {
			return time.Millisecond // events left to read
		}
		if !fd.retry.IsZero() && fd.retry.Before(next) {
			next = fd.retry
		}
		if !fd.confirmed && fd.resend.Before(next) {
			next = fd.resend
		}
	}
	return max(next.Sub(now), time.Millisecond)
}

// startWaiting reads, in one round trip, each confirmed feed that has
// followers waiting for their head, or that is dirty: the events after its
// pos, and the head. A dirty feed is read with XRANGE and HMGET, which cost
// Redis a fraction of a script; one whose topic is not as its pos expects
// (no epoch, another one, or a head behind pos), with the read script,
// which gives the topic a new epoch if need be. It hands the events to the started followers, and the
// head to those waiting for it; and deliver(head, nil) to the started ones
// too when the topic has a new epoch, or the log no longer holds the events
// after pos. A feed whose read fails is tried again a little later.
func (fs *feeds) startWaiting() {
	var waiting []*feed
	for _, fd := range fs.feeds {
		if !fd.confirmed || !fd.retry.IsZero() {
			continue
		}
		if fd.dirty && fd.hasPos {
			waiting = append(waiting, fd)
			continue
		}
		for _, f := range fd.followers {
			if !f.started {
				waiting = append(waiting, fd)
				break
			}
		}
	}
	if len(waiting) == 0 {
		return
	}
	reads := make([]*call, len(waiting))
	for i, fd := range waiting {
		switch {
		case fd.hasPos && !fd.odd:
			n := 100
			if fd.read > 0 {
				n = min(max(fd.events*maxCallBytes/fd.read, 1), maxTail)
			}
			reads[i] = &call{topic: fd.topic, kind: tailCall, after: fd.pos, max: n}
		case fd.hasPos:
			reads[i] = &call{topic: fd.topic, kind: readCall, after: fd.pos, max: maxCallBytes}
		default:
			reads[i] = &call{topic: fd.topic, kind: headCall}
		}
	}
	if !fs.s.doAll(reads, fs.quit) {
		return
	}
	for i, fd := range waiting {
		c := reads[i]
		if !answered(c) || c.err != nil {
			fd.retry = time.Now().Add(500 * time.Millisecond)
			continue
		}
		fd.take(c)
		for _, f := range fd.followers {
			if !f.started {
				f.started = true
				f.call(c.head, nil)
				fs.heads.Add(1)
			}
		}
	}
}

// take hands the answer of a read of the feed (c) to its started followers.
func (fd *feed) take(c *call) {
	if fd.odd = c.odd; c.odd {
		fd.dirty = true // read again, with the script
		return
	}
	head := c.head
	if !fd.hasPos {
		fd.pos, fd.hasPos, fd.dirty = head, true, false
		return
	}
	if fd.read > 1<<30 { // keep the mean recent
		fd.events, fd.read = fd.events/2, fd.read/2
	}
	for _, w := range c.wires {
		fd.events, fd.read = fd.events+1, fd.read+len(w)
		fd.pos.Offset++
		for _, f := range fd.followers {
			if f.started {
				f.call(fd.pos, w)
			}
		}
	}
	switch {
	case head.Epoch == fd.pos.Epoch && head.Offset == fd.pos.Offset:
		fd.dirty = false
	case head.Epoch == fd.pos.Epoch && head.Offset > fd.pos.Offset && len(c.wires) > 0:
		fd.dirty = true // more to read
	default:
		// A new epoch; a log that no longer holds the events after pos
		// (trimmed); or a head behind pos (Redis went back). Followers
		// learn it from the head.
		fd.pos, fd.dirty = head, false
		for _, f := range fd.followers {
			if f.started {
				f.call(head, nil)
			}
		}
	}
}

// unstart makes every follower of fd wait for a head again: the feed broke,
// and may have missed hints.
func (fd *feed) unstart() {
	fd.hasPos, fd.dirty, fd.odd = false, false, false
	for _, f := range fd.followers {
		f.started = false
	}
}

// parseHint reads the header of a message that appendScript published:
//
//	<epoch> <offset of the first event> <length of each event>...\n<the events>
//
// and returns the epoch and the offset of its last event. The events are
// there for Streams of earlier versions; this one reads them from the stream.
func parseHint(payload string) (epoch string, last uint64, ok bool) {
	header, _, ok := strings.Cut(payload, "\n")
	fields := strings.Fields(header)
	if !ok || len(fields) < 3 {
		return "", 0, false
	}
	first, err := strconv.ParseUint(fields[1], 10, 64)
	if err != nil || first == 0 {
		return "", 0, false
	}
	return fields[0], first + uint64(len(fields)-3), true
}
