// Package logtest holds what the tests of every ssebroker.Log share: a
// conformance suite (Run, for what ssebroker.Log's doc asks of any Log;
// RunBrokers, for Brokers of several instances that share one), and the
// helpers those tests and a Log's own tests are built of: test events, a
// Follower that checks what Follow hands it, instances of a deployment and
// the SSE clients that read them, and a TCP proxy that can freeze.
//
// A Log's package runs the suites with an adapter: how to start an empty
// store for a test (a Redis server, a database), and how to open a process's
// connections to it.
package logtest

import (
	"testing"

	"github.com/lightsse/sse/ssebroker"
)

// A Store is where a Log implementation keeps its events for one test: a
// Redis server, a database. Every Process opened on it sees the same
// topics.
type Store interface {
	// Open opens a process's connections to the store: what one server
	// instance of an application would have. Each topic's Log keeps at
	// least its newest keep events (with keep 0, the implementation's
	// default), and after Process.Trim no more. The Process is closed
	// when t ends.
	Open(t *testing.T, keep int) Process
}

// A Process is one process's connections to a Store, and its Logs.
type Process interface {
	// Log returns the Log of the topic name. Logs of one name, of every
	// Process of a Store, are one log.
	Log(t testing.TB, name string) ssebroker.Log
	// Trim has the Process's Logs drop, now, the events older than the
	// newest keep (see Store.Open), if they do not as they append.
	Trim(t testing.TB)
	// Close closes the Process, as its process's end would: its Logs'
	// calls then fail, and their Follows end. A second Close does
	// nothing.
	Close()
}
