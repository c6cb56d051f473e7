// Command bench measures the Redis Log against redis-benchmark and against
// the in-process Broker, on this machine, in one run, and prints Markdown.
//
//	go -C redisstream run ./internal/bench            # both workloads (about 3 minutes)
//	go -C redisstream run ./internal/bench -quick     # smaller (under a minute)
//	go -C redisstream run ./internal/bench -workload throughput
//	go -C redisstream run ./internal/bench -workload replicated -min-replicas 1
//
// It starts its own redis-server (persistence off) on a free loopback port,
// and, for the latency workload, runs the SSE clients in a child process (this
// binary again, with -role clients), so that the server's CPU is its own.
//
// throughput: redis-benchmark's XADD rate on the same redis-server (50
// clients, no pipelining, as its default; then -P 16), then Topic.Append
// from 256 goroutines for one topic and for 1,000 topics, with a second
// Streams following every topic and counting what it is handed.
//
// replicated: Topic.Append as in throughput, with replicas of the server
// attached (-min-replicas of them), first without Options.MinReplicas, then
// with it: what acknowledged-means-replicated costs.
//
// latency: 1,000 SSE clients, 100 events of 200 bytes per second for a
// fixed time, each event carrying its publish time; p50 and p99 of publish to
// parse, for the in-process Broker, a Broker on the Redis Log (one instance),
// and three instances sharing the Log (a third of the clients on each).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/lightsse/sse/internal/latency"
	"github.com/lightsse/sse/ssebroker"

	"github.com/lightsse/sse/redisstream"
	"github.com/redis/go-redis/v9"
)

func main() {
	role := flag.String("role", "bench", "internal: bench or clients")
	workload := flag.String("workload", "throughput,latency", "comma-separated: throughput, latency, replicated")
	minReplicas := flag.Int("min-replicas", 1, "replicated: replicas to start, and Options.MinReplicas")
	flag.IntVar(&appenders, "appenders", appenders, "throughput, replicated: goroutines that append")
	quick := flag.Bool("quick", false, "smaller runs")
	clients := flag.Int("clients", 1000, "latency: SSE clients")
	rate := flag.Int("rate", 100, "latency: events per second")
	rounds := flag.Int("rounds", 3, "latency: rounds of the three variants (quick: 1)")
	urls := flag.String("urls", "", "internal, clients: stream URLs, comma-separated")
	flag.StringVar(&clientCPUs, "client-cpus", "", "latency: run the clients' process on these CPUs (a taskset list, e.g. 1); run this command under taskset -c for the server's")
	flag.Parse()
	log.SetFlags(0)
	if *role == "clients" {
		latency.Clients(strings.Split(*urls, ","), *clients)
		return
	}
	rs, err := startRedis()
	if err != nil {
		log.Fatal(err)
	}
	defer rs.stop()
	fmt.Printf("# redisstream benchmarks\n\n%s\n\n", machine(rs))
	for _, w := range strings.Split(*workload, ",") {
		switch w {
		case "throughput":
			throughput(rs, *quick)
		case "latency":
			latency.Workload(redisStore(rs), *quick, *clients, *rate, *rounds, clientCPUs)
		case "replicated":
			replicated(rs, *quick, *minReplicas)
		default:
			log.Fatalf("unknown workload %q", w)
		}
	}
}

// ---- redis-server ----------------------------------------------------------

type redisServer struct {
	cmd  *exec.Cmd
	addr string
	port int
	dir  string
}

func startRedis(args ...string) (*redisServer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	dir, err := os.MkdirTemp("", "redisbench")
	if err != nil {
		return nil, err
	}
	cmd := exec.Command("redis-server", append([]string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", dir, "--logfile", filepath.Join(dir, "redis.log"),
		"--repl-diskless-sync-delay", "0"}, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("redis-server (apt-get install redis-server): %w", err)
	}
	rs := &redisServer{cmd: cmd, addr: fmt.Sprint("127.0.0.1:", port), port: port, dir: dir}
	c := redis.NewClient(&redis.Options{Addr: rs.addr})
	defer c.Close()
	for i := 0; ; i++ {
		if c.Ping(context.Background()).Err() == nil {
			return rs, nil
		}
		if i == 200 {
			rs.stop()
			return nil, errors.New("redis-server does not answer")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (rs *redisServer) stop() {
	_ = rs.cmd.Process.Kill()
	_ = rs.cmd.Wait()
	os.RemoveAll(rs.dir)
}

// cpu returns the CPU time redis-server has used.
func (rs *redisServer) cpu() time.Duration { return procCPU(rs.cmd.Process.Pid) }

// procCPU reads utime+stime of a process from /proc.
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	ut, _ := strconv.ParseInt(fields[11], 10, 64)
	st, _ := strconv.ParseInt(fields[12], 10, 64)
	return time.Duration(ut+st) * time.Second / 100 // USER_HZ
}

func (rs *redisServer) client() *redis.Client {
	return redis.NewClient(&redis.Options{Addr: rs.addr, ContextTimeoutEnabled: true})
}

func machine(rs *redisServer) string {
	model := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		if m := regexp.MustCompile(`model name\s*:\s*(.*)`).FindSubmatch(b); m != nil {
			model = string(m[1])
		}
	}
	v, _ := exec.Command("redis-server", "--version").Output()
	ver := regexp.MustCompile(`v=(\S+)`).FindSubmatch(v)
	redisVer := "?"
	if ver != nil {
		redisVer = string(ver[1])
	}
	return fmt.Sprintf("Machine: %d cores (%s), %s, redis-server %s (persistence off, loopback), %s, %s.",
		runtime.NumCPU(), model, runtime.Version(), redisVer, runtime.GOOS+"/"+runtime.GOARCH, time.Now().UTC().Format("2006-01-02"))
}

// ---- throughput -------------------------------------------------------------

var payload = strings.Repeat("x", 200)

func throughput(rs *redisServer, quick bool) {
	n, dur := 300000, 5*time.Second
	if quick {
		n, dur = 100000, 2*time.Second
	}
	fmt.Printf("## Throughput through one Redis\n\n")
	fmt.Printf("| what | events/s | Redis CPU per event | Go CPU per event | events per round trip |\n|---|--:|--:|--:|--:|\n")
	for _, p := range []int{1, 16} {
		before := rs.cpu()
		start := time.Now()
		out, err := exec.Command("redis-benchmark", "-p", strconv.Itoa(rs.port), "-n", strconv.Itoa(n), "-c", "50",
			"-P", strconv.Itoa(p), "-q", "XADD", "bench:{x}:log", "MAXLEN", "1000", "*", "w", payload).CombinedOutput()
		elapsed := time.Since(start)
		if err != nil {
			log.Fatalf("redis-benchmark: %v\n%s", err, out)
		}
		m := regexp.MustCompile(`([0-9.]+) requests per second`).FindSubmatch(out)
		if m == nil {
			log.Fatalf("redis-benchmark said: %s", out)
		}
		rps, _ := strconv.ParseFloat(string(m[1]), 64)
		fmt.Printf("| redis-benchmark XADD MAXLEN 1000, 200 B, 50 clients, -P %d | %.0f | %s | – | %d |\n",
			p, rps, perEvent(rs.cpu()-before, n), p)
		_ = elapsed
	}
	for _, topics := range []int{1, 1000} {
		appendRate(rs, topics, dur, 0)
	}
	fmt.Println()
}

// replicated measures Appends with n replicas of rs attached, without and
// with Options.MinReplicas n.
func replicated(rs *redisServer, quick bool, n int) {
	dur := 5 * time.Second
	if quick {
		dur = 2 * time.Second
	}
	for range n {
		r, err := startRedis("--replicaof", "127.0.0.1", strconv.Itoa(rs.port))
		if err != nil {
			log.Fatal(err)
		}
		defer r.stop()
	}
	// Replicas acknowledge once the master has their first ACK after the
	// sync.
	c := rs.client()
	defer c.Close()
	for i := 0; ; i++ {
		c.Set(context.Background(), "bench:ready", "x", 0)
		if got, _ := c.Wait(context.Background(), n, 100*time.Millisecond).Result(); got >= int64(n) {
			break
		}
		if i == 200 {
			log.Fatalf("%d replicas do not acknowledge", n)
		}
	}
	fmt.Printf("## Acknowledged means replicated: %d replica(s) attached\n\n", n)
	fmt.Printf("| what | events/s | Redis CPU per event | Go CPU per event | events per round trip |\n|---|--:|--:|--:|--:|\n")
	for _, topics := range []int{1, 1000} {
		appendRate(rs, topics, dur, 0)
		appendRate(rs, topics, dur, n)
	}
	fmt.Println()
}

// appenders is how many goroutines appendRate appends from.
var appenders = 256

// appendRate appends from appenders goroutines to topics topics for dur, with
// Options.MinReplicas minReplicas and a second Streams following them all,
// and prints the rates.
func appendRate(rs *redisServer, topics int, dur time.Duration, minReplicas int) {
	ctx := context.Background()
	pubClient, subClient := rs.client(), rs.client()
	defer pubClient.Close()
	defer subClient.Close()
	var trips atomic.Int64
	pubClient.AddHook(tripCounter{&trips})
	pub, err := redisstream.New(pubClient, &redisstream.Options{MaxLen: 1000, Prefix: fmt.Sprintf("b%d:", topics), MinReplicas: minReplicas})
	if err != nil {
		log.Fatal(err)
	}
	defer pub.Close()
	sub, err := redisstream.New(subClient, &redisstream.Options{MaxLen: 1000, Prefix: fmt.Sprintf("b%d:", topics)})
	if err != nil {
		log.Fatal(err)
	}
	defer sub.Close()
	var delivered atomic.Int64
	var heads sync.WaitGroup
	var pubs []*redisstream.Topic
	for i := range topics {
		name := fmt.Sprint("t", i)
		tp, _ := pub.Topic(name)
		pubs = append(pubs, tp)
		ft, _ := sub.Topic(name)
		heads.Add(1)
		var once sync.Once
		stop := ft.Follow(func(pos ssebroker.Position, w []byte) {
			if w == nil {
				once.Do(heads.Done)
				return
			}
			delivered.Add(1)
		})
		defer stop()
	}
	heads.Wait()
	wire := []byte("data: " + payload + "\n\n")
	var appended atomic.Int64
	var failed atomic.Int64
	stopAt := time.Now().Add(dur)
	redisBefore, goBefore := rs.cpu(), latency.SelfCPU()
	trips.Store(0)
	start := time.Now()
	var wg sync.WaitGroup
	for g := range appenders {
		wg.Go(func() {
			for i := g; time.Now().Before(stopAt); i += appenders {
				if _, err := pubs[i%topics].Append(ctx, wire); err != nil {
					failed.Add(1)
					continue
				}
				appended.Add(1)
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	// Wait for the feed to hand over what is in flight.
	for deadline := time.Now().Add(10 * time.Second); delivered.Load() < appended.Load() && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	redisCPU, goCPU := rs.cpu()-redisBefore, latency.SelfCPU()-goBefore
	n := appended.Load()
	with := ""
	if minReplicas > 0 {
		with = fmt.Sprintf(", MinReplicas %d", minReplicas)
	}
	fmt.Printf("| Topic.Append, %d topic(s)%s, %d goroutines, 200 B; a second Streams follows all (%d of %d handed over, %d errors) | %.0f | %s | %s (both Streams) | %.1f |\n",
		topics, with, appenders, delivered.Load(), n, failed.Load(), float64(n)/elapsed.Seconds(), perEvent(redisCPU, int(n)), perEvent(goCPU, int(n)), float64(n)/float64(max(trips.Load(), 1)))
}

func perEvent(cpu time.Duration, n int) string {
	if n == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f µs", float64(cpu.Nanoseconds())/float64(n)/1000)
}

// tripCounter counts the pipelines of scripts a client sends.
type tripCounter struct{ n *atomic.Int64 }

func (tripCounter) DialHook(next redis.DialHook) redis.DialHook          { return next }
func (tripCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }
func (t tripCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if name := cmds[0].Name(); name == "evalsha" || name == "eval" {
			t.n.Add(1)
		}
		return next(ctx, cmds)
	}
}

// ---- latency ------------------------------------------------------------

// redisStore is the latency workload's Store: each run under a key prefix
// of its own, each instance with its own client.
func redisStore(rs *redisServer) latency.Store {
	runs := 0
	return latency.Store{
		Name: "Redis",
		CPU:  rs.cpu,
		Logs: func(n int) ([]ssebroker.Log, func()) {
			runs++
			prefix := fmt.Sprintf("l%d:", runs)
			var logs []ssebroker.Log
			var closers []func()
			for range n {
				c := rs.client()
				st, err := redisstream.New(c, &redisstream.Options{Prefix: prefix})
				if err != nil {
					log.Fatal(err)
				}
				tp, _ := st.Topic("room")
				logs = append(logs, tp)
				closers = append(closers, func() { st.Close(); c.Close() })
			}
			return logs, func() {
				for _, c := range closers {
					c()
				}
			}
		},
	}
}

// clientCPUs, if set, pins the clients' process to these CPUs (taskset).
var clientCPUs string
