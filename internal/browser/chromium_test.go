package browser

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// chromiumNames are the commands looked up on PATH, in order, when
// SSE_CHROMIUM is not set.
var chromiumNames = []string{"chromium", "chromium-browser", "google-chrome"}

// findChromium returns the browser to run: $SSE_CHROMIUM when set, else the
// first of chromiumNames on PATH. explicit reports that SSE_CHROMIUM was set.
func findChromium() (path string, explicit bool, err error) {
	if p := os.Getenv("SSE_CHROMIUM"); p != "" {
		p, err := exec.LookPath(p)
		return p, true, err
	}
	for _, name := range chromiumNames {
		if p, err := exec.LookPath(name); err == nil {
			return p, false, nil
		}
	}
	return "", false, fmt.Errorf("none of %s found on PATH", strings.Join(chromiumNames, ", "))
}

// requireChromium returns the browser's path, or ends the test: a skip that
// says how to run it, or a failure when CI=true or SSE_CHROMIUM is wrong.
func requireChromium(t *testing.T) string {
	t.Helper()
	p, explicit, err := findChromium()
	switch {
	case err == nil:
		return p
	case explicit:
		t.Fatalf("SSE_CHROMIUM=%q: %v", os.Getenv("SSE_CHROMIUM"), err)
	case os.Getenv("CI") == "true":
		t.Fatalf("Chromium is required when CI=true: %v (install it with `apt-get install -y chromium`, or set SSE_CHROMIUM)", err)
	default:
		t.Skipf("skipping browser test: %v; to run it, `apt-get install chromium` (Debian, as root), or set SSE_CHROMIUM to a Chromium or Chrome binary", err)
	}
	return ""
}

// chromiumFlags make a headless run quiet and self-contained: no first-run UI,
// no connections to Google (this machine's network refuses them), no timer
// throttling that would skew the reconnection timings the tests measure.
var chromiumFlags = []string{
	"--headless",
	"--no-sandbox", // the tests run as root
	"--disable-gpu",
	"--disable-quic",
	"--no-first-run",
	"--no-default-browser-check",
	"--disable-background-networking",
	"--disable-component-update",
	"--disable-sync",
	"--disable-extensions",
	"--disable-background-timer-throttling",
	"--disable-renderer-backgrounding",
	"--disable-backgrounding-occluded-windows",
	"--mute-audio",
	// Console messages go to stderr, where pageOutput picks out the page's
	// record of what it saw (see pageLib's note).
	"--enable-logging=stderr",
	"--v=0",
}

// reaperOnce makes this process the subreaper of its descendants, so that
// Chromium's helpers, orphaned when the group is killed, are re-parented here
// and reaped by us rather than left as zombies of PID 1 (which, in some
// containers, does not reap at once).
var reaperOnce sync.Once

const prSetChildSubreaper = 36 // from linux/prctl.h

// browserProc is one running Chromium: the leader of its own process group.
type browserProc struct {
	cmd    *exec.Cmd
	pgid   int
	dir    string // the fresh --user-data-dir
	out    *pageOutput
	exited chan struct{} // closed once cmd.Wait has returned
}

// launchChromium starts Chromium on url with a fresh user-data-dir, in a
// process group of its own. The test's cleanup kills the whole group, reaps
// it, checks with pgrep that no process of it is left, and removes the
// user-data-dir.
func launchChromium(t *testing.T, bin, url string, extra ...string) *browserProc {
	t.Helper()
	reaperOnce.Do(func() {
		if _, _, e := syscall.RawSyscall(syscall.SYS_PRCTL, prSetChildSubreaper, 1, 0); e != 0 {
			t.Logf("prctl(PR_SET_CHILD_SUBREAPER): %v; relying on init to reap Chromium's helpers", e)
		}
	})
	dir, err := os.MkdirTemp("", "sse-chromium-")
	if err != nil {
		t.Fatal(err)
	}
	args := append([]string{}, chromiumFlags...)
	args = append(args, "--user-data-dir="+dir)
	args = append(args, extra...)
	args = append(args, url)

	b := &browserProc{dir: dir, out: &pageOutput{}, exited: make(chan struct{})}
	b.cmd = exec.Command(bin, args...)
	b.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	b.cmd.Stdout = b.out
	b.cmd.Stderr = b.out
	// HOME in the user-data-dir keeps ~/.config and ~/.cache out of the way,
	// and puts the dir on the crash handler's command line, where stop finds it.
	b.cmd.Env = append(os.Environ(), "HOME="+dir)
	if err := b.cmd.Start(); err != nil {
		os.RemoveAll(dir)
		t.Fatalf("start %s: %v", bin, err)
	}
	b.pgid = b.cmd.Process.Pid
	go func() {
		_ = b.cmd.Wait()
		close(b.exited)
	}()
	t.Cleanup(func() { b.stop(t) })
	return b
}

// kill sends SIGKILL to the whole process group.
func (b *browserProc) kill() {
	_ = syscall.Kill(-b.pgid, syscall.SIGKILL)
}

// stop kills the group, and the helpers that left it (Chromium starts its
// crash handler in a session of its own, found by the user-data-dir on its
// command line), waits for every one of them to be gone, checks with pgrep,
// and removes the user-data-dir.
func (b *browserProc) stop(t *testing.T) {
	t.Helper()
	// Find the strays while they live: a zombie has no command line.
	strays := map[int]bool{} // helpers outside the group, to kill and reap
	findStrays := func() {
		for _, f := range strings.Fields(pgrep(t, "-f", "--", b.dir)) {
			if pid, err := strconv.Atoi(f); err == nil && pid > 0 && !strays[pid] {
				strays[pid] = true
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
	findStrays()
	b.kill()
	deadline := time.Now().Add(10 * time.Second)
	select {
	case <-b.exited:
	case <-time.After(time.Until(deadline)):
		t.Errorf("Chromium (pid %d) did not exit after SIGKILL", b.pgid)
	}
	var left string
	for {
		// Reap what was re-parented to us (we are a subreaper): only after
		// cmd.Wait has reaped the leader, so as never to take its status.
		for {
			var ws syscall.WaitStatus
			if pid, err := syscall.Wait4(-b.pgid, &ws, syscall.WNOHANG, nil); pid <= 0 || err != nil {
				break
			}
		}
		findStrays()
		for pid := range strays {
			var ws syscall.WaitStatus // ECHILD: not ours to reap; init does
			if got, err := syscall.Wait4(pid, &ws, syscall.WNOHANG, nil); got == pid || err != nil {
				delete(strays, pid)
			}
		}
		left = pgrep(t, "-a", "-g", strconv.Itoa(b.pgid)) + pgrep(t, "-a", "-f", "--", b.dir)
		if left == "" && len(strays) == 0 || time.Now().After(deadline) {
			break
		}
		b.kill() // a helper forked after the first kill
		time.Sleep(10 * time.Millisecond)
	}
	if left != "" || len(strays) > 0 {
		t.Errorf("Chromium processes left behind:\n%s(and %d not reaped)", left, len(strays))
	}
	if err := os.RemoveAll(b.dir); err != nil {
		t.Errorf("remove user-data-dir: %v", err)
	}
	if t.Failed() {
		t.Logf("%s", b.out.report())
	}
}

// pgrep lists the processes matching args, one a line (with -a, each pid's
// command line too), or returns "" when none match.
func pgrep(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("pgrep", args...).Output()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return string(out)
	case errors.As(err, &exit) && exit.ExitCode() == 1: // nothing matched
		return ""
	default:
		t.Errorf("pgrep %s: %v", strings.Join(args, " "), err)
		return ""
	}
}

// pageOutput takes Chromium's stdout and stderr. It keeps the page's own
// record of what it saw, the lines the page's note writes to the console
// (Chromium logs each as `[...:INFO:CONSOLE:N] "sse-record {...}", source:
// ...`), the last recordsKept of them; and of everything else, which is
// mostly Chromium complaining that there is no D-Bus, only the last
// otherKept lines.
type pageOutput struct {
	mu      sync.Mutex
	partial []byte   // a line not ended yet
	records []string // the last recordsKept records, oldest first
	total   int      // records seen in all
	other   []string // the last otherKept other lines
}

const (
	recordsKept = 40
	otherKept   = 5
	recordMark  = `"sse-record `
)

func (o *pageOutput) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.partial = append(o.partial, p...)
	for {
		i := bytes.IndexByte(o.partial, '\n')
		if i < 0 {
			break
		}
		o.line(string(o.partial[:i]))
		o.partial = o.partial[i+1:]
	}
	o.partial = bytes.Clone(o.partial) // let the consumed bytes go
	return len(p), nil
}

// line files one line of output.
func (o *pageOutput) line(l string) {
	if _, rec, ok := strings.Cut(l, recordMark); ok {
		if i := strings.LastIndex(rec, `", source: `); i >= 0 {
			rec = rec[:i]
		}
		o.total++
		o.records = append(o.records, rec)
		if len(o.records) > recordsKept {
			o.records = o.records[1:]
		}
		return
	}
	o.other = append(o.other, l)
	if len(o.other) > otherKept {
		o.other = o.other[1:]
	}
}

// report says what the page had seen, newest last, and Chromium's last few
// other lines.
func (o *pageOutput) report() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	var b strings.Builder
	if o.total == 0 {
		b.WriteString("The page recorded nothing (did it load?).\n")
	} else {
		fmt.Fprintf(&b, "What the page had seen (its last %d records of %d):\n", len(o.records), o.total)
		for _, r := range o.records {
			b.WriteString("  " + r + "\n")
		}
	}
	fmt.Fprintf(&b, "Chromium's last %d lines of other output:\n", len(o.other))
	for _, l := range o.other {
		b.WriteString("  " + l + "\n")
	}
	return b.String()
}

// TestChromiumLeavesNothing checks the driver itself: a launch on a page
// that reports back, then no process of the group and no user-data-dir left.
func TestChromiumLeavesNothing(t *testing.T) {
	var dir string
	var pgid int
	t.Run("launch", func(t *testing.T) {
		p := newPage(t)
		p.start(`report('done', navigator.userAgent);`)
		var ua string
		p.await("done", &ua)
		if !strings.Contains(ua, "Chrome/") {
			t.Errorf("user agent %q is not Chromium's", ua)
		}
		dir, pgid = p.browser.dir, p.browser.pgid
	})
	if dir == "" {
		return
	}
	if left := pgrep(t, "-a", "-g", strconv.Itoa(pgid)) + pgrep(t, "-a", "-f", "--", dir); left != "" {
		t.Errorf("processes left after the test:\n%s", left)
	}
	if _, err := os.Stat(filepath.Clean(dir)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("user-data-dir %s still there: %v", dir, err)
	}
}
