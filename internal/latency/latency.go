// Package latency is the publish-to-delivery harness that the benchmarks of
// redisstream and pgstream share: events carrying their publish time, at a
// fixed rate, to SSE clients in a child process (the benchmark's own binary,
// run with -role clients -clients N -urls U1,U2,...), which report p50, p99
// and max latency, events lost, and their CPU time.
package latency

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/lightsse/sse"
)

// A Report is what the clients process prints at the end.
type Report struct {
	Received int64   `json:"received"`
	Lost     int64   `json:"lost"`
	P50      float64 `json:"p50_ms"`
	P99      float64 `json:"p99_ms"`
	Max      float64 `json:"max_ms"`
	CPU      float64 `json:"cpu_s"`
}

// pad fills each event to about 200 bytes.
var pad = strings.Repeat("x", 150)

// Run starts the clients process with clients streams over urls (pinned to
// clientCPUs with taskset, if set), publishes sync events until every stream
// has one, then rate events a second: one second of warm-up, then events
// numbered ones, each carrying its publish time. It returns the clients'
// Report, and the CPU time this process and the store (store returns its
// CPU time so far: Redis's, PostgreSQL's) spent over the numbered events.
// label names the run in the log under BENCH_DEBUG.
func Run(publish func(sse.Event) error, urls []string, clients, rate, events int, clientCPUs string, store func() time.Duration, label string) (r Report, goCPU, storeCPU time.Duration) {
	args := []string{os.Args[0], "-role", "clients", "-clients", strconv.Itoa(clients), "-urls", strings.Join(urls, ",")}
	if clientCPUs != "" {
		args = append([]string{"taskset", "-c", clientCPUs}, args...)
	}
	cmd := exec.Command(args[0], args[1:]...)
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	stdin, _ := cmd.StdinPipe()
	if err := cmd.Start(); err != nil {
		log.Fatal(err)
	}
	lines := bufio.NewScanner(stdout)
	ready := make(chan struct{})
	go func() {
		// The clients say "ready" once each has seen a sync event.
		if lines.Scan() && lines.Text() == "ready" {
			close(ready)
		}
	}()
	tick := time.NewTicker(50 * time.Millisecond)
wait:
	for {
		select {
		case <-ready:
			break wait
		case <-tick.C:
			_ = publish(sse.Event{Type: "sync", Data: "sync"})
		}
	}
	tick.Stop()
	interval := time.Second / time.Duration(rate)
	next := time.Now()
	for range rate { // warm-up, not measured
		time.Sleep(time.Until(next))
		next = next.Add(interval)
		_ = publish(sse.Event{Type: "sync", Data: "sync"})
	}
	goBefore, storeBefore := SelfCPU(), store()
	for i := 1; i <= events; i++ {
		time.Sleep(time.Until(next))
		next = next.Add(interval)
		data := fmt.Sprintf(`{"seq":%d,"t":%d,"pad":"%s"}`, i, time.Now().UnixNano(), pad)
		if err := publish(sse.Event{Data: data}); err != nil {
			log.Printf("Publish: %v", err)
		}
	}
	fmt.Fprintf(stdin, "%d\n", events) // the last seq: the clients wait for it, then report
	if !lines.Scan() || json.Unmarshal(lines.Bytes(), &r) != nil {
		log.Fatalf("clients: no report (%q)", lines.Text())
	}
	goCPU, storeCPU = SelfCPU()-goBefore, store()-storeBefore
	_ = cmd.Wait()
	if os.Getenv("BENCH_DEBUG") != "" {
		log.Printf("%s: %+v", label, r)
	}
	return r, goCPU, storeCPU
}

// Clients is the clients process (this binary, run with -role clients): it
// opens n streams over urls, says
// "ready" once every stream has had a sync event, records the latency of
// every numbered event, and, once told the last number and every stream has
// it (or 30 s have passed), prints a report.
func Clients(urls []string, n int) {
	var synced sync.WaitGroup
	synced.Add(n)
	var received, lost atomic.Int64
	lastSeq := make([]atomic.Int64, n)
	tr := &http.Transport{MaxIdleConnsPerHost: n}
	hc := &http.Client{Transport: tr}
	cpu0 := SelfCPU()
	for i := range n {
		go func() {
			resp, err := hc.Get(urls[i%len(urls)])
			if err != nil {
				log.Fatal(err)
			}
			defer resp.Body.Close()
			rd := bufio.NewReaderSize(resp.Body, 16<<10)
			var once sync.Once
			var data string
			for {
				line, err := rd.ReadString('\n')
				if err != nil {
					if err != io.EOF {
						log.Print(err)
					}
					return
				}
				switch {
				case strings.HasPrefix(line, "data: "):
					data = line[6 : len(line)-1]
				case line == "\n" && data == "sync":
					once.Do(synced.Done)
					data = ""
				case line == "\n" && data != "":
					now := time.Now().UnixNano()
					var ev struct{ Seq, T int64 }
					if json.Unmarshal([]byte(data), &ev) == nil {
						hist.add(now - ev.T)
						received.Add(1)
						if prev := lastSeq[i].Swap(ev.Seq); ev.Seq != prev+1 {
							lost.Add(ev.Seq - prev - 1)
						}
					}
					data = ""
				}
			}
		}()
		if i%100 == 99 {
			time.Sleep(10 * time.Millisecond) // not all at once: the listen backlog
		}
	}
	synced.Wait()
	fmt.Println("ready")
	var last int64
	fmt.Scan(&last)
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		done := true
		for i := range lastSeq {
			if lastSeq[i].Load() < last {
				done = false
				break
			}
		}
		if done {
			break
		}
	}
	var tail int64
	for i := range lastSeq {
		tail += last - lastSeq[i].Load()
	}
	r := Report{Received: received.Load(), Lost: lost.Load() + tail,
		P50: hist.quantile(0.5), P99: hist.quantile(0.99), Max: float64(hist.max.Load()) / 1e6,
		CPU: (SelfCPU() - cpu0).Seconds()}
	b, _ := json.Marshal(r)
	fmt.Println(string(b))
}

// hist is a histogram of latencies in buckets of 50 µs, up to 10 s.
var hist histogram

type histogram struct {
	buckets [200001]atomic.Int64
	max     atomic.Int64
}

func (h *histogram) add(ns int64) {
	h.buckets[min(max(ns, 0)/50000, int64(len(h.buckets)-1))].Add(1)
	for m := h.max.Load(); ns > m && !h.max.CompareAndSwap(m, ns); m = h.max.Load() {
	}
}

// quantile returns the q quantile in milliseconds (the bucket's upper bound).
func (h *histogram) quantile(q float64) float64 {
	var total int64
	for i := range h.buckets {
		total += h.buckets[i].Load()
	}
	want, seen := int64(q*float64(total)), int64(0)
	for i := range h.buckets {
		if seen += h.buckets[i].Load(); seen > want {
			return float64(i+1) * 0.05
		}
	}
	return 0
}

// SelfCPU returns this process's CPU time.
func SelfCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// Median returns the median of v.
func Median(v []float64) float64 {
	s := slices.Sorted(slices.Values(v))
	return s[len(s)/2]
}

// MedianRange formats v's median with its range (v alone, if one).
func MedianRange(v []float64) string {
	if len(v) == 1 {
		return fmt.Sprintf("%.1f", v[0])
	}
	return fmt.Sprintf("%.1f (%.1f–%.1f)", Median(v), slices.Min(v), slices.Max(v))
}
