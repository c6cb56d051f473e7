package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"unsafe"
)

// Pinning: with -pin (or -server-cpus and -client-cpus) the server process
// runs on one set of CPUs and the client processes, and this orchestrator,
// on another, so that the clients do not take the server's cores.
//
// The mask must be in place before the Go runtime of the child starts: the
// runtime sizes GOMAXPROCS from the affinity mask it finds at start, and
// sched_setaffinity on a running Go process would reach only one of its
// threads. So each child is forked from a thread whose own mask is the
// child's set (a child inherits the mask of the thread that forks it, and
// keeps it across exec), exactly as taskset does, without needing taskset:
// startPinned locks a goroutine to its thread, sets that thread's mask,
// starts the child, and lets the thread exit with the goroutine. The
// orchestrator pins itself the same way, by exec'ing itself again from such
// a thread (pinSelf). Each child reports the mask and GOMAXPROCS it found,
// and a session refuses a child that did not get what was asked.

// A cpuSet is a sorted list of CPU numbers.
type cpuSet []int

// parseCPUList parses a Linux CPU list: "0", "1-3", "0,2-5,8".
func parseCPUList(s string) (cpuSet, error) {
	var c cpuSet
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		lo, hi, isRange := strings.Cut(part, "-")
		a, err1 := strconv.Atoi(lo)
		b := a
		var err2 error
		if isRange {
			b, err2 = strconv.Atoi(hi)
		}
		if err1 != nil || err2 != nil || a < 0 || b < a || b >= maxCPUs {
			return nil, fmt.Errorf("bad CPU list %q", s)
		}
		for i := a; i <= b; i++ {
			c = append(c, i)
		}
	}
	slices.Sort(c)
	c = slices.Compact(c)
	if len(c) == 0 {
		return nil, fmt.Errorf("empty CPU list %q", s)
	}
	return c, nil
}

// String formats c as a CPU list: "0-3,8".
func (c cpuSet) String() string {
	var b strings.Builder
	for i := 0; i < len(c); {
		j := i
		for j+1 < len(c) && c[j+1] == c[j]+1 {
			j++
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Itoa(c[i]))
		if j > i {
			b.WriteByte('-')
			b.WriteString(strconv.Itoa(c[j]))
		}
		i = j + 1
	}
	return b.String()
}

func (c cpuSet) overlaps(d cpuSet) bool {
	for _, x := range c {
		if slices.Contains(d, x) {
			return true
		}
	}
	return false
}

func (c cpuSet) within(d cpuSet) bool {
	for _, x := range c {
		if !slices.Contains(d, x) {
			return false
		}
	}
	return true
}

const maxCPUs = 1024 // the size of the kernel's cpu_set_t in glibc

type cpuMask [maxCPUs / 64]uint64

func (c cpuSet) mask() *cpuMask {
	var m cpuMask
	for _, x := range c {
		m[x/64] |= 1 << (x % 64)
	}
	return &m
}

// getAffinity returns the CPUs the calling thread may run on (for a process
// whose threads were never pinned one by one, the process's).
func getAffinity() (cpuSet, error) {
	var m cpuMask
	_, _, e := syscall.RawSyscall(syscall.SYS_SCHED_GETAFFINITY, 0, unsafe.Sizeof(m), uintptr(unsafe.Pointer(&m)))
	if e != 0 {
		return nil, e
	}
	var c cpuSet
	for i := range maxCPUs {
		if m[i/64]&(1<<(i%64)) != 0 {
			c = append(c, i)
		}
	}
	return c, nil
}

// setThreadAffinity sets the mask of the calling thread only; the caller
// must hold it with runtime.LockOSThread.
func setThreadAffinity(c cpuSet) error {
	m := c.mask()
	_, _, e := syscall.RawSyscall(syscall.SYS_SCHED_SETAFFINITY, 0, unsafe.Sizeof(*m), uintptr(unsafe.Pointer(m)))
	if e != 0 {
		return fmt.Errorf("sched_setaffinity %s: %w", c, e)
	}
	return nil
}

// onPinnedThread runs f on a thread of its own whose mask is c; the thread
// exits afterwards (its goroutine ends still locked), so that its mask
// never reaches other goroutines.
func onPinnedThread(c cpuSet, f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread exits with this goroutine
		if err := setThreadAffinity(c); err != nil {
			errc <- err
			return
		}
		errc <- f()
	}()
	return <-errc
}

// startPinned starts cmd with the affinity mask c (none if c is empty). The
// fork happens on the calling thread, so the child inherits its mask.
func startPinned(cmd *exec.Cmd, c cpuSet) error {
	if len(c) == 0 {
		return cmd.Start()
	}
	return onPinnedThread(c, cmd.Start)
}

// pinnedEnv carries the placement into the orchestrator exec'd again on
// the client CPUs ("server CPUs/client CPUs"), which can no longer see the
// CPUs it left.
const pinnedEnv = "SSEBENCH_PINNED"

// pinSelf exec's this program again on p's client CPUs, so that every thread
// of the orchestrator, and its GOMAXPROCS, follow them. It returns only on
// failure, or when this process already is that exec (or was started on
// exactly those CPUs).
func pinSelf(p pinning) error {
	if !p.pinned() {
		return nil
	}
	if cur, err := getAffinity(); err == nil && slices.Equal(cur, p.clients) {
		return nil
	}
	if os.Getenv(pinnedEnv) != "" {
		cur, _ := getAffinity()
		return fmt.Errorf("exec'd to run on CPUs %s, but runs on %s", p.clients, cur)
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	env := append(os.Environ(), pinnedEnv+"="+p.server.String()+"/"+p.clients.String())
	return onPinnedThread(p.clients, func() error { return syscall.Exec(exe, os.Args, env) })
}

// splitCPUs splits the CPUs this process may use into a server set and a
// client set, whole physical cores to each side (so that no core's
// hyperthreads are shared between them): the server gets the first half
// of the cores, rounded down, and at least one.
func splitCPUs(avail cpuSet) (server, clients cpuSet, err error) {
	var cores [][]int // sibling groups, in order of their first CPU
	seen := map[int]bool{}
	for _, c := range avail {
		if seen[c] {
			continue
		}
		group := cpuSet{c}
		if b, err := os.ReadFile(fmt.Sprintf("/sys/devices/system/cpu/cpu%d/topology/thread_siblings_list", c)); err == nil {
			if sib, err := parseCPUList(strings.TrimSpace(string(b))); err == nil {
				group = slices.DeleteFunc(sib, func(x int) bool { return !slices.Contains(avail, x) })
			}
		}
		for _, x := range group {
			seen[x] = true
		}
		cores = append(cores, group)
	}
	if len(cores) < 2 {
		return nil, nil, errors.New("-pin needs at least two physical cores")
	}
	half := max(len(cores)/2, 1)
	for i, g := range cores {
		if i < half {
			server = append(server, g...)
		} else {
			clients = append(clients, g...)
		}
	}
	slices.Sort(server)
	slices.Sort(clients)
	return server, clients, nil
}

// pinning is the CPU placement of a run: empty sets mean not pinned.
type pinning struct {
	server, clients cpuSet
}

func (p pinning) pinned() bool { return len(p.server) > 0 }

// describe says where each side ran, for the tables.
func (p pinning) describe() string {
	if !p.pinned() {
		all, _ := getAffinity()
		return fmt.Sprintf("not pinned: the server, the clients and the orchestrator share CPUs %s (GOMAXPROCS %d each), so the clients compete with the server for the same cores", all, len(all))
	}
	return fmt.Sprintf("pinned: the server on CPUs %s (GOMAXPROCS %d), the clients and the orchestrator on CPUs %s (GOMAXPROCS %d per process); each process's mask and GOMAXPROCS checked when it starts",
		p.server, len(p.server), p.clients, len(p.clients))
}

// newPinning makes the placement from the flags: -pin splits the available
// CPUs; -server-cpus and -client-cpus name them (one alone: the other side
// gets the rest).
func newPinning(pin bool, serverList, clientList string) (pinning, error) {
	if !pin && serverList == "" && clientList == "" {
		return pinning{}, nil
	}
	if v := os.Getenv(pinnedEnv); v != "" { // pinSelf's exec: the plan made before it
		srv, cli, _ := strings.Cut(v, "/")
		server, err1 := parseCPUList(srv)
		clients, err2 := parseCPUList(cli)
		return pinning{server, clients}, errors.Join(err1, err2)
	}
	avail, err := getAffinity()
	if err != nil {
		return pinning{}, err
	}
	var p pinning
	if pin && serverList == "" && clientList == "" {
		p.server, p.clients, err = splitCPUs(avail)
		return p, err
	}
	rest := func(c cpuSet) cpuSet {
		return slices.DeleteFunc(slices.Clone(avail), func(x int) bool { return slices.Contains(c, x) })
	}
	if serverList != "" {
		if p.server, err = parseCPUList(serverList); err != nil {
			return p, err
		}
	}
	if clientList != "" {
		if p.clients, err = parseCPUList(clientList); err != nil {
			return p, err
		}
	}
	switch {
	case p.server == nil:
		p.server = rest(p.clients)
	case p.clients == nil:
		p.clients = rest(p.server)
	}
	switch {
	case len(p.server) == 0 || len(p.clients) == 0:
		return p, fmt.Errorf("no CPU left for the %s (this process may use %s)", map[bool]string{true: "server", false: "clients"}[len(p.server) == 0], avail)
	case p.server.overlaps(p.clients):
		return p, fmt.Errorf("server CPUs %s and client CPUs %s overlap", p.server, p.clients)
	case !p.server.within(avail) || !p.clients.within(avail):
		return p, fmt.Errorf("this process may use CPUs %s only", avail)
	}
	return p, nil
}

// placement adds to a role's hello the CPUs it may run on and its
// GOMAXPROCS, which the orchestrator checks against what it asked for.
func placement(r response) response {
	if c, err := getAffinity(); err == nil {
		r.CPUs = c.String()
	}
	r.Procs = runtime.GOMAXPROCS(0)
	return r
}

// checkPlacement says whether a child's hello shows the placement asked for.
func checkPlacement(name string, hello response, want cpuSet) error {
	if len(want) == 0 || inProcess {
		return nil
	}
	if hello.CPUs != want.String() || hello.Procs != len(want) {
		return fmt.Errorf("%s runs on CPUs %s with GOMAXPROCS %d, not on %s with %d", name, hello.CPUs, hello.Procs, want, len(want))
	}
	return nil
}
