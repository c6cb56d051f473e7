package ssebroker

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/lightsse/sse"
	"github.com/lightsse/sse/internal/ssetest"
)

func BenchmarkPublish(b *testing.B) {
	for _, subs := range []int{0, 100, 1000} {
		b.Run(fmt.Sprintf("subscribers=%d", subs), func(b *testing.B) {
			br := newBroker(b, nil)
			ctx, cancel := context.WithCancel(context.Background())
			var wg sync.WaitGroup
			for range subs {
				wg.Add(1)
				go func() {
					defer wg.Done()
					br.ServeHTTP(&ssetest.Discard{Head: http.Header{}}, httptest.NewRequestWithContext(ctx, "GET", "/", nil))
				}()
			}
			for br.Subscribers() < subs {
				time.Sleep(time.Millisecond)
			}
			b.ReportAllocs()
			for b.Loop() {
				_ = br.Publish(typical)
			}
			b.StopTimer()
			cancel()
			br.Close()
			wg.Wait()
		})
	}
}

// BenchmarkFanOut: one op publishes an event carrying its publish time and
// waits until every loopback client has parsed it; clients record latency.
// Reported: deliveries/s, and p50/p99 latency from Publish to a client
// having read the whole event.
func BenchmarkFanOut(b *testing.B) {
	for _, clients := range []int{1000, fdBound(10000)} {
		b.Run(fmt.Sprintf("clients=%d", clients), func(b *testing.B) {
			raiseFileLimit(b, clients)
			br := newBroker(b, nil)
			srv := httptest.NewServer(br)
			defer srv.Close()
			defer br.Close()
			addr := srv.Listener.Addr().String()
			var got atomic.Int64
			all := make(chan struct{}, 1)
			latencies := make([][]time.Duration, clients)
			var wg sync.WaitGroup
			for c := range clients {
				s, err := dialStream(addr)
				if err != nil {
					b.Fatal(err)
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					defer s.conn.Close()
					for {
						line, err := s.body.ReadSlice('\n')
						if err != nil {
							return
						}
						if ts, ok := bytes.CutPrefix(line, []byte("data: ")); ok {
							sent, _ := strconv.ParseInt(string(bytes.TrimSpace(ts)), 10, 64)
							latencies[c] = append(latencies[c], time.Since(time.Unix(0, sent)))
							if got.Add(1) == int64(clients) {
								all <- struct{}{}
							}
						}
					}
				}()
			}
			for br.Subscribers() < clients {
				time.Sleep(time.Millisecond)
			}
			b.ResetTimer()
			start := time.Now()
			for b.Loop() {
				got.Store(0)
				_ = br.Publish(sse.Event{Type: "t", Data: strconv.FormatInt(time.Now().UnixNano(), 10)})
				<-all
			}
			elapsed := time.Since(start)
			b.StopTimer()
			br.Close()
			wg.Wait()
			var lat []time.Duration
			for _, l := range latencies {
				lat = append(lat, l...)
			}
			slices.Sort(lat)
			b.ReportMetric(float64(len(lat))/elapsed.Seconds(), "deliveries/s")
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
		})
	}
}

// BenchmarkIdleStream: memory (heap and goroutine stacks, both ends of the
// loopback connection, in one process) per open idle stream: the Broker's,
// next to a bare net/http handler that only waits on its context (net/http's
// floor), and detached (Options.Detach), next to a handler that hijacks the
// connection and holds it (the floor of any stream outside net/http, both
// ends: what is above it is the Broker's); and each stream with a Broker of
// its own (one Broker per user), both ways.
// The figure is per stream; the op is opening 2,000 streams.
func BenchmarkIdleStream(b *testing.B) {
	const streams = 2000
	var started atomic.Int64
	bare := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(200)
		http.NewResponseController(w).Flush()
		started.Add(1)
		<-r.Context().Done()
	})
	for _, tt := range []struct {
		name string
		h    func() (http.Handler, func() int, func())
	}{
		{"bare-handler", func() (http.Handler, func() int, func()) {
			started.Store(0)
			return bare, func() int { return int(started.Load()) }, func() {}
		}},
		{"Broker", func() (http.Handler, func() int, func()) {
			br := newBroker(b, nil)
			return br, br.Subscribers, func() { br.Close() }
		}},
		{"hijacked-conn", func() (http.Handler, func() int, func()) {
			h := &connHolder{} // the floor of a detached stream: the connection alone, held
			return h, h.count, h.closeAll
		}},
		{"Broker-detached", func() (http.Handler, func() int, func()) {
			br := newBroker(b, &Options{Detach: true})
			return br, br.Subscribers, func() { br.Close() }
		}},
		{"Broker-per-stream", perStreamBrokers(b, false)},
		{"Broker-per-stream-detached", perStreamBrokers(b, true)},
	} {
		b.Run(tt.name, func(b *testing.B) {
			raiseFileLimit(b, streams)
			var perStream float64
			for b.Loop() {
				b.StopTimer()
				h, open, closeAll := tt.h()
				srv := httptest.NewServer(h)
				before := memInUse()
				b.StartTimer()
				conns := make([]*rawStream, streams)
				for i := range conns {
					s, err := dialStream(srv.Listener.Addr().String())
					if err != nil {
						b.Fatal(err)
					}
					conns[i] = s
				}
				for open() < streams {
					time.Sleep(time.Millisecond)
				}
				b.StopTimer()
				perStream = float64(memInUse()-before) / streams / 1024
				closeAll()
				for _, s := range conns {
					s.conn.Close()
				}
				srv.Close()
				b.StartTimer()
			}
			b.ReportMetric(perStream, "KiB/stream")
		})
	}
}

// perStreamBrokers serves each stream from a Broker of its own, as one
// Broker per user does (ExampleOptions_onIdle), with HistoryLen 16.
func perStreamBrokers(b *testing.B, detach bool) func() (http.Handler, func() int, func()) {
	return func() (http.Handler, func() int, func()) {
		var mu sync.Mutex
		var brokers []*Broker
		h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			br := newBroker(b, &Options{HistoryLen: 16, Detach: detach})
			mu.Lock()
			brokers = append(brokers, br)
			mu.Unlock()
			br.ServeHTTP(w, r)
		})
		open := func() int {
			mu.Lock()
			defer mu.Unlock()
			n := 0
			for _, br := range brokers {
				n += br.Subscribers()
			}
			return n
		}
		return h, open, func() {
			for _, br := range brokers {
				br.Close()
			}
		}
	}
}

// typical is the event the benchmarks publish: an id, a type and a 200-byte
// JSON line.
var typical = sse.Event{
	ID:   "1f3a-42",
	Type: "price",
	Data: `{"symbol":"ACME","price":1234.56,"currency":"USD","venue":"XNAS","ts":"2026-11-24T12:00:00.000Z","bid":1234.5,"ask":1234.6,"volume":1200345,"note":"a typical JSON payload of about two hundred bytes!"}`,
}

// streamCounts are the stream counts BenchmarkManyStreams runs.
var streamCounts = flag.String("streams", "10000,100000", "BenchmarkManyStreams: comma-separated stream counts (1000000 needs about 7 GiB)")

// BenchmarkManyStreams: many detached streams, in one process, each over a
// connection that is only memory (memConn), so that how many there are is
// bounded by memory, not by file descriptors (this machine allows 20,000):
// what the Broker itself costs at 100,000 streams or a million, without the
// kernel's part or the clients'. Each count runs on one shared Broker, and
// with one Broker per stream (HistoryLen 16), as one per user. The op is
// one event to every stream (a Publish, or one on every Broker), from the
// first Publish until the last stream's write. Metrics: heap and stacks per
// open stream that has had an event, all of its Broker's part (the
// goroutine that reads each connection included, but not the runtime's
// descriptor of it, about 0.4 KiB, since each count reuses descriptors: see
// spareGoroutines) and about 0.1 KiB of memConn; and CPU time per delivery.
// Without heartbeats: a Broker's timer adds about 0.1 KiB.
func BenchmarkManyStreams(b *testing.B) {
	for _, f := range strings.Split(*streamCounts, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			b.Fatalf("-streams: %q is not a count", f)
		}
		b.Run(fmt.Sprintf("streams=%d", n), func(b *testing.B) { manyStreams(b, n, false) })
		b.Run(fmt.Sprintf("streams=%d/per-user", n), func(b *testing.B) { manyStreams(b, n, true) })
	}
}

func manyStreams(b *testing.B, n int, perUser bool) {
	spareGoroutines(2 * n)
	before := memInUse()
	m := openMemStreams(b, n, perUser)
	defer m.close()
	perStream := float64(memInUse()-before) / float64(n) / 1024
	var cpu time.Duration
	for b.Loop() {
		c0 := cpuTime()
		m.publish(b)
		cpu += cpuTime() - c0
	}
	b.StopTimer()
	b.ReportMetric(perStream, "KiB/stream")
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N)/float64(n), "cpu-ns/delivery")
}

// spareGoroutines has n goroutines run and exit, so that the runtime keeps
// as many descriptors to reuse (it never frees one): a count made after it
// pays for no new goroutine's descriptor, whichever variant ran before.
func spareGoroutines(n int) {
	var started, done sync.WaitGroup
	release := make(chan struct{})
	started.Add(n)
	done.Add(n)
	for range n {
		go func() {
			started.Done()
			<-release
			done.Done()
		}()
	}
	started.Wait()
	close(release)
	done.Wait()
}

// cpuTime returns the CPU time this process has used, user and system.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
