package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"runtime"
	rdebug "runtime/debug"
	"runtime/trace"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// The server role serves one contender on 127.0.0.1 and publishes on
// command. It runs in a process of its own, so that its CPU time and memory
// are the contender's (plus a constant for the harness).

type connKey struct{}

// stallSendBuffer is the send buffer of the stalled client's connection on
// the server (the kernel doubles it).
const stallSendBuffer = 16 << 10

type server struct {
	c   Contender
	srv *http.Server
	rep *replier

	stallConn   atomic.Pointer[net.Conn]
	stallDone   atomic.Int64
	stallClosed atomic.Int64

	peak        atomic.Int64 // KiB, max VmRSS sampled since the last reset
	samplerOnce sync.Once
	stopSampler chan struct{}

	pubMu      sync.Mutex // one publish run at a time
	published  atomic.Int64
	maxPub     atomic.Int64
	inPubSince atomic.Int64

	schedMu   sync.Mutex
	schedBase schedHist // run-queue waits at the start of the last publish run
}

func serverMain(contender string, cfg Config, in io.Reader, out, errw io.Writer) error {
	info, ok := findContender(contender)
	if !ok {
		return fmt.Errorf("unknown contender %q", contender)
	}
	s := &server{c: info.new(cfg), rep: &replier{enc: json.NewEncoder(out)}, stopSampler: make(chan struct{})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	inner := s.c.Handler()
	s.srv = &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Query().Get("stall") == "1" {
				if c, ok := r.Context().Value(connKey{}).(net.Conn); ok {
					s.stallConn.Store(&c)
					// Linux would otherwise buffer several MiB for the stalled
					// client on loopback before any write blocks.
					if tc, ok := c.(*net.TCPConn); ok {
						_ = tc.SetWriteBuffer(stallSendBuffer)
					}
				}
				defer func() { s.stallDone.Store(time.Now().UnixNano()) }()
			}
			inner.ServeHTTP(w, r)
		}),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          log.New(errw, "server: ", 0),
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, connKey{}, c)
		},
		ConnState: func(c net.Conn, st http.ConnState) {
			if st == http.StateClosed || st == http.StateHijacked {
				if p := s.stallConn.Load(); p != nil && *p == c {
					s.stallClosed.Store(time.Now().UnixNano())
				}
			}
		},
	}
	go func() { _ = s.srv.Serve(ln) }()
	defer close(s.stopSampler)

	rss, hwm := memKiB()
	stacks, heap := goMemory()
	s.rep.reply(placement(response{Addr: ln.Addr().String(), RSS: rss, HWM: hwm, CPU: int64(cpuNow()), Now: time.Now().UnixNano(),
		Stacks: stacks, Heap: heap}))

	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var wg sync.WaitGroup
	for sc.Scan() {
		var req request
		if err := json.Unmarshal(sc.Bytes(), &req); err != nil {
			continue
		}
		if req.Cmd == "quit" {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.rep.reply(s.handle(req))
		}()
	}
	// Quit: end every connection first, so that handlers blocked in a write
	// return, then close the contender (some wait for their handlers).
	_ = s.srv.Close()
	done := make(chan struct{})
	go func() { s.c.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
	}
	return nil
}

func (s *server) sample(stop <-chan struct{}) {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			rss, _ := memKiB()
			for {
				p := s.peak.Load()
				if rss <= p || s.peak.CompareAndSwap(p, rss) {
					break
				}
			}
		}
	}
}

func (s *server) stats(resp response) response {
	resp.RSS, resp.HWM = memKiB()
	resp.Peak = max(s.peak.Load(), resp.RSS)
	resp.CPU = int64(cpuNow())
	resp.Now = time.Now().UnixNano()
	resp.Goroutines = runtime.NumGoroutine()
	resp.Stacks, resp.Heap = goMemory()
	resp.Published = int(s.published.Load())
	resp.MaxPub = s.maxPub.Load()
	resp.InPubSince = s.inPubSince.Load()
	resp.StallDone = s.stallDone.Load()
	resp.StallClosed = s.stallClosed.Load()
	if ec, ok := s.c.(endsCounter); ok {
		resp.Open, resp.FellBehind, resp.TimedOut = ec.Ends()
		resp.HasEnds = true
	}
	s.schedMu.Lock()
	if s.schedBase.counts != nil {
		resp.SchedWait = int64(readSchedHist().longestSince(s.schedBase))
	}
	s.schedMu.Unlock()
	return resp
}

func (s *server) handle(req request) response {
	resp := response{ID: req.ID}
	switch req.Cmd {
	case "stats":
		return s.stats(resp)
	case "peakreset":
		// Starts sampling VmRSS every 20 ms (only the slow workload asks:
		// reading /proc costs CPU that would count against the contender).
		rss, _ := memKiB()
		s.peak.Store(rss)
		s.samplerOnce.Do(func() { go s.sample(s.stopSampler) })
		return s.stats(resp)
	case "gc":
		// Settles memory before it is read: three collections (objects
		// with finalizers take two), then the heap's free pages go back to
		// the OS, so that RSS counts what is held, not garbage not yet
		// returned. Stats include the peak (VmHWM) for what it took before.
		for range 3 {
			runtime.GC()
		}
		rdebug.FreeOSMemory()
		return s.stats(resp)
	case "sync":
		s.c.Publish("", syncData)
		return resp
	case "publish":
		// N events of Size bytes, seq From.., one every Interval from a start
		// 20 ms ahead (Interval 0: back to back, each stamped just before its
		// Publish call). The reply comes when the last Publish returns.
		s.pubMu.Lock()
		defer s.pubMu.Unlock()
		s.published.Store(0)
		s.maxPub.Store(0)
		sched0 := readSchedHist()
		s.schedMu.Lock()
		s.schedBase = sched0
		s.schedMu.Unlock()
		start := time.Now().Add(20 * time.Millisecond)
		if req.Interval == 0 {
			start = time.Now()
		}
		resp.Start = start.UnixNano()
		buf := make([]byte, 0, max(req.Size, minPayload))
		late := make([]time.Duration, 0, req.N)
		var sumPub int64
		for i := 0; i < req.N; i++ {
			var t time.Time
			if req.Interval > 0 {
				t = start.Add(time.Duration(i) * req.Interval)
				if d := time.Until(t); d > 0 {
					time.Sleep(d)
				}
			} else {
				t = time.Now()
			}
			seq := req.From + i
			data := string(appendPayload(buf[:0], seq, t.UnixNano(), req.Size))
			id := strconv.Itoa(seq)
			// A trace region per call (with -profile), so that go tool
			// trace can split each call's time into running, waiting to run,
			// blocking and GC; a no-op when not tracing.
			region := trace.StartRegion(context.Background(), "Publish")
			p0 := time.Now()
			late = append(late, p0.Sub(t))
			s.inPubSince.Store(p0.UnixNano())
			s.c.Publish(id, data)
			d := int64(time.Since(p0))
			region.End()
			sumPub += d
			s.inPubSince.Store(0)
			if d > s.maxPub.Load() {
				s.maxPub.Store(d)
			}
			s.published.Add(1)
		}
		resp.End = time.Now().UnixNano()
		sched := readSchedHist().longestSince(sched0)
		resp.MeanPub = sumPub / int64(max(req.N, 1))
		if len(late) > 0 {
			slices.Sort(late)
			resp.LateP50 = int64(late[len(late)/2])
			resp.LateP99 = int64(late[(len(late)*99)/100])
		}
		resp = s.stats(resp)
		resp.SchedWait = int64(sched) // over the publish run only, not up to this reply
		return resp
	default:
		resp.Err = "unknown command " + req.Cmd
		return resp
	}
}
