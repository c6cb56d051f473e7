package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// The lean client role (the many workload) holds many streams in one small
// process: one goroutine per connection, a raw GET written to the socket,
// a 512-byte read buffer, and just enough parsing to timestamp events (the
// status line and headers, chunked transfer coding, "data:" lines and
// comments). It does not check events against the standard as the client
// role does; it counts, per stream, the events of the armed seq range
// that arrive, in order or not, and records each one's latency.

type leanArgs struct {
	addr   string   // host:port
	n      int      // streams
	offset int      // the first stream's user: stream i asks for /u/<offset+i>
	src    []string // source addresses to spread the streams over
	size   int      // payload size
	dial   int      // connections being set up at once
}

// leanStream is one stream's counts; its goroutine writes them, status and
// report read them.
type leanStream struct {
	synced   atomic.Bool
	got, dup atomic.Int32 // events of the armed range: in order, and not
	lastSeq  atomic.Int64 // the last seq of the armed range received; -1: none
	lastRecv atomic.Int64 // Unix ns of the last one
}

type leanClient struct {
	args     leanArgs
	streams  []leanStream
	armFrom  atomic.Int64
	armTo    atomic.Int64
	hist     [histShards][histSize]uint64
	beats    atomic.Int64 // comments received
	recv     atomic.Int64 // events of the armed range received in order
	lastConn atomic.Int64 // Unix ns: the latest response header

	connected, failed, closed atomic.Int64
	firstErr                  atomic.Value

	quit  chan struct{}
	mu    sync.Mutex
	conns []net.Conn
}

func leanMain(args leanArgs, in io.Reader, out io.Writer) error {
	c := &leanClient{args: args, streams: make([]leanStream, args.n), quit: make(chan struct{}), conns: make([]net.Conn, args.n)}
	c.arm(0, 0)
	return serveCommands(in, out, c, func(req request, resp response) (response, bool) {
		switch req.Cmd {
		case "arm":
			c.arm(req.From, req.To)
			return c.status(resp), true
		case "report":
			return c.report(resp), true
		}
		return resp, false
	})
}

// arm starts counting the events with seq in [from, to) afresh. It is sent
// while nothing is published.
func (c *leanClient) arm(from, to int) {
	c.armFrom.Store(int64(from))
	c.armTo.Store(int64(to))
	for i := range c.streams {
		s := &c.streams[i]
		s.got.Store(0)
		s.dup.Store(0)
		s.lastSeq.Store(-1)
		s.lastRecv.Store(0)
	}
	for sh := range c.hist {
		for b := range c.hist[sh] {
			atomic.StoreUint64(&c.hist[sh][b], 0)
		}
	}
	c.recv.Store(0)
}

func (c *leanClient) shutdown() {
	close(c.quit)
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, conn := range c.conns {
		if conn != nil {
			_ = conn.Close()
			c.conns[i] = nil
		}
	}
}

func (c *leanClient) fail(err error) {
	c.failed.Add(1)
	c.firstErr.CompareAndSwap(nil, err.Error())
}

func (c *leanClient) status(resp response) response {
	resp.Connected = int(c.connected.Load())
	resp.Failed = int(c.failed.Load())
	if e, ok := c.firstErr.Load().(string); ok {
		resp.FirstErr = e
	}
	for i := range c.streams {
		if c.streams[i].synced.Load() {
			resp.Synced++
		}
	}
	resp.Closed = int(c.closed.Load())
	resp.Recv = c.recv.Load()
	resp.Comments = c.beats.Load()
	resp.CPU = int64(cpuNow())
	resp.LastConn = c.lastConn.Load()
	resp.ClientRSS, _ = memKiB()
	return resp
}

// report sums the armed range over the streams.
func (c *leanClient) report(resp response) response {
	resp = c.status(resp)
	want := int32(c.armTo.Load() - c.armFrom.Load())
	for i := range c.streams {
		s := &c.streams[i]
		got := s.got.Load()
		resp.Streams++
		resp.Count += int64(got)
		resp.Dup += int64(s.dup.Load())
		resp.Lost += int64(max(want-got, 0))
		if got >= want {
			resp.Complete++
		}
		resp.LastRecv = max(resp.LastRecv, s.lastRecv.Load())
	}
	for b := 0; b < histSize; b++ {
		var n uint64
		for sh := range c.hist {
			n += atomic.LoadUint64(&c.hist[sh][b])
		}
		if n > 0 {
			resp.Hist = append(resp.Hist, [2]int64{int64(b), int64(n)})
		}
	}
	return resp
}

// connect opens every stream, at most args.dial being set up at once, and
// replies when each has its response header or has failed.
func (c *leanClient) connect(resp response) response {
	sem := make(chan struct{}, max(c.args.dial, 1))
	var wg sync.WaitGroup
	for i := range c.streams {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			once := sync.OnceFunc(func() { <-sem; wg.Done() })
			defer once()
			src := ""
			if len(c.args.src) > 0 {
				src = c.args.src[i%len(c.args.src)]
			}
			c.run(i, src, once)
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-c.quit:
	}
	return c.status(resp)
}

var errNotStream = errors.New("not an event stream")

// run opens stream i and reads it until it ends; up is called once the
// response header is in (or the stream failed).
func (c *leanClient) run(i int, src string, up func()) {
	conn, err := dialer(src, false).DialContext(context.Background(), "tcp", c.args.addr)
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
	c.conns[i] = conn
	c.mu.Unlock()
	req := "GET /u/" + strconv.Itoa(c.args.offset+i) + "?stream=messages HTTP/1.1\r\nHost: " + c.args.addr +
		"\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\n\r\n"
	_ = conn.SetDeadline(time.Now().Add(60 * time.Second))
	if _, err := io.WriteString(conn, req); err != nil {
		c.fail(err)
		return
	}
	buf := make([]byte, 512)
	// The header: read until the blank line (at most 4 KiB).
	var head []byte
	var body []byte
	for {
		n, err := conn.Read(buf)
		if n > 0 {
			head = append(head, buf[:n]...)
			if k := bytes.Index(head, []byte("\r\n\r\n")); k >= 0 {
				body = append([]byte(nil), head[k+4:]...)
				head = head[:k+2]
				break
			}
			if len(head) > 4<<10 {
				err = errors.New("response header over 4 KiB")
			}
		}
		if err != nil {
			c.fail(fmt.Errorf("reading the response header: %w", err))
			return
		}
	}
	lower := bytes.ToLower(head)
	if !bytes.HasPrefix(head, []byte("HTTP/1.1 200 ")) || !bytes.Contains(lower, []byte("\r\ncontent-type: text/event-stream")) {
		line, _, _ := bytes.Cut(head, []byte("\r\n"))
		c.fail(fmt.Errorf("%w: %q", errNotStream, line))
		return
	}
	_ = conn.SetDeadline(time.Time{})
	now := time.Now().UnixNano()
	for {
		l := c.lastConn.Load()
		if now <= l || c.lastConn.CompareAndSwap(l, now) {
			break
		}
	}
	c.connected.Add(1)
	up()
	p := leanParser{c: c, s: &c.streams[i], shard: i % histShards, chunked: bytes.Contains(lower, []byte("\r\ntransfer-encoding: chunked"))}
	if !p.feed(body) {
		c.closed.Add(1)
		return
	}
	for {
		n, err := conn.Read(buf)
		if n > 0 && !p.feed(buf[:n]) {
			err = io.EOF
		}
		if err != nil {
			c.closed.Add(1)
			return
		}
	}
}

// leanParser takes a stream's body as it comes: it undoes chunked transfer
// coding, splits lines, and handles "data:" lines and comments.
type leanParser struct {
	c       *leanClient
	s       *leanStream
	shard   int
	chunked bool
	left    int  // bytes left in the current chunk
	inSize  bool // reading a chunk-size line
	size    int
	skipCR  int // bytes of the CRLF after a chunk to skip
	line    []byte
}

// feed handles b; false means the stream ended (the last chunk).
func (p *leanParser) feed(b []byte) bool {
	if !p.chunked {
		p.lines(b)
		return true
	}
	for len(b) > 0 {
		switch {
		case p.skipCR > 0:
			b = b[1:]
			p.skipCR--
		case p.left > 0:
			n := min(p.left, len(b))
			p.lines(b[:n])
			b, p.left = b[n:], p.left-n
			if p.left == 0 {
				p.skipCR = 2
			}
		default: // the chunk-size line: hex digits, maybe an extension, CRLF
			ch := b[0]
			b = b[1:]
			switch {
			case ch == '\n':
				if p.size == 0 {
					return false // the last chunk
				}
				p.left, p.size, p.inSize = p.size, 0, false
			case p.inSize:
			case '0' <= ch && ch <= '9':
				p.size = p.size<<4 | int(ch-'0')
			case 'a' <= ch && ch <= 'f':
				p.size = p.size<<4 | int(ch-'a'+10)
			case 'A' <= ch && ch <= 'F':
				p.size = p.size<<4 | int(ch-'A'+10)
			default: // ';' (an extension) or '\r': the size is over
				p.inSize = true
			}
		}
	}
	return true
}

// lines splits b into lines, carrying a partial one over.
func (p *leanParser) lines(b []byte) {
	for len(b) > 0 {
		k := bytes.IndexByte(b, '\n')
		if k < 0 {
			p.line = append(p.line, b...)
			return
		}
		line := b[:k]
		if len(p.line) > 0 {
			p.line = append(p.line, line...)
			line = p.line
		}
		p.handle(bytes.TrimSuffix(line, []byte("\r")))
		p.line = p.line[:0]
		b = b[k+1:]
	}
}

func (p *leanParser) handle(line []byte) {
	if len(line) > 0 && line[0] == ':' {
		p.c.beats.Add(1)
		return
	}
	data, ok := bytes.CutPrefix(line, []byte("data:"))
	if !ok {
		return
	}
	data = bytes.TrimPrefix(data, []byte(" "))
	now := time.Now().UnixNano()
	seq, t, ok := parsePayload(data, p.c.args.size)
	if !ok {
		if string(data) == syncData {
			p.s.synced.Store(true)
		}
		return
	}
	c, s := p.c, p.s
	if int64(seq) < c.armFrom.Load() || int64(seq) >= c.armTo.Load() {
		return
	}
	if int64(seq) <= s.lastSeq.Load() {
		s.dup.Add(1)
		return
	}
	s.lastSeq.Store(int64(seq))
	s.got.Add(1)
	s.lastRecv.Store(now)
	c.recv.Add(1)
	atomic.AddUint64(&c.hist[p.shard][bucketOf((now-t)/1000)], 1)
}
