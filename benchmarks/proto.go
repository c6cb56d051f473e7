package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"
)

// The orchestrator drives a server process and client processes with one
// JSON object per line on their stdin, and reads one JSON reply per line,
// matched by ID, from their stdout. Long commands (a publish run) reply when
// done, so several commands may be in flight.

type request struct {
	ID       int           `json:"id"`
	Cmd      string        `json:"cmd"`
	N        int           `json:"n,omitempty"`
	Size     int           `json:"size,omitempty"`
	From     int           `json:"from,omitempty"`
	To       int           `json:"to,omitempty"`
	Interval time.Duration `json:"interval,omitempty"`
}

type response struct {
	ID  int    `json:"id"`
	Err string `json:"err,omitempty"`

	// hello, server and client: the CPUs this process may run on, and its
	// GOMAXPROCS
	CPUs  string `json:"cpus,omitempty"`
	Procs int    `json:"procs,omitempty"`

	// server
	Addr        string `json:"addr,omitempty"`
	RSS         int64  `json:"rss,omitempty"`  // KiB
	HWM         int64  `json:"hwm,omitempty"`  // KiB
	Peak        int64  `json:"peak,omitempty"` // KiB, sampled since the last peakreset
	CPU         int64  `json:"cpu,omitempty"`  // ns
	Now         int64  `json:"now,omitempty"`  // Unix ns
	Goroutines  int    `json:"goroutines,omitempty"`
	Stacks      int64  `json:"stacks,omitempty"` // bytes of goroutine stacks
	Heap        int64  `json:"heap,omitempty"`   // bytes of heap objects (live and not yet swept)
	Start       int64  `json:"start,omitempty"`  // Unix ns: first event's schedule
	End         int64  `json:"end,omitempty"`    // Unix ns: last Publish returned
	Published   int    `json:"published,omitempty"`
	LateP50     int64  `json:"lateP50,omitempty"` // ns: Publish call start minus schedule
	LateP99     int64  `json:"lateP99,omitempty"`
	MaxPub      int64  `json:"maxPub,omitempty"`      // ns
	MeanPub     int64  `json:"meanPub,omitempty"`     // ns
	InPubSince  int64  `json:"inPubSince,omitempty"`  // Unix ns: a Publish call in progress since
	StallDone   int64  `json:"stallDone,omitempty"`   // Unix ns: the stalled stream's handler returned
	StallClosed int64  `json:"stallClosed,omitempty"` // Unix ns: its connection was closed
	SchedWait   int64  `json:"schedWait,omitempty"`   // ns: longest run-queue wait (lower bound) since the last publish run started
	// Streams the contender has open and has ended itself (falling behind,
	// a write timeout), where it counts them (HasEnds).
	HasEnds    bool  `json:"hasEnds,omitempty"`
	Open       int64 `json:"open,omitempty"`
	FellBehind int64 `json:"fellBehind,omitempty"`
	TimedOut   int64 `json:"timedOut,omitempty"`

	// client
	Connected int    `json:"connected,omitempty"`
	Failed    int    `json:"failed,omitempty"`
	FirstErr  string `json:"firstErr,omitempty"`
	Synced    int    `json:"synced,omitempty"`
	Closed    int    `json:"closed,omitempty"`
	Recv      int64  `json:"recv,omitempty"` // measured events received by non-stalled streams
	Bad       int64  `json:"bad,omitempty"`
	Comments  int64  `json:"comments,omitempty"`
	// the lean client (many workload): when its last stream got its
	// response header (Unix ns), and its own memory (KiB)
	LastConn  int64 `json:"lastConn,omitempty"`
	ClientRSS int64 `json:"clientRSS,omitempty"`
	// StalledSeen is how many distinct measured events the stream that
	// stalls has received (over every phase).
	StalledSeen int64 `json:"stalledSeen,omitempty"`

	// client report for a phase
	Count       int64      `json:"count,omitempty"`
	Lost        int64      `json:"lost,omitempty"`
	Dup         int64      `json:"dup,omitempty"`
	Reord       int64      `json:"reord,omitempty"`
	Complete    int        `json:"complete,omitempty"`
	Streams     int        `json:"streams,omitempty"`
	Hist        [][2]int64 `json:"hist,omitempty"` // bucket, count
	LastRecv    int64      `json:"lastRecv,omitempty"`
	StalledRecv int64      `json:"stalledRecv,omitempty"`
}

// A proc is a server or client, in another process (the benchmark) or in
// this one (the smoke test).
type proc struct {
	name   string
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stderr *tailBuffer

	mu      sync.Mutex
	enc     *json.Encoder
	next    int
	waiters map[int]chan response
	first   chan response // the unsolicited first line (server: its address)
	dead    chan struct{}
	exitErr error
}

// inProcess makes spawn run roles as goroutines (go test).
var inProcess = false

// spawn starts a role; in another process, on the CPUs in cpus if any.
func spawn(name string, args []string, cpus cpuSet) (*proc, error) {
	p := &proc{name: name, waiters: make(map[int]chan response), first: make(chan response, 1),
		dead: make(chan struct{}), stderr: &tailBuffer{max: 8 << 10}}
	var stdout io.Reader
	if inProcess {
		inR, inW := io.Pipe()
		outR, outW := io.Pipe()
		p.stdin, stdout = inW, outR
		go func() {
			err := runRole(args, inR, outW, p.stderr)
			outW.CloseWithError(errors.Join(err, io.EOF))
		}()
	} else {
		exe, err := os.Executable()
		if err != nil {
			return nil, err
		}
		p.cmd = exec.Command(exe, args...)
		p.cmd.Stderr = p.stderr
		if p.stdin, err = p.cmd.StdinPipe(); err != nil {
			return nil, err
		}
		out, err := p.cmd.StdoutPipe()
		if err != nil {
			return nil, err
		}
		stdout = out
		if err := startPinned(p.cmd, cpus); err != nil {
			return nil, err
		}
	}
	p.enc = json.NewEncoder(p.stdin)
	go p.read(stdout)
	return p, nil
}

func (p *proc) read(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	gotFirst := false
	for sc.Scan() {
		var resp response
		if err := json.Unmarshal(sc.Bytes(), &resp); err != nil {
			continue
		}
		if !gotFirst && resp.ID == 0 {
			gotFirst = true
			p.first <- resp
			continue
		}
		p.mu.Lock()
		ch := p.waiters[resp.ID]
		delete(p.waiters, resp.ID)
		p.mu.Unlock()
		if ch != nil {
			ch <- resp
		}
	}
	if p.cmd != nil {
		p.exitErr = p.cmd.Wait()
	}
	close(p.dead)
}

// hello waits for the process's first line.
func (p *proc) hello(timeout time.Duration) (response, error) {
	select {
	case r := <-p.first:
		return r, nil
	case <-p.dead:
		return response{}, fmt.Errorf("%s exited: %v %s", p.name, p.exitErr, p.stderr.String())
	case <-time.After(timeout):
		return response{}, fmt.Errorf("%s: no hello in %v", p.name, timeout)
	}
}

// start sends req and returns the channel its reply will arrive on.
func (p *proc) start(req request) <-chan response {
	ch := make(chan response, 1)
	p.mu.Lock()
	p.next++
	req.ID = p.next
	p.waiters[req.ID] = ch
	err := p.enc.Encode(req)
	p.mu.Unlock()
	if err != nil {
		ch <- response{Err: err.Error()}
	}
	return ch
}

func (p *proc) call(req request, timeout time.Duration) (response, error) {
	ch := p.start(req)
	select {
	case r := <-ch:
		if r.Err != "" {
			return r, fmt.Errorf("%s %s: %s", p.name, req.Cmd, r.Err)
		}
		return r, nil
	case <-p.dead:
		return response{}, fmt.Errorf("%s exited during %s: %v %s", p.name, req.Cmd, p.exitErr, p.stderr.String())
	case <-time.After(timeout):
		return response{}, fmt.Errorf("%s %s: no reply in %v", p.name, req.Cmd, timeout)
	}
}

// stop asks the process to quit and kills it if it has not within grace.
func (p *proc) stop(grace time.Duration) {
	p.mu.Lock()
	_ = p.enc.Encode(request{Cmd: "quit"})
	p.mu.Unlock()
	select {
	case <-p.dead:
	case <-time.After(grace):
		if p.cmd != nil && p.cmd.Process != nil {
			_ = p.cmd.Process.Kill()
		}
		select {
		case <-p.dead:
		case <-time.After(5 * time.Second):
		}
	}
	_ = p.stdin.Close()
}

// tailBuffer keeps the last bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	b   []byte
	max int
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = append(t.b[:0], t.b[len(t.b)-t.max:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.TrimSpace(string(t.b))
}

// A commanded client process answers the orchestrator's commands (see
// serveCommands).
type commanded interface {
	connect(response) response // opens the streams; answered when done
	status(response) response  // how many are connected, and the first error
	shutdown()                 // closes every stream, at quit or when in ends
}

// serveCommands is a client process's side of the orchestrator's protocol:
// a first reply that says where the process runs, then one reply per
// request, a JSON object a line each way, until quit or the end of in.
// connect, status and quit are every client's; own answers the rest, and
// reports false for a command it does not know.
func serveCommands(in io.Reader, out io.Writer, c commanded, own func(req request, resp response) (response, bool)) error {
	defer c.shutdown()
	rep := &replier{enc: json.NewEncoder(out)}
	rep.reply(placement(response{Now: time.Now().UnixNano()}))
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var req request
		if err := json.Unmarshal(sc.Bytes(), &req); err != nil {
			continue
		}
		resp := response{ID: req.ID}
		switch req.Cmd {
		case "connect":
			go func() { rep.reply(c.connect(resp)) }()
			continue
		case "status":
			resp = c.status(resp)
		case "quit":
			return nil
		default:
			var known bool
			if resp, known = own(req, resp); !known {
				resp.Err = "unknown command " + req.Cmd
			}
		}
		rep.reply(resp)
	}
	return nil
}

// replier writes replies one line at a time from many goroutines.
type replier struct {
	mu  sync.Mutex
	enc *json.Encoder
}

func (r *replier) reply(resp response) {
	r.mu.Lock()
	defer r.mu.Unlock()
	_ = r.enc.Encode(resp)
}
