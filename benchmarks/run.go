package main

import (
	"cmp"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"slices"
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
	pin     pinning
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
	s.srv, err = spawn("server "+ci.name, args, sp.pin.server)
	if err != nil {
		return nil, err
	}
	if s.base, err = s.srv.hello(10 * time.Second); err == nil {
		err = checkPlacement("server", s.base, sp.pin.server)
	}
	if err != nil {
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
		c, err := spawn(fmt.Sprintf("client %d", k), args, sp.pin.clients)
		if err != nil {
			s.close()
			return nil, err
		}
		s.clients = append(s.clients, c)
		s.counts = append(s.counts, cnt)
		hello, err := c.hello(10 * time.Second)
		if err == nil {
			err = checkPlacement(c.name, hello, sp.pin.clients)
		}
		if err != nil {
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
		m.StalledSeen += r.StalledSeen
		m.Bad += r.Bad
		m.CPU += r.CPU
		m.Comments += r.Comments
		m.ClientRSS += r.ClientRSS
		if m.FirstErr == "" {
			m.FirstErr = r.FirstErr
		}
	}
	return m
}

// awaitPublish polls the clients every poll while the publisher whose
// answer comes on pubCh runs, until done says the phase is over (given
// whether the publisher has answered, how long ago, and the clients'
// status), or until bound. It returns the publisher's answer, whether it
// came, and whether bound passed first.
func (s *session) awaitPublish(pubCh <-chan response, poll time.Duration, bound time.Time, done func(published bool, since time.Duration, st response) bool) (pub response, published, late bool, err error) {
	var at time.Time
	for {
		time.Sleep(poll)
		if !published {
			select {
			case pub = <-pubCh:
				published, at = true, time.Now()
			default:
			}
		}
		st, err := s.status()
		if err != nil {
			return pub, published, false, err
		}
		if done(published, time.Since(at), st) {
			return pub, published, false, nil
		}
		if time.Now().After(bound) {
			return pub, published, true, nil
		}
	}
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
	run            int // 1, 2, … of the -runs interleaved runs
	connected      int
	p50, p99       float64 // ms
	perSec         float64
	cpuPer         float64 // server, µs per delivery
	clientCPUPer   float64 // client processes, µs per delivery
	srvCores       float64 // server CPU / wall time of the window
	cliCores       float64 // client processes' CPU / wall time of the window
	srvOther       float64 // busy time of the server's CPUs not the server's (pinned), or other processes' (not pinned), in cores
	rssPer         float64 // KiB per connection
	delivered      int64
	want           int64
	lost, dup      int64
	reord, bad     int64
	closed         int
	maxPub         time.Duration
	sched          time.Duration // longest run-queue wait in the server while it published (a lower bound)
	late50, late99 time.Duration
	other          float64 // cores used by other processes during the run
	note           string
	err            error
}

func runFanout(o options, ci contenderInfo, n, run int, log io.Writer) fanoutRow {
	row := fanoutRow{name: ci.name, n: n, run: run, want: int64(n * o.fanoutEvents)}
	profile := o.profilePath("fanout", ci.name, n)
	if profile != "" && o.runs > 1 {
		profile += fmt.Sprintf("-run%d", run)
	}
	// Above 5,000 streams, spread them over source addresses, as the idle
	// workload does, so that ephemeral ports do not run out.
	sp := sessionSpec{cfg: Config{Heartbeat: 15 * time.Second, WriteTimeout: 10 * time.Second, Burst: o.fanoutEvents}, n: n,
		size: o.fanoutSize, phases: []phase{{0, o.fanoutEvents}}, src: n > 5000, profile: profile, pin: o.pin}
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
	busy0, srvBusy0, wall0 := machineBusy(), busyOn(o.pin.server), time.Now()
	pubCh := s.srv.start(request{Cmd: "publish", N: o.fanoutEvents, Size: o.fanoutSize, Interval: o.fanoutInterval})
	runFor := time.Duration(o.fanoutEvents) * o.fanoutInterval
	hardEnd := time.Now().Add(runFor + 60*time.Second)
	pub, pubDone, late, err := s.awaitPublish(pubCh, 50*time.Millisecond, hardEnd, func(published bool, since time.Duration, st response) bool {
		return published && (st.Recv >= row.want || since > 10*time.Second)
	})
	if err != nil {
		row.err = err
		return row
	}
	if late {
		row.note = "publishing did not finish in time"
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
		row.srvOther = max(0, row.other)
		if o.pin.pinned() {
			row.srvOther = max(0, float64(busyOn(o.pin.server)-srvBusy0-time.Duration(st1.CPU-st0.CPU))/float64(wall))
		}
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
		row.clientCPUPer = float64(rep.CPU-cst0.CPU) / 1e3 / float64(rep.Count)
	}
	if wall := st1.Now - st0.Now; wall > 0 {
		row.srvCores = float64(st1.CPU-st0.CPU) / float64(wall)
		row.cliCores = float64(rep.CPU-cst0.CPU) / float64(wall)
	}
	row.rssPer = float64(st1.HWM-s.base.RSS) / float64(max(row.connected, 1))
	row.lost, row.dup, row.reord, row.bad = rep.Lost, rep.Dup, rep.Reord, rep.Bad
	row.closed = rep.Closed
	row.maxPub = time.Duration(max(st1.MaxPub, pub.MaxPub))
	row.sched = time.Duration(st1.SchedWait) // since publishing started
	if pubDone {
		row.sched = time.Duration(pub.SchedWait) // over the publish run
	}
	row.late50, row.late99 = time.Duration(pub.LateP50), time.Duration(pub.LateP99)
	if rep.Bad > 0 && row.note == "" {
		row.note = rep.FirstErr
	}
	return row
}

type slowRow struct {
	name                    string
	pairs                   int           // valid A/B pairs
	maxPubA, maxPubB        time.Duration // longest Publish over every A burst, every B burst
	waitA, waitB            time.Duration // longest run-queue wait (a lower bound) over every A burst, every B burst
	blockedB                bool
	publishedB, wantB       int // events published in every B burst, and asked for
	completeA, completeB    int // others with every event, in the worst A burst, the worst B burst
	others                  int
	lostA, lostB            int64
	p99A, p99B              float64       // ms, medians over the A bursts, the B bursts
	ratio, ratioLo, ratioHi float64       // per-pair p99 B / p99 A: median, min, max
	fracB                   float64       // share of the others' events delivered over every B burst
	spanA, spanB            time.Duration // medians: first Publish call to last arrival at the others
	dropped                 time.Duration // after the last burst started; -1: not dropped
	waited                  time.Duration
	peakMiB                 float64
	other                   float64       // cores other processes used during the session
	srvOther                float64       // pinned: other load on the server's CPUs during the session, cores
	srvCPU                  time.Duration // the server's CPU time from its start to the end of the last burst
	note                    string
	err                     error
}

// slowBound is how long a burst may take: the write timeout and a margin.
func slowBound(o options) time.Duration {
	if o.quick {
		return o.slowWT + 2*time.Second
	}
	return o.slowWT + 5*time.Second
}

// slowBurst is one burst of the slow workload and what the other streams
// got of it.
type slowBurst struct {
	t0        time.Time // the orchestrator's publish command
	waited    time.Duration
	pub       response // the publish reply, if it came
	pubDone   bool
	blocked   bool     // a Publish call was still in progress at the end
	st        response // server stats at the end
	rep       response // the others' report for the burst's phase
	published int
	maxPub    time.Duration
	sched     time.Duration // longest run-queue wait in the server while it published (a lower bound)
	complete  bool          // published in full, and every other stream has every event
	p99       float64       // ms; +Inf if over 1% of the others' events never arrived
	span      time.Duration // first Publish call to the last arrival at the others; 0 if incomplete
}

// slowBurst publishes phase ph's events back to back and waits, up to
// bound, until every other stream has all of them and, with waitDrop, until
// the stalled stream's handler has returned. Every burst starts the same
// way (200 ms to settle) and polls the same way, whether a stream is stalled
// or not, so that A and B differ only in the stall.
func (s *session) slowBurst(o options, ph, others int, waitDrop bool, bound time.Duration) (slowBurst, error) {
	E := o.slowEvents
	var b slowBurst
	time.Sleep(200 * time.Millisecond)
	st, err := s.status()
	if err != nil {
		return b, err
	}
	base := st.Recv
	want := int64(others * E)
	st0, err := s.srv.call(request{Cmd: "stats"}, 10*time.Second)
	if err != nil {
		return b, err
	}
	b.t0 = time.Now()
	pubCh := s.srv.start(request{Cmd: "publish", N: E, Size: o.slowSize, From: ph * E})
	end := b.t0.Add(bound)
	for {
		time.Sleep(50 * time.Millisecond)
		if !b.pubDone {
			select {
			case b.pub = <-pubCh:
				if b.pub.Err != "" {
					return b, errors.New(b.pub.Err)
				}
				b.pubDone = true
			default:
			}
		}
		cst, err := s.status()
		if err != nil {
			return b, err
		}
		done := b.pubDone && cst.Recv-base >= want
		if waitDrop {
			if b.st, err = s.srv.call(request{Cmd: "stats"}, 10*time.Second); err != nil {
				return b, err
			}
			done = done && b.st.StallDone != 0
		}
		if done || time.Now().After(end) {
			break
		}
	}
	b.waited = time.Since(b.t0).Round(100 * time.Millisecond)
	if b.st, err = s.srv.call(request{Cmd: "stats"}, 10*time.Second); err != nil {
		return b, err
	}
	if b.rep, err = s.report(ph); err != nil {
		return b, err
	}
	b.published = b.st.Published
	b.maxPub = time.Duration(max(b.st.MaxPub, b.pub.MaxPub))
	b.sched = time.Duration(b.st.SchedWait) // since the publish run started
	if b.pubDone {
		b.published = b.pub.Published
		b.sched = time.Duration(b.pub.SchedWait) // over the publish run
	} else if b.st.InPubSince != 0 {
		b.blocked = true
		b.maxPub = max(b.maxPub, time.Duration(b.st.Now-b.st.InPubSince))
	}
	debugf("burst %d: server CPU %v, clients' CPU %v", ph, time.Duration(b.st.CPU-st0.CPU), time.Duration(b.rep.CPU-st.CPU))
	b.complete = b.pubDone && b.published == E && b.rep.Complete == others
	b.p99 = percentile(b.rep.Hist, 0.99)
	frac := float64(b.rep.Count-b.rep.Dup) / float64(max(want, 1))
	if frac < 0.99 {
		b.p99 = math.Inf(1) // over 1% never arrived
	}
	if b.complete && b.rep.LastRecv > b.pub.Start {
		b.span = time.Duration(b.rep.LastRecv - b.pub.Start)
	}
	return b, nil
}

// catchUp waits, up to bound, until the stream that stalls has want
// distinct events; with resume, it first lets that stream read again.
func (s *session) catchUp(want int64, resume bool, bound time.Duration) (bool, error) {
	if resume {
		if _, err := s.all(request{Cmd: "resume"}, 10*time.Second); err != nil {
			return false, err
		}
	}
	end := time.Now().Add(bound)
	for {
		st, err := s.status()
		if err != nil {
			return false, err
		}
		if st.StalledSeen >= want {
			return true, nil
		}
		if time.Now().After(end) {
			debugf("stalled stream has %d of %d events", st.StalledSeen, want)
			return false, nil
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// runSlow measures the others' latency with every stream reading (A) and
// with client 0 stalled (B), in pairs A, B, A, B, … so that drift hits both;
// client 0 resumes and catches up after each pair. A last B burst then waits
// for the stalled stream to be dropped. A contender whose B burst does not
// complete (its Publish blocks on the stalled stream) stops after one pair.
func runSlow(o options, ci contenderInfo, log io.Writer) slowRow {
	P := max(o.slowPairs, 1)
	row := slowRow{name: ci.name, dropped: -1}
	E := o.slowEvents
	var phases []phase // pair k: A = phase 2k, B = phase 2k+1; the last burst: phase 2P
	for i := 0; i <= 2*P; i++ {
		phases = append(phases, phase{i * E, (i + 1) * E})
	}
	sp := sessionSpec{cfg: Config{Heartbeat: 15 * time.Second, WriteTimeout: o.slowWT, Burst: E}, n: o.slowClients,
		stall: true, size: o.slowSize, phases: phases, profile: o.profilePath("slow", ci.name, o.slowClients), pin: o.pin}
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
	// Sample the server's RSS from here on, so that every burst, A or B,
	// runs with the sampler.
	if _, err := s.srv.call(request{Cmd: "peakreset"}, 10*time.Second); err != nil {
		row.err = err
		return row
	}

	var as, bs []slowBurst
	var ratios []float64
	var rss0 int64 // server RSS before the last B burst
	stall := func() error {
		if _, err := s.all(request{Cmd: "stall"}, 10*time.Second); err != nil {
			return err
		}
		st0, err := s.srv.call(request{Cmd: "peakreset"}, 10*time.Second)
		rss0 = st0.RSS
		return err
	}
	var dropAt int64 // Unix ns: the stalled stream's handler returned after its burst
	published := 0   // events published so far: the stalled stream must have them all to catch up
	last := true     // end with the burst that waits for the drop
	var stop string
	for k := 0; k < P && stop == ""; k++ {
		fmt.Fprintf(log, "  %s: pair %d of %d: burst with no stalled stream\n", ci.name, k+1, P)
		a, err := s.slowBurst(o, 2*k, others, false, bound)
		if err != nil {
			row.err = fmt.Errorf("burst A %d: %w", k+1, err)
			return row
		}
		as = append(as, a)
		published += a.published
		if !a.complete {
			stop, last = fmt.Sprintf("burst A %d incomplete", k+1), false
			break
		}
		// Client 0 reads through a small receive buffer and may still be
		// behind: it stops only once it has every event, so that each B
		// burst starts with nothing queued for it (a library with a bounded
		// queue per stream would otherwise overflow it in B).
		if ok, err := s.catchUp(int64(published), false, bound); err != nil {
			row.err = err
			return row
		} else if !ok {
			stop, last = fmt.Sprintf("client 0 did not get every event of burst A %d", k+1), false
			break
		}
		fmt.Fprintf(log, "  %s: pair %d of %d: burst with one stalled stream\n", ci.name, k+1, P)
		if err := stall(); err != nil {
			row.err = err
			return row
		}
		b, err := s.slowBurst(o, 2*k+1, others, false, bound)
		if err != nil {
			row.err = fmt.Errorf("burst B %d: %w", k+1, err)
			return row
		}
		bs = append(bs, b)
		published += b.published
		if !b.complete {
			// Blocked, or the others missed events: this burst, which ran
			// its whole bound, stands for the last one.
			last = false
			if k > 0 || !b.blocked {
				stop = fmt.Sprintf("burst B %d incomplete", k+1)
			}
			break
		}
		if b.st.StallDone != 0 {
			stop, last = fmt.Sprintf("stalled client dropped in burst B %d", k+1), false
			break
		}
		row.pairs++
		ratios = append(ratios, b.p99/a.p99)
		debugf("pair %d: p99 A %.1f ms, B %.1f ms", k+1, a.p99, b.p99)
		ok, err := s.catchUp(int64(published), true, bound)
		if err != nil {
			row.err = err
			return row
		}
		if st, err := s.srv.call(request{Cmd: "stats"}, 10*time.Second); err != nil {
			row.err = err
			return row
		} else if st.StallDone != 0 {
			stop, last = fmt.Sprintf("stalled client dropped after pair %d", k+1), false
			dropAt = st.StallDone
		} else if !ok {
			// A last B burst would start with events queued for client 0.
			stop, last = fmt.Sprintf("stalled client did not catch up after pair %d", k+1), false
		}
	}
	if last {
		fmt.Fprintf(log, "  %s: last burst with one stalled stream, until it is dropped\n", ci.name)
		if err := stall(); err != nil {
			row.err = err
			return row
		}
		b, err := s.slowBurst(o, 2*P, others, true, bound)
		if err != nil {
			row.err = fmt.Errorf("last burst: %w", err)
			return row
		}
		bs = append(bs, b)
	}
	debugf("slow over: %d pairs", row.pairs)

	// The last burst tells when the stalled stream was dropped and what
	// the server held meanwhile; every burst is an A or B sample. With no B
	// burst at all (the first A burst failed), there is nothing to tell.
	if len(bs) > 0 {
		end := bs[len(bs)-1]
		row.waited = end.waited
		if end.st.StallDone != 0 {
			dropAt = end.st.StallDone
		}
		if dropAt != 0 {
			row.dropped = time.Duration(dropAt - end.t0.UnixNano())
		}
		row.peakMiB = float64(end.st.Peak-rss0) / 1024
		row.srvCPU = time.Duration(end.st.CPU - s.base.CPU)
	}
	sa, sb := summarize(as, others), summarize(bs, others)
	row.maxPubA, row.waitA, row.completeA, row.lostA = sa.maxPub, sa.wait, sa.complete, sa.lost
	row.maxPubB, row.waitB, row.completeB, row.lostB = sb.maxPub, sb.wait, sb.complete, sb.lost
	row.blockedB, row.publishedB, row.wantB = sb.blocked, sb.published, E*len(bs)
	row.note = cmp.Or(row.note, sa.bad, sb.bad)
	row.fracB = float64(sb.got) / float64(max(others*E*len(bs), 1))
	row.p99A, row.p99B = median(sa.p99s, math.NaN()), median(sb.p99s, math.NaN())
	row.ratio = median(ratios, math.NaN())
	if len(ratios) > 0 {
		row.ratioLo, row.ratioHi = slices.Min(ratios), slices.Max(ratios)
	}
	row.spanA, row.spanB = median(sa.spans, 0), median(sb.spans, 0)
	if stop != "" {
		row.note = strings.TrimSpace(fmt.Sprintf("%s; %d of %d pairs: %s", row.note, row.pairs, P, stop))
		row.note = strings.TrimPrefix(row.note, "; ")
	}
	return row
}

// burstsSummary is what a set of bursts, A or B, adds up to.
type burstsSummary struct {
	maxPub, wait time.Duration // the longest Publish call and run-queue wait of any
	complete     int           // others with every event, in the worst burst (0: no burst)
	lost, got    int64         // events the others lost, and got once
	blocked      bool          // a Publish call never returned
	published    int
	p99s         []float64       // ms, per burst
	spans        []time.Duration // per burst that completed
	bad          string          // the first invalid event, if any
}

func summarize(bursts []slowBurst, others int) burstsSummary {
	var m burstsSummary
	if len(bursts) > 0 {
		m.complete = others
	}
	for _, b := range bursts {
		m.maxPub, m.wait = max(m.maxPub, b.maxPub), max(m.wait, b.sched)
		m.complete = min(m.complete, b.rep.Complete)
		m.lost += b.rep.Lost
		m.got += b.rep.Count - b.rep.Dup
		m.blocked = m.blocked || b.blocked
		m.published += b.published
		m.p99s = append(m.p99s, b.p99)
		if b.span > 0 {
			m.spans = append(m.spans, b.span)
		}
		if b.rep.Bad > 0 && m.bad == "" {
			m.bad = b.rep.FirstErr
		}
	}
	return m
}

// median returns the median of v, ignoring NaNs, or empty if v has none.
func median[T float64 | time.Duration](v []T, empty T) T {
	s := slices.DeleteFunc(slices.Clone(v), func(x T) bool { return x != x }) // NaN
	if len(s) == 0 {
		return empty
	}
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
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
		size: 200, phases: []phase{{0, 1}}, src: o.idleN > 5000, profile: o.profilePath("idle", ci.name, o.idleN), pin: o.pin}
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
	fmt.Fprintf(out, "Machine: %s. Server and clients are separate processes on 127.0.0.1; CPUs: %s.\n\n", machine(), o.pin.describe())
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
	if o.want("parse") {
		writeParse(o, out, log)
	}
	if o.want("fanout") {
		writeFanout(o, out, log)
	}
	if o.want("slow") {
		writeSlow(o, out, log)
	}
	if o.want("idle") {
		meter := newLoadMeter()
		fmt.Fprintf(out, "### Idle: %d open streams, heartbeat every %v, measured over %v\n\n", o.idleN, o.idleHeartbeat, o.idleWindow)
		fmt.Fprintf(out, "CPUs: %s.\n\n", o.pin.describe())
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
	if o.want("many") {
		writeMany(o, out, log)
	}
	fmt.Fprintf(out, "Contenders:\n\n")
	seen := map[string]bool{}
	onlyMany := len(o.workloads) == 1 && o.workloads["many"]
	for _, ci := range o.contenders {
		if onlyMany {
			break
		}
		seen[ci.name] = true
		fmt.Fprintf(out, "- **%s**: %s\n", ci.name, ci.note)
	}
	if o.want("many") {
		for _, ci := range o.manyContenders {
			if !seen[ci.name] {
				fmt.Fprintf(out, "- **%s**: %s\n", ci.name, ci.note)
			}
		}
	}
	return nil
}

// writeSlow runs the slow-consumer workload: o.runs rounds of every
// contender, interleaved, a row each; with ours and the hub among them, a
// table of ours' longest Publish against the hub's, run by run.
func writeSlow(o options, out, log io.Writer) {
	meter := newLoadMeter()
	fmt.Fprintf(out, "### Slow consumer: %d clients, %d events of %d B back to back, in pairs: all reading (A), then with client 0 stopped (B)\n\n", o.slowClients, o.slowEvents, o.slowSize)
	fmt.Fprintf(out, "CPUs: %s.\n\n", o.pin.describe())
	fmt.Fprintf(out, "The stalled client sets a 4 KiB receive buffer and the server's side of its connection gets a 16 KiB send buffer (SO_SNDBUF, set by the harness for every contender), so that its writes block after tens of KiB rather than the several MiB Linux buffers on loopback. p99 is over the other %d clients, from each event's Publish call. Write timeout for ours and hub: %v. Each burst waits at most %v.\n\n", o.slowClients-1, o.slowWT, slowBound(o))
	fmt.Fprintf(out, "Each contender runs up to %d pairs, A then B, in one session: after each B burst client 0 reads again and catches up, so A and B alternate and drift hits both. Then client 0 stops once more for a last B burst that waits until it is dropped: it gives \"dropped after\" and the RSS Δ, and is a B sample too. A library whose Publish blocks while a client is stalled never completes its first B burst, so it runs one pair only. p99 A and p99 B are medians over the A bursts and over the B bursts; B/A is the median of the per-pair ratios p99 B / p99 A, with their range and the number of valid pairs; burst times are medians; longest Publish is the longest over every A burst and every B burst; \"published B\" and the others' events in B are summed over every B burst, \"others complete\" is the worst burst's.\n\n", max(o.slowPairs, 1))
	fmt.Fprintf(out, "Burst time = first Publish call to the last event's arrival at the other clients (a library whose Publish waits for delivery has a low p99 from the Publish call, but a long burst). Longest run-queue wait = the longest time any goroutine of the server process sat runnable before it ran while a burst was being published (runtime/metrics /sched/latencies:seconds, read before the first and after the last Publish call of each burst): the lower bound of the highest histogram bucket whose count grew, so it understates (buckets are a quarter of a power of two wide, and the runtime samples one wait in 8). It does not include time a running goroutine's thread is preempted by the kernel. A Publish call about as long as the run-queue wait may have been the publisher waiting to run; one far longer may have been slow for another reason (the wait is a lower bound, so this is a hint, not a proof).\n\n")
	fmt.Fprintf(out, "| contender | longest Publish A | longest Publish B | longest run-queue wait A / B (lower bound: histogram bucket) | published B | others complete A | others complete B (events) | p99 A ms (median) | p99 B ms (median) | B/A (median, range, pairs) | burst time A | burst time B | stalled client dropped after | server peak RSS Δ in last B MiB | other load (cores): machine / server's CPUs | notes |\n|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|\n")
	type key struct {
		name string
		run  int
	}
	rows := map[key]slowRow{}
	for run := 1; run <= o.runs; run++ {
		for _, ci := range o.contenders {
			if ci.floor {
				continue
			}
			if o.runs > 1 {
				fmt.Fprintf(log, "slow: %s, run %d of %d\n", ci.name, run, o.runs)
			} else {
				fmt.Fprintf(log, "slow: %s\n", ci.name)
			}
			m, busy0, t0 := newLoadMeter(), busyOn(o.pin.server), time.Now()
			r := runSlow(o, ci, log)
			r.other = m.other()
			if o.pin.pinned() {
				// The server's CPUs' busy time less the server's own: other
				// processes there, and kernel work not charged to it.
				r.srvOther = max(0, float64(busyOn(o.pin.server)-busy0-r.srvCPU)/float64(time.Since(t0)))
			}
			rows[key{ci.name, run}] = r
			name := r.name
			if o.runs > 1 {
				name = fmt.Sprintf("%s (run %d)", r.name, run)
			}
			if r.err != nil {
				fmt.Fprintf(out, "| %s | | | | | | | | | | | | | | | error: %s |\n", name, oneLine(r.err.Error()))
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
			fmt.Fprintf(out, "| %s | %s | %s | %s / %s | %d/%d | %d/%d | %d/%d (%.1f%%) | %s | %s | %s | %s | %s | %s | %.1f | %s | %s |\n", name, dur(r.maxPubA), pubB, dur(r.waitA), dur(r.waitB), r.publishedB, r.wantB,
				r.completeA, r.others, r.completeB, r.others, 100*r.fracB, ms(r.p99A), p99B, pairRatio(r), span(r.spanA), span(r.spanB), drop, r.peakMiB, r.loads(o), oneLine(r.note))
		}
	}
	fmt.Fprintf(out, "\nOther processes on the machine used %.2f cores on average during this workload (per run: the other load column, all CPUs, the harness's own processes excluded).\n", meter.other())
	fmt.Fprintln(out)
	_, hasOurs := findIn(o.contenders, "ours")
	_, hasHub := findIn(o.contenders, "hub")
	if !hasOurs || !hasHub {
		return
	}
	// The figure: ours' longest Publish against the hub's, run by
	// run (run k of ours with run k of the hub, which ran right after it).
	fmt.Fprintf(out, "#### Slow consumer: longest Publish, ours / hub, per run\n\n")
	fmt.Fprintf(out, "Longest Publish = the longest single Publish call over every burst of the run (A and B); the ratio pairs run k of ours with run k of the hub. CPUs: %s.\n\n", o.pin.describe())
	fmt.Fprintf(out, "| run | ours: longest Publish (A / B) | hub: longest Publish (A / B) | ours / hub | other load, ours (cores: machine / server's CPUs) | other load, hub |\n|--:|--:|--:|--:|--:|--:|\n")
	var ratios []float64
	for run := 1; run <= o.runs; run++ {
		a, b := rows[key{"ours", run}], rows[key{"hub", run}]
		if a.err != nil || b.err != nil {
			fmt.Fprintf(out, "| %d | | | error | | |\n", run)
			continue
		}
		pa, pb := max(a.maxPubA, a.maxPubB), max(b.maxPubA, b.maxPubB)
		r := float64(pa) / float64(pb)
		ratios = append(ratios, r)
		fmt.Fprintf(out, "| %d | %s (%s / %s) | %s (%s / %s) | %s | %s | %s |\n", run, dur(pa), dur(a.maxPubA), dur(a.maxPubB), dur(pb), dur(b.maxPubA), dur(b.maxPubB), ratioStr(r), a.loads(o), b.loads(o))
	}
	if len(ratios) > 0 {
		fmt.Fprintf(out, "\nours / hub: median %s, largest %s over %d runs; %d of %d runs within 1.5x.\n\n", ratioStr(median(ratios, math.NaN())), ratioStr(slices.Max(ratios)), len(ratios),
			len(slices.DeleteFunc(slices.Clone(ratios), func(r float64) bool { return r > 1.5 })), len(ratios))
	}
}

// loads formats the other load during a slow session: machine-wide, and
// pinned, on the server's CPUs.
func (r slowRow) loads(o options) string {
	if !o.pin.pinned() {
		return fmt.Sprintf("%.2f", r.other)
	}
	return fmt.Sprintf("%.2f / %.2f", r.other, r.srvOther)
}

// findIn returns the contender named name in cs.
func findIn(cs []contenderInfo, name string) (contenderInfo, bool) {
	for _, c := range cs {
		if c.name == name {
			return c, true
		}
	}
	return contenderInfo{}, false
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

// pairRatio formats the per-pair B/A ratios: "1.08 (0.91–1.30, 5 pairs)".
func pairRatio(r slowRow) string {
	switch r.pairs {
	case 0:
		return "–"
	case 1:
		return ratioStr(r.ratio) + " (1 pair)"
	}
	return fmt.Sprintf("%s (%s–%s, %d pairs)", ratioStr(r.ratio), ratioStr(r.ratioLo), ratioStr(r.ratioHi), r.pairs)
}

func oneLine(s string) string {
	s = strings.ReplaceAll(s, "\n", " ")
	s = strings.ReplaceAll(s, "|", "/")
	if len(s) > 160 {
		s = s[:160] + "…"
	}
	return s
}

// writeFanout runs the fan-out workload: for each N, o.runs rounds of every
// contender, interleaved (ours, hub, ours, hub, …) so that drift hits each
// alike, one row per run; then, with several runs, the medians.
func writeFanout(o options, out, log io.Writer) {
	meter := newLoadMeter()
	fmt.Fprintf(out, "### Fan-out: %d events of %d B, one every %v, to N clients\n\n", o.fanoutEvents, o.fanoutSize, o.fanoutInterval)
	fmt.Fprintf(out, "CPUs: %s.\n\n", o.pin.describe())
	cores := fmt.Sprintf("out of the %d CPUs they share: near %d, the server and its clients saturate the machine and latency includes waiting for a core", runtime.NumCPU(), runtime.NumCPU())
	other := "other load = CPU time other processes used over the window, in cores"
	if o.pin.pinned() {
		cores = fmt.Sprintf("the server out of its %d CPUs, the clients out of their %d (shared with the orchestrator)", len(o.pin.server), len(o.pin.clients))
		other = "other load on the server's CPUs = their busy time (/proc/stat) minus the server's CPU time, in cores: other processes that ran there, and kernel work (softirq) not charged to the server"
	}
	fmt.Fprintf(out, "Latency from each event's scheduled publish time to its arrival at the client (it includes the publisher's own lateness: Go's timers wake the publishing goroutine about 0.5 ms late here, and a Publish that blocks delays the events after it; see the publisher-late column); deliveries/s = deliveries / (last arrival − first schedule); server CPU = server process user+sys from the first publish to the last arrival; client CPU = the client processes' user+sys over the same window (parsing and checking every event); cores used = server CPU and client CPU / wall time of the window, %s; %s; RSS = server peak RSS minus its RSS before any connection, per connection. Longest run-queue wait = the longest time any goroutine of the server process sat runnable before it ran while the events were being published (runtime/metrics /sched/latencies:seconds, read before the first and after the last Publish call): the lower bound of the highest histogram bucket whose count grew, so it understates (buckets are a quarter of a power of two wide, and the runtime samples one wait in 8); it does not include time a running goroutine's thread is preempted by the kernel.\n\n", cores, other)
	if o.runs > 1 {
		fmt.Fprintf(out, "Each N runs every contender %d times, interleaved (one run of each in turn, then again), in the order of the rows; the table after this one gives the medians.\n\n", o.runs)
	}
	fmt.Fprintf(out, "| contender | N | run | p50 ms | p99 ms | deliveries/s | server CPU µs/delivery | client CPU µs/delivery | cores used: server + clients | other load on the server's CPUs | RSS KiB/conn | delivered | lost | dup | reordered | invalid | longest Publish | longest run-queue wait (lower bound: histogram bucket) | publisher late p50/p99 ms | notes |\n|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|\n")
	type key struct {
		name string
		n    int
	}
	rows := map[key][]fanoutRow{}
	for _, n := range o.fanoutN {
		for run := 1; run <= o.runs; run++ {
			for _, ci := range o.contenders {
				if ci.floor {
					continue
				}
				fmt.Fprintf(log, "fanout: %s N=%d run %d of %d\n", ci.name, n, run, o.runs)
				r := runFanout(o, ci, n, run, log)
				rows[key{ci.name, n}] = append(rows[key{ci.name, n}], r)
				if r.err != nil {
					fmt.Fprintf(out, "| %s | %d | %d | | | | | | | | | | | | | | | | | error: %s |\n", r.name, n, run, oneLine(r.err.Error()))
					continue
				}
				fmt.Fprintf(out, "| %s | %d | %d | %s | %s | %s | %.2f | %.2f | %.2f + %.2f | %.2f | %.1f | %d/%d | %d | %d | %d | %d | %s | %s | %s / %s | %s |\n", r.name, n, run, ms(r.p50), ms(r.p99),
					human(r.perSec), r.cpuPer, r.clientCPUPer, r.srvCores, r.cliCores, r.srvOther, r.rssPer, r.delivered, r.want, r.lost, r.dup, r.reord, r.bad, dur(r.maxPub), dur(r.sched),
					ms(float64(r.late50)/1e6), ms(float64(r.late99)/1e6), oneLine(r.notes()))
			}
		}
	}
	fmt.Fprintf(out, "\nOther processes on the machine used %.2f cores on average during this workload.\n\n", meter.other())
	if o.runs < 2 {
		return
	}
	fmt.Fprintf(out, "#### Fan-out: medians over %d interleaved runs\n\n", o.runs)
	fmt.Fprintf(out, "Each figure is the median over the runs that completed, with the range (min–max) in brackets; the ratios to the hub pair each run with the hub's run of the same round (run k with run k) and give the median of those per-round ratios. Longest Publish, run-queue wait and other load are the largest over the runs.\n\n")
	fmt.Fprintf(out, "| contender | N | runs | p50 ms | p99 ms | p99 / hub's | deliveries/s | deliveries/s / hub's | server CPU µs/delivery | client CPU µs/delivery | longest Publish | longest run-queue wait | other load on the server's CPUs | lost + dup + reordered + invalid | notes |\n|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|\n")
	for _, n := range o.fanoutN {
		hub := rows[key{"hub", n}]
		for _, ci := range o.contenders {
			if ci.floor {
				continue
			}
			rs := rows[key{ci.name, n}]
			var p50, p99, perSec, cpu, cli, r99, rPer []float64
			var maxPub, sched time.Duration
			var srvOther float64
			var faults int64
			var errs []string
			for i, r := range rs {
				if r.err != nil {
					errs = append(errs, fmt.Sprintf("run %d: %s", r.run, r.err))
					continue
				}
				p50, p99, perSec = append(p50, r.p50), append(p99, r.p99), append(perSec, r.perSec)
				cpu, cli = append(cpu, r.cpuPer), append(cli, r.clientCPUPer)
				maxPub, sched, srvOther = max(maxPub, r.maxPub), max(sched, r.sched), max(srvOther, r.srvOther)
				faults += r.lost + r.dup + r.reord + r.bad
				if i < len(hub) && hub[i].err == nil && hub[i].p99 > 0 && hub[i].perSec > 0 {
					r99, rPer = append(r99, r.p99/hub[i].p99), append(rPer, r.perSec/hub[i].perSec)
				}
			}
			note := ""
			if len(errs) > 0 {
				note = fmt.Sprintf("%d of %d runs failed: %s", len(errs), len(rs), errs[0])
			}
			if len(p99) == 0 {
				fmt.Fprintf(out, "| %s | %d | 0 | | | | | | | | | | | | %s |\n", ci.name, n, oneLine(note))
				continue
			}
			fmt.Fprintf(out, "| %s | %d | %d | %s | %s | %s | %s | %s | %.2f | %.2f | %s | %s | %.2f | %d | %s |\n", ci.name, n, len(p99),
				ms(median(p50, math.NaN())), spread(p99, ms), spread(r99, ratioStr), spread(perSec, human), spread(rPer, ratioStr),
				median(cpu, math.NaN()), median(cli, math.NaN()), dur(maxPub), dur(sched), srvOther, faults, oneLine(note))
		}
	}
	fmt.Fprintln(out)
}

// spread formats the median of v and its range: "43.1 (38.0–51.2)".
func spread(v []float64, f func(float64) string) string {
	if len(v) == 0 {
		return "–"
	}
	m := f(median(v, math.NaN()))
	if len(v) == 1 {
		return m
	}
	return fmt.Sprintf("%s (%s–%s)", m, f(slices.Min(v)), f(slices.Max(v)))
}

// notes is what a fan-out row's notes column says.
func (r fanoutRow) notes() string {
	note := r.note
	if r.connected < r.n {
		note = strings.TrimSpace(fmt.Sprintf("%s only %d connected", note, r.connected))
	}
	if r.other > 0.2 {
		note = strings.TrimSpace(fmt.Sprintf("%s other load %.1f cores", note, r.other))
	}
	if r.closed > 0 {
		note = strings.TrimSpace(fmt.Sprintf("%s %d streams ended", note, r.closed))
	}
	return note
}
