package redisstream

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lightsse/sse"
	"github.com/redis/go-redis/v9"
)

// Follow has the topic call deliver with every event appended to it from now
// on, by any process, in log order, until stop is called, as [sse.Log]
// describes. Its first call, once Redis has confirmed the subscription and
// answered a read of the head, is deliver(head, nil); it makes that call
// again whenever the feed may have missed events (the Pub/Sub connection
// broke, and is back). Calls to deliver, for all topics of a Streams, are
// made one at a time from one goroutine: a deliver that blocks delays the
// others. deliver must not call stop, nor Close.
//
// stop returns once no call to deliver is running, and none is made after
// it; it is safe to call more than once. After Close, Follow returns a stop
// that does nothing, and deliver is never called.
func (t *Topic) Follow(deliver func(pos sse.Position, wire []byte)) (stop func()) {
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
	deliver func(sse.Position, []byte)
	once    sync.Once

	mu      sync.Mutex // held while deliver runs
	stopped bool

	started bool // the loop: it has had deliver(head, nil) since its feed last broke
}

// call runs deliver unless the follower has stopped.
func (f *follower) call(pos sse.Position, wire []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.stopped {
		f.deliver(pos, wire)
	}
}

// A feed is one subscribed channel: a topic that some follower follows.
type feed struct {
	topic     *Topic
	followers []*follower
	confirmed bool      // Redis confirmed the subscription on the current connection
	subscribe bool      // SUBSCRIBE must be sent (again)
	retry     time.Time // when to read the head again after a failed read
}

type feedRequest struct{ join, leave *follower }

// An item is what the reader hands the loop: a *redis.Message,
// *redis.Subscription or *redis.Pong, or errBroken, read on the connection
// of generation gen.
type item struct {
	gen int
	msg any
}

// errBroken says that the Pub/Sub connection failed: events may have been
// missed.
var errBroken = errors.New("redisstream: Pub/Sub connection broken")

// How the loop checks that the Pub/Sub connection is alive: after
// pingAfter with nothing read on it, it sends a PING; if nothing has come
// back pingTimeout later, it replaces the connection. (Variables, for tests.)
var (
	pingAfter   = 5 * time.Second
	pingTimeout = 5 * time.Second
)

// maxDrain is how many items the loop handles before reading the heads of
// followers that wait for theirs, so that after a reconnection the heads of
// many topics are read in a few round trips.
const maxDrain = 512

// feeds hands the events published to followed topics to their followers.
// Follow and stop leave requests; one goroutine, the loop, does everything
// else: it subscribes and unsubscribes, reads heads, calls deliver. Another,
// the reader, reads the Pub/Sub connection into the inbox; it blocks, and
// Redis buffers, while the loop is busy.
type feeds struct {
	s *Streams

	mu      sync.Mutex
	reqs    []feedRequest
	running bool // the loop has been started
	closed  bool
	kick    chan struct{} // holds a token while reqs may be non-empty
	quit    chan struct{} // closed by close

	inbox chan item

	heads atomic.Int64 // calls of deliver(head, nil) so far, for tests

	// The loop's own.
	ps       *redis.PubSub
	gen      int // of ps
	feeds    map[string]*feed
	lastRead time.Time // something came on ps
	pingSent time.Time // zero when no ping awaits an answer
}

func newFeeds(s *Streams) *feeds {
	return &feeds{
		s:     s,
		kick:  make(chan struct{}, 1),
		quit:  make(chan struct{}),
		inbox: make(chan item, 256),
		feeds: make(map[string]*feed),
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
			fs.check()
		}
		fs.resubscribe()
		fs.startWaiting()
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
				fd = &feed{topic: f.topic, subscribe: true}
				fs.feeds[f.topic.channel] = fd
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
			if fs.ps != nil {
				ctx, cancel := context.WithTimeout(fs.s.ctx, fs.s.timeout)
				// An error means a broken connection, which forgets
				// the channel anyway.
				_ = fs.ps.Unsubscribe(ctx, f.topic.channel)
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
	fs.lastRead = time.Now()
	switch m := it.msg.(type) {
	case *redis.Message:
		fd := fs.feeds[m.Channel]
		if fd == nil {
			return
		}
		epoch, first, wires, err := parseMessage(m.Payload)
		if err != nil {
			// Not ours, or damaged: what it held, the log has. The
			// next event will show the followers the gap.
			return
		}
		for _, f := range fd.followers {
			if !f.started {
				continue // its head, read later, covers this
			}
			for i, w := range wires {
				f.call(sse.Position{Epoch: epoch, Offset: first + uint64(i)}, w)
			}
		}
	case *redis.Subscription:
		fd := fs.feeds[m.Channel]
		if fd == nil {
			return
		}
		// A new subscription, or one go-redis made again on a new
		// connection: either way, events may have been missed since the
		// followers' heads. Read them again.
		fd.confirmed = m.Kind == "subscribe"
		fd.retry = time.Time{}
		for _, f := range fd.followers {
			f.started = false
		}
	case *redis.Pong:
		fs.pingSent = time.Time{}
	default: // errBroken
		for _, fd := range fs.feeds {
			fd.confirmed = false
			for _, f := range fd.followers {
				f.started = false
			}
		}
	}
}

// resubscribe opens the Pub/Sub connection if there is none, and sends
// SUBSCRIBE for the feeds that need it.
func (fs *feeds) resubscribe() {
	var chans []string
	for ch, fd := range fs.feeds {
		if fd.subscribe && fd.retry.IsZero() {
			fd.subscribe = false
			chans = append(chans, ch)
		}
	}
	if len(chans) == 0 {
		return
	}
	if fs.ps == nil {
		fs.connect()
	}
	ctx, cancel := context.WithTimeout(fs.s.ctx, fs.s.timeout)
	defer cancel()
	if err := fs.ps.Subscribe(ctx, chans...); err != nil && fs.s.ctx.Err() == nil {
		// go-redis may have reconnected without these channels: send
		// SUBSCRIBE again at the next check. A second SUBSCRIBE to a
		// channel is harmless; it is confirmed again.
		for _, ch := range chans {
			if fd := fs.feeds[ch]; fd != nil {
				fd.subscribe = true
				fd.retry = time.Now().Add(time.Second)
			}
		}
	}
}

// connect opens a new Pub/Sub connection, and a reader for it.
func (fs *feeds) connect() {
	fs.gen++
	fs.ps = fs.s.client.Subscribe(fs.s.ctx)
	fs.lastRead, fs.pingSent = time.Now(), time.Time{}
	fs.s.wg.Add(1)
	go fs.read(fs.ps, fs.gen)
}

// read hands the loop what comes on ps, until ps is closed. After an error
// (go-redis reconnects and subscribes again by itself at the next Receive)
// it tells the loop once, and waits a little before trying again.
func (fs *feeds) read(ps *redis.PubSub, gen int) {
	defer fs.s.wg.Done()
	failing := false
	backoff := 50 * time.Millisecond
	for {
		msg, err := ps.Receive(fs.s.ctx)
		if errors.Is(err, redis.ErrClosed) || fs.s.ctx.Err() != nil {
			return
		}
		if err != nil {
			if !failing {
				failing = true
				msg = errBroken
			} else {
				msg = nil
			}
			backoff = min(2*backoff, time.Second)
		} else {
			failing = false
			backoff = 50 * time.Millisecond
		}
		if msg != nil {
			select {
			case fs.inbox <- item{gen: gen, msg: msg}:
			case <-fs.quit:
				return
			}
		}
		if failing {
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
	case !fs.pingSent.IsZero() && now.Sub(fs.pingSent) >= pingTimeout:
		// No answer: the connection may be dead without knowing it (a
		// lost peer sends no reset). A new one subscribes to every feed.
		_ = fs.ps.Close()
		fs.connect()
		for _, fd := range fs.feeds {
			fd.confirmed, fd.subscribe = false, true
			for _, f := range fd.followers {
				f.started = false
			}
		}
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
	for _, fd := range fs.feeds {
		if !fd.retry.IsZero() && fd.retry.Before(next) {
			next = fd.retry
		}
	}
	return max(next.Sub(now), time.Millisecond)
}

// startWaiting reads the head of each confirmed feed that has followers
// waiting for theirs, all in one round trip, and calls deliver(head, nil)
// for each of them. A feed whose read fails is tried again a little later.
func (fs *feeds) startWaiting() {
	var waiting []*feed
	for _, fd := range fs.feeds {
		if !fd.confirmed || !fd.retry.IsZero() {
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
	heads := make([]*call, len(waiting))
	for i, fd := range waiting {
		heads[i] = &call{topic: fd.topic, kind: headCall}
	}
	if !fs.s.doAll(heads, fs.quit) {
		return
	}
	for i, fd := range waiting {
		c := heads[i]
		if !answered(c) || c.err != nil {
			fd.retry = time.Now().Add(500 * time.Millisecond)
			continue
		}
		for _, f := range fd.followers {
			if !f.started {
				f.started = true
				f.call(c.head, nil)
				fs.heads.Add(1)
			}
		}
	}
}

// doAll queues every call and waits, for Options.Timeout at most, until all
// are answered; those unanswered by then are abandoned. It reports false if
// quit closed first, or the Streams is closed.
func (s *Streams) doAll(cs []*call, quit <-chan struct{}) bool {
	deadline := time.Now().Add(s.timeout)
	for _, c := range cs {
		c.done = make(chan struct{})
		c.deadline = deadline
		if !s.calls.add(c) {
			return false
		}
	}
	timer := time.NewTimer(s.timeout)
	defer timer.Stop()
	for _, c := range cs {
		select {
		case <-c.done:
		case <-timer.C:
			for _, c := range cs {
				c.abandoned.Store(true)
			}
			return true
		case <-quit:
			return false
		}
	}
	return true
}

// answered reports whether c has its answer.
func answered(c *call) bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// parseMessage reads a message that appendScript published.
func parseMessage(payload string) (epoch string, first uint64, wires [][]byte, err error) {
	header, body, ok := strings.Cut(payload, "\n")
	fields := strings.Fields(header)
	if !ok || len(fields) < 3 {
		return "", 0, nil, fmt.Errorf("redisstream: malformed message %.40q", payload)
	}
	epoch = fields[0]
	if first, err = strconv.ParseUint(fields[1], 10, 64); err != nil {
		return "", 0, nil, fmt.Errorf("redisstream: malformed message %.40q", payload)
	}
	buf := []byte(body) // one copy for every event: the Broker keeps them
	wires = make([][]byte, 0, len(fields)-2)
	for _, f := range fields[2:] {
		n, err := strconv.Atoi(f)
		if err != nil || n < 0 || n > len(buf) {
			return "", 0, nil, fmt.Errorf("redisstream: malformed message %.40q", payload)
		}
		wires = append(wires, buf[:n:n])
		buf = buf[n:]
	}
	if len(buf) != 0 {
		return "", 0, nil, fmt.Errorf("redisstream: malformed message %.40q", payload)
	}
	return epoch, first, wires, nil
}
