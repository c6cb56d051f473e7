package sserun

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/lightsse/sse"
	"github.com/lightsse/sse/ssebroker"
)

// benchRuns is how many concurrent runs BenchmarkRunsMemory runs: the
// issue's 10,000 where this process may hold both ends of as many
// connections (go test -bench RunsMemory -runs.n 10000).
var benchRuns = flag.Int("runs.n", 1000, "concurrent runs in BenchmarkRunsMemory")

// answerTokens is the length of a benchmark run's answer.
const answerTokens = 4000

// token is the i-th token of a benchmark answer: a word and its space, as
// a model's tokens are, about 4 bytes.
func token(i int) sse.Event {
	return sse.Event{Type: "token", Data: words4[i%len(words4)]}
}

var words4 = []string{"the ", "run ", "has ", "one ", "end ", "and ", "it ", "is ", "now "}

// rawViewer reads a run's stream over a socket as cheaply as a client can,
// and counts its events.
type rawViewer struct {
	conn   net.Conn
	events atomic.Int64
	done   chan struct{}
}

func dialViewer(addr, path string) (*rawViewer, error) {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	req, _ := http.NewRequest("GET", "http://"+addr+path, nil)
	if err := req.Write(conn); err != nil {
		conn.Close()
		return nil, err
	}
	resp, err := http.ReadResponse(bufio.NewReaderSize(conn, 1024), req)
	if err != nil {
		conn.Close()
		return nil, err
	}
	v := &rawViewer{conn: conn, done: make(chan struct{})}
	go func() {
		defer close(v.done)
		defer resp.Body.Close()
		buf := make([]byte, 1024)
		prev := byte(0)
		for {
			n, err := resp.Body.Read(buf)
			for _, c := range buf[:n] {
				if c == '\n' && prev == '\n' {
					v.events.Add(1)
				}
				prev = c
			}
			if err != nil {
				return
			}
		}
	}()
	return v, nil
}

// inUse returns the bytes of heap and stacks in use, after a collection.
func inUse() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse + m.StackInuse
}

// fileLimit raises RLIMIT_NOFILE as far as allowed, and returns how many
// connections this process can hold both ends of.
func fileLimit(want int) int {
	var lim syscall.Rlimit
	_ = syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim)
	lim.Cur = lim.Max
	_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
	return min(want, int(lim.Cur-1000)/2)
}

// BenchmarkRunsMemory runs -runs.n concurrent runs on one Runs, each with
// one viewer over a loopback socket and a 4,000-token answer, and reports
// the memory (heap and stacks in use) per live run with its whole answer,
// per finished run kept, per viewer, and what is left per run once the
// retention is over. The viewers are in this process: per viewer counts
// both ends (the client: a goroutine and a 1 KiB buffer).
func BenchmarkRunsMemory(b *testing.B) {
	n := fileLimit(*benchRuns)
	b.Run(fmt.Sprintf("runs=%d", n), func(b *testing.B) {
		for b.Loop() {
			benchMemory(b, n)
		}
	})
}

func benchMemory(b *testing.B, n int) {
	rs := newRuns(b, nil)
	mux := http.NewServeMux()
	mux.Handle("/runs/{id}", rs)
	srv := httptest.NewUnstartedServer(mux)
	srv.Config.ReadHeaderTimeout = time.Minute
	srv.Start()
	defer srv.Close()
	addr := srv.Listener.Addr().String()

	m0 := inUse()
	runs := make([]*Run, n)
	for i := range runs {
		r, err := rs.Start(context.Background(), "r"+strconv.Itoa(i))
		if err != nil {
			b.Fatal(err)
		}
		runs[i] = r
	}
	mStarted := inUse()
	vs := make([]*rawViewer, n)
	for i := range vs {
		v, err := dialViewer(addr, "/runs/r"+strconv.Itoa(i))
		if err != nil {
			b.Fatal(err)
		}
		vs[i] = v
	}
	waitEvents := func(want int64) {
		for _, v := range vs {
			for t0 := time.Now(); v.events.Load() < want; time.Sleep(time.Millisecond) {
				select {
				case <-v.done:
					b.Fatalf("a stream ended after %d events, before %d", v.events.Load(), want)
				default:
				}
				if time.Since(t0) > time.Minute {
					b.Fatalf("a viewer has %d events after a minute, want %d", v.events.Load(), want)
				}
			}
		}
	}
	waitEvents(2) // the opening retry and mark
	mViewed := inUse()
	// Each round publishes a burst into every run, and waits for the viewers
	// to read it: a burst under half a live run's Broker history.
	const burst = 100
	start := time.Now()
	for from := 0; from < answerTokens; from += burst {
		for _, r := range runs {
			for i := from; i < from+burst; i++ {
				if err := r.Publish(token(i)); err != nil {
					b.Fatal(err)
				}
			}
		}
		waitEvents(int64(2 + from + burst))
	}
	elapsed := time.Since(start)
	mLive := inUse()
	for _, r := range runs {
		if err := r.Finish(sse.Event{Type: "done"}); err != nil {
			b.Fatal(err)
		}
	}
	for _, v := range vs {
		<-v.done
		v.conn.Close()
	}
	vs = nil
	srv.CloseClientConnections()
	mFinished := inUse()
	rs.mu.Lock()
	rs.sweepLocked(time.Now().Add(DefaultRetention + time.Second))
	left := len(rs.runs)
	rs.mu.Unlock()
	if left != 0 {
		b.Fatalf("%d runs left after the retention", left)
	}
	runs = nil
	mGone := inUse()

	per := func(a, b uint64) float64 { return (float64(a) - float64(b)) / float64(n) }
	b.ReportMetric(per(mLive, mViewed)+per(mStarted, m0), "B/live-run")
	b.ReportMetric(per(mViewed, mStarted), "B/viewer")
	b.ReportMetric(per(mFinished, m0), "B/finished-run")
	b.ReportMetric(per(mGone, m0), "B/run-after-retention")
	b.ReportMetric(float64(n*answerTokens)/elapsed.Seconds(), "tokens/s")
	rs.Close()
}

// BenchmarkRunsFinishedReplay: a new viewer of a finished 4,000-token run
// gets the whole run over a loopback socket. Reported: the server's time
// for it (from the request's arrival to the handler's return), and its
// writes to the connection.
func BenchmarkRunsFinishedReplay(b *testing.B) {
	rs := newRuns(b, nil)
	r, _ := rs.Start(context.Background(), "a")
	for i := range answerTokens {
		_ = r.Publish(token(i))
	}
	_ = r.Finish(sse.Event{Type: "done"})
	var served time.Duration
	var writes int
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		start := time.Now()
		cw := &countWrites{ResponseWriter: w}
		rs.ServeHTTP(cw, req)
		served += time.Since(start)
		writes += cw.n
	}))
	defer srv.Close()
	c := srv.Client()
	var bytes int64
	b.ReportAllocs()
	for b.Loop() {
		resp, err := c.Get(srv.URL + "/a")
		if err != nil {
			b.Fatal(err)
		}
		bytes, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	b.ReportMetric(float64(served.Microseconds())/float64(b.N), "server-µs/viewer")
	b.ReportMetric(float64(writes)/float64(b.N), "writes/viewer")
	b.ReportMetric(float64(bytes), "bytes/viewer")
}

// countWrites counts the writes to a response.
type countWrites struct {
	http.ResponseWriter
	n int
}

func (c *countWrites) Write(p []byte) (int, error) { c.n++; return c.ResponseWriter.Write(p) }

func (c *countWrites) Unwrap() http.ResponseWriter { return c.ResponseWriter }

// BenchmarkLiveLatency: one op publishes an event carrying its publish time
// and waits until the viewer, over a loopback socket, has read it. Reported:
// p50 and p99 from Publish to the viewer, for a run's viewer and for a
// Broker's (as ssebroker serves one today), on the same machine.
func BenchmarkLiveLatency(b *testing.B) {
	b.Run("run", func(b *testing.B) {
		rs := newRuns(b, nil)
		r, _ := rs.Start(context.Background(), "a")
		defer rs.Close()
		benchLatency(b, rs, r.Publish)
	})
	b.Run("broker", func(b *testing.B) {
		br, err := ssebroker.New(nil)
		if err != nil {
			b.Fatal(err)
		}
		defer br.Close()
		benchLatency(b, br, br.Publish)
	})
}

func benchLatency(b *testing.B, h http.Handler, publish func(sse.Event) error) {
	srv := httptest.NewServer(h)
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL + "/a")
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	got := make(chan time.Duration, 1)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		rd := bufio.NewReader(resp.Body)
		for {
			line, err := rd.ReadString('\n')
			if err != nil {
				return
			}
			if len(line) > 6 && line[:6] == "data: " {
				ns, _ := strconv.ParseInt(line[6:len(line)-1], 10, 64)
				got <- time.Duration(time.Now().UnixNano() - ns)
			}
		}
	}()
	// Once a warm-up event arrives, the stream gets every later one.
	for warm := false; !warm; {
		if err := publish(sse.Event{Data: strconv.FormatInt(time.Now().UnixNano(), 10)}); err != nil {
			b.Fatal(err)
		}
		select {
		case <-got:
			warm = true
		case <-time.After(5 * time.Millisecond):
		}
	}
	for len(got) > 0 {
		<-got
	}
	lat := make([]time.Duration, 0, 1<<16)
	for b.Loop() {
		if err := publish(sse.Event{Data: strconv.FormatInt(time.Now().UnixNano(), 10)}); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, <-got)
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
	resp.Body.Close()
	srv.CloseClientConnections()
	wg.Wait()
}
