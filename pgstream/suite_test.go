package pgstream

import (
	"testing"

	"github.com/lightsse/sse/internal/logtest"
	"github.com/lightsse/sse/ssebroker"
)

// TestLog runs the tests that every ssebroker.Log must pass, each on a
// database of its own.
func TestLog(t *testing.T) { logtest.Run(t, startStore) }

// startStore makes a database for t, with the tables of the default
// Options.
func startStore(t *testing.T) logtest.Store { return store{newDB(t)} }

// A store is a database, as logtest sees it.
type store struct{ url string }

// Open returns a Streams on a pool of its own, whose MaxLen is keep. It
// trims only when asked to, by Trim.
func (s store) Open(t *testing.T, keep int) logtest.Process {
	return process{newStreams(t, s.url, &Options{MaxLen: keep, TrimInterval: -1})}
}

// A process is a Streams, as logtest sees it.
type process struct{ s *Streams }

func (p process) Log(t testing.TB, name string) ssebroker.Log { return topic(t, p.s, name) }

func (p process) Trim(t testing.TB) {
	t.Helper()
	if _, err := p.s.Trim(t.Context()); err != nil {
		t.Fatal(err)
	}
}

func (p process) Close() { p.s.Close() }

// streamsOf returns the Streams of an Instance on a process.
func streamsOf(in *logtest.Instance) *Streams { return in.Process.(process).s }

// topicOf returns the Topic of an Instance on a process.
func topicOf(in *logtest.Instance) *Topic { return in.Log.(*Topic) }
