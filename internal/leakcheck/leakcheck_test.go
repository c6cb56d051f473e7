package leakcheck

import (
	"strings"
	"testing"
	"time"
)

func TestFindsALeakedGoroutine(t *testing.T) {
	before := ids(stacks())
	stop := make(chan struct{})
	go parkedForever(stop)
	left := wait(func(g string) bool { return !before[id(g)] }, 50*time.Millisecond)
	close(stop)
	if len(left) != 1 || !strings.Contains(left[0], "parkedForever") {
		t.Fatalf("found %d goroutines, want the one parked: %q", len(left), left)
	}
	if left := wait(func(g string) bool { return !before[id(g)] }, time.Second); len(left) != 0 {
		t.Fatalf("after it ended, still found %q", left)
	}
}

func parkedForever(stop chan struct{}) { <-stop }
