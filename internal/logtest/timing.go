package logtest

import (
	"testing"
	"time"
)

// Slack is how much longer than its bound a call may take on a busy
// machine before Within fails a test.
const Slack = 2 * time.Second

// Within fails the test if d, what took it, exceeds bound by more than
// Slack.
func Within(t testing.TB, what string, d, bound time.Duration) {
	t.Helper()
	if d > bound+Slack {
		t.Errorf("%s took %v, over its bound %v (plus %v of slack)", what, d, bound, Slack)
	}
}

// WaitClosed waits until ch is closed; it fails the test after 10 s.
func WaitClosed(t testing.TB, what string, ch <-chan struct{}) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatalf("waited 10 s for %s", what)
	}
}
