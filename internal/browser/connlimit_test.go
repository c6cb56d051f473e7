package browser

import (
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/lightsse/sse"
)

// streamCounter counts a page's streams as the server sees them: requests,
// how many are open at once, and the connections they came on.
type streamCounter struct {
	mu       sync.Mutex
	arrived  []time.Time
	open     int
	maxOpen  int
	conns    map[string]bool // remote addresses
	protos   map[string]int
	allOpen  chan struct{} // closed when want streams are open at once
	want     int
	released bool
}

func newStreamCounter(want int) *streamCounter {
	return &streamCounter{conns: map[string]bool{}, protos: map[string]int{}, allOpen: make(chan struct{}), want: want}
}

func (c *streamCounter) start(r *http.Request) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.arrived = append(c.arrived, time.Now())
	c.open++
	c.maxOpen = max(c.maxOpen, c.open)
	c.conns[r.RemoteAddr] = true
	c.protos[r.Proto]++
	if c.open == c.want && !c.released {
		c.released = true
		close(c.allOpen)
	}
}

func (c *streamCounter) stop() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.open--
}

type counts struct {
	arrived, open, maxOpen, conns int
	protos                        map[string]int
}

func (c *streamCounter) get() counts {
	c.mu.Lock()
	defer c.mu.Unlock()
	return counts{len(c.arrived), c.open, c.maxOpen, len(c.conns), maps.Clone(c.protos)}
}

// TestSixConnectionsHTTP1: over HTTP/1.1 a page that opens seven
// EventSources to one host gets six streams; the seventh waits, CONNECTING,
// for a free connection, and opens only when the page closes one of the six.
func TestSixConnectionsHTTP1(t *testing.T) {
	p := newPage(t)
	c := newStreamCounter(7)
	p.Mux.HandleFunc("GET /limit", func(w http.ResponseWriter, r *http.Request) {
		c.start(r)
		defer c.stop()
		sw := p.newWriter(w, r, nil)
		if sw == nil {
			return
		}
		defer sw.Close()
		if p.send(sw, sse.Event{Data: "hello " + r.URL.Query().Get("i")}) {
			p.holdOpen(r)
		}
	})
	p.start(`
const n = 7, sources = [], got = new Set();
for (let i = 0; i < n; i++) {
  const es = new EventSource('/limit?i=' + i);
  watch(es, ['message'], i);
  es.onmessage = () => got.add(i);
  sources.push(es);
}
const byNumber = (a, b) => a - b;
await until(() => got.size >= 6);
// Nothing to wait for: the seventh must not open. Two seconds is the window
// in which it would have, were it not waiting for a connection.
await sleep(2000);
const during = [...got].sort(byNumber), states = sources.map(es => es.readyState);
note({kind: 'closing', data: 'EventSource ' + during[0]});
sources[during[0]].close();
await until(() => got.size === n);
// Free the connections, or the report would wait for one as well.
sources.forEach(es => es.close());
await report('done', {during, states, after: [...got].sort(byNumber)});
`)
	var got struct {
		During []int
		States []int
		After  []int
	}
	p.await("done", &got)
	if len(got.During) != 6 {
		t.Errorf("streams receiving during the wait: %v, want six of them", got.During)
	}
	for i, s := range got.States {
		want := open
		if !slices.Contains(got.During, i) {
			want = connecting
		}
		if s != want {
			t.Errorf("EventSource %d: readyState %d during the wait, want %d", i, s, want)
		}
	}
	if len(got.After) != 7 {
		t.Errorf("streams that received once one was closed: %v, want all 7", got.After)
	}
	cs := c.get()
	c.mu.Lock()
	arrived := slices.Clone(c.arrived)
	c.mu.Unlock()
	if len(arrived) == 7 {
		if wait := arrived[6].Sub(arrived[5]); wait < 1900*time.Millisecond {
			t.Errorf("the seventh request came %v after the sixth; it should have waited for the page to close one (2 s)", wait)
		}
	} else {
		t.Errorf("%d stream requests, want 7", len(arrived))
	}
	if cs.protos["HTTP/1.1"] != len(arrived) {
		t.Errorf("protocols %v, want HTTP/1.1 only", cs.protos)
	}
	t.Logf("HTTP/1.1: %d streams on %d connections; the seventh came %v after the sixth", len(arrived), cs.conns, arrived[len(arrived)-1].Sub(arrived[min(5, len(arrived)-1)]))
}

// TestManyStreamsHTTP2: the same host served over TLS, where Go speaks
// HTTP/2: twenty EventSources in one page are open at once, on one
// connection, and all receive their events.
func TestManyStreamsHTTP2(t *testing.T) {
	const n = 20
	p := newPage(t)
	c := newStreamCounter(n)
	p.Mux.HandleFunc("GET /many", func(w http.ResponseWriter, r *http.Request) {
		c.start(r)
		defer c.stop()
		i := r.URL.Query().Get("i")
		sw := p.newWriter(w, r, nil)
		if sw == nil {
			return
		}
		defer sw.Close()
		if !p.send(sw, sse.Event{ID: "s" + i, Data: "hello " + i}) {
			return
		}
		// Send the rest only once all n streams are open together.
		select {
		case <-c.allOpen:
		case <-p.ctx.Done():
			t.Errorf("stream %s: never %d streams open at once by the test's deadline (%+v)", i, n, c.get())
			return
		case <-r.Context().Done():
			return
		}
		if p.send(sw, sse.Event{Data: fmt.Sprintf("all %d open", n)}, sse.Event{Type: endEvent}) {
			p.holdOpen(r)
		}
	})
	p.startWith(fmt.Sprintf(`
const n = %d;
let ended = 0;
for (let i = 0; i < n; i++) {
  const es = new EventSource('/many?i=' + i);
  watch(es, ['message', 'end'], i);
  es.addEventListener('end', () => { es.close(); ended++; });
}
await until(() => ended === n);
await report('done', {seen, protocol: location.protocol});
`, n), pageOptions{TLS: true})

	var got struct {
		Seen     []record
		Protocol string
	}
	p.await("done", &got)
	if got.Protocol != "https:" {
		t.Errorf("page served over %q", got.Protocol)
	}
	bySource := map[string][]record{}
	for _, r := range got.Seen {
		src := r.Src
		r.Src = ""
		bySource[src] = append(bySource[src], r)
	}
	for i := range n {
		s := strconv.Itoa(i)
		checkSeq(t, "EventSource "+s, bySource[s], []record{
			opened(),
			ev("message", "hello "+s, "s"+s),
			ev("message", fmt.Sprintf("all %d open", n), "s"+s),
			ev(endEvent, "", "s"+s),
		})
	}
	cs := c.get()
	if cs.arrived != n || cs.maxOpen != n {
		t.Errorf("%d stream requests, at most %d open at once; want %d and %d", cs.arrived, cs.maxOpen, n, n)
	}
	if cs.protos["HTTP/2.0"] != n {
		t.Errorf("protocols %v, want HTTP/2.0 only", cs.protos)
	}
	if cs.conns != 1 {
		t.Errorf("streams came on %d connections, want 1", cs.conns)
	}
	t.Logf("HTTP/2: %d streams open at once on %d connection(s)", cs.maxOpen, cs.conns)
}
