// Command bench measures the PostgreSQL Log against pgbench and against the
// in-process Broker, on this machine, in one run, and prints Markdown.
//
//	go -C pgstream run ./internal/bench            # both workloads (about 4 minutes)
//	go -C pgstream run ./internal/bench -quick     # smaller (about a minute)
//	go -C pgstream run ./internal/bench -workload throughput
//
// It starts its own PostgreSQL cluster (internal/pgtest: a temporary folder,
// a free loopback port; fsync off unless -fsync), and, for the latency
// workload, runs the SSE clients in a child process (this binary again, with
// -role clients), so that the server's CPU is its own.
//
// throughput: pgbench on the same server (its TPC-B-like default, then the
// statement an Append sends, one event per transaction), then Topic.Append
// from 256 goroutines for one topic and for 1,000 topics, with a second
// Streams following every topic and counting what it is handed, and one
// Trim and one VACUUM at the end, whose work counts in PostgreSQL's CPU
// (the trimmer is off during the run: trimming in its middle would make the
// figure depend on when it falls, and cut the follower's history short).
// Each measurement starts once no autovacuum worker runs.
//
// latency: 1,000 SSE clients, 100 events of 200 bytes per second for a
// fixed time, each event carrying its publish time; p50 and p99 of publish to
// parse, for the in-process Broker, a Broker on the PostgreSQL Log (one
// instance), and three instances sharing the Log (a third of the clients on
// each).
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/lightsse/sse/internal/latency"
	"github.com/lightsse/sse/pgstream"
	"github.com/lightsse/sse/pgstream/internal/pgtest"
	"github.com/lightsse/sse/ssebroker"
)

func main() {
	role := flag.String("role", "bench", "internal: bench or clients")
	workload := flag.String("workload", "throughput,latency", "comma-separated: throughput, latency")
	quick := flag.Bool("quick", false, "smaller runs")
	fsync := flag.Bool("fsync", false, "run PostgreSQL with fsync on (and synchronous_commit on, its default)")
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
	var settings []string
	if *fsync {
		settings = append(settings, "fsync=on", "full_page_writes=on")
	}
	cluster, err := pgtest.New(settings...)
	if err != nil {
		log.Fatal(err)
	}
	defer cluster.Stop()
	db := &database{cluster: cluster}
	fmt.Printf("# pgstream benchmarks\n\n%s\n\n", machine(cluster, *fsync))
	for _, w := range strings.Split(*workload, ",") {
		switch w {
		case "throughput":
			throughput(db, *quick)
		case "latency":
			latency.Workload(postgres(db), *quick, *clients, *rate, *rounds, clientCPUs)
		default:
			log.Fatalf("unknown workload %q", w)
		}
	}
}

// ---- PostgreSQL --------------------------------------------------------------

// A database is one fresh database of the cluster per measurement.
type database struct {
	cluster *pgtest.Cluster
}

// fresh makes a new database with pgstream's tables, and returns its URL.
func (d *database) fresh() string {
	ctx := context.Background()
	name, err := d.cluster.CreateDB(ctx)
	if err != nil {
		log.Fatal(err)
	}
	url := d.cluster.URL(name)
	p := d.pool(url, 4)
	defer p.Close()
	if err := pgstream.Migrate(ctx, p, nil); err != nil {
		log.Fatal(err)
	}
	return url
}

func (d *database) pool(url string, maxConns int32) *pgxpool.Pool {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		log.Fatal(err)
	}
	cfg.MaxConns = maxConns
	p, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		log.Fatal(err)
	}
	return p
}

// quiet waits until no autovacuum worker runs (a minute at most), so that
// a measurement does not pay for vacuuming what the one before it left.
func (d *database) quiet() {
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, d.cluster.URL("postgres"))
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close(ctx)
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		var n int
		if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'autovacuum worker'").Scan(&n); err != nil {
			log.Fatal(err)
		}
		if n == 0 {
			return
		}
	}
}

// cpu returns the CPU time the server has used: the postmaster's, its
// live children's, and that of the children it has reaped.
func (d *database) cpu() time.Duration {
	pm := d.cluster.PID()
	var ticks int64
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		f := procStat(pid)
		if len(f) < 15 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		switch {
		case pid == pm:
			for _, i := range []int{11, 12, 13, 14} { // utime stime cutime cstime
				n, _ := strconv.ParseInt(f[i], 10, 64)
				ticks += n
			}
		case ppid == pm:
			for _, i := range []int{11, 12} {
				n, _ := strconv.ParseInt(f[i], 10, 64)
				ticks += n
			}
		}
	}
	return time.Duration(ticks) * time.Second / 100 // USER_HZ
}

// procStat returns the fields of /proc/pid/stat after the command's name:
// state, ppid, ... (so utime is [11]).
func procStat(pid int) []string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 > len(s) {
		return nil
	}
	return strings.Fields(s[i+2:])
}

func machine(c *pgtest.Cluster, fsync bool) string {
	model := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		if m := regexp.MustCompile(`model name\s*:\s*(.*)`).FindSubmatch(b); m != nil {
			model = string(m[1])
		}
	}
	v, _ := exec.Command(c.Bin("postgres"), "--version").Output()
	sync := "fsync off"
	if fsync {
		sync = "fsync on"
	}
	return fmt.Sprintf("Machine: %d cores (%s), %s, %s (%s, synchronous_commit on, loopback), %s, %s.",
		runtime.NumCPU(), model, runtime.Version(), strings.TrimSpace(string(v)), sync, runtime.GOOS+"/"+runtime.GOARCH, time.Now().UTC().Format("2006-01-02"))
}

// ---- throughput -------------------------------------------------------------

var payload = strings.Repeat("x", 200)

func throughput(d *database, quick bool) {
	dur := 5 * time.Second
	if quick {
		dur = 2 * time.Second
	}
	fmt.Printf("## Throughput through one PostgreSQL\n\n")
	fmt.Printf("| what | events/s | PostgreSQL CPU per event | Go CPU per event | events per round trip |\n|---|--:|--:|--:|--:|\n")
	pgbenchTPCB(d, dur)
	for _, topics := range []int{1, 1000} {
		pgbenchAppend(d, topics, dur)
	}
	for _, topics := range []int{1, 1000} {
		appendRate(d, topics, dur)
	}
	fmt.Println()
}

// pgbenchArgs returns pgbench's arguments for url, 50 clients on 2
// threads, for dur.
func pgbenchArgs(url string, dur time.Duration, more ...string) []string {
	return append([]string{"-n", "-c", "50", "-j", "2", "-M", "prepared", "-T", strconv.Itoa(int(dur.Seconds()))}, append(more, url)...)
}

// runPgbench runs pgbench and returns its rate (tps) and the server's CPU.
func runPgbench(d *database, args []string) (float64, time.Duration) {
	d.quiet()
	before := d.cpu()
	out, err := exec.Command(d.cluster.Bin("pgbench"), args...).CombinedOutput()
	cpu := d.cpu() - before
	if err != nil {
		log.Fatalf("pgbench %v: %v\n%s", args, err, out)
	}
	m := regexp.MustCompile(`tps = ([0-9.]+) \(without initial connection time\)`).FindSubmatch(out)
	if m == nil {
		log.Fatalf("pgbench said: %s", out)
	}
	tps, _ := strconv.ParseFloat(string(m[1]), 64)
	return tps, cpu
}

// pgbenchTPCB runs pgbench's default script (five statements per
// transaction), scale 10.
func pgbenchTPCB(d *database, dur time.Duration) {
	url := d.fresh()
	if out, err := exec.Command(d.cluster.Bin("pgbench"), "-i", "-q", "-s", "10", url).CombinedOutput(); err != nil {
		log.Fatalf("pgbench -i: %v\n%s", err, out)
	}
	tps, cpu := runPgbench(d, pgbenchArgs(url, dur))
	fmt.Printf("| pgbench, its TPC-B-like default (5 statements per transaction), scale 10, 50 clients | %.0f transactions/s | %s per transaction | – | – |\n",
		tps, perEvent(cpu, int(tps*dur.Seconds())))
}

// pgbenchAppend runs, from 50 clients, the statement an Append sends, with
// one event per transaction: what pgstream would reach with no batching.
func pgbenchAppend(d *database, topics int, dur time.Duration) {
	url := d.fresh()
	script := fmt.Sprintf(`\set t random(1, %d)
WITH t AS (
	INSERT INTO sse_topics AS t (name, epoch, head) VALUES ('t' || :t, '0123456789abcdef', 1)
	ON CONFLICT (name) DO UPDATE SET head = t.head + EXCLUDED.head
	RETURNING t.id, t.epoch, t.head
), e AS (
	INSERT INTO sse_events (topic_id, "offset", wire) SELECT t.id, t.head, convert_to(E'data: %s\n\n', 'UTF8') FROM t
)
SELECT t.epoch, t.head, pg_notify('public.sse_events', t.epoch || ' ' || t.head || ' t' || :t) FROM t;
`, topics, payload)
	f := filepath.Join(os.TempDir(), fmt.Sprintf("pgstream-bench-%d.sql", os.Getpid()))
	if err := os.WriteFile(f, []byte(script), 0o644); err != nil {
		log.Fatal(err)
	}
	defer os.Remove(f)
	tps, cpu := runPgbench(d, pgbenchArgs(url, dur, "-f", f))
	fmt.Printf("| pgbench, the statement of one Append (one event per transaction), %d topic(s), 50 clients, 200 B | %.0f | %s | – | 1 |\n",
		topics, tps, perEvent(cpu, int(tps*dur.Seconds())))
}

// appendRate appends from 256 goroutines to topics topics for dur, with a
// second Streams following them all, and prints the rates.
func appendRate(d *database, topics int, dur time.Duration) {
	ctx := context.Background()
	url := d.fresh()
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		log.Fatal(err)
	}
	var trips atomic.Int64
	cfg.ConnConfig.Tracer = tripCounter{&trips}
	pubPool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer pubPool.Close()
	subPool := d.pool(url, 4)
	defer subPool.Close()
	pub, err := pgstream.New(pubPool, &pgstream.Options{MaxLen: 1000, TrimInterval: -1}) // trimmed once, below
	if err != nil {
		log.Fatal(err)
	}
	defer pub.Close()
	sub, err := pgstream.New(subPool, &pgstream.Options{MaxLen: 1000, TrimInterval: -1})
	if err != nil {
		log.Fatal(err)
	}
	defer sub.Close()
	var delivered atomic.Int64
	var heads sync.WaitGroup
	var pubs []*pgstream.Topic
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
	var appended, failed atomic.Int64
	d.quiet()
	stopAt := time.Now().Add(dur)
	pgBefore, goBefore := d.cpu(), latency.SelfCPU()
	trips.Store(0)
	start := time.Now()
	var wg sync.WaitGroup
	for g := range 256 {
		wg.Go(func() {
			for i := g; time.Now().Before(stopAt); i += 256 {
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
	for deadline := time.Now().Add(30 * time.Second); delivered.Load() < appended.Load() && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	// Retention's cost, counted: delete what MaxLen no longer keeps, as
	// the trimmer would have (at steady state, every event is deleted).
	trimmed, err := pub.Trim(ctx)
	if err != nil {
		log.Fatal(err)
	}
	if _, err := pubPool.Exec(ctx, "VACUUM sse_events, sse_topics"); err != nil {
		log.Fatal(err)
	}
	pgCPU, goCPU := d.cpu()-pgBefore, latency.SelfCPU()-goBefore
	var autovacuums int
	if err := pubPool.QueryRow(ctx, `SELECT coalesce(sum(autovacuum_count + autoanalyze_count), 0)
		FROM pg_stat_user_tables WHERE relname IN ('sse_events', 'sse_topics')`).Scan(&autovacuums); err != nil {
		log.Fatal(err)
	}
	n := appended.Load()
	fmt.Printf("| Topic.Append, %d topic(s), 256 goroutines, 200 B; a second Streams follows all (%d of %d handed over, %d errors); then Trim (%d deleted) and VACUUM; %d autovacuum or autoanalyze runs | %.0f | %s | %s (both Streams) | %.1f |\n",
		topics, delivered.Load(), n, failed.Load(), trimmed, autovacuums, float64(n)/elapsed.Seconds(), perEvent(pgCPU, int(n)), perEvent(goCPU, int(n)), float64(n)/float64(max(trips.Load(), 1)))
}

func perEvent(cpu time.Duration, n int) string {
	if n == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f µs", float64(cpu.Nanoseconds())/float64(n)/1000)
}

// tripCounter counts the batches a pool sends: the Appends' round trips.
type tripCounter struct{ n *atomic.Int64 }

func (tripCounter) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	return ctx
}
func (tripCounter) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}
func (t tripCounter) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	t.n.Add(1)
	return ctx
}
func (tripCounter) TraceBatchQuery(context.Context, *pgx.Conn, pgx.TraceBatchQueryData) {}
func (tripCounter) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData)     {}

// ---- latency ------------------------------------------------------------

// postgres is the latency workload's Store: each run on a database of its
// own, each instance with its own pool.
func postgres(d *database) latency.Store {
	return latency.Store{
		Name:  "PostgreSQL",
		CPU:   d.cpu,
		Quiet: d.quiet,
		Logs: func(n int) ([]ssebroker.Log, func()) {
			url := d.fresh()
			var logs []ssebroker.Log
			var closers []func()
			for range n {
				p := d.pool(url, 8)
				st, err := pgstream.New(p, nil)
				if err != nil {
					log.Fatal(err)
				}
				tp, _ := st.Topic("room")
				logs = append(logs, tp)
				closers = append(closers, func() { st.Close(); p.Close() })
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
