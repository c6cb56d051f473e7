package latency

import (
	"fmt"
	"log"
	"net"
	"net/http"
	"time"

	"github.com/lightsse/sse"
	"github.com/lightsse/sse/ssebroker"
)

// A Store is the Log a benchmark measures: Brokers in one or more instances
// share it.
type Store struct {
	Name string // "PostgreSQL", "Redis": in the table's headings

	// Logs returns n Logs, one per instance, sharing one fresh stream
	// (a new database, a new key prefix), and a func that closes them.
	Logs func(n int) ([]ssebroker.Log, func())
	// CPU returns the store's CPU time so far.
	CPU func() time.Duration
	// Quiet, if set, waits for the store to settle before a run.
	Quiet func()
}

// Workload prints the latency workload as Markdown: for an in-process
// Broker, one Broker on s's Log, and three sharing it, clients streams a
// run (a third on each instance), rate events a second for 10 s (4 s and
// one round if quick), rounds times in turns; each cell is the median over
// the rounds, with the range. clientCPUs is as for Run.
func Workload(s Store, quick bool, clients, rate, rounds int, clientCPUs string) {
	dur := 10 * time.Second
	if quick {
		dur, rounds = 4*time.Second, 1
	}
	events := int(dur.Seconds()) * rate
	fmt.Printf("## Publish to delivery, %d clients, %d events of 200 B per second\n\n", clients, rate)
	where := "on the same cores"
	if clientCPUs != "" {
		where = "pinned to CPUs " + clientCPUs + " (taskset), the server and " + s.Name + " on the CPUs this command was given"
	}
	fmt.Printf("Latency runs from just before Publish to the client's parse of the event; the clients run in a child process "+where+". "+
		"Each run: 1 s of warm-up events, then %v measured. The variants take turns, %d round(s); each cell is the median over the rounds, with the range.\n\n", dur, rounds)
	variants := []struct {
		name      string
		instances int // 0: no Log
	}{
		{"in-process Broker (no Log)", 0},
		{"Broker on the " + s.Name + " Log, 1 instance", 1},
		{"Brokers on the " + s.Name + " Log, 3 instances", 3},
	}
	type result struct {
		p50, p99, max, goCPU, storeCPU, clientCPU []float64
		lost                                      int64
	}
	results := make([]result, len(variants))
	for round := range rounds {
		for i, v := range variants {
			urls, publish, closeAll := brokers(s, v.instances)
			if s.Quiet != nil {
				s.Quiet()
			}
			r, goCPU, storeCPU := Run(publish, urls, clients, rate, events, clientCPUs, s.CPU, fmt.Sprintf("%s:%d", v.name, round))
			closeAll()
			d := float64(r.Received)
			res := &results[i]
			res.p50 = append(res.p50, r.P50)
			res.p99 = append(res.p99, r.P99)
			res.max = append(res.max, r.Max)
			res.goCPU = append(res.goCPU, goCPU.Seconds()*1e6/d)
			res.storeCPU = append(res.storeCPU, storeCPU.Seconds()*1e6/d)
			res.clientCPU = append(res.clientCPU, r.CPU*1e6/d)
			res.lost += r.Lost
		}
	}
	fmt.Printf("| server | p50 | p99 | max | lost | server CPU per delivery: Go + %s | client CPU per delivery |\n|---|--:|--:|--:|--:|--:|--:|\n", s.Name)
	for i, v := range variants {
		r := results[i]
		fmt.Printf("| %s | %s ms | %s ms | %s ms | %d | %.2f + %.2f µs | %.2f µs |\n", v.name,
			MedianRange(r.p50), MedianRange(r.p99), MedianRange(r.max), r.lost, Median(r.goCPU), Median(r.storeCPU), Median(r.clientCPU))
	}
	fmt.Println()
}

// brokers serves n Brokers on s's Logs (one without a Log for n = 0), each
// on its own loopback HTTP server, and returns their URLs, the first one's
// Publish, and a func that closes them all.
func brokers(s Store, n int) (urls []string, publish func(sse.Event) error, closeAll func()) {
	logs, closeLogs := []ssebroker.Log{nil}, func() {}
	if n > 0 {
		logs, closeLogs = s.Logs(n)
	}
	var closers []func()
	for i, l := range logs {
		b, err := ssebroker.New(&ssebroker.Options{Log: l})
		if err != nil {
			log.Fatal(err)
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			log.Fatal(err)
		}
		hs := &http.Server{Handler: b}
		go hs.Serve(ln)
		urls = append(urls, "http://"+ln.Addr().String())
		if i == 0 {
			publish = b.Publish
		}
		closers = append(closers, func() { b.Close(); hs.Close() })
	}
	return urls, publish, func() {
		for _, c := range closers {
			c()
		}
		closeLogs()
	}
}
