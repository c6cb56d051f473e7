package redisstream

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lightsse/sse/ssebroker"

	"github.com/redis/go-redis/v9"
)

// Every command a Streams sends to Redis, but those of its Pub/Sub
// connection, is a call: Append, ReadAfter, Head, and Follow's reads of the
// head. Calls wait in one queue; a few caller goroutines each take all that
// is waiting, up to a bound, and send it in one pipeline, with one script
// call per topic for the Appends. So calls that arrive while a round trip is
// under way share the next one, and throughput is bounded by Redis, not by
// round trips. Each caller of do waits with its own deadline, whatever
// happens to the round trip.

// callers is the number of round trips a Streams has under way at once.
const callers = 2

// readTTL is how long, at least, the meta hash that a read makes for a topic
// with no epoch lasts (IdleTTL, if longer): reads of topics that no one
// appends to, made-up names say, must not fill Redis, yet a topic that is
// only read should keep its epoch a while, or its readers would see a new
// one at each read. An Append makes it last as IdleTTL says.
const readTTL = time.Hour

// Bounds on one round trip, and on one script call of Appends. An event
// larger than maxCallBytes makes a round trip of its own.
const (
	maxCalls       = 1024
	maxCallBytes   = 1 << 20
	maxScriptWires = 256
)

type callKind uint8

const (
	appendCall callKind = iota
	readCall
	headCall
	probeCall
	tailCall
)

// A call is one request to Redis and its answer.
type call struct {
	topic *Topic
	kind  callKind
	wire  []byte             // appendCall: the event
	after ssebroker.Position // readCall, tailCall
	max   int                // readCall: bytes; tailCall: events
	probe string             // probeCall: the channel
	token string             // probeCall: what to publish

	head  ssebroker.Position // the answer: the event's Position, or the head
	wires [][]byte           // readCall, tailCall: the events
	count int64              // probeCall: the receivers
	odd   bool               // tailCall: the topic is not as after expects; read it with the script
	err   error

	done      chan struct{} // closed once the answer is set
	abandoned atomic.Bool   // the caller has given up: do not send it
	deadline  time.Time
	ctxBound  bool // the deadline is the caller's context's
}

// calls is the queue of calls waiting for a round trip.
type calls struct {
	mu     sync.Mutex
	queue  []*call
	taken  int // calls handed to callers so far (for tests)
	closed bool
	ready  chan struct{} // holds a token while the queue may be non-empty
}

func (q *calls) init() { q.ready = make(chan struct{}, 1) }

func (q *calls) signal() {
	select {
	case q.ready <- struct{}{}:
	default:
	}
}

// add queues c, or reports false after close.
func (q *calls) add(c *call) bool { return q.put(c, false) }

// put queues c, at the front if first, or reports false after close.
func (q *calls) put(c *call, first bool) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return false
	}
	if first {
		q.queue = slices.Insert(q.queue, 0, c)
	} else {
		q.queue = append(q.queue, c)
	}
	q.signal()
	return true
}

// take returns the oldest waiting calls, up to the bounds of one round trip,
// leaving out those whose callers gave up. It returns nil once there are none
// and the queue is closed.
func (q *calls) take(quit <-chan struct{}) []*call {
	for {
		q.mu.Lock()
		// An event over maxCallBytes travels alone: should Redis refuse
		// it (over its proto-max-bulk-len), it drops the connection, and
		// every call sent on it would fail.
		n, size := 0, 0
		for n < len(q.queue) && n < maxCalls {
			w := len(q.queue[n].wire)
			if n > 0 && (size >= maxCallBytes || w > maxCallBytes) {
				break
			}
			size += w
			n++
			if w > maxCallBytes {
				break
			}
		}
		batch := make([]*call, 0, n)
		for _, c := range q.queue[:n] {
			if !c.abandoned.Load() {
				batch = append(batch, c)
			}
		}
		clear(q.queue[:n])
		q.queue = q.queue[n:]
		q.taken += n
		if len(q.queue) > 0 {
			q.signal() // for another caller
		}
		closed := q.closed
		q.mu.Unlock()
		if len(batch) > 0 {
			return batch
		}
		if closed {
			return nil
		}
		select {
		case <-q.ready:
		case <-quit:
		}
	}
}

// close fails every waiting call with ErrClosed, and makes add refuse.
func (q *calls) close() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.closed = true
	for _, c := range q.queue {
		c.err = ErrClosed
		close(c.done)
	}
	q.queue = nil
}

// do queues c and waits for its answer, for Options.Timeout at most, or
// until ctx ends.
func (s *Streams) do(ctx context.Context, c *call) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.done = make(chan struct{})
	c.deadline = time.Now().Add(s.timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(c.deadline) {
		c.deadline, c.ctxBound = d, true
	}
	timer := time.NewTimer(s.timeout)
	defer timer.Stop()
	if !s.calls.add(c) {
		return ErrClosed
	}
	select {
	case <-c.done:
		if c.ctxBound && errors.Is(c.err, ErrTimeout) {
			// Redis ran out the caller's deadline, not ours.
			return context.DeadlineExceeded
		}
		return c.err
	case <-timer.C:
		c.abandoned.Store(true)
		return ErrTimeout
	case <-ctx.Done():
		c.abandoned.Store(true)
		return ctx.Err()
	}
}

// doAll queues every call, ahead of those waiting (a follower that lags
// behind Appends may find the events it lacks trimmed), and waits, for
// Options.Timeout at most, until all are answered; those unanswered by then
// are abandoned. It reports false if quit closed first, or the Streams is
// closed.
func (s *Streams) doAll(cs []*call, quit <-chan struct{}) bool {
	deadline := time.Now().Add(s.timeout)
	for i := len(cs) - 1; i >= 0; i-- {
		c := cs[i]
		c.done = make(chan struct{})
		c.deadline = deadline
		if !s.calls.put(c, true) {
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

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
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

// start queues c, with a deadline Options.Timeout away, and returns at
// once; c.done closes once it is answered. It reports false after Close.
func (s *Streams) start(c *call) bool {
	c.done = make(chan struct{})
	c.deadline = time.Now().Add(s.timeout)
	return s.calls.add(c)
}

// call sends the queued calls to Redis until the Streams closes.
func (s *Streams) call() {
	defer s.wg.Done()
	for {
		batch := s.calls.take(s.ctx.Done())
		if batch == nil {
			return
		}
		s.roundTrip(batch)
	}
}

// A scriptCall is one script run: the Appends of one topic, or one read;
// or, with script nil, a tail read (tailCall), which runs no script.
type scriptCall struct {
	calls  []*call
	script *script
	keys   []string
	args   []any
	cmd    *redis.Cmd
	meta   *redis.Cmd // a tail read's HMGET
}

// err returns the error of r's commands.
func (r *scriptCall) err() error {
	if err := r.cmd.Err(); err != nil || r.meta == nil {
		return err
	}
	return r.meta.Err()
}

// maxTail bounds the events of one tail read; a tail read asks for as many
// as make about maxCallBytes at the mean size of the events its feed has
// read so far (call.max), and 100 at first.
const maxTail = 4096

// noRetry marks a command that go-redis must not send again after a
// timeout or a broken connection: Redis may have run it already, and an
// Append run twice would be two events. go-redis retries a pipeline whole,
// and sends none again that holds a marked command; exec marks every
// script call, reads too, so no round trip of a Streams is retried by
// go-redis: a failed read returns its error, and whoever asked (the
// Broker, Follow's head reads) asks again.
type noRetry struct{ *redis.Cmd }

func (noRetry) NoRetry() bool { return true }

// roundTrip sends batch in one pipeline and answers each call. It leaves
// out the calls whose callers have given up since take: a caller that has
// returned may be using an Append's wire again.
func (s *Streams) roundTrip(batch []*call) {
	var runs []*scriptCall
	byTopic := make(map[string]*scriptCall)
	var deadline time.Time
	for _, c := range batch {
		if c.abandoned.Load() {
			continue
		}
		if c.deadline.After(deadline) {
			deadline = c.deadline
		}
		switch c.kind {
		case readCall, headCall:
			runs = append(runs, s.readRun(c))
			continue
		case probeCall:
			runs = append(runs, &scriptCall{calls: []*call{c}, script: probeScript, keys: []string{c.probe}, args: []any{c.token}})
			continue
		case tailCall:
			runs = append(runs, &scriptCall{calls: []*call{c}, keys: c.topic.keys})
			continue
		}
		r := byTopic[c.topic.channel]
		if r == nil || len(r.calls) == maxScriptWires {
			mark := s.marks.get(c.topic.channel)
			r = &scriptCall{
				script: appendScript,
				keys:   c.topic.keys,
				args:   []any{ssebroker.NewEpoch(), mark.Epoch, mark.Offset, s.maxLen, s.ttlMS, c.topic.channel},
			}
			byTopic[c.topic.channel] = r
			runs = append(runs, r)
		}
		r.calls = append(r.calls, c)
		r.args = append(r.args, c.wire)
	}
	if len(runs) == 0 {
		return
	}
	ctx, cancel := context.WithDeadline(s.ctx, deadline)
	defer cancel()
	s.exec(ctx, runs, false)
	var again []*scriptCall
	for _, r := range runs {
		if err := r.cmd.Err(); err != nil && strings.HasPrefix(err.Error(), "NOSCRIPT") {
			again = append(again, r)
		}
	}
	if len(again) > 0 {
		// Redis has lost its script cache (a restart, SCRIPT FLUSH): EVAL
		// sends the scripts and caches them again.
		s.exec(ctx, again, true)
	}
	var retry []*call
	for _, r := range runs {
		err := r.err()
		if err != nil && s.ctx.Err() == nil && !errors.Is(err, context.Canceled) {
			s.reload(ctx)
		}
		if err != nil && notRun(err) && s.ctx.Err() == nil && r.timeLeft(retryAfter) {
			retry = append(retry, r.calls...)
			continue
		}
		s.answer(r)
	}
	if len(retry) > 0 {
		time.AfterFunc(retryAfter, func() {
			for _, c := range retry {
				if !s.calls.add(c) {
					c.err = ErrClosed
					close(c.done)
				}
			}
		})
	}
}

// retryAfter is how long a call that Redis did not run waits before it is
// sent again.
const retryAfter = 100 * time.Millisecond

// timeLeft reports whether every call of r has d left before its deadline.
func (r *scriptCall) timeLeft(d time.Duration) bool {
	for _, c := range r.calls {
		if time.Until(c.deadline) < d {
			return false
		}
	}
	return true
}

// notRun reports an error that shows Redis did not run the command: it was
// never sent (no connection could be made), or Redis refused it before
// running it (a node that no longer serves the slot, or is no longer a
// master, or is loading, or has too few replicas for its
// min-replicas-to-write; a Cluster down or migrating the slot; a script
// running). Sending such a call again cannot make an Append happen twice. A
// script that fails at its first write on a node that has become a replica
// (READONLY) has written nothing either.
func notRun(err error) bool {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" || errors.Is(err, redis.ErrPoolTimeout) {
		return true
	}
	var rerr redis.Error
	if !errors.As(err, &rerr) {
		return false
	}
	msg := rerr.Error()
	for _, prefix := range []string{"MOVED ", "ASK ", "TRYAGAIN", "CLUSTERDOWN", "READONLY", "LOADING", "MASTERDOWN", "NOREPLICAS", "BUSY "} {
		if strings.HasPrefix(msg, prefix) {
			return true
		}
	}
	return false
}

// reload has a Cluster client reload its map of the slots, after a round
// trip that failed: a master may have failed over, or its slots moved.
// go-redis otherwise reloads it only every minute, or on a MOVED reply,
// which a dead master never sends. Reloads are asynchronous, and go-redis
// makes one at a time.
func (s *Streams) reload(ctx context.Context) {
	if c, ok := s.client.(interface{ ReloadState(context.Context) }); ok {
		c.ReloadState(ctx)
	}
}

func (s *Streams) readRun(c *call) *scriptCall {
	mark := s.marks.get(c.topic.channel)
	r := &scriptCall{calls: []*call{c}, script: readScript, keys: c.topic.keys}
	r.args = []any{ssebroker.NewEpoch(), mark.Epoch, mark.Offset, max(s.ttlMS, readTTL.Milliseconds())}
	switch c.kind {
	case readCall:
		r.args = append(r.args, c.after.Epoch, c.after.Offset, max(c.max, 1))
	case headCall:
		r.args = append(r.args, "", 0, 0)
	}
	return r
}

// exec runs every script of runs in one pipeline, as EVALSHA, or as EVAL.
// With Options.MinReplicas, a WAIT follows the scripts of each master, on
// its connection: in a Cluster, one pipeline per master.
func (s *Streams) exec(ctx context.Context, runs []*scriptCall, eval bool) {
	if s.wait == 0 {
		s.execOn(ctx, s.client, runs, eval)
		return
	}
	cc, ok := s.client.(*redis.ClusterClient)
	if !ok {
		s.execOn(ctx, s.client, runs, eval)
		return
	}
	byNode := make(map[*redis.Client][]*scriptCall)
	for _, r := range runs {
		node, err := cc.MasterForKey(ctx, r.keys[0])
		if err != nil {
			r.cmd = redis.NewCmd(ctx)
			r.cmd.SetErr(err)
			continue
		}
		byNode[node] = append(byNode[node], r)
	}
	var wg sync.WaitGroup
	for node, runs := range byNode {
		wg.Go(func() { s.execOn(ctx, node, runs, eval) })
	}
	wg.Wait()
}

// execOn runs runs in one pipeline of client, followed by a WAIT if the
// Streams has MinReplicas and runs hold Appends.
func (s *Streams) execOn(ctx context.Context, client redis.Cmdable, runs []*scriptCall, eval bool) {
	pipe := client.Pipeline()
	appends := false
	for _, r := range runs {
		if r.script == nil {
			// The events after, then the head: any epoch that the HMGET
			// finds was already the topic's at the XRANGE, since a topic
			// never goes back to an epoch.
			after := r.calls[0].after
			r.cmd = redis.NewCmd(ctx, "xrange", r.keys[0], strconv.FormatUint(after.Offset+1, 10), "+", "count", r.calls[0].max)
			r.meta = redis.NewCmd(ctx, "hmget", r.keys[1], "epoch", "offset")
			_ = pipe.Process(ctx, noRetry{r.cmd})
			_ = pipe.Process(ctx, noRetry{r.meta})
			continue
		}
		args := make([]any, 0, 3+len(r.keys)+len(r.args))
		if eval {
			args = append(args, "eval", r.script.src)
		} else {
			args = append(args, "evalsha", r.script.sha)
		}
		args = append(args, len(r.keys))
		for _, k := range r.keys {
			args = append(args, k)
		}
		args = append(args, r.args...)
		r.cmd = redis.NewCmd(ctx, args...)
		_ = pipe.Process(ctx, noRetry{r.cmd})
		appends = appends || r.calls[0].kind == appendCall
	}
	var wait *redis.IntCmd
	if s.wait > 0 && appends {
		ms := int64(1)
		if d, ok := ctx.Deadline(); ok {
			ms = max(ms, time.Until(d).Milliseconds()*3/4)
		}
		wait = redis.NewIntCmd(ctx, "wait", s.wait, ms)
		_ = pipe.Process(ctx, noRetryInt{wait})
	}
	_, _ = pipe.Exec(ctx) // each command holds its own error
	if wait == nil {
		return
	}
	n, err := wait.Result()
	if err == nil && n >= int64(s.wait) {
		return
	}
	if err == nil {
		err = fmt.Errorf("%w: %d of %d replicas acknowledged", ErrNotReplicated, n, s.wait)
	} else {
		err = fmt.Errorf("%w: WAIT: %v", ErrNotReplicated, err)
	}
	for _, r := range runs {
		if r.calls[0].kind == appendCall && r.cmd.Err() == nil {
			r.cmd.SetErr(err)
		}
	}
}

// noRetryInt is noRetry for WAIT.
type noRetryInt struct{ *redis.IntCmd }

func (noRetryInt) NoRetry() bool { return true }

// answer sets the answer of each call of r from its script's reply, and
// wakes their callers.
func (s *Streams) answer(r *scriptCall) {
	switch c := r.calls[0]; c.kind {
	case probeCall:
		c.count, c.err = r.cmd.Int64()
		close(c.done)
		return
	case tailCall:
		c.err = r.err()
		if c.err == nil {
			s.answerTail(c, r)
		} else if s.ctx.Err() != nil {
			c.err = ErrClosed
		}
		close(c.done)
		return
	}
	reply, err := r.cmd.Slice()
	var head ssebroker.Position
	if err == nil {
		head, err = parseHead(reply)
	}
	if err != nil && s.ctx.Err() != nil {
		err = ErrClosed
	} else if err != nil && (errors.Is(err, context.DeadlineExceeded) || isTimeout(err)) {
		err = fmt.Errorf("%w: %v", ErrTimeout, err)
	} else if err == nil {
		newest := head
		if r.calls[0].kind == appendCall {
			newest.Offset += uint64(len(r.calls) - 1)
		}
		s.marks.see(r.calls[0].topic.channel, newest)
	}
	for i, c := range r.calls {
		c.err = err
		switch {
		case err != nil:
		case c.kind == appendCall:
			c.head = ssebroker.Position{Epoch: head.Epoch, Offset: head.Offset + uint64(i)}
		case c.kind == readCall:
			c.head = head
			c.wires = make([][]byte, 0, len(reply)-2)
			for _, w := range reply[2:] {
				s, ok := w.(string)
				if !ok {
					c.err = fmt.Errorf("redisstream: read script returned %T, not a string", w)
					break
				}
				c.wires = append(c.wires, []byte(s))
			}
		default:
			c.head = head
		}
		close(c.done)
	}
}

// answerTail sets the answer of a tail read from its replies: the events
// that follow c.after without a gap, and the head. A topic that is not as
// c.after expects (no meta hash, another epoch, a head behind it or behind
// the Streams' mark) is odd: the script read, which gives it a new epoch if
// need be, must read it.
func (s *Streams) answerTail(c *call, r *scriptCall) {
	meta, _ := r.meta.Slice()
	entries, _ := r.cmd.Slice()
	epoch, _ := meta[0].(string)
	offset, _ := meta[1].(string)
	head, err := strconv.ParseUint(offset, 10, 64)
	mark := s.marks.get(c.topic.channel)
	if epoch != c.after.Epoch || err != nil || head < c.after.Offset || mark.Epoch == epoch && head < mark.Offset {
		c.odd = true
		return
	}
	c.head = ssebroker.Position{Epoch: epoch, Offset: head}
	want := c.after.Offset + 1
	for _, e := range entries {
		e, _ := e.([]any)
		if len(e) != 2 || want > head {
			break
		}
		id, _ := e[0].(string)
		fields, _ := e[1].([]any)
		n, _, _ := strings.Cut(id, "-")
		if n != strconv.FormatUint(want, 10) || len(fields) != 2 || fields[0] != "w" {
			break
		}
		w, _ := fields[1].(string)
		c.wires = append(c.wires, []byte(w))
		want++
	}
	s.marks.see(c.topic.channel, c.head)
}

// parseHead reads the {epoch, offset} that begins a script's reply.
func parseHead(reply []any) (ssebroker.Position, error) {
	if len(reply) < 2 {
		return ssebroker.Position{}, fmt.Errorf("redisstream: script returned %d values, want at least 2", len(reply))
	}
	epoch, ok1 := reply[0].(string)
	offset, ok2 := reply[1].(int64)
	if !ok1 || !ok2 || offset < 0 {
		return ssebroker.Position{}, fmt.Errorf("redisstream: script returned %v, want an epoch and an offset", reply[:2])
	}
	return ssebroker.Position{Epoch: epoch, Offset: uint64(offset)}, nil
}

// isTimeout reports a network timeout.
func isTimeout(err error) bool {
	var t interface{ Timeout() bool }
	return errors.As(err, &t) && t.Timeout()
}
