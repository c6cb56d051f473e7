// Command benchmarks measures github.com/lightsse/sse against the Go SSE
// libraries a user would pick instead, a hand-written handler, and two
// floors, on the same workloads, and prints the results as Markdown tables.
//
//	cd benchmarks && go run . -all          # every workload (about 18 minutes)
//	go run . -quick                         # every workload, small (under 2 minutes)
//	go run . -workload fanout -n 1000 -contenders ours,tmaxmax
//	go run . -workload fanout -n 5000 -contenders ours,hub -pin -runs 3
//
// Servers and clients run in separate processes (this binary, re-executed
// with -role), on 127.0.0.1 only; every phase has a time bound, and a server
// that blocks is killed when its phase ends. With -pin (or -server-cpus and
// -client-cpus) the server runs on CPUs of its own, apart from the clients.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

func main() {
	if len(os.Args) > 1 && strings.HasPrefix(os.Args[1], "-role=") {
		if err := runRole(os.Args[1:], os.Stdin, os.Stdout, os.Stderr); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	// The main goroutine keeps the main thread to itself, so that no
	// goroutine of onPinnedThread ends on it: the runtime would park the
	// main thread for good, with the mask meant for a child, rather than
	// let it exit.
	runtime.LockOSThread()
	testing.Init() // for testing.Benchmark's -test.benchtime
	var (
		all        = flag.Bool("all", false, "run every workload at full size")
		quick      = flag.Bool("quick", false, "run every workload at a small size (under 2 minutes)")
		workload   = flag.String("workload", "", "comma-separated: encode, parse, fanout, slow, idle, many (default: all but many)")
		list       = flag.String("contenders", "all", "comma-separated contenders: "+strings.Join(contenderNames(), ", "))
		ns         = flag.String("n", "", "fan-out client counts (default 100,1000,5000; quick 100)")
		idleN      = flag.Int("idle-n", 0, "idle streams (default 19900: the hard RLIMIT_NOFILE here is 20000; quick 1000)")
		idleWin    = flag.Duration("idle-window", 0, "idle measuring window (default 30s; quick 2s)")
		idleHB     = flag.Duration("idle-heartbeat", 0, "heartbeat interval in the idle workload (default 15s; quick 1s)")
		slowEvents = flag.Int("slow-events", 0, "events per slow-consumer burst (default 5000; quick 1000)")
		slowPairs  = flag.Int("slow-pairs", 0, "slow consumer: A/B burst pairs for contenders that keep publishing while a client stalls (default 5; quick 2)")
		slowWT     = flag.Duration("slow-write-timeout", 0, "write timeout for ours and hub in the slow workload (default 10s, ours' default; quick 1s)")
		benchtime  = flag.Duration("benchtime", 0, "encode benchmark time per encoder (default 1s; quick 200ms)")
		profile    = flag.String("profile", "", "directory: each server writes CPU, mutex, block and heap profiles (go tool pprof) and a runtime trace (go tool trace) there")
		quiet      = flag.Duration("quiet-wait", 0, "longest wait, before each session, for other load on the machine to pass (default 20s; quick 3s)")
		runs       = flag.Int("runs", 1, "fan-out and slow: interleaved runs of every contender (at each N); with 2 or more, a table of medians (fan-out) or of longest Publish ours / hub per run (slow) follows")
		manyN      = flag.Int("many-n", 0, "many: streams (default 100000, or what RLIMIT_NOFILE allows one server process; quick 1000)")
		manyProc   = flag.Int("many-per-proc", 0, "many: most streams per lean client process (default 19000, less where RLIMIT_NOFILE is lower)")
		manyWin    = flag.Duration("many-window", 0, "many: idle window for the heartbeat CPU (default 30s; quick 2s)")
		manyHB     = flag.Duration("many-heartbeat", 0, "many: heartbeat interval (default 15s; quick 1s)")
		manySteady = flag.Duration("many-steady", 0, "many: how long the steady rate runs (default 1m; quick 3s)")
		manyRate   = flag.Int("many-rate", 0, "many: events per second in the steady phase (default 10)")
		manyDial   = flag.Int("many-dial", 0, "many: connections being set up at once per client process (default 256)")
		pin        = flag.Bool("pin", false, "run the server on the first half of the CPU cores and the clients and this orchestrator on the rest (on 2 CPUs: server on CPU 0, clients on CPU 1)")
		serverCPUs = flag.String("server-cpus", "", "pin the server to these CPUs (a list: 0 or 0-3,8); the clients and this orchestrator get -client-cpus, or the rest")
		clientCPUs = flag.String("client-cpus", "", "pin the clients and this orchestrator to these CPUs; the server gets -server-cpus, or the rest")
	)
	flag.Parse()
	if !*all && !*quick && *workload == "" {
		fmt.Fprintln(os.Stderr, "say -all, -quick, or -workload (see -h)")
		os.Exit(2)
	}
	o := defaultOptions(*quick)
	if *quick {
		quietWait = 3 * time.Second
	}
	setIf(&quietWait, *quiet)
	if *workload != "" {
		o.workloads = map[string]bool{}
		for _, w := range strings.Split(*workload, ",") {
			o.workloads[strings.TrimSpace(w)] = true
		}
	}
	var err error
	if o.contenders, err = parseContenders(*list); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	if *ns != "" {
		o.fanoutN = nil
		for _, s := range strings.Split(*ns, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(s))
			if err != nil || n < 1 {
				fmt.Fprintln(os.Stderr, "bad -n:", s)
				os.Exit(2)
			}
			o.fanoutN = append(o.fanoutN, n)
		}
	}
	setIf(&o.idleN, *idleN)
	setIf(&o.idleWindow, *idleWin)
	setIf(&o.idleHeartbeat, *idleHB)
	setIf(&o.slowEvents, *slowEvents)
	setIf(&o.slowWT, *slowWT)
	if *slowPairs < 0 || *slowPairs > 20 { // each burst is a histogram of 256 KiB per client process
		fmt.Fprintln(os.Stderr, "bad -slow-pairs:", *slowPairs)
		os.Exit(2)
	}
	setIf(&o.slowPairs, *slowPairs)
	setIf(&o.benchtime, *benchtime)
	if *manyN < 0 || *manyProc < 0 || *manyRate < 0 || *manyDial < 0 {
		fmt.Fprintln(os.Stderr, "bad -many-n, -many-per-proc, -many-rate or -many-dial")
		os.Exit(2)
	}
	setIf(&o.manyN, *manyN)
	setIf(&o.manyPerProc, *manyProc)
	setIf(&o.manyWindow, *manyWin)
	setIf(&o.manyHB, *manyHB)
	setIf(&o.manySteady, *manySteady)
	setIf(&o.manyRate, *manyRate)
	setIf(&o.manyDial, *manyDial)
	// The many workload runs its own variants unless -contenders names some.
	o.manyContenders = o.contenders
	if *list == "all" {
		o.manyContenders = nil
		for _, name := range manyContenders {
			ci, _ := findContender(name)
			o.manyContenders = append(o.manyContenders, ci)
		}
	}
	if *profile != "" {
		if err := os.MkdirAll(*profile, 0o755); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		o.profileDir = *profile
	}
	if *runs < 1 || *runs > 50 {
		fmt.Fprintln(os.Stderr, "bad -runs:", *runs)
		os.Exit(2)
	}
	o.runs = *runs
	if o.pin, err = newPinning(*pin, *serverCPUs, *clientCPUs); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	// The orchestrator runs with the clients: exec'd again on their CPUs
	// (from here, so that the flags were checked once already).
	if err := pinSelf(o.pin); err != nil {
		fmt.Fprintln(os.Stderr, "pinning this process:", err)
		os.Exit(1)
	}
	raiseNoFile(1 << 20)
	if err := runAll(o, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func setIf[T comparable](dst *T, v T) {
	var zero T
	if v != zero {
		*dst = v
	}
}

// runRole runs this process (or goroutine, in tests) as a server or client.
func runRole(args []string, in io.Reader, out, errw io.Writer) error {
	fs := flag.NewFlagSet("role", flag.ContinueOnError)
	fs.SetOutput(errw)
	role := fs.String("role", "", "server or client")
	contender := fs.String("contender", "", "server: contender")
	hb := fs.Duration("hb", 0, "server: heartbeat")
	wt := fs.Duration("wt", 0, "server: write timeout")
	burst := fs.Int("burst", 0, "server: longest back-to-back burst")
	profile := fs.String("profile", "", "server: profile path prefix")
	url := fs.String("url", "", "client: stream URL")
	n := fs.Int("n", 1, "client: streams")
	stall := fs.Int("stall", -1, "client: index of the stream that stalls")
	src := fs.String("src", "", "client: comma-separated source addresses")
	size := fs.Int("size", 200, "client: payload size")
	typ := fs.String("type", eventType, "client: expected event type")
	phases := fs.String("phases", "0:1", "client: seq ranges from:to,...")
	addr := fs.String("addr", "", "lean client: server host:port")
	offset := fs.Int("offset", 0, "lean client: the first stream's user number")
	dial := fs.Int("dial", 256, "lean client: connections being set up at once")
	if err := fs.Parse(args); err != nil {
		return err
	}
	raiseNoFile(1 << 20)
	switch *role {
	case "server":
		if *profile != "" {
			stop, err := startProfiles(*profile)
			if err != nil {
				return err
			}
			defer stop()
		}
		return serverMain(*contender, Config{Heartbeat: *hb, WriteTimeout: *wt, Burst: *burst}, in, out, errw)
	case "leanclient":
		a := leanArgs{addr: *addr, n: *n, offset: *offset, size: *size, dial: *dial}
		if *src != "" {
			a.src = strings.Split(*src, ",")
		}
		return leanMain(a, in, out)
	case "client":
		a := clientArgs{url: *url, n: *n, stall: *stall, size: *size, typ: *typ}
		if *src != "" {
			a.src = strings.Split(*src, ",")
		}
		for _, p := range strings.Split(*phases, ",") {
			f, t, _ := strings.Cut(p, ":")
			from, err1 := strconv.Atoi(f)
			to, err2 := strconv.Atoi(t)
			if err1 != nil || err2 != nil || to <= from {
				return fmt.Errorf("bad phase %q", p)
			}
			a.phases = append(a.phases, phase{from, to})
		}
		return clientMain(a, in, out)
	}
	return fmt.Errorf("unknown role %q", *role)
}

type options struct {
	quick      bool
	workloads  map[string]bool // nil: all
	contenders []contenderInfo

	benchtime time.Duration

	fanoutN        []int
	fanoutEvents   int
	fanoutSize     int
	fanoutInterval time.Duration

	slowClients int
	slowEvents  int
	slowSize    int
	slowPairs   int
	slowWT      time.Duration

	idleN         int
	idleHeartbeat time.Duration
	idleWindow    time.Duration
	idleSettle    time.Duration

	// many: see many.go
	manyN          int // 0: from RLIMIT_NOFILE, up to 100,000
	manyPerProc    int // 0: 19,000
	manyHB         time.Duration
	manyWindow     time.Duration
	manySettle     time.Duration
	manySteady     time.Duration
	manyRate       int
	manySize       int
	manyDial       int
	manyContenders []contenderInfo

	profileDir string

	runs int     // fan-out: interleaved runs of every contender at each N
	pin  pinning // where the server and the clients run
}

func (o options) profilePath(workload, contender string, n int) string {
	if o.profileDir == "" {
		return ""
	}
	return fmt.Sprintf("%s/%s-%s-%d", o.profileDir, workload, contender, n)
}

func defaultOptions(quick bool) options {
	o := options{
		quick:          quick,
		benchtime:      time.Second,
		runs:           1,
		fanoutN:        []int{100, 1000, 5000},
		fanoutEvents:   200,
		fanoutSize:     200,
		fanoutInterval: 5 * time.Millisecond,
		slowClients:    100,
		slowEvents:     5000,
		slowSize:       1024,
		slowPairs:      5,
		slowWT:         10 * time.Second,
		idleN:          19900,
		idleHeartbeat:  15 * time.Second,
		idleWindow:     30 * time.Second,
		idleSettle:     2 * time.Second,
		manyHB:         15 * time.Second,
		manyWindow:     30 * time.Second,
		manySettle:     2 * time.Second,
		manySteady:     time.Minute,
		manyRate:       10,
		manySize:       100,
		manyDial:       256,
	}
	if quick {
		o.benchtime = 200 * time.Millisecond
		o.fanoutN = []int{100}
		o.slowEvents = 1000
		o.slowPairs = 2
		o.slowWT = time.Second
		o.idleN = 1000
		o.idleHeartbeat = time.Second
		o.idleWindow = 2 * time.Second
		o.idleSettle = 500 * time.Millisecond
		o.manyN = 1000
		o.manyHB = time.Second
		o.manyWindow = 2 * time.Second
		o.manySettle = 500 * time.Millisecond
		o.manySteady = 3 * time.Second
	}
	return o
}

// want says whether to run workload w: those named, or every one but many
// (which needs minutes and a high RLIMIT_NOFILE) with -all and -quick.
func (o options) want(w string) bool {
	if o.workloads == nil {
		return w != "many"
	}
	return o.workloads[w]
}
