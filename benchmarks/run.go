package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// ---- sessions: one server process and its client processes ----

const streamsPerClientProc = 10000

type session struct {
	ci      contenderInfo
	srv     *proc
	clients []*proc
	counts  []int
	base    response // server stats before any connection
	n       int
	log     io.Writer
}

type sessionSpec struct {
	cfg     Config
	n       int
	stall   bool // the first stream stalls on command
	size    int
	phases  []phase
	src     bool   // spread streams over several 127.0.0.x source addresses
	profile string // server: write CPU and mutex profiles with this path prefix
}

// quietWait bounds how long a session waits for other load to pass.
var quietWait = 20 * time.Second

func openSession(ci contenderInfo, sp sessionSpec, log io.Writer) (*session, error) {
	if quietWait > 0 {
		if load := waitQuiet(quietWait); load >= 0.15 {
			fmt.Fprintf(log, "  other processes use %.1f cores; measuring anyway\n", load)
		}
	}
	s := &session{ci: ci, n: sp.n, log: log}
	var err error
	args := []string{"-role=server", "-contender=" + ci.name,
		"-hb=" + sp.cfg.Heartbeat.String(), "-wt=" + sp.cfg.WriteTimeout.String(), "-burst=" + strconv.Itoa(sp.cfg.Burst)}
	if sp.profile != "" {
		args = append(args, "-profile="+sp.profile)
	}
	s.srv, err = spawn("server "+ci.name, args)
	if err != nil {
		return nil, err
	}
	if s.base, err = s.srv.hello(10 * time.Second); err != nil {
		s.close()
		return nil, err
	}
	debugf("server %s up", ci.name)
	var ph []string
	for _, p := range sp.phases {
		ph = append(ph, fmt.Sprintf("%d:%d", p.from, p.to))
	}
	typ := eventType
	if !ci.typed {
		typ = "message"
	}
	procs := (sp.n + streamsPerClientProc - 1) / streamsPerClientProc
	for k := 0; k < procs; k++ {
		cnt := sp.n / procs
		if k < sp.n%procs {
			cnt++
		}
		args := []string{"-role=client", "-url=http://" + s.base.Addr + "/events?stream=messages",
			"-n=" + strconv.Itoa(cnt), "-size=" + strconv.Itoa(sp.size), "-type=" + typ, "-phases=" + strings.Join(ph, ",")}
		if sp.stall && k == 0 {
			args = append(args, "-stall=0")
		}
		if sp.src {
			args = append(args, fmt.Sprintf("-src=127.0.0.%d,127.0.0.%d", 10+2*k, 11+2*k))
		}
		c, err := spawn(fmt.Sprintf("client %d", k), args)
		if err != nil {
			s.close()
			return nil, err
		}
		s.clients = append(s.clients, c)
		s.counts = append(s.counts, cnt)
		if _, err := c.hello(10 * time.Second); err != nil {
			s.close()
			return nil, err
		}
	}
	debugf("clients up")
	// Connect all client processes at once.
	rs, err := s.all(request{Cmd: "connect"}, 150*time.Second)
	if err != nil {
		s.close()
		return nil, err
	}
	sum := mergeStatus(rs)
	debugf("requests sent")
	if sum.Failed > 0 {
		fmt.Fprintf(log, "  %s: %d of %d streams failed: %s\n", ci.name, sum.Failed, sp.n, sum.FirstErr)
	}
	if sum.Failed == sp.n {
		s.close()
		return nil, fmt.Errorf("no stream connected: %s", sum.FirstErr)
	}
	return s, nil
}

// all sends req to every client process and returns their replies.
func (s *session) all(req request, timeout time.Duration) ([]response, error) {
	out := make([]response, len(s.clients))
	errs := make([]error, len(s.clients))
	var wg sync.WaitGroup
	for i, c := range s.clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i], errs[i] = c.call(req, timeout)
		}()
	}
	wg.Wait()
	return out, errors.Join(errs...)
}

func (s *session) status() (response, error) {
	rs, err := s.all(request{Cmd: "status"}, 10*time.Second)
	return mergeStatus(rs), err
}

func mergeStatus(rs []response) response {
	var m response
	for _, r := range rs {
		m.Connected += r.Connected
		m.Failed += r.Failed
		m.Synced += r.Synced
		m.Closed += r.Closed
		m.Recv += r.Recv
		m.Bad += r.Bad
		m.CPU += r.CPU
		if m.FirstErr == "" {
			m.FirstErr = r.FirstErr
		}
	}
	return m
}

func (s *session) report(ph int) (response, error) {
	rs, err := s.all(request{Cmd: "report", N: ph}, 30*time.Second)
	m := mergeStatus(rs)
	hist := map[int64]int64{}
	for _, r := range rs {
		m.Count += r.Count
		m.Lost += r.Lost
		m.Dup += r.Dup
		m.Reord += r.Reord
		m.Complete += r.Complete
		m.Streams += r.Streams
		m.StalledRecv += r.StalledRecv
		m.Comments += r.Comments
		m.LastRecv = max(m.LastRecv, r.LastRecv)
		for _, h := range r.Hist {
			hist[h[0]] += h[1]
		}
	}
	for b, n := range hist {
		m.Hist = append(m.Hist, [2]int64{b, n})
	}
	sort.Slice(m.Hist, func(i, j int) bool { return m.Hist[i][0] < m.Hist[j][0] })
	return m, err
}

// percentile returns the q-quantile of a histogram, in ms.
func percentile(h [][2]int64, q float64) float64 {
	var total int64
	for _, b := range h {
		total += b[1]
	}
	if total == 0 {
		return math.NaN()
	}
	rank := int64(math.Ceil(q * float64(total)))
	var acc int64
	for _, b := range h {
		acc += b[1]
		if acc >= rank {
			return bucketMid(int(b[0])) / 1000
		}
	}
	return bucketMid(int(h[len(h)-1][0])) / 1000
}

// sync publishes sync events until every connected stream has one, which
// proves it is subscribed (some libraries send headers before they register
// the stream, one only with the first event). It publishes the next sync
// event only once the count stops rising, so that a library whose Publish
// competes with new subscriptions (tmaxmax's Joe) is not flooded.
func (s *session) sync(want int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	last := -1
	for {
		if _, err := s.srv.call(request{Cmd: "sync"}, timeout); err != nil {
			return err
		}
		for {
			time.Sleep(100 * time.Millisecond)
			st, err := s.status()
			if err != nil {
				return err
			}
			debugf("sync: %d of %d synced, %d connected", st.Synced, want, st.Connected)
			if st.Synced >= want {
				return nil
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("only %d of %d streams synced in %v", st.Synced, want, timeout)
			}
			if st.Synced == last {
				break
			}
			last = st.Synced
		}
	}
}

var debug = os.Getenv("SSEBENCH_DEBUG") != ""

func debugf(format string, args ...any) {
	if debug {
		fmt.Fprintf(os.Stderr, time.Now().Format("15:04:05.000 ")+format+"\n", args...)
	}
}

func (s *session) close() {
	debugf("closing")
	defer debugf("closed")
	var wg sync.WaitGroup
	for _, c := range s.clients {
		wg.Add(1)
		go func() { defer wg.Done(); c.stop(5 * time.Second) }()
	}
	wg.Wait()
	if s.srv != nil {
		s.srv.stop(5 * time.Second)
	}
}

// ---- workloads ----

type encodeRow struct {
	e      encoder
	r      testing.BenchmarkResult
	nsOp   float64
	vsRaw  float64
	outLen int
}

func runEncode(o options, log io.Writer) []encodeRow {
	_ = flag.Set("test.benchtime", o.benchtime.String())
	var rows []encodeRow
	for _, e := range encoders {
		fmt.Fprintf(log, "encode: %s\n", e.name)
		r := testing.Benchmark(benchEncoder(e))
		rows = append(rows, encodeRow{e: e, r: r, nsOp: float64(r.T.Nanoseconds()) / float64(r.N), outLen: len(e.setup()())})
	}
	for i := range rows {
		rows[i].vsRaw = rows[i].nsOp / rows[0].nsOp
	}
	return rows
}

type fanoutRow struct {
	name           string
	n              int
	connected      int
	p50, p99       float64 // ms
	perSec         float64
	cpuPer         float64 // µs per delivery
	rssPer         float64 // KiB per connection
	delivered      int64
	want           int64
	lost, dup      int64
	reord, bad     int64
	closed         int
	maxPub         time.Duration
	late50, late99 time.Duration
	other          float64 // cores used by other processes during the run
	note           string
	err            error
}

func runFanout(o options, ci contenderInfo, n int, log io.Writer) fanoutRow {
	row := fanoutRow{name: ci.name, n: n, want: int64(n * o.fanoutEvents)}
	sp := sessionSpec{cfg: Config{Heartbeat: 15 * time.Second, WriteTimeout: 10 * time.Second, Burst: o.fanoutEvents}, n: n,
		size: o.fanoutSize, phases: []phase{{0, o.fanoutEvents}}, profile: o.profilePath("fanout", ci.name, n)}
	s, err := openSession(ci, sp, log)
	if err != nil {
		row.err = err
		return row
	}
	defer s.close()
	st, _ := s.status()
	if err := s.sync(n-st.Failed, 30*time.Second); err != nil {
		row.err = err
		return row
	}
	st, _ = s.status()
	row.connected = st.Connected
	row.want = int64(st.Connected * o.fanoutEvents)
	debugf("synced %d", st.Connected)
	st0, err := s.srv.call(request{Cmd: "stats"}, 10*time.Second)
	if err != nil {
		row.err = err
		return row
	}
	cst0, _ := s.status()
	busy0, wall0 := machineBusy(), time.Now()
	pubCh := s.srv.start(request{Cmd: "publish", N: o.fanoutEvents, Size: o.fanoutSize, Interval: o.fanoutInterval})
	runFor := time.Duration(o.fanoutEvents) * o.fanoutInterval
	hardEnd := time.Now().Add(runFor + 60*time.Second)
	var pub response
	pubDone := false
	var drainEnd time.Time
	for {
		time.Sleep(50 * time.Millisecond)
		if !pubDone {
			select {
			case pub = <-pubCh:
				pubDone = true
				drainEnd = time.Now().Add(10 * time.Second)
			default:
			}
		}
		st, err := s.status()
		if err != nil {
			row.err = err
			return row
		}
		if pubDone && (st.Recv >= row.want || time.Now().After(drainEnd)) {
			break
		}
		if time.Now().After(hardEnd) {
			row.note = "publishing did not finish in time"
			break
		}
	}
	st1, err := s.srv.call(request{Cmd: "stats"}, 10*time.Second)
	if err != nil {
		row.err = err
		return row
	}
	rep, err := s.report(0)
	if err != nil {
		row.err = err
		return row
	}
	row.delivered = rep.Count
	if wall := time.Since(wall0); wall > 0 {
		own := time.Duration(st1.CPU-st0.CPU) + time.Duration(rep.CPU-cst0.CPU)
		row.other = float64(machineBusy()-busy0-own) / float64(wall)
	}
	debugf("published: client CPU %.2f µs/delivery, mean Publish %v", float64(rep.CPU-cst0.CPU)/1e3/float64(max(rep.Count, 1)), time.Duration(pub.MeanPub))
	row.p50, row.p99 = percentile(rep.Hist, 0.50), percentile(rep.Hist, 0.99)
	start := pub.Start
	if start == 0 {
		start = st0.Now
	}
	if rep.LastRecv > start && rep.Count > 0 {
		row.perSec = float64(rep.Count) / (float64(rep.LastRecv-start) / 1e9)
	}
	if rep.Count > 0 {
		row.cpuPer = float64(st1.CPU-st0.CPU) / 1e3 / float64(rep.Count)
	}
	row.rssPer = float64(st1.HWM-s.base.RSS) / float64(max(row.connected, 1))
	row.lost, row.dup, row.reord, row.bad = rep.Lost, rep.Dup, rep.Reord, rep.Bad
	row.closed = rep.Closed
	row.maxPub = time.Duration(max(st1.MaxPub, pub.MaxPub))
	row.late50, row.late99 = time.Duration(pub.LateP50), time.Duration(pub.LateP99)
	if rep.Bad > 0 && row.note == "" {
		row.note = rep.FirstErr
	}
	return row
}

type slowRow struct {
	name                 string
	maxPubA, maxPubB     time.Duration
	blockedB             bool
	publishedB           int
	completeA, completeB int
	others               int
	lostA, lostB         int64
	p99A, p99B           float64
	fracB                float64       // share of the others' events delivered in B
	spanA, spanB         time.Duration // first Publish call to last arrival at the others
	dropped              time.Duration // after the burst started; -1: not dropped
	waited               time.Duration
	peakMiB              float64
	stalledRecv          int64
	note                 string
	err                  error
}

// slowBound is how long phase B may take: the write timeout and a margin.
func slowBound(o options) time.Duration {
	if o.quick {
		return o.slowWT + 2*time.Second
	}
	return o.slowWT + 5*time.Second
}

func runSlow(o options, ci contenderInfo, log io.Writer) slowRow {
	row := slowRow{name: ci.name, dropped: -1}
	E := o.slowEvents
	sp := sessionSpec{cfg: Config{Heartbeat: 15 * time.Second, WriteTimeout: o.slowWT, Burst: E}, n: o.slowClients,
		stall: true, size: o.slowSize, phases: []phase{{0, E}, {E, 2 * E}}, profile: o.profilePath("slow", ci.name, o.slowClients)}
	s, err := openSession(ci, sp, log)
	if err != nil {
		row.err = err
		return row
	}
	defer s.close()
	st, _ := s.status()
	if err := s.sync(o.slowClients-st.Failed, 30*time.Second); err != nil {
		row.err = err
		return row
	}
	st, _ = s.status()
	others := st.Connected - 1
	row.others = others
	bound := slowBound(o)

	// Phase A: the burst with every stream reading.
	fmt.Fprintf(log, "  %s: burst with no stalled stream\n", ci.name)
	pubA, err := s.srv.call(request{Cmd: "publish", N: E, Size: o.slowSize}, bound)
	if err != nil {
		row.err = fmt.Errorf("burst with no stall: %w", err)
		return row
	}
	row.maxPubA = time.Duration(pubA.MaxPub)
	startA := pubA.Start
	end := time.Now().Add(bound)
	for time.Now().Before(end) {
		st, err := s.status()
		if err != nil || st.Recv >= int64(others*E) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	repA, err := s.report(0)
	if err != nil {
		row.err = err
		return row
	}
	row.completeA, row.lostA, row.p99A = repA.Complete, repA.Lost, percentile(repA.Hist, 0.99)
	if repA.LastRecv > startA {
		row.spanA = time.Duration(repA.LastRecv - startA)
	}

	// Phase B: the first stream stops reading; the same burst again.
	fmt.Fprintf(log, "  %s: burst with one stalled stream\n", ci.name)
	if _, err := s.all(request{Cmd: "stall"}, 10*time.Second); err != nil {
		row.err = err
		return row
	}
	time.Sleep(200 * time.Millisecond)
	st0, err := s.srv.call(request{Cmd: "peakreset"}, 10*time.Second)
	if err != nil {
		row.err = err
		return row
	}
	debugf("stalled")
	t0 := time.Now()
	pubCh := s.srv.start(request{Cmd: "publish", N: E, Size: o.slowSize, From: E})
	end = t0.Add(bound)
	var pubB response
	pubDone := false
	var st1 response
	for {
		time.Sleep(50 * time.Millisecond)
		if !pubDone {
			select {
			case pubB = <-pubCh:
				pubDone = true
			default:
			}
		}
		cst, err := s.status()
		if err != nil {
			row.err = err
			return row
		}
		st1, err = s.srv.call(request{Cmd: "stats"}, 10*time.Second)
		if err != nil {
			row.err = err
			return row
		}
		if pubDone && cst.Recv >= int64(others*E*2) && st1.StallDone != 0 {
			break
		}
		if time.Now().After(end) {
			break
		}
	}
	row.waited = time.Since(t0).Round(100 * time.Millisecond)
	debugf("phase B over")
	repB, err := s.report(1)
	if err != nil {
		row.err = err
		return row
	}
	row.completeB, row.lostB, row.p99B = repB.Complete, repB.Lost, percentile(repB.Hist, 0.99)
	row.fracB = float64(repB.Count-repB.Dup) / float64(max(others*E, 1))
	if row.fracB < 0.99 {
		row.p99B = math.Inf(1) // over 1% never arrived
	}
	if row.completeB == others && repB.LastRecv > t0.UnixNano() {
		row.spanB = time.Duration(repB.LastRecv - t0.UnixNano())
	}
	row.stalledRecv = repB.StalledRecv
	row.maxPubB = time.Duration(max(st1.MaxPub, pubB.MaxPub))
	row.publishedB = st1.Published
	if pubDone {
		row.publishedB = pubB.Published
	} else if st1.InPubSince != 0 {
		row.blockedB = true
		row.maxPubB = max(row.maxPubB, time.Duration(st1.Now-st1.InPubSince))
	}
	if st1.StallDone != 0 {
		row.dropped = time.Duration(st1.StallDone - t0.UnixNano())
	}
	row.peakMiB = float64(st1.Peak-st0.RSS) / 1024
	if repB.Bad > 0 {
		row.note = repB.FirstErr
	}
	return row
}

type idleRow struct {
	name      string
	n         int
	connected int
	rssPer    float64 // KiB
	cpuPerSec float64 // ms of CPU per second
	beats     float64 // heartbeats seen per stream in the window
	gor       float64 // goroutines per stream
	stackPer  float64 // KiB of goroutine stacks per stream
	heapPer   float64 // KiB of heap objects per stream
	err       error
}

func runIdle(o options, ci contenderInfo, log io.Writer) idleRow {
	row := idleRow{name: ci.name, n: o.idleN}
	sp := sessionSpec{cfg: Config{Heartbeat: o.idleHeartbeat, WriteTimeout: 10 * time.Second}, n: o.idleN,
		size: 200, phases: []phase{{0, 1}}, src: o.idleN > 5000, profile: o.profilePath("idle", ci.name, o.idleN)}
	s, err := openSession(ci, sp, log)
	if err != nil {
		row.err = err
		return row
	}
	defer s.close()
	st, _ := s.status()
	if !ci.floor {
		if err := s.sync(o.idleN-st.Failed, 60*time.Second); err != nil {
			row.err = err
			return row
		}
	}
	for end := time.Now().Add(10 * time.Second); st.Connected+st.Failed < o.idleN && time.Now().Before(end); {
		time.Sleep(50 * time.Millisecond) // the floor sends no event: wait for the headers
		st, _ = s.status()
	}
	st, _ = s.status()
	row.connected = st.Connected
	time.Sleep(o.idleSettle)
	rep0, err := s.report(0)
	if err != nil {
		row.err = err
		return row
	}
	st0, err := s.srv.call(request{Cmd: "stats"}, 10*time.Second)
	if err != nil {
		row.err = err
		return row
	}
	debugf("idle window")
	time.Sleep(o.idleWindow)
	st1, err := s.srv.call(request{Cmd: "stats"}, 10*time.Second)
	if err != nil {
		row.err = err
		return row
	}
	rep1, err := s.report(0)
	if err != nil {
		row.err = err
		return row
	}
	n := float64(max(row.connected, 1))
	row.rssPer = float64(st1.RSS-s.base.RSS) / n
	row.cpuPerSec = float64(st1.CPU-st0.CPU) / 1e6 / (float64(st1.Now-st0.Now) / 1e9)
	row.beats = float64(rep1.Comments-rep0.Comments) / n
	row.gor = float64(st1.Goroutines) / n
	row.stackPer = float64(st1.Stacks-s.base.Stacks) / 1024 / n
	row.heapPer = float64(st1.Heap-s.base.Heap) / 1024 / n
	if rep1.Closed > 0 {
		row.err = fmt.Errorf("%d streams ended during the window", rep1.Closed)
	}
	return row
}

// ---- the whole run and its tables ----

func runAll(o options, out, log io.Writer) error {
	fmt.Fprintf(out, "Machine: %s. Server and clients are separate processes on 127.0.0.1 (GOMAXPROCS = all CPUs each, so clients compete with the server for the same cores).\n\n", machine())
	if o.quick {
		fmt.Fprintf(out, "**Quick mode: small sizes, numbers are indicative only.**\n\n")
	}
	if o.want("encode") {
		rows := runEncode(o, log)
		fmt.Fprintf(out, "### Encode: one event (id, type, 200-byte JSON line) into a reused buffer\n\n")
		fmt.Fprintf(out, "| encoder | ns/event | B/event | allocs/event | vs raw append | notes |\n|---|--:|--:|--:|--:|---|\n")
		for _, r := range rows {
			fmt.Fprintf(out, "| %s | %.1f | %d | %d | %.2fx | %s |\n", r.e.name, r.nsOp, r.r.AllocedBytesPerOp(), r.r.AllocsPerOp(), r.vsRaw, r.e.note)
		}
		fmt.Fprintln(out)
	}
	if o.want("fanout") {
		meter := newLoadMeter()
		fmt.Fprintf(out, "### Fan-out: %d events of %d B, one every %v, to N clients\n\n", o.fanoutEvents, o.fanoutSize, o.fanoutInterval)
		fmt.Fprintf(out, "Latency from each event's scheduled publish time to its arrival at the client (it includes the publisher's own lateness: Go's timers wake the publishing goroutine about 0.5 ms late here, and a Publish that blocks delays the events after it; see the publisher-late column); deliveries/s = deliveries / (last arrival − first schedule); CPU = server process user+sys from the first publish to the last arrival; RSS = server peak RSS minus its RSS before any connection, per connection.\n\n")
		fmt.Fprintf(out, "| contender | N | p50 ms | p99 ms | deliveries/s | server CPU µs/delivery | RSS KiB/conn | delivered | lost | dup | reordered | invalid | longest Publish | publisher late p50/p99 ms | notes |\n|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|\n")
		for _, n := range o.fanoutN {
			for _, ci := range o.contenders {
				if ci.floor {
					continue
				}
				fmt.Fprintf(log, "fanout: %s N=%d\n", ci.name, n)
				r := runFanout(o, ci, n, log)
				if r.err != nil {
					fmt.Fprintf(out, "| %s | %d | | | | | | | | | | | | | error: %s |\n", r.name, n, oneLine(r.err.Error()))
					continue
				}
				note := r.note
				if r.connected < n {
					note = strings.TrimSpace(fmt.Sprintf("%s only %d connected", note, r.connected))
				}
				if r.other > 0.2 {
					note = strings.TrimSpace(fmt.Sprintf("%s other load %.1f cores", note, r.other))
				}
				if r.closed > 0 {
					note = strings.TrimSpace(fmt.Sprintf("%s %d streams ended", note, r.closed))
				}
				fmt.Fprintf(out, "| %s | %d | %s | %s | %s | %.2f | %.1f | %d/%d | %d | %d | %d | %d | %s | %s / %s | %s |\n", r.name, n, ms(r.p50), ms(r.p99),
					human(r.perSec), r.cpuPer, r.rssPer, r.delivered, r.want, r.lost, r.dup, r.reord, r.bad, dur(r.maxPub),
					ms(float64(r.late50)/1e6), ms(float64(r.late99)/1e6), oneLine(note))
			}
		}
		fmt.Fprintf(out, "\nOther processes on the machine used %.2f cores on average during this workload.\n", meter.other())
		fmt.Fprintln(out)
	}
	if o.want("slow") {
		meter := newLoadMeter()
		fmt.Fprintf(out, "### Slow consumer: %d clients, %d events of %d B back to back, twice: all reading (A), then with client 0 stopped (B)\n\n", o.slowClients, o.slowEvents, o.slowSize)
		fmt.Fprintf(out, "The stalled client sets a 4 KiB receive buffer and the server's side of its connection gets a 16 KiB send buffer (SO_SNDBUF, set by the harness for every contender), so that its writes block after tens of KiB rather than the several MiB Linux buffers on loopback. p99 is over the other %d clients, from each event's Publish call. Write timeout for ours and hub: %v. Each phase B waits at most %v.\n\n", o.slowClients-1, o.slowWT, slowBound(o))
		fmt.Fprintf(out, "Burst time = first Publish call to the last event's arrival at the other clients (a library whose Publish waits for delivery has a low p99 from the Publish call, but a long burst).\n\n")
		fmt.Fprintf(out, "| contender | longest Publish A | longest Publish B | published B | others complete A | others complete B (events) | p99 A ms | p99 B ms | B/A | burst time A | burst time B | stalled client dropped after | server peak RSS Δ in B MiB | notes |\n|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|\n")
		for _, ci := range o.contenders {
			if ci.floor {
				continue
			}
			fmt.Fprintf(log, "slow: %s\n", ci.name)
			r := runSlow(o, ci, log)
			if r.err != nil {
				fmt.Fprintf(out, "| %s | | | | | | | | | | | | | error: %s |\n", r.name, oneLine(r.err.Error()))
				continue
			}
			pubB := dur(r.maxPubB)
			if r.blockedB {
				pubB = "≥ " + pubB + " (blocked)"
			}
			drop := "not in " + r.waited.String()
			if r.dropped >= 0 {
				drop = dur(r.dropped)
			}
			ratio := r.p99B / r.p99A
			p99B := ms(r.p99B)
			if math.IsInf(r.p99B, 1) {
				p99B = "∞"
			}
			span := func(d time.Duration) string {
				if d <= 0 {
					return "–"
				}
				return dur(d)
			}
			fmt.Fprintf(out, "| %s | %s | %s | %d/%d | %d/%d | %d/%d (%.1f%%) | %s | %s | %s | %s | %s | %s | %.1f | %s |\n", r.name, dur(r.maxPubA), pubB, r.publishedB, o.slowEvents,
				r.completeA, r.others, r.completeB, r.others, 100*r.fracB, ms(r.p99A), p99B, ratioStr(ratio), span(r.spanA), span(r.spanB), drop, r.peakMiB, oneLine(r.note))
		}
		fmt.Fprintf(out, "\nOther processes on the machine used %.2f cores on average during this workload.\n", meter.other())
		fmt.Fprintln(out)
	}
	if o.want("idle") {
		meter := newLoadMeter()
		fmt.Fprintf(out, "### Idle: %d open streams, heartbeat every %v, measured over %v\n\n", o.idleN, o.idleHeartbeat, o.idleWindow)
		fmt.Fprintf(out, "RSS = server RSS minus its RSS before any connection, per stream (kernel socket buffers are not in RSS); Go stacks and heap objects (runtime/metrics, not yet collected garbage included) show where it goes. Heartbeats = comments (or ping events) a client received per stream in the window.\n\n")
		fmt.Fprintf(out, "| contender | streams | RSS KiB/stream | of which Go stacks | of which heap objects | server CPU ms/s | heartbeats/stream | goroutines/stream | notes |\n|---|--:|--:|--:|--:|--:|--:|--:|---|\n")
		for _, ci := range o.contenders {
			fmt.Fprintf(log, "idle: %s\n", ci.name)
			r := runIdle(o, ci, log)
			note := ""
			if r.err != nil {
				note = "error: " + oneLine(r.err.Error())
				if r.rssPer == 0 {
					fmt.Fprintf(out, "| %s | %d | | | | | | | %s |\n", r.name, r.connected, note)
					continue
				}
			}
			fmt.Fprintf(out, "| %s | %d | %.1f | %.1f | %.1f | %.2f | %.1f | %.1f | %s |\n", r.name, r.connected, r.rssPer, r.stackPer, r.heapPer, r.cpuPerSec, r.beats, r.gor, note)
		}
		fmt.Fprintf(out, "\nOther processes on the machine used %.2f cores on average during this workload.\n", meter.other())
		fmt.Fprintln(out)
	}
	fmt.Fprintf(out, "Contenders:\n\n")
	for _, ci := range o.contenders {
		fmt.Fprintf(out, "- **%s**: %s\n", ci.name, ci.note)
	}
	return nil
}

func ms(v float64) string {
	if math.IsNaN(v) {
		return "–"
	}
	switch {
	case v < 1:
		return strconv.FormatFloat(v, 'f', 3, 64)
	case v < 100:
		return strconv.FormatFloat(v, 'f', 1, 64)
	}
	return strconv.FormatFloat(v, 'f', 0, 64)
}

func dur(d time.Duration) string {
	switch {
	case d < time.Millisecond:
		return strconv.FormatFloat(float64(d)/1e3, 'f', 0, 64) + " µs"
	case d < time.Second:
		return strconv.FormatFloat(float64(d)/1e6, 'f', 1, 64) + " ms"
	}
	return strconv.FormatFloat(d.Seconds(), 'f', 2, 64) + " s"
}

func human(v float64) string {
	switch {
	case v >= 1e6:
		return strconv.FormatFloat(v/1e6, 'f', 2, 64) + " M"
	case v >= 1e3:
		return strconv.FormatFloat(v/1e3, 'f', 1, 64) + " k"
	}
	return strconv.FormatFloat(v, 'f', 0, 64)
}

func ratioStr(r float64) string {
	if math.IsNaN(r) || math.IsInf(r, 0) {
		return "–"
	}
	return strconv.FormatFloat(r, 'f', 2, 64)
}

func oneLine(s string) string {
	s = strings.ReplaceAll(s, "\n", " ")
	s = strings.ReplaceAll(s, "|", "/")
	if len(s) > 160 {
		s = s[:160] + "…"
	}
	return s
}
