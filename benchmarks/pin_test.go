package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

func TestCPUList(t *testing.T) {
	for in, want := range map[string]string{"0": "0", "1-3": "1-3", "3,0-1": "0-1,3", "0,2,4-7,5": "0,2,4-7", " 8 , 9": "8-9"} {
		c, err := parseCPUList(in)
		if err != nil || c.String() != want {
			t.Errorf("parseCPUList(%q) = %v (%q), %v; want %q", in, c, c.String(), err, want)
		}
	}
	for _, in := range []string{"", "a", "3-1", "-1", "0-", "2000"} {
		if c, err := parseCPUList(in); err == nil {
			t.Errorf("parseCPUList(%q) = %v, want an error", in, c)
		}
	}
	if _, err := newPinning(false, "0", "0"); err == nil {
		t.Error("overlapping server and client CPUs accepted")
	}
}

// A child started by startPinned runs on the CPUs asked for, with a
// GOMAXPROCS to match, and the parent's threads keep their mask.
func TestStartPinned(t *testing.T) {
	avail, err := getAffinity()
	if err != nil {
		t.Skip("sched_getaffinity:", err)
	}
	want := cpuSet{avail[len(avail)-1]}
	cmd := exec.Command(os.Args[0], "-test.run=^TestPinHelper$")
	cmd.Env = append(os.Environ(), "SSEBENCH_PIN_HELPER=1")
	var out bytes.Buffer
	cmd.Stdout = &out
	if err := startPinned(cmd, want); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatal(err, out.String())
	}
	_, line, _ := strings.Cut(out.String(), "PLACEMENT ")
	line, _, _ = strings.Cut(line, "\n")
	if wantLine := fmt.Sprintf("%s %d", want, len(want)); line != wantLine {
		t.Errorf("child placement %q, want %q", line, wantLine)
	}
	if now, _ := getAffinity(); !slices.Equal(now, avail) {
		t.Errorf("parent now on %v, was on %v", now, avail)
	}
}

func TestPinHelper(t *testing.T) {
	if os.Getenv("SSEBENCH_PIN_HELPER") == "" {
		t.Skip("run by TestStartPinned")
	}
	r := placement(response{})
	fmt.Printf("PLACEMENT %s %d\n", r.CPUs, r.Procs)
}
