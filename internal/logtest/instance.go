package logtest

import (
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lightsse/sse"
	"github.com/lightsse/sse/internal/brokertest"
	"github.com/lightsse/sse/ssebroker"
)

// An Instance is one process of a deployment, as production runs it: a
// Process's Log of the topic "room", a Broker on it, and an HTTP server on
// 127.0.0.1 that serves the Broker's stream.
type Instance struct {
	Name    string
	Process Process           // its connections to the Store
	Log     ssebroker.Log     // the topic "room", as Process gave it
	Broker  *ssebroker.Broker // on Log
	URL     string            // where its stream is served

	srv   *httptest.Server
	heads atomic.Int64 // calls of the Broker's deliver(head, nil)
	dead  atomic.Bool
}

// NewInstance starts an Instance on p, its Broker with the Options bo
// (nil for the defaults) but for their Log; the test's end stops it.
func NewInstance(t *testing.T, name string, p Process, bo *ssebroker.Options) *Instance {
	t.Helper()
	in := &Instance{Name: name, Process: p, Log: p.Log(t, "room")}
	var opts ssebroker.Options
	if bo != nil {
		opts = *bo
	}
	opts.Log = countHeads(in.Log, &in.heads)
	in.Broker = brokertest.New(t, &opts)
	in.srv = httptest.NewServer(in.Broker)
	in.URL = in.srv.URL
	t.Cleanup(in.srv.Close)                 // after the Broker's streams have ended
	t.Cleanup(func() { in.Broker.Close() }) // first
	return in
}

// NewInstances starts n Instances, named A, B, and so on, each on a Process
// that open opens.
func NewInstances(t *testing.T, n int, open func(t *testing.T) Process, bo *ssebroker.Options) []*Instance {
	t.Helper()
	var ins []*Instance
	for i := range n {
		ins = append(ins, NewInstance(t, string(rune('A'+i)), open(t), bo))
	}
	return ins
}

// At returns an Instance that is only a name and the URL of a stream that
// something else serves, for a Client to read.
func At(name, url string) *Instance { return &Instance{Name: name, URL: url} }

// headCounter is a Log that counts the heads its Follows deliver.
type headCounter struct {
	ssebroker.Log
	heads *atomic.Int64
}

// countHeads returns log, counting in heads the calls of deliver(head, nil)
// that its Follows make.
func countHeads(log ssebroker.Log, heads *atomic.Int64) ssebroker.Log {
	return headCounter{log, heads}
}

func (h headCounter) Follow(deliver func(ssebroker.Position, []byte)) func() {
	return h.Log.Follow(func(pos ssebroker.Position, w []byte) {
		if w == nil {
			h.heads.Add(1)
		}
		deliver(pos, w)
	})
}

// WaitFollowing waits until every Instance's Broker follows its Log (its
// feed has had the Log's head), so that a stream that has caught up reads
// from the Broker's history, not from the Log: only then does it stay open
// while the Store does not answer.
func WaitFollowing(t *testing.T, ins []*Instance) {
	t.Helper()
	for _, in := range ins {
		for deadline := time.Now().Add(20 * time.Second); in.heads.Load() == 0; time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: its Broker does not follow the Log after 20 s", in.Name)
			}
		}
	}
}

// Kill stops the Instance as a crash would for its clients: their
// connections break, with no retry field. Its Process is closed.
func (in *Instance) Kill() {
	in.dead.Store(true)
	in.srv.CloseClientConnections()
	in.Broker.Close()
	in.srv.Close()
	in.Process.Close()
}

// Dead reports whether Kill has stopped the Instance.
func (in *Instance) Dead() bool { return in.dead.Load() }

// Publish publishes on the Instance's Broker the events whose data are the
// numbers from to to (inclusive); it fails the test, and stops, at the first
// that fails.
func (in *Instance) Publish(t testing.TB, from, to int) {
	t.Helper()
	for n := from; n <= to; n++ {
		if err := in.Broker.Publish(sse.Event{Data: strconv.Itoa(n)}); err != nil {
			t.Errorf("%s: Publish %d: %v", in.Name, n, err)
			return
		}
	}
}
