package main

import (
	"bufio"
	"bytes"
	"math"
	"os"
	"runtime"
	"runtime/metrics"
	"runtime/pprof"
	"runtime/trace"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// cpuNow returns the user+system CPU time this process has used.
func cpuNow() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// memKiB returns VmRSS and VmHWM of this process, in KiB.
func memKiB() (rss, hwm int64) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, 0
	}
	for _, line := range bytes.Split(b, []byte("\n")) {
		f := strings.Fields(string(line))
		if len(f) < 2 {
			continue
		}
		switch f[0] {
		case "VmRSS:":
			rss, _ = strconv.ParseInt(f[1], 10, 64)
		case "VmHWM:":
			hwm, _ = strconv.ParseInt(f[1], 10, 64)
		}
	}
	return rss, hwm
}

// raiseNoFile raises RLIMIT_NOFILE as far as the process may (the hard
// limit; higher only with CAP_SYS_RESOURCE) and returns the soft limit.
func raiseNoFile(want uint64) uint64 {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0
	}
	if rl.Cur < want {
		try := rl
		try.Cur, try.Max = want, max(want, rl.Max)
		if syscall.Setrlimit(syscall.RLIMIT_NOFILE, &try) != nil {
			rl.Cur = rl.Max
			_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl)
		}
	}
	_ = syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl)
	return rl.Cur
}

// machine describes where the numbers were measured.
func machine() string {
	model := "unknown CPU"
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
		f.Close()
	}
	mem := ""
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		if f := strings.Fields(string(b)); len(f) > 1 {
			if kb, err := strconv.ParseInt(f[1], 10, 64); err == nil {
				mem = strconv.FormatFloat(float64(kb)/(1<<20), 'f', 1, 64) + " GiB RAM, "
			}
		}
	}
	var uts syscall.Utsname
	kernel := ""
	if syscall.Uname(&uts) == nil {
		var b []byte
		for _, c := range uts.Release {
			if c == 0 {
				break
			}
			b = append(b, byte(c))
		}
		kernel = ", Linux " + string(b)
	}
	return strconv.Itoa(onlineCPUs()) + " CPUs (" + model + "), " + mem + runtime.Version() + kernel +
		", " + time.Now().UTC().Format("2006-01-02")
}

// onlineCPUs returns how many CPUs the machine has online (not how many
// this process may use, which runtime.NumCPU returns, and which is fewer
// when the orchestrator is pinned).
func onlineCPUs() int {
	if b, err := os.ReadFile("/sys/devices/system/cpu/online"); err == nil {
		if c, err := parseCPUList(strings.TrimSpace(string(b))); err == nil {
			return len(c)
		}
	}
	return runtime.NumCPU()
}

// startProfiles starts a CPU profile and mutex sampling; the returned
// function writes prefix.cpu.pprof and the mutex, block and heap profiles.
func startProfiles(prefix string) (func(), error) {
	f, err := os.Create(prefix + ".cpu.pprof")
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	tf, err := os.Create(prefix + ".trace")
	if err == nil {
		if err = trace.Start(tf); err != nil {
			tf.Close()
			tf = nil
		}
	}
	runtime.SetMutexProfileFraction(10)
	runtime.SetBlockProfileRate(100_000) // one sample per 100 µs blocked
	runtime.MemProfileRate = 4096
	return func() {
		pprof.StopCPUProfile()
		f.Close()
		if tf != nil {
			trace.Stop()
			tf.Close()
		}
		for _, name := range []string{"mutex", "block", "heap"} {
			if m, err := os.Create(prefix + "." + name + ".pprof"); err == nil {
				_ = pprof.Lookup(name).WriteTo(m, 0)
				m.Close()
			}
		}
	}, nil
}

// machineBusy returns the CPU time all processes on the machine have used
// (the non-idle time in /proc/stat), to tell how much other load ran during
// a measurement.
func machineBusy() time.Duration { return busyOn(nil) }

// busyOn returns the non-idle CPU time of the CPUs in c (all of them if c
// is empty), from /proc/stat: user, nice, system, irq, softirq, steal.
func busyOn(c cpuSet) time.Duration {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	var busy int64
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 || !strings.HasPrefix(f[0], "cpu") {
			continue
		}
		if len(c) == 0 {
			if f[0] != "cpu" {
				continue
			}
		} else if n, err := strconv.Atoi(f[0][3:]); err != nil || !slices.Contains(c, n) {
			continue
		}
		for i, v := range f[1:] {
			n, _ := strconv.ParseInt(v, 10, 64)
			if i == 3 || i == 4 || i >= 8 { // idle, iowait; guest time is in user already
				continue
			}
			busy += n
		}
	}
	return time.Duration(busy) * 10 * time.Millisecond // USER_HZ = 100
}

// waitQuiet waits (up to max) until the machine has been nearly idle for a
// second, so that a measurement does not start while something else runs.
// It returns the other load seen last, in cores.
func waitQuiet(max time.Duration) float64 {
	end := time.Now().Add(max)
	for {
		b0, t0 := machineBusy(), time.Now()
		time.Sleep(time.Second)
		load := float64(machineBusy()-b0) / float64(time.Since(t0))
		if load < 0.15 || time.Now().After(end) {
			return load
		}
	}
}

// goMemory returns the bytes of goroutine stacks and of heap objects.
func goMemory() (stacks, heap int64) {
	samples := []metrics.Sample{{Name: "/memory/classes/heap/stacks:bytes"}, {Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(samples)
	if samples[0].Value.Kind() == metrics.KindUint64 {
		stacks = int64(samples[0].Value.Uint64())
	}
	if samples[1].Value.Kind() == metrics.KindUint64 {
		heap = int64(samples[1].Value.Uint64())
	}
	return stacks, heap
}

// ownCPU returns the CPU time of this process and of its waited-for
// children (the server and client processes).
func ownCPU() time.Duration {
	var self, children syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &self)
	_ = syscall.Getrusage(syscall.RUSAGE_CHILDREN, &children)
	return time.Duration(self.Utime.Nano() + self.Stime.Nano() + children.Utime.Nano() + children.Stime.Nano())
}

// loadMeter tells how much CPU other processes used over a span.
type loadMeter struct {
	busy, own time.Duration
	start     time.Time
}

func newLoadMeter() loadMeter { return loadMeter{machineBusy(), ownCPU(), time.Now()} }

// other returns the cores other processes used on average since the start.
func (m loadMeter) other() float64 {
	wall := time.Since(m.start)
	if wall <= 0 {
		return 0
	}
	return max(0, float64((machineBusy()-m.busy)-(ownCPU()-m.own))/float64(wall))
}

// schedHist is a snapshot of runtime/metrics "/sched/latencies:seconds":
// how long goroutines sat runnable before they ran. The runtime samples one
// in 8 scheduling transitions into it, and its buckets are a quarter of a
// power of two wide.
type schedHist struct {
	counts  []uint64
	buckets []float64 // seconds; len(counts)+1 bounds, the same for the process's life
}

func readSchedHist() schedHist {
	s := []metrics.Sample{{Name: "/sched/latencies:seconds"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindFloat64Histogram {
		return schedHist{}
	}
	h := s[0].Value.Float64Histogram()
	return schedHist{counts: slices.Clone(h.Counts), buckets: h.Buckets}
}

// longestSince returns the lower bound of the highest bucket whose count
// grew from before to h: a lower bound on the longest run-queue wait the
// runtime sampled in between (0 if none).
func (h schedHist) longestSince(before schedHist) time.Duration {
	if len(before.counts) != len(h.counts) {
		return 0
	}
	for i := len(h.counts) - 1; i >= 0; i-- {
		if h.counts[i] > before.counts[i] {
			lo := h.buckets[i]
			if math.IsInf(lo, -1) || lo < 0 {
				return 0
			}
			return time.Duration(lo * 1e9)
		}
	}
	return 0
}
