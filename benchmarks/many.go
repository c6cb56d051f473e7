package main

import (
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"
)

// The many workload (issue #22): many mostly idle streams on one server, in
// lean client processes (leanclient.go). For each server variant it
// measures the time to connect them all, the server memory each costs once
// idle, the CPU the heartbeat takes, one event broadcast to all, and a
// steady rate of events to all.

// manyContenders are the variants the many workload runs when -contenders
// names none: ours shared and per user, with and without Detach, and the
// hub as the floor.
var manyContenders = []string{"ours", "ours-detach", "ours-users", "ours-users-detach", "hub"}

// manyTarget is the stream count.
const manyTarget = 100000

// portsPerSource is how many streams go to one source address: the
// ephemeral range 32768-60999 has 28,232 ports for each (source address,
// destination) pair, less what other connections hold.
const portsPerSource = 25000

// fdReserve is what a process keeps of RLIMIT_NOFILE for other than
// streams: the listener, stdio, the epoll descriptor, /proc reads.
const fdReserve = 100

// manySize decides the stream count and clients per process from the
// RLIMIT_NOFILE this process got (children inherit it), and says why when
// it is below what was asked.
func manySize(o options) (n, perProc int, why string) {
	lim := int(min(raiseNoFile(1<<20), 1<<30))
	most := lim - fdReserve
	n = o.manyN
	if n == 0 {
		n = min(manyTarget, most)
		if n < manyTarget {
			why = fmt.Sprintf("%d streams, not the issue's %d: RLIMIT_NOFILE here is %d (the hard limit; raising it needs CAP_SYS_RESOURCE) and the server holds a descriptor per stream, so one server process holds at most %d", n, manyTarget, lim, most)
		}
	} else if n > most {
		why = fmt.Sprintf("%d streams, not the %d asked: RLIMIT_NOFILE here is %d and the server holds a descriptor per stream", most, n, lim)
		n = most
	}
	perProc = o.manyPerProc
	if perProc == 0 {
		perProc = 19000
	}
	// A client process holds a descriptor per stream too, and keeps some
	// for itself.
	perProc = max(1, min(perProc, max(most-1000, most/2)))
	return n, perProc, why
}

// sourceAddrs returns count loopback addresses from number *next on (2 is
// 127.0.0.2, 254 is 127.0.0.254, then 127.0.1.1, …; no .0 or .255) and
// advances *next.
func sourceAddrs(next *int, count int) []string {
	var out []string
	for len(out) < count {
		a := *next
		*next++
		if y := a % 256; y == 0 || y == 255 {
			continue
		}
		out = append(out, fmt.Sprintf("127.0.%d.%d", a/256, a%256))
	}
	return out
}

// openMany starts the server and the lean client processes, connects every
// stream, and returns the session and how long connecting took: from the
// connect command to the last response header.
func openMany(o options, ci contenderInfo, n, perProc int, log io.Writer) (*session, response, time.Duration, error) {
	s := &session{ci: ci, n: n, log: log}
	args := []string{"-role=server", "-contender=" + ci.name,
		"-hb=" + o.manyHB.String(), "-wt=10s", "-burst=0"}
	if p := o.profilePath("many", ci.name, n); p != "" {
		args = append(args, "-profile="+p)
	}
	var err error
	if s.srv, err = spawn("server "+ci.name, args, o.pin.server); err != nil {
		return nil, response{}, 0, err
	}
	hello, err := s.srv.hello(10 * time.Second)
	if err == nil {
		err = checkPlacement("server", hello, o.pin.server)
	}
	if err != nil {
		s.close()
		return nil, response{}, 0, err
	}
	// The base: memory before any stream, settled as the figures after.
	if s.base, err = s.srv.call(request{Cmd: "gc"}, 30*time.Second); err != nil {
		s.close()
		return nil, response{}, 0, err
	}
	s.base.Addr = hello.Addr
	procs := (n + perProc - 1) / perProc
	next, offset := 2, 0
	for k := 0; k < procs; k++ {
		cnt := n / procs
		if k < n%procs {
			cnt++
		}
		src := sourceAddrs(&next, max(2, (cnt+portsPerSource-1)/portsPerSource))
		args := []string{"-role=leanclient", "-addr=" + hello.Addr, "-n=" + strconv.Itoa(cnt), "-offset=" + strconv.Itoa(offset),
			"-size=" + strconv.Itoa(o.manySize), "-src=" + strings.Join(src, ","), "-dial=" + strconv.Itoa(o.manyDial)}
		offset += cnt
		c, err := spawn(fmt.Sprintf("client %d", k), args, o.pin.clients)
		if err != nil {
			s.close()
			return nil, response{}, 0, err
		}
		s.clients = append(s.clients, c)
		s.counts = append(s.counts, cnt)
		h, err := c.hello(10 * time.Second)
		if err == nil {
			err = checkPlacement(c.name, h, o.pin.clients)
		}
		if err != nil {
			s.close()
			return nil, response{}, 0, err
		}
	}
	debugf("%d lean client processes up", procs)
	t0 := time.Now()
	rs, err := s.all(request{Cmd: "connect"}, 60*time.Second+time.Duration(n)*time.Millisecond)
	if err != nil {
		s.close()
		return nil, response{}, 0, err
	}
	sum := mergeStatus(rs)
	var last int64
	for _, r := range rs {
		last = max(last, r.LastConn)
	}
	took := time.Duration(last - t0.UnixNano())
	if sum.Failed > 0 {
		fmt.Fprintf(log, "  %s: %d of %d streams failed: %s\n", ci.name, sum.Failed, n, sum.FirstErr)
	}
	if sum.Connected == 0 {
		s.close()
		return nil, response{}, 0, fmt.Errorf("no stream connected: %s", sum.FirstErr)
	}
	return s, sum, took, nil
}

// manyRow is one variant's figures.
type manyRow struct {
	name              string
	n, connected      int
	failed            int
	connect           time.Duration // connect command to the last response header
	rssPer, peakPer   float64       // KiB per stream: after GC, and the peak (VmHWM) before it
	heapPer, stackPer float64       // KiB per stream, runtime/metrics
	gorPer            float64
	clientRSSPer      float64 // KiB per stream, the lean clients
	open              int64   // streams the server says it has open (-1: it does not say)

	hbCPU   float64 // server ms of CPU per second, idle
	beats   float64 // heartbeats per stream in the idle window
	hbOther float64 // other load on the server's CPUs over the idle window, cores

	bLast      time.Duration // Publish call to the last stream's arrival
	bP50, bP99 float64       // ms
	bGot       int64
	bCPU       time.Duration // server CPU from the publish command to the last arrival
	bDropped   string

	sEvents          int
	sPerSec          float64
	sP50, sP99       float64 // ms
	sLost, sDup      int64
	sGot, sWant      int64
	sPublished       int // events of the steady phase published when it ended
	sSrvCores        float64
	sCliCores        float64
	sLate99, sMaxPub time.Duration
	sOther           float64
	sDropped         string

	other float64 // other processes over the whole session, cores
	note  string
	err   error
}

// dropsSince formats the streams dropped between two server stats and the
// streams the clients saw end: "0", or "3 fell behind, 1 write timeout; 4
// ended at the clients".
func dropsSince(a, b response, closed int) string {
	var parts []string
	if b.HasEnds {
		if d := b.FellBehind - a.FellBehind; d > 0 {
			parts = append(parts, fmt.Sprintf("%d fell behind", d))
		}
		if d := b.TimedOut - a.TimedOut; d > 0 {
			parts = append(parts, fmt.Sprintf("%d write failed or timed out", d))
		}
	}
	if closed > 0 {
		parts = append(parts, fmt.Sprintf("%d ended at the clients", closed))
	}
	if len(parts) == 0 {
		return "0"
	}
	return strings.Join(parts, "; ")
}

func runMany(o options, ci contenderInfo, n, perProc int, log io.Writer) (row manyRow) {
	row = manyRow{name: ci.name, n: n, open: -1}
	meter := newLoadMeter()
	s, sum, took, err := openMany(o, ci, n, perProc, log)
	if err != nil {
		row.err = err
		return row
	}
	defer func() {
		s.close()
		row.other = meter.other() // the children are reaped: their CPU is ours
	}()
	row.connect, row.connected, row.failed = took, sum.Connected, sum.Failed
	debugf("%s: %d connected in %v", ci.name, sum.Connected, took)
	if err := s.sync(row.connected, 60*time.Second+time.Duration(n)*100*time.Microsecond); err != nil {
		row.err = err
		return row
	}
	// Memory once settled.
	time.Sleep(o.manySettle)
	g, err := s.srv.call(request{Cmd: "gc"}, 60*time.Second)
	if err != nil {
		row.err = err
		return row
	}
	N := float64(row.connected)
	row.rssPer = float64(g.RSS-s.base.RSS) / N
	row.peakPer = float64(g.HWM-s.base.RSS) / N
	row.heapPer = float64(g.Heap-s.base.Heap) / 1024 / N
	row.stackPer = float64(g.Stacks-s.base.Stacks) / 1024 / N
	row.gorPer = float64(g.Goroutines) / N
	if g.HasEnds {
		row.open = g.Open
	}
	fmt.Fprintf(log, "  %s: %d of %d connected in %v; RSS %.2f KiB/stream after GC (peak %.2f), heap %.2f, stacks %.2f, goroutines %.2f\n",
		ci.name, row.connected, n, took.Round(time.Millisecond), row.rssPer, row.peakPer, row.heapPer, row.stackPer, row.gorPer)
	cst, err := s.status()
	if err != nil {
		row.err = err
		return row
	}
	row.clientRSSPer = float64(cst.ClientRSS) / N
	if cst.Connected < row.connected {
		row.note = fmt.Sprintf("%d streams ended before the idle window", row.connected-cst.Connected)
	}

	// Idle: the heartbeat alone.
	c0 := cst
	st0, err := s.srv.call(request{Cmd: "stats"}, 10*time.Second)
	if err != nil {
		row.err = err
		return row
	}
	busy0 := busyOn(o.pin.server)
	debugf("%s: idle window", ci.name)
	time.Sleep(o.manyWindow)
	st1, err := s.srv.call(request{Cmd: "stats"}, 10*time.Second)
	if err != nil {
		row.err = err
		return row
	}
	c1, err := s.status()
	if err != nil {
		row.err = err
		return row
	}
	wall := time.Duration(st1.Now - st0.Now)
	row.hbCPU = float64(st1.CPU-st0.CPU) / 1e6 / wall.Seconds()
	row.beats = float64(c1.Comments-c0.Comments) / N
	row.hbOther = otherOn(o, busyOn(o.pin.server)-busy0, time.Duration(st1.CPU-st0.CPU), time.Duration(c1.CPU-c0.CPU), wall)
	fmt.Fprintf(log, "  %s: idle: %.2f ms/s of server CPU, %.2f heartbeats/stream in %v\n", ci.name, row.hbCPU, row.beats, o.manyWindow)

	// One event to every stream.
	debugf("%s: broadcast", ci.name)
	if _, err := s.all(request{Cmd: "arm", From: 0, To: 1}, 30*time.Second); err != nil {
		row.err = err
		return row
	}
	b0, err := s.srv.call(request{Cmd: "stats"}, 10*time.Second)
	if err != nil {
		row.err = err
		return row
	}
	cb0, _ := s.status()
	pubCh := s.srv.start(request{Cmd: "publish", N: 1, Size: o.manySize, From: 0})
	bound := time.Now().Add(30*time.Second + time.Duration(n)*20*time.Microsecond)
	pub, pubDone, late, err := s.awaitPublish(pubCh, 20*time.Millisecond, bound, func(published bool, _ time.Duration, st response) bool {
		return published && st.Recv+int64(st.Closed-cb0.Closed) >= int64(cst.Connected)
	})
	if err != nil {
		row.err = err
		return row
	}
	if late {
		row.note = strings.TrimSpace(row.note + " broadcast: not every stream had the event in time")
	}
	b1, err := s.srv.call(request{Cmd: "stats"}, 10*time.Second)
	if err != nil {
		row.err = err
		return row
	}
	br, err := s.report(0)
	if err != nil {
		row.err = err
		return row
	}
	row.bGot = br.Count
	if pubDone && br.LastRecv > pub.Start {
		row.bLast = time.Duration(br.LastRecv - pub.Start)
	}
	row.bP50, row.bP99 = percentile(br.Hist, 0.50), percentile(br.Hist, 0.99)
	row.bCPU = time.Duration(b1.CPU - b0.CPU)
	row.bDropped = dropsSince(b0, b1, br.Closed-cb0.Closed)
	fmt.Fprintf(log, "  %s: broadcast: %d of %d got it, the last after %v, p99 %s ms, server CPU %v, dropped %s\n",
		ci.name, row.bGot, cst.Connected, row.bLast.Round(time.Millisecond), ms(row.bP99), row.bCPU.Round(time.Millisecond), row.bDropped)

	// A steady rate to every stream.
	E := max(1, int(o.manySteady.Seconds()*float64(o.manyRate)))
	row.sEvents = E
	interval := time.Second / time.Duration(max(o.manyRate, 1))
	debugf("%s: steady, %d events", ci.name, E)
	if _, err := s.all(request{Cmd: "arm", From: 1, To: 1 + E}, 30*time.Second); err != nil {
		row.err = err
		return row
	}
	s0, err := s.srv.call(request{Cmd: "stats"}, 10*time.Second)
	if err != nil {
		row.err = err
		return row
	}
	cs0, _ := s.status()
	busy0 = busyOn(o.pin.server)
	pubCh = s.srv.start(request{Cmd: "publish", N: E, Size: o.manySize, From: 1, Interval: interval})
	want := int64(cst.Connected) * int64(E)
	row.sWant = want
	hard := time.Now().Add(o.manySteady + 60*time.Second)
	// Past hard, the note below says how far the publisher got.
	pub, pubDone, _, err = s.awaitPublish(pubCh, 50*time.Millisecond, hard, func(published bool, since time.Duration, st response) bool {
		return published && (st.Recv >= want || since > 10*time.Second)
	})
	if err != nil {
		row.err = err
		return row
	}
	s1, err := s.srv.call(request{Cmd: "stats"}, 10*time.Second)
	if err != nil {
		row.err = err
		return row
	}
	sr, err := s.report(0)
	if err != nil {
		row.err = err
		return row
	}
	row.sGot, row.sLost, row.sDup = sr.Count, sr.Lost, sr.Dup
	row.sPublished = E
	if !pubDone {
		row.sPublished = s1.Published
	}
	row.sP50, row.sP99 = percentile(sr.Hist, 0.50), percentile(sr.Hist, 0.99)
	start := pub.Start
	if !pubDone {
		// The publisher fell behind its schedule and was still publishing
		// at the bound: the rate is over what arrived until then.
		start = s0.Now
		row.sLate99 = -1
		row.note = strings.TrimSpace(fmt.Sprintf("%s steady: the publisher had published %d of %d events when the phase ended, %v after it began", row.note, s1.Published, E, time.Duration(s1.Now-s0.Now).Round(time.Second)))
	}
	if sr.LastRecv > start {
		row.sPerSec = float64(sr.Count) / (float64(sr.LastRecv-start) / 1e9)
	}
	sw := time.Duration(s1.Now - s0.Now)
	row.sSrvCores = float64(s1.CPU-s0.CPU) / float64(sw)
	row.sCliCores = float64(sr.CPU-cs0.CPU) / float64(sw)
	if pubDone {
		row.sLate99 = time.Duration(pub.LateP99)
	}
	row.sMaxPub = time.Duration(max(pub.MaxPub, s1.MaxPub))
	row.sOther = otherOn(o, busyOn(o.pin.server)-busy0, time.Duration(s1.CPU-s0.CPU), time.Duration(sr.CPU-cs0.CPU), sw)
	row.sDropped = dropsSince(s0, s1, sr.Closed-cs0.Closed)
	fmt.Fprintf(log, "  %s: steady: %d of %d delivered, %s/s, p99 %s ms, lost %d, server %.2f cores, publisher late p99 %v, dropped %s\n",
		ci.name, row.sGot, row.sWant, human(row.sPerSec), ms(row.sP99), row.sLost, row.sSrvCores, row.sLate99.Round(time.Millisecond), row.sDropped)
	return row
}

// otherOn is the other load, in cores, over a window of wall time: pinned,
// on the server's CPUs (their busy time less the server's CPU time srv);
// not pinned, on the machine (the busy time of all CPUs less the server's
// and the clients' cli).
func otherOn(o options, busy, srv, cli, wall time.Duration) float64 {
	if wall <= 0 {
		return 0
	}
	own := srv
	if !o.pin.pinned() {
		own += cli
	}
	return max(0, float64(busy-own)/float64(wall))
}

// writeMany runs the many workload and writes its tables.
func writeMany(o options, out, log io.Writer) {
	meter := newLoadMeter()
	n, perProc, why := manySize(o)
	procs := (n + perProc - 1) / perProc
	fmt.Fprintf(out, "### Many idle streams: %d streams, heartbeat every %v\n\n", n, o.manyHB)
	if why != "" {
		fmt.Fprintf(out, "**%s.**\n\n", why)
	}
	fmt.Fprintf(out, "CPUs: %s.\n\n", o.pin.describe())
	fmt.Fprintf(out, "Clients: %d lean client processes (at most %d streams each), each stream a goroutine with a 512-byte read buffer that parses only the status line, headers, chunked coding, data lines and comments; streams spread over loopback source addresses (127.0.0.2 on, at most %d streams per address), %d connections being set up at once per process. Each stream asks for /u/<i> (ours-users: user i's Broker; the others serve any path).\n\n", procs, perProc, portsPerSource, o.manyDial)
	fmt.Fprintf(out, "Connect = from the connect command to the last stream's response header. Memory: after every stream has a sync event and %v to settle, the server runs runtime.GC three times and debug.FreeOSMemory; RSS per stream = (RSS then − RSS before any stream, settled the same way) / streams; peak = (VmHWM − the same base) / streams, what connecting took at its highest; Go heap objects and goroutine stacks from runtime/metrics, the same way. Kernel socket buffers are not in RSS. Heartbeat CPU = server user+sys over an idle window of %v / the window. Broadcast = one event of %d B: from the Publish call to the last stream's arrival, latency p50/p99 over the streams, server CPU from the publish command to the last arrival (it includes idle time while the clients read). Steady = %d events/s for %v, bounded at 1 minute more (a publisher that falls behind its schedule is stopped there: events published says how far it got, and lost counts the events never published too); deliveries/s = deliveries / (last arrival − first schedule, or the phase's start if the publisher did not finish); latency from each event's scheduled time; cores = CPU time / wall time of the window. Dropped = streams the server ended itself (ours: Stats.Ended.FellBehind and WriteTimeout; hub: a full queue, a failed write) and streams the clients saw end, during that phase: must be 0.\n\n", o.manySettle, o.manyWindow, o.manySize, o.manyRate, o.manySteady)
	var rows []manyRow
	for _, ci := range o.manyContenders {
		if ci.floor {
			continue
		}
		fmt.Fprintf(log, "many: %s, %d streams\n", ci.name, n)
		r := runMany(o, ci, n, perProc, log)
		if r.err != nil {
			fmt.Fprintf(log, "  %s: %v\n", ci.name, r.err)
		}
		rows = append(rows, r)
	}
	errNote := func(r manyRow) string {
		note := r.note
		if r.err != nil {
			note = strings.TrimSpace(note + " error: " + r.err.Error())
		}
		if r.failed > 0 {
			note = strings.TrimSpace(fmt.Sprintf("%s %d failed to connect", note, r.failed))
		}
		if r.open >= 0 && r.open != int64(r.connected) {
			note = strings.TrimSpace(fmt.Sprintf("%s server counts %d open", note, r.open))
		}
		if r.other > 0.2 {
			note = strings.TrimSpace(fmt.Sprintf("%s other load %.2f cores", note, r.other))
		}
		return oneLine(note)
	}
	fmt.Fprintf(out, "#### Connecting and memory\n\n")
	fmt.Fprintf(out, "| variant | streams | connect time | connects/s | RSS KiB/stream (after GC) | peak RSS KiB/stream | Go heap objects KiB/stream | Go stacks KiB/stream | goroutines/stream | lean client RSS KiB/stream | other load, whole session (cores) | notes |\n|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|\n")
	for _, r := range rows {
		if r.connected == 0 {
			fmt.Fprintf(out, "| %s | 0 | | | | | | | | | | %s |\n", r.name, errNote(r))
			continue
		}
		fmt.Fprintf(out, "| %s | %d/%d | %s | %s | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %s |\n", r.name, r.connected, r.n, dur(r.connect),
			human(float64(r.connected)/math.Max(r.connect.Seconds(), 1e-9)), r.rssPer, r.peakPer, r.heapPer, r.stackPer, r.gorPer, r.clientRSSPer, r.other, errNote(r))
	}
	fmt.Fprintf(out, "\n#### Idle: heartbeat\n\n")
	fmt.Fprintf(out, "| variant | streams | server CPU ms/s | µs per heartbeat | heartbeats/stream in %v | other load on the server's CPUs (not pinned: on the machine) |\n|---|--:|--:|--:|--:|--:|\n", o.manyWindow)
	for _, r := range rows {
		if r.connected == 0 || (r.err != nil && r.beats == 0 && r.hbCPU == 0) {
			continue
		}
		perBeat := math.NaN()
		if r.beats > 0 {
			perBeat = r.hbCPU * 1e3 * o.manyWindow.Seconds() / (r.beats * float64(r.connected))
		}
		fmt.Fprintf(out, "| %s | %d | %.2f | %s | %.2f | %.2f |\n", r.name, r.connected, r.hbCPU, ms(perBeat), r.beats, r.hbOther)
	}
	fmt.Fprintf(out, "\n#### One event to all, then %d events/s for %v\n\n", o.manyRate, o.manySteady)
	fmt.Fprintf(out, "| variant | streams | broadcast: last arrival | p50 / p99 ms | server CPU | got | dropped | steady: events published | deliveries/s | p50 / p99 ms | delivered | lost (not published included) | dup | server cores | client cores | publisher late p99 | longest Publish (all streams) | dropped | other load on the server's CPUs (not pinned: on the machine) |\n|---|--:|--:|--:|--:|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|--:|\n")
	for _, r := range rows {
		if r.connected == 0 || r.bDropped == "" {
			continue
		}
		late := dur(r.sLate99)
		if r.sLate99 < 0 {
			late = "did not finish"
		}
		steady := fmt.Sprintf("%d/%d | %s | %s / %s | %d/%d | %d | %d | %.2f | %.2f | %s | %s | %s | %.2f", r.sPublished, r.sEvents, human(r.sPerSec), ms(r.sP50), ms(r.sP99), r.sGot, r.sWant, r.sLost, r.sDup,
			r.sSrvCores, r.sCliCores, late, dur(r.sMaxPub), r.sDropped, r.sOther)
		if r.sDropped == "" {
			steady = strings.Repeat(" |", 11)
		}
		fmt.Fprintf(out, "| %s | %d | %s | %s / %s | %s | %d/%d | %s | %s |\n", r.name, r.connected, dur(r.bLast), ms(r.bP50), ms(r.bP99), dur(r.bCPU), r.bGot, r.connected, r.bDropped, steady)
	}
	fmt.Fprintf(out, "\nOther processes on the machine used %.2f cores on average during this workload (all CPUs, the harness's own processes excluded).\n\n", meter.other())
}
