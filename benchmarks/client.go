package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// The client role opens many streams to the server and checks, for every
// event, that it parses as the standard says, carries the expected type and
// payload, and arrives once and in order; it records each event's latency
// from its scheduled publish time into a histogram per phase.

type clientArgs struct {
	url    string
	n      int      // streams
	stall  int      // index of the stream that stops reading on "stall"; -1: none
	src    []string // source addresses to spread the streams over
	size   int      // payload size
	typ    string   // expected event type
	phases []phase  // seq ranges reported separately
}

type phase struct{ from, to int }

func (a clientArgs) maxSeq() int {
	m := 0
	for _, p := range a.phases {
		m = max(m, p.to)
	}
	return m
}

const (
	histSize   = 4096
	histShards = 8
)

// bucketOf maps a latency in µs to a histogram bucket: exact below 256,
// then 128 buckets per power of two (under 1% error).
func bucketOf(v int64) int {
	if v < 0 {
		v = 0
	}
	if v < 256 {
		return int(v)
	}
	sh := bits.Len64(uint64(v)) - 8
	return min(256+(sh-1)*128+int(uint64(v)>>sh)-128, histSize-1)
}

// bucketMid returns the middle of a bucket, in µs.
func bucketMid(i int) float64 {
	if i < 256 {
		return float64(i)
	}
	j := i - 256
	sh := j/128 + 1
	lo := int64(j%128+128) << sh
	return float64(lo) + float64(int64(1)<<sh)/2
}

type client struct {
	args    clientArgs
	hist    [][histShards][histSize]uint64 // per phase and shard of streams, non-stalled streams
	beats   atomic.Int64                   // comments and ping events
	bad     atomic.Int64
	badOnce sync.Once
	badEx   atomic.Value

	connected, failed, synced, closed atomic.Int64
	firstErr                          atomic.Value

	stallMu sync.Mutex
	stallCh chan struct{} // non-nil while stalled ("stall"); closed on "resume"
	quit    chan struct{}
	streams []*stream
	mu      sync.Mutex
	conns   []net.Conn
}

type stream struct {
	idx     int
	stalled bool
	mu      sync.Mutex
	seen    []uint64 // bitmap over seq
	maxSeen int
	count   []int64 // per phase
	lastRcv []int64 // per phase, Unix ns
	recv    int64   // measured events (streams that do not stall)
	seenN   int64   // distinct measured events
	dup     []int64
	reord   []int64
	synced  bool
}

func clientMain(args clientArgs, in io.Reader, out io.Writer) error {
	c := &client{args: args, hist: make([][histShards][histSize]uint64, len(args.phases)), quit: make(chan struct{})}
	maxSeq := args.maxSeq()
	c.streams = make([]*stream, args.n)
	for i := range c.streams {
		np := len(args.phases)
		c.streams[i] = &stream{idx: i, stalled: i == args.stall, seen: make([]uint64, (maxSeq+63)/64),
			maxSeen: -1, count: make([]int64, np), dup: make([]int64, np), reord: make([]int64, np), lastRcv: make([]int64, np)}
	}
	return serveCommands(in, out, c, func(req request, resp response) (response, bool) {
		switch req.Cmd {
		case "stall":
			c.stallMu.Lock()
			if c.stallCh == nil {
				c.stallCh = make(chan struct{})
			}
			c.stallMu.Unlock()
		case "resume":
			c.stallMu.Lock()
			if c.stallCh != nil {
				close(c.stallCh)
				c.stallCh = nil
			}
			c.stallMu.Unlock()
		case "report":
			resp = c.report(resp, req.N)
		default:
			return resp, false
		}
		return resp, true
	})
}

func (c *client) shutdown() {
	close(c.quit)
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, conn := range c.conns {
		_ = conn.Close()
	}
	c.conns = nil
}

func (c *client) status(resp response) response {
	resp.Connected = int(c.connected.Load())
	resp.Failed = int(c.failed.Load())
	if e, ok := c.firstErr.Load().(string); ok {
		resp.FirstErr = e
	}
	resp.Synced = int(c.synced.Load())
	resp.Closed = int(c.closed.Load())
	for _, s := range c.streams {
		s.mu.Lock()
		resp.Recv += s.recv
		if s.stalled {
			resp.StalledSeen += s.seenN
		}
		s.mu.Unlock()
	}
	resp.Bad = c.bad.Load()
	resp.CPU = int64(cpuNow())
	if e, ok := c.badEx.Load().(string); ok && resp.FirstErr == "" {
		resp.FirstErr = "bad event: " + e
	}
	return resp
}

// report summarizes phase i over the streams that did not stall.
func (c *client) report(resp response, i int) response {
	resp = c.status(resp)
	if i < 0 || i >= len(c.args.phases) {
		resp.Err = "no such phase"
		return resp
	}
	ph := c.args.phases[i]
	want := int64(ph.to - ph.from)
	for _, s := range c.streams {
		s.mu.Lock()
		got := int64(0)
		for q := ph.from; q < ph.to; q++ {
			if s.seen[q>>6]&(1<<(q&63)) != 0 {
				got++
			}
		}
		if s.stalled {
			resp.StalledRecv += s.count[i]
		} else {
			resp.Streams++
			resp.Count += s.count[i]
			resp.Lost += want - got
			resp.Dup += s.dup[i]
			resp.Reord += s.reord[i]
			if got == want {
				resp.Complete++
			}
			resp.LastRecv = max(resp.LastRecv, s.lastRcv[i])
		}
		s.mu.Unlock()
	}
	for b := 0; b < histSize; b++ {
		var n uint64
		for sh := range c.hist[i] {
			n += atomic.LoadUint64(&c.hist[i][sh][b])
		}
		if n > 0 {
			resp.Hist = append(resp.Hist, [2]int64{int64(b), int64(n)})
		}
	}
	resp.Comments = c.beats.Load()
	return resp
}

func (c *client) fail(err error) {
	c.failed.Add(1)
	c.firstErr.CompareAndSwap(nil, err.Error())
}

func (c *client) connect(resp response) response {
	addr := strings.TrimPrefix(c.args.url, "http://")
	host, path, _ := strings.Cut(addr, "/")
	path = "/" + path
	sem := make(chan struct{}, 128)
	var wg sync.WaitGroup
	for i, s := range c.streams {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			released := false
			release := func() {
				if !released {
					released = true
					<-sem
					wg.Done()
				}
			}
			defer release()
			src := ""
			if len(c.args.src) > 0 {
				src = c.args.src[i%len(c.args.src)]
			}
			c.run(s, host, path, src, release)
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(120 * time.Second):
	}
	return c.status(resp)
}

// dialer returns a dialer that binds to src (if set) without reserving a
// port at bind time (IP_BIND_ADDRESS_NO_PORT), so that each source address
// has the whole ephemeral range for each destination; a stalled stream gets
// a small receive buffer, so that it pushes back on the server at once.
func dialer(src string, small bool) *net.Dialer {
	d := &net.Dialer{Timeout: 15 * time.Second}
	if src != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(src)}
	}
	d.Control = func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			if src != "" {
				const ipBindAddressNoPort = 24
				serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_IP, ipBindAddressNoPort, 1)
			}
			if small && serr == nil {
				serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
			}
		})
		return errors.Join(err, serr)
	}
	return d
}

func (c *client) run(s *stream, host, path, src string, requested func()) {
	conn, err := dialer(src, s.stalled).DialContext(context.Background(), "tcp", host)
	if err != nil {
		c.fail(err)
		return
	}
	c.mu.Lock()
	select {
	case <-c.quit:
		c.mu.Unlock()
		conn.Close()
		return
	default:
	}
	c.conns = append(c.conns, conn)
	c.mu.Unlock()
	p := path
	if s.stalled {
		p += "&stall=1"
	}
	req := "GET " + p + " HTTP/1.1\r\nHost: " + host + "\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\n\r\n"
	if _, err := io.WriteString(conn, req); err != nil {
		c.fail(err)
		conn.Close()
		return
	}
	// Some servers send the response header only with the first event
	// (tmaxmax/go-sse), so the connect phase ends when every request is
	// sent; sync events then show that every stream is subscribed.
	requested()
	br := bufio.NewReaderSize(conn, 16<<10)
	hreq, _ := http.NewRequest("GET", "http://"+host+p, nil)
	res, err := http.ReadResponse(br, hreq)
	if err != nil {
		c.fail(err)
		conn.Close()
		return
	}
	if res.StatusCode != 200 || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/event-stream") {
		c.fail(fmt.Errorf("status %d, content type %q", res.StatusCode, res.Header.Get("Content-Type")))
		conn.Close()
		return
	}
	c.connected.Add(1)
	p2 := newParser(res.Body, 4<<10)
	p2.counter = &c.beats
	for {
		if s.stalled {
			// Stop reading while stalled: the server's writes to this
			// stream block once the socket buffers fill.
			c.stallMu.Lock()
			resume := c.stallCh
			c.stallMu.Unlock()
			if resume != nil {
				select {
				case <-resume:
				case <-c.quit:
					return
				}
			}
		}
		ev, err := p2.next()
		if err != nil {
			c.closed.Add(1)
			return
		}
		c.handle(s, ev, time.Now().UnixNano())
	}
}

func (c *client) badEvent(ev event) {
	c.bad.Add(1)
	c.badOnce.Do(func() {
		d := string(ev.Data)
		if len(d) > 80 {
			d = d[:80] + "…"
		}
		c.badEx.Store(fmt.Sprintf("type %q data %q", ev.Type, d))
	})
}

func (c *client) handle(s *stream, ev event, now int64) {
	seq, t, ok := parsePayload(ev.Data, c.args.size)
	if !ok {
		switch string(ev.Data) {
		case syncData:
			s.mu.Lock()
			if !s.synced {
				s.synced = true
				c.synced.Add(1)
			}
			s.mu.Unlock()
		case pingData:
			c.beats.Add(1)
		default:
			c.badEvent(ev)
		}
		return
	}
	if ev.Type != c.args.typ || seq >= len(s.seen)*64 {
		c.badEvent(ev)
		return
	}
	ph := -1
	for i, p := range c.args.phases {
		if seq >= p.from && seq < p.to {
			ph = i
			break
		}
	}
	if ph < 0 {
		c.badEvent(ev)
		return
	}
	s.mu.Lock()
	if s.seen[seq>>6]&(1<<(seq&63)) != 0 {
		s.dup[ph]++
	} else {
		s.seen[seq>>6] |= 1 << (seq & 63)
		s.seenN++
		if seq < s.maxSeen {
			s.reord[ph]++
		}
		s.maxSeen = max(s.maxSeen, seq)
	}
	s.count[ph]++
	if !s.stalled {
		s.recv++
		s.lastRcv[ph] = now
	}
	s.mu.Unlock()
	if !s.stalled {
		atomic.AddUint64(&c.hist[ph][s.idx%histShards][bucketOf((now-t)/1000)], 1)
	}
}
