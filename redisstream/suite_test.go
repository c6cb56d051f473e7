package redisstream

import (
	"testing"

	"github.com/lightsse/sse/internal/logtest"
	"github.com/lightsse/sse/redisstream/internal/redistest"
	"github.com/lightsse/sse/ssebroker"
)

// TestLog runs the tests that every ssebroker.Log must pass, each on a
// redis-server of its own.
func TestLog(t *testing.T) { logtest.Run(t, startStore) }

// startStore starts a redis-server for t, stopped when t ends.
func startStore(t *testing.T) logtest.Store { return store{redistest.Start(t)} }

// A store is a redis-server, as logtest sees it.
type store struct{ srv *redistest.Server }

// Open returns a Streams on a client of its own, whose MaxLen is keep.
func (s store) Open(t *testing.T, keep int) logtest.Process {
	return process{newStreams(t, s.srv, &Options{MaxLen: keep})}
}

// A process is a Streams, as logtest sees it.
type process struct{ s *Streams }

func (p process) Log(t testing.TB, name string) ssebroker.Log { return topic(t, p.s, name) }

// Trim does nothing: MaxLen trims a topic as each Append goes.
func (process) Trim(testing.TB) {}

func (p process) Close() { p.s.Close() }
