// Package leakcheck finds goroutines that outlive the code that started them,
// with nothing but the runtime's own goroutine dump.
package leakcheck

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
)

// Check records the goroutines running now and, when t ends, fails t if any
// other goroutine is still running after a grace period of up to 5 s (time
// for closed connections and stopped timers to unwind). Tests that use it
// must not run in parallel with others.
func Check(t testing.TB) {
	t.Helper()
	before := ids(stacks())
	t.Cleanup(func() {
		if left := wait(func(g string) bool { return !before[id(g)] }, grace); len(left) > 0 {
			t.Errorf("%d goroutine(s) outlived the test:\n\n%s", len(left), strings.Join(left, "\n\n"))
		}
	})
}

// Main runs the tests and then fails the run if any goroutine other than the
// test binary's own is still running, after the same grace period.
func Main(m *testing.M) { MainAfter(m, func() {}) }

// MainAfter is Main, but calls after once the tests have run and before it
// looks for goroutines left: to stop what all the tests of a package
// shared (a database server, say), whatever their outcome.
func MainAfter(m *testing.M, after func()) {
	code := m.Run()
	after()
	if code == 0 {
		if left := wait(func(string) bool { return true }, grace); len(left) > 0 {
			fmt.Fprintf(os.Stderr, "leakcheck: %d goroutine(s) outlived the tests:\n\n%s\n", len(left), strings.Join(left, "\n\n"))
			code = 1
		}
	}
	os.Exit(code)
}

// grace is how long goroutines get to unwind before they count as leaked.
const grace = 5 * time.Second

// wait polls until no goroutine selected by consider is left, or the grace
// period passes, and returns the stacks of those left.
func wait(consider func(stack string) bool, grace time.Duration) []string {
	deadline := time.Now().Add(grace)
	for delay := time.Millisecond; ; delay = min(2*delay, 100*time.Millisecond) {
		var left []string
		for _, g := range stacks() {
			if consider(g) && !expected(g) {
				left = append(left, g)
			}
		}
		if len(left) == 0 || time.Now().After(deadline) {
			return left
		}
		time.Sleep(delay)
	}
}

// expected reports goroutines that belong to the test binary or the runtime.
func expected(stack string) bool {
	for _, s := range []string{
		"leakcheck.stacks(",     // the goroutine asking
		"testing.(*M).",         // the test main
		"testing.(*T).Run(",     // a parent test waiting on its subtests
		"testing.tRunner.func1", // a test's cleanup, running this check
		"testing.runTests",      //
		"os/signal.signal_recv", // signal handling
		"runtime.ensureSigM",    //
		"runtime/trace.Start",   // -trace
		"testing.(*F).Fuzz",     // the fuzz engine
		"internal/fuzz.",        //
		"created by runtime.gc", // runtime workers
		"runtime.goexit1",       //
		"runtime.ReadTrace",     //
		"testing.runFuzzTests",  //
		"testing.runFuzzing",    //
		"testing.(*common).Cleanup",
	} {
		if strings.Contains(stack, s) {
			return true
		}
	}
	return false
}

func stacks() []string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			return strings.Split(strings.TrimSpace(string(buf[:n])), "\n\n")
		}
		buf = make([]byte, 2*len(buf))
	}
}

// id returns the "goroutine N" heading of a stack.
func id(stack string) string {
	head, _, _ := strings.Cut(stack, " [")
	return head
}

func ids(stacks []string) map[string]bool {
	m := make(map[string]bool, len(stacks))
	for _, g := range stacks {
		m[id(g)] = true
	}
	return m
}
