package main

import (
	"context"
	"fmt"
	"log"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lightsse/sse/ssebroker"

	avsse "github.com/alexandrevicenzi/go-sse"
	ldes "github.com/launchdarkly/eventsource"
	"github.com/lightsse/sse"
	r3sse "github.com/r3labs/sse/v2"
	tmsse "github.com/tmaxmax/go-sse"
)

// A Contender is one way of serving the same stream of events: our Broker, a
// peer library used as its README shows, a hand-written handler, or a floor.
// Every client requests /events?stream=messages (r3labs needs the stream
// parameter; the others ignore it).
type Contender interface {
	Name() string
	Handler() http.Handler
	// Publish sends one event of type "tick" (blog: untyped) with the given
	// id (ours assigns its own) and data (one line) to every stream.
	Publish(id, data string)
	Close()
}

// Config is the same for every contender in a run.
type Config struct {
	Heartbeat    time.Duration // 0: none
	WriteTimeout time.Duration // for those that support one (ours, hub)
	Burst        int           // most events a stream may have to queue in the run (the run's event count)
}

type contenderInfo struct {
	name  string
	new   func(Config) Contender
	typed bool // sends event: tick (the blog handler sends bare data)
	floor bool // publishes nothing (memory floor): idle workload only
	// variant marks a variant of ours for the many workload (Detach, one
	// Broker per user): left out of "all", run only where named, or by
	// default in the many workload.
	variant bool
	note    string
}

const eventType = "tick"

var contenders = []contenderInfo{
	{name: "ours", new: newOurs, typed: true,
		note: "ssebroker.New with default history (16384 events / 16 MiB); Stream.Heartbeat and WriteTimeout as the run says (defaults 15 s / 10 s); ids assigned by the Broker"},
	{name: "tmaxmax", new: newTmaxmax, typed: true,
		note: "&sse.Server{} with the default Joe provider, no replayer; heartbeat: the adapter publishes a comment-only Message on a ticker"},
	{name: "r3labs", new: newR3labs, typed: true,
		note: "sse.New(), CreateStream; AutoReplay=false (else its event log grows without bound and it rewrites ids), SplitData=true (multi-line data stays valid SSE); default BufferSize 1024 (its per-subscriber queue is a fixed 64); heartbeat: a Comment-only Event on a ticker"},
	{name: "launchdarkly", new: newLaunchDarkly, typed: true,
		note: "eventsource.NewServer(), Gzip off; BufferSize = max(128, events in the run + 64) so that healthy clients are not disconnected (it drops a subscriber whose queue is full: its default 128 would drop healthy clients in the 5,000-event burst); heartbeat: PublishComment on a ticker"},
	{name: "alexandrevicenzi", new: newAlexandrevicenzi, typed: true,
		note: "sse.NewServer(&sse.Options{}) (a nil Options logs every message to stdout); channel = request path; heartbeat: a \"ping\" event on a ticker (it has no comments)"},
	{name: "blog", new: newBlog, typed: false,
		note: "hand-written: a mutex-protected map of chan string (buffer 64), Publish sends to each under the lock (blocking), handler does fmt.Fprintf(w, \"data: %s\\n\\n\") + Flush, a per-connection ticker writes \": ping\" comments"},
	{name: "floor-bare", new: newFloor, floor: true,
		note: "net/http handler that sets the headers, flushes, and waits on its context (memory floor)"},
	{name: "ours-detach", new: newOursDetach, typed: true, variant: true,
		note: "ours with ssebroker.Options.Detach: an HTTP/1.x stream leaves net/http once accepted (http.Hijacker)"},
	{name: "ours-users", new: newOursUsers(false), typed: true, variant: true,
		note: "one ssebroker.New per user (HistoryLen 16), one stream each, at /u/<i>; Publish to all = Publish on every Broker in turn"},
	{name: "ours-users-detach", new: newOursUsers(true), typed: true, variant: true,
		note: "ours-users with Options.Detach on every Broker"},
	{name: "hub", new: newHub, typed: true,
		note: "minimal hub (speed ceiling): Publish encodes once and does a non-blocking send of the bytes to each subscriber's channel (buffer max(64, events in the run + 64); full = dropped); the handler drains what is queued into one write and one flush, under a write deadline"},
}

func findContender(name string) (contenderInfo, bool) {
	for _, c := range contenders {
		if c.name == name {
			return c, true
		}
	}
	return contenderInfo{}, false
}

func contenderNames() []string {
	var n []string
	for _, c := range contenders {
		n = append(n, c.name)
	}
	return n
}

// ticker runs f every d until stop is closed; d <= 0 runs nothing.
func ticker(d time.Duration, stop <-chan struct{}, f func()) {
	if d <= 0 {
		return
	}
	go func() {
		t := time.NewTicker(d)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				f()
			}
		}
	}()
}

// ---- ours ----

type ours struct{ b *ssebroker.Broker }

func newOurs(c Config) Contender {
	b, err := ssebroker.New(&ssebroker.Options{
		Stream: sse.Options{Heartbeat: c.Heartbeat, WriteTimeout: c.WriteTimeout},
	})
	if err != nil {
		log.Fatal(err)
	}
	return &ours{b: b}
}
func (o *ours) Name() string          { return "ours" }
func (o *ours) Handler() http.Handler { return o.b }
func (o *ours) Publish(_, data string) {
	_ = o.b.Publish(sse.Event{Type: eventType, Data: data})
}
func (o *ours) Close() { _ = o.b.Close() }
func (o *ours) Ends() (open, fellBehind, timedOut int64) {
	st := o.b.Stats()
	return st.Open, int64(st.Ended.FellBehind), int64(st.Ended.WriteTimeout)
}

// An endsCounter tells how many streams a contender has open, and how many
// it ended itself: for falling behind, and for a write timeout. The server
// role reports them where the contender has them (ours and the hub).
type endsCounter interface {
	Ends() (open, fellBehind, timedOut int64)
}

func newOursDetach(c Config) Contender {
	b, err := ssebroker.New(&ssebroker.Options{
		Stream: sse.Options{Heartbeat: c.Heartbeat, WriteTimeout: c.WriteTimeout},
		Detach: true,
	})
	if err != nil {
		log.Fatal(err)
	}
	return &ours{b: b}
}

// ---- ours, one Broker per user ----

// usersHistoryLen is the history of each per-user Broker: a user's stream
// wants a few events of replay, not the shared default of 16,384.
const usersHistoryLen = 16

// oursUsers makes one Broker per user, on the user's first request: the
// path /u/<user> names the user (the many workload's clients ask for
// /u/<their index>); any other path gets a new user of its own. Publish
// publishes on every Broker in turn, as an application that tells every
// user the same thing would. Brokers are kept until Close (no OnIdle).
type oursUsers struct {
	opts ssebroker.Options
	mu   sync.Mutex
	byID map[string]*ssebroker.Broker
	list []*ssebroker.Broker // append-only: Publish reads a prefix without the lock
	anon int
}

func newOursUsers(detach bool) func(Config) Contender {
	return func(c Config) Contender {
		o := ssebroker.Options{HistoryLen: usersHistoryLen, Stream: sse.Options{Heartbeat: c.Heartbeat, WriteTimeout: c.WriteTimeout}, Detach: detach}
		if _, err := ssebroker.New(&o); err != nil { // check the options once
			log.Fatal(err)
		}
		return &oursUsers{opts: o, byID: make(map[string]*ssebroker.Broker)}
	}
}

func (u *oursUsers) Name() string          { return "ours-users" }
func (u *oursUsers) Handler() http.Handler { return u }
func (u *oursUsers) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	id, ok := strings.CutPrefix(r.URL.Path, "/u/")
	u.mu.Lock()
	if !ok || id == "" {
		u.anon++
		id = fmt.Sprintf("anon-%d", u.anon)
	}
	b := u.byID[id]
	if b == nil {
		var err error
		if b, err = ssebroker.New(&u.opts); err != nil {
			u.mu.Unlock()
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		u.byID[id] = b
		u.list = append(u.list, b)
	}
	u.mu.Unlock()
	b.ServeHTTP(w, r)
}
func (u *oursUsers) brokers() []*ssebroker.Broker {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.list[:len(u.list):len(u.list)]
}
func (u *oursUsers) Publish(_, data string) {
	for _, b := range u.brokers() {
		_ = b.Publish(sse.Event{Type: eventType, Data: data})
	}
}
func (u *oursUsers) Close() {
	for _, b := range u.brokers() {
		_ = b.Close()
	}
}
func (u *oursUsers) Ends() (open, fellBehind, timedOut int64) {
	for _, b := range u.brokers() {
		st := b.Stats()
		open += st.Open
		fellBehind += int64(st.Ended.FellBehind)
		timedOut += int64(st.Ended.WriteTimeout)
	}
	return open, fellBehind, timedOut
}

// ---- github.com/tmaxmax/go-sse ----

type tmaxmax struct {
	s    *tmsse.Server
	stop chan struct{}
}

func newTmaxmax(c Config) Contender {
	t := &tmaxmax{s: &tmsse.Server{}, stop: make(chan struct{})}
	ticker(c.Heartbeat, t.stop, func() {
		m := &tmsse.Message{}
		m.AppendComment("ping")
		_ = t.s.Publish(m)
	})
	return t
}
func (t *tmaxmax) Name() string          { return "tmaxmax" }
func (t *tmaxmax) Handler() http.Handler { return t.s }
func (t *tmaxmax) Publish(id, data string) {
	m := &tmsse.Message{ID: tmsse.ID(id), Type: tmsse.Type(eventType)}
	m.AppendData(data)
	_ = t.s.Publish(m)
}
func (t *tmaxmax) Close() {
	close(t.stop)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = t.s.Shutdown(ctx)
}

// ---- github.com/r3labs/sse/v2 ----

type r3labs struct {
	s    *r3sse.Server
	stop chan struct{}
}

const r3Stream = "messages"

func newR3labs(c Config) Contender {
	s := r3sse.New()
	s.AutoReplay = false
	s.SplitData = true
	s.CreateStream(r3Stream)
	r := &r3labs{s: s, stop: make(chan struct{})}
	ticker(c.Heartbeat, r.stop, func() {
		s.Publish(r3Stream, &r3sse.Event{Comment: []byte("ping")})
	})
	return r
}
func (r *r3labs) Name() string          { return "r3labs" }
func (r *r3labs) Handler() http.Handler { return r.s }
func (r *r3labs) Publish(id, data string) {
	r.s.Publish(r3Stream, &r3sse.Event{ID: []byte(id), Event: []byte(eventType), Data: []byte(data)})
}
func (r *r3labs) Close() { close(r.stop); r.s.Close() }

// ---- github.com/launchdarkly/eventsource ----

type launchDarkly struct {
	s    *ldes.Server
	stop chan struct{}
}

type ldEvent struct{ id, data string }

func (e ldEvent) Id() string    { return e.id }
func (e ldEvent) Event() string { return eventType }
func (e ldEvent) Data() string  { return e.data }

const ldChannel = "events"

func newLaunchDarkly(c Config) Contender {
	s := ldes.NewServer()
	s.BufferSize = max(128, c.Burst+64)
	l := &launchDarkly{s: s, stop: make(chan struct{})}
	ticker(c.Heartbeat, l.stop, func() { s.PublishComment([]string{ldChannel}, "") })
	return l
}
func (l *launchDarkly) Name() string          { return "launchdarkly" }
func (l *launchDarkly) Handler() http.Handler { return l.s.Handler(ldChannel) }
func (l *launchDarkly) Publish(id, data string) {
	l.s.Publish([]string{ldChannel}, ldEvent{id: id, data: data})
}
func (l *launchDarkly) Close() { close(l.stop); l.s.Close() }

// ---- github.com/alexandrevicenzi/go-sse ----

type alexandrevicenzi struct {
	s    *avsse.Server
	stop chan struct{}
}

const avChannel = "/events" // the request path

func newAlexandrevicenzi(c Config) Contender {
	s := avsse.NewServer(&avsse.Options{})
	a := &alexandrevicenzi{s: s, stop: make(chan struct{})}
	ticker(c.Heartbeat, a.stop, func() { s.SendMessage(avChannel, avsse.SimpleMessage(pingData)) })
	return a
}
func (a *alexandrevicenzi) Name() string          { return "alexandrevicenzi" }
func (a *alexandrevicenzi) Handler() http.Handler { return a.s }
func (a *alexandrevicenzi) Publish(id, data string) {
	a.s.SendMessage(avChannel, avsse.NewMessage(id, data, eventType))
}
func (a *alexandrevicenzi) Close() {
	close(a.stop)
	done := make(chan struct{})
	go func() { a.s.Shutdown(); close(done) }()
	select {
	case <-done:
	case <-time.After(time.Second):
	}
}

// ---- a blog-style handler, as tutorials write it ----

type blog struct {
	mu      sync.Mutex
	clients map[chan string]struct{}
	hb      time.Duration
}

func newBlog(c Config) Contender {
	return &blog{clients: make(map[chan string]struct{}), hb: c.Heartbeat}
}
func (b *blog) Name() string          { return "blog" }
func (b *blog) Handler() http.Handler { return b }
func (b *blog) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	flusher, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming unsupported", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	ch := make(chan string, 64)
	b.mu.Lock()
	b.clients[ch] = struct{}{}
	b.mu.Unlock()
	defer func() {
		b.mu.Lock()
		delete(b.clients, ch)
		b.mu.Unlock()
	}()
	flusher.Flush()
	var tick <-chan time.Time
	if b.hb > 0 {
		t := time.NewTicker(b.hb)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-r.Context().Done():
			return
		case msg := <-ch:
			fmt.Fprintf(w, "data: %s\n\n", msg)
			flusher.Flush()
		case <-tick:
			fmt.Fprint(w, ": ping\n\n")
			flusher.Flush()
		}
	}
}
func (b *blog) Publish(_, data string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for ch := range b.clients {
		ch <- data
	}
}
func (b *blog) Close() {}

// ---- memory floor: a bare handler that only waits ----

type floor struct{}

func newFloor(Config) Contender     { return floor{} }
func (floor) Name() string          { return "floor-bare" }
func (floor) Handler() http.Handler { return floor{} }
func (floor) Publish(_, _ string)   {}
func (floor) Close()                {}
func (floor) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/event-stream")
	w.WriteHeader(http.StatusOK)
	w.(http.Flusher).Flush()
	<-r.Context().Done()
}

// ---- speed ceiling: a minimal hub of pre-encoded bytes ----

type hub struct {
	drops atomic.Int64 // subscribers dropped for a full queue
	fails atomic.Int64 // handlers ended by a failed write (a deadline, mostly)
	mu    sync.RWMutex
	subs  map[*hubSub]struct{}
	queue int
	wt    time.Duration
	stop  chan struct{}
}

type hubSub struct {
	ch      chan []byte
	dropped chan struct{}
	once    sync.Once
}

var hubPing = []byte(":\n")

func newHub(c Config) Contender {
	h := &hub{subs: make(map[*hubSub]struct{}), queue: max(64, c.Burst+64), wt: c.WriteTimeout, stop: make(chan struct{})}
	ticker(c.Heartbeat, h.stop, func() { h.broadcast(hubPing) })
	return h
}
func (h *hub) Name() string          { return "hub" }
func (h *hub) Handler() http.Handler { return h }
func (h *hub) Publish(id, data string) {
	b := make([]byte, 0, len(id)+len(data)+32)
	b = append(b, "id: "...)
	b = append(b, id...)
	b = append(b, "\nevent: "+eventType+"\ndata: "...)
	b = append(b, data...)
	b = append(b, "\n\n"...)
	h.broadcast(b)
}
func (h *hub) broadcast(b []byte) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	for s := range h.subs {
		select {
		case s.ch <- b:
		default:
			s.once.Do(func() { close(s.dropped); h.drops.Add(1) })
		}
	}
}
func (h *hub) Close() { close(h.stop) }
func (h *hub) Ends() (open, fellBehind, timedOut int64) {
	h.mu.RLock()
	open = int64(len(h.subs))
	h.mu.RUnlock()
	return open, h.drops.Load(), h.fails.Load()
}
func (h *hub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	if rc.Flush() != nil {
		return
	}
	s := &hubSub{ch: make(chan []byte, h.queue), dropped: make(chan struct{})}
	h.mu.Lock()
	h.subs[s] = struct{}{}
	h.mu.Unlock()
	defer func() {
		h.mu.Lock()
		delete(h.subs, s)
		h.mu.Unlock()
	}()
	var buf []byte
	for {
		var msg []byte
		select {
		case <-r.Context().Done():
			return
		case <-s.dropped:
			return
		case msg = <-s.ch:
		}
		buf = append(buf[:0], msg...)
	drain:
		for len(buf) < 32<<10 {
			select {
			case msg = <-s.ch:
				buf = append(buf, msg...)
			default:
				break drain
			}
		}
		if h.wt > 0 {
			_ = rc.SetWriteDeadline(time.Now().Add(h.wt))
		}
		if _, err := w.Write(buf); err != nil {
			h.fails.Add(1)
			return
		}
		if rc.Flush() != nil {
			h.fails.Add(1)
			return
		}
		if cap(buf) > 64<<10 {
			buf = nil
		}
	}
}

// ---- helpers ----

// parseContenders turns "a,b" into infos; "" or "all" means every one.
func parseContenders(s string) ([]contenderInfo, error) {
	if s == "" || s == "all" {
		var out []contenderInfo
		for _, c := range contenders {
			if !c.variant {
				out = append(out, c)
			}
		}
		return out, nil
	}
	var out []contenderInfo
	for _, n := range strings.Split(s, ",") {
		c, ok := findContender(strings.TrimSpace(n))
		if !ok {
			names := contenderNames()
			sort.Strings(names)
			return nil, fmt.Errorf("unknown contender %q (have %s)", n, strings.Join(names, ", "))
		}
		out = append(out, c)
	}
	return out, nil
}
