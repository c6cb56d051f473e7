package sseclient

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lightsse/sse/internal/brokertest"

	"github.com/lightsse/sse/ssebroker"

	"github.com/lightsse/sse"
	"github.com/lightsse/sse/internal/leakcheck"
)

// TestMain fails the run if a goroutine outlives the tests: the Client starts
// none, and must leave no connection behind.
func TestMain(m *testing.M) { leakcheck.Main(m) }

// ---- Over real sockets ------------------------------------------------------

// server serves h, numbering its requests from 1.
type server struct {
	*httptest.Server
	n atomic.Int32
}

func newServer(t *testing.T, h func(w http.ResponseWriter, r *http.Request, n int)) *server {
	t.Helper()
	s := &server{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h(w, r, int(s.n.Add(1)))
	}))
	t.Cleanup(s.Close)
	return s
}

// hold keeps a response open until the client leaves, which it does at the
// latest when the test ends and cancels its request (see get).
func hold(r *http.Request) { <-r.Context().Done() }

// respond starts an event stream by hand and writes each piece of wire,
// flushing after each.
func respond(w http.ResponseWriter, pieces ...string) {
	w.Header().Set("Content-Type", "text/event-stream")
	w.WriteHeader(200)
	for _, p := range pieces {
		io.WriteString(w, p)
		w.(http.Flusher).Flush()
	}
}

// get returns a GET request for url whose context the test cancels at its end.
func get(t *testing.T, url string) *http.Request {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

// read collects the events of c.Events(req) until it has n of them, or the
// iterator ends; it returns them with the error it ended with.
func read(c *Client, req *http.Request, n int) ([]sse.Event, error) {
	var got []sse.Event
	for ev, err := range c.Events(req) {
		if err != nil {
			return got, err
		}
		if got = append(got, ev); len(got) == n {
			break
		}
	}
	return got, nil
}

// retries records what OnRetry is told.
type retries struct {
	mu    sync.Mutex
	errs  []error
	waits []time.Duration
}

func (r *retries) on(err error, wait time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errs = append(r.errs, err)
	r.waits = append(r.waits, wait)
}

// fast is a Client that reconnects within milliseconds.
func fast(r *retries) *Client {
	c := &Client{Retry: time.Millisecond, MaxDelay: 10 * time.Millisecond}
	if r != nil {
		c.OnRetry = r.on
	}
	return c
}

// Against our Writer: the request's headers, the events as sent, and a
// reconnection that sends the last event ID, which an event without an id
// does not change.
func TestWriterStreamResumes(t *testing.T) {
	var headers [2]http.Header
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request, n int) {
		if n > 2 {
			return
		}
		headers[n-1] = r.Header.Clone()
		sw, err := sse.NewWriter(w, r, nil)
		if err != nil {
			return
		}
		defer sw.Close()
		if n == 1 {
			sw.Send(sse.Event{ID: "1", Data: "a"})
			sw.Send(sse.Event{Data: "b"})
			sw.Send(sse.Event{ID: "2", Type: "t", Data: "c\nd"})
			return // the response ends: the client comes back
		}
		sw.Send(sse.Event{ID: "3", Data: "e"})
		hold(r)
	})
	got, err := read(fast(nil), get(t, srv.URL), 4)
	want := []sse.Event{{ID: "1", Data: "a"}, {Data: "b"}, {ID: "2", Type: "t", Data: "c\nd"}, {ID: "3", Data: "e"}}
	if !slices.Equal(got, want) || err != nil {
		t.Fatalf("events %+v, %v\nwant   %+v", got, err, want)
	}
	for i, want := range []string{"", "2"} {
		h := headers[i]
		if h.Get("Accept") != "text/event-stream" || h.Get("Cache-Control") != "no-cache" || h.Get("Last-Event-ID") != want {
			t.Errorf("request %d: Accept %q, Cache-Control %q, Last-Event-ID %q (want %q)",
				i+1, h.Get("Accept"), h.Get("Cache-Control"), h.Get("Last-Event-ID"), want)
		}
	}
}

// Against our Broker: a client whose connection is cut, while events are
// published, gets every event once and in order.
func TestBrokerStreamResumesAcrossCuts(t *testing.T) {
	b := brokertest.New(t, nil)
	defer b.Close()
	cuts := make(chan context.CancelFunc, 10)
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request, n int) {
		ctx, cut := context.WithCancel(r.Context())
		cuts <- cut
		b.ServeHTTP(w, r.WithContext(ctx))
	})
	const events = 200
	go func() {
		for b.Subscribers() == 0 {
			time.Sleep(time.Millisecond)
		}
		for i := 1; i <= events; i++ {
			b.Publish(sse.Event{Data: strconv.Itoa(i)})
			if i%50 == 0 {
				(<-cuts)() // end the stream; the client comes back
			}
		}
	}()
	got, err := read(fast(nil), get(t, srv.URL), events)
	if err != nil || len(got) != events {
		t.Fatalf("%d events, %v", len(got), err)
	}
	for i, ev := range got {
		if ev.Data != strconv.Itoa(i+1) || !strings.Contains(ev.ID, "-") {
			t.Fatalf("event %d is %+v, want data %d with the Broker's id", i, ev, i+1)
		}
	}
	if srv.n.Load() < 2 {
		t.Errorf("%d connections: the cuts did not cut", srv.n.Load())
	}
}

// A Last-Event-ID the Broker cannot resume from gets a reset event first,
// which reaches the caller like any other.
func TestBrokerResetReachesCaller(t *testing.T) {
	b := brokertest.New(t, nil)
	defer b.Close()
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request, n int) { b.ServeHTTP(w, r) })
	req := get(t, srv.URL)
	req.Header.Set("Last-Event-ID", "from-another-life")
	got, err := read(fast(nil), req, 1)
	if err != nil || len(got) != 1 || got[0].Type != ssebroker.ResetEvent || got[0].Data != "from-another-life" {
		t.Fatalf("%+v, %v; want a reset event", got, err)
	}
}

// What makes an EventSource give up makes the Client give up: one request,
// and an error that says why.
func TestStopsForGood(t *testing.T) {
	for _, tt := range []struct {
		name   string
		answer func(w http.ResponseWriter)
		want   error
		text   string
	}{
		{"500, with a 200 after it", func(w http.ResponseWriter) { http.Error(w, "oops", 500) }, ErrStatus, "500 Internal Server Error"},
		{"503", func(w http.ResponseWriter) { http.Error(w, "busy", http.StatusServiceUnavailable) }, ErrStatus, "503"},
		{"404", func(w http.ResponseWriter) { http.NotFound(w, nil) }, ErrStatus, "404"},
		{"204", func(w http.ResponseWriter) { w.WriteHeader(204) }, ErrNoContent, "204"},
		{"text/plain", func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "text/plain")
			io.WriteString(w, "data: x\n\n")
		}, ErrContentType, `"text/plain"`},
		{"no content type", func(w http.ResponseWriter) {
			w.Header()["Content-Type"] = nil
			w.Write([]byte{0, 1, 2})
		}, ErrContentType, `""`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := newServer(t, func(w http.ResponseWriter, r *http.Request, n int) {
				if n == 1 {
					tt.answer(w)
					return
				}
				respond(w, "data: too late\n\n")
			})
			got, err := read(fast(nil), get(t, srv.URL), 1)
			if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.text) || len(got) != 0 {
				t.Errorf("%+v, %v; want %v saying %s", got, err, tt.want, tt.text)
			}
			if n := srv.n.Load(); n != 1 {
				t.Errorf("%d requests, want 1", n)
			}
		})
	}

	// A content type with parameters is still text/event-stream.
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request, n int) {
		w.Header().Set("Content-Type", "Text/Event-Stream; charset=utf-8")
		io.WriteString(w, "data: x\n\n")
	})
	if got, err := read(fast(nil), get(t, srv.URL), 1); err != nil || len(got) != 1 {
		t.Errorf("text/event-stream with a charset: %+v, %v", got, err)
	}
}

// Servers that misbehave on purpose: the Client reconnects and the caller
// gets each whole event once.
func TestMisbehavingServers(t *testing.T) {
	for _, tt := range []struct {
		name     string
		first    string // the first response, which then ends
		lastID   string // the Last-Event-ID the second request must carry
		then     string // the second response, which stays open
		want     []sse.Event
		client   Client
		retryErr error
		minWait  time.Duration
		maxWait  time.Duration
	}{
		{name: "cut mid-event", first: "id: 1\ndata: a\n\nid: 2\ndata: b", lastID: "1", then: "id: 2\ndata: b\n\n",
			want: []sse.Event{{ID: "1", Data: "a"}, {ID: "2", Data: "b"}}, retryErr: io.ErrUnexpectedEOF, client: Client{Retry: time.Millisecond}, minWait: time.Millisecond, maxWait: 1500 * time.Microsecond},
		{name: "cut mid-line", first: "id: 1\ndata: a\n\ndata: hel", lastID: "1", then: "data: hello\n\n",
			want: []sse.Event{{ID: "1", Data: "a"}, {Data: "hello"}}, retryErr: io.ErrUnexpectedEOF, client: Client{Retry: time.Millisecond}, minWait: time.Millisecond, maxWait: 1500 * time.Microsecond},
		{name: "one byte at a time", first: "\uFEFFid: 1\r\nevent: e\r\ndata: x\r\ndata: y\r\n\r\n: c\r\rdata: z\r\r", lastID: "1", then: "data: w\n\n",
			want: []sse.Event{{ID: "1", Type: "e", Data: "x\ny"}, {Data: "z"}, {Data: "w"}}, retryErr: io.EOF, client: Client{Retry: time.Millisecond}, minWait: time.Millisecond, maxWait: 1500 * time.Microsecond},
		{name: "retry 0", first: "retry: 0\ndata: a\n\n", then: "data: b\n\n",
			client: Client{Retry: time.Hour}, want: []sse.Event{{Data: "a"}, {Data: "b"}}, retryErr: io.EOF},
		{name: "retry huge", first: "retry: 99999999999999999999999\ndata: a\n\n", then: "data: b\n\n",
			client: Client{MaxDelay: 20 * time.Millisecond}, want: []sse.Event{{Data: "a", Retry: 1<<63 - 1}, {Data: "b"}},
			retryErr: io.EOF, minWait: 20 * time.Millisecond / 3 * 2, maxWait: 20 * time.Millisecond},
		{name: "retry garbage", first: "retry: soon\ndata: a\n\n", then: "data: b\n\n",
			client: Client{Retry: 4 * time.Millisecond}, want: []sse.Event{{Data: "a"}, {Data: "b"}},
			retryErr: io.EOF, minWait: 4 * time.Millisecond, maxWait: 6 * time.Millisecond},
	} { // Stalls, which the idle timeout ends, are on the fake clock: TestIdleTimeoutEndsAStall.
		t.Run(tt.name, func(t *testing.T) {
			var gotID atomic.Value
			srv := newServer(t, func(w http.ResponseWriter, r *http.Request, n int) {
				switch n {
				case 1:
					if tt.name == "one byte at a time" {
						respond(w, strings.Split(tt.first, "")...)
					} else {
						respond(w, tt.first)
					}
				case 2:
					gotID.Store(r.Header.Get("Last-Event-ID"))
					respond(w, tt.then)
					hold(r)
				}
			})
			var rs retries
			c := tt.client
			c.OnRetry = rs.on
			got, err := read(&c, get(t, srv.URL), len(tt.want))
			if !slices.Equal(got, tt.want) || err != nil {
				t.Fatalf("events %+v, %v\nwant   %+v", got, err, tt.want)
			}
			if id := gotID.Load(); id != tt.lastID {
				t.Errorf("Last-Event-ID %q, want %q", id, tt.lastID)
			}
			if len(rs.errs) != 1 || rs.errs[0] != tt.retryErr || rs.waits[0] < tt.minWait || rs.waits[0] > tt.maxWait {
				t.Errorf("OnRetry got %v, %v; want %v and a wait in [%v, %v]", rs.errs, rs.waits, tt.retryErr, tt.minWait, tt.maxWait)
			}
		})
	}
}

// post returns a POST request for url with body, whose GetBody is set as
// http.NewRequest sets it for a *strings.Reader, and whose context the test
// cancels at its end. An empty body is no body.
func post(t *testing.T, url, body string) *http.Request {
	t.Helper()
	req := get(t, url)
	r, err := http.NewRequestWithContext(req.Context(), "POST", url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body == "" {
		r.Body, r.GetBody = nil, nil
	}
	return r
}

// A cut is one way a connection ends before the stream does.
type cut struct {
	name  string
	cause error // what the Client sees end the connection
	// do sends what before has, then ends the response that way.
	do func(t *testing.T, w http.ResponseWriter, before string)
}

var cuts = []cut{
	{"the response ends between events", io.EOF, func(t *testing.T, w http.ResponseWriter, before string) {
		respond(w, before)
	}},
	{"the response ends inside an event", io.ErrUnexpectedEOF, func(t *testing.T, w http.ResponseWriter, before string) {
		respond(w, before, "data: hal")
	}},
	{"the connection drops", io.ErrUnexpectedEOF, func(t *testing.T, w http.ResponseWriter, before string) {
		respond(w, before)
		drop(t, w)
	}},
}

// drop closes the connection of w's request without a word: no end of the
// response, which is sent chunked.
func drop(t *testing.T, w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		t.Error(err)
		return
	}
	conn.Close()
}

// A request that is not a GET without a body, whose stream has no id, is
// not sent again when its connection ends, however it ends: that would start
// it anew (a new completion, billed, its text again). The stream ends with
// ErrStreamCut and the cause, after one request and no retry. The server
// here would answer a second request, and more.
func TestCutPostNotResent(t *testing.T) {
	type tcase struct {
		name   string
		method string // "" for POST
		body   string // "" for none
		before string // what the response sends before the cut
		want   []sse.Event
		cut    cut
	}
	var cases []tcase
	for _, c := range cuts {
		cases = append(cases, tcase{c.name, "", `{"q":1}`, "data: a\n\ndata: b\n\n", []sse.Event{{Data: "a"}, {Data: "b"}}, c})
	}
	cases = append(cases,
		tcase{"the id reset by an empty one", "", `{"q":1}`, "id: 1\ndata: a\n\nid\ndata: b\n\n",
			[]sse.Event{{ID: "1", Data: "a"}, {Data: "b"}}, cuts[0]},
		tcase{"a POST without a body", "", "", "data: a\n\n", []sse.Event{{Data: "a"}}, cuts[0]},
		tcase{"a GET with a body", "GET", "q", "data: a\n\n", []sse.Event{{Data: "a"}}, cuts[0]},
		tcase{"dropped before the response", "", `{"q":1}`, "", nil, cut{"", io.EOF, func(t *testing.T, w http.ResponseWriter, _ string) { drop(t, w) }}},
	)
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			srv := newServer(t, func(w http.ResponseWriter, r *http.Request, n int) {
				if n == 1 {
					tt.cut.do(t, w, tt.before)
					return
				}
				respond(w, "data: again\n\n") // and again, till the loop has 10 events
			})
			req := post(t, srv.URL, tt.body)
			if tt.method != "" {
				req.Method = tt.method
			}
			var rs retries
			got, err := read(fast(&rs), req, 10)
			if !slices.Equal(got, tt.want) || !errors.Is(err, ErrStreamCut) || !errors.Is(err, tt.cut.cause) {
				t.Errorf("events %+v, %v\nwant   %+v, then %v and %v", got, err, tt.want, ErrStreamCut, tt.cut.cause)
			}
			if n := srv.n.Load(); n != 1 || len(rs.errs) != 0 {
				t.Errorf("%d requests and retries after %v; want 1 and none", n, rs.errs)
			}
		})
	}
}

// A POST whose server gave the stream an id is resumed: the request is sent
// again with Last-Event-ID, its headers and the body from GetBody, however
// the connection ended.
func TestResumablePostResumes(t *testing.T) {
	for _, c := range cuts {
		t.Run(c.name, func(t *testing.T) {
			var mu sync.Mutex
			var seen []string
			srv := newServer(t, func(w http.ResponseWriter, r *http.Request, n int) {
				b, _ := io.ReadAll(r.Body)
				mu.Lock()
				seen = append(seen, fmt.Sprintf("%s %s, Authorization %q, Last-Event-ID %q",
					r.Method, b, r.Header.Get("Authorization"), r.Header.Get("Last-Event-ID")))
				mu.Unlock()
				switch n {
				case 1:
					c.do(t, w, "id: 1\ndata: a\n\n")
				case 2:
					respond(w, "id: 2\ndata: b\n\n")
					hold(r)
				}
			})
			req := post(t, srv.URL, `{"q":1}`)
			req.Header.Set("Authorization", "Bearer t")
			var rs retries
			got, err := read(fast(&rs), req, 2)
			want := []sse.Event{{ID: "1", Data: "a"}, {ID: "2", Data: "b"}}
			if !slices.Equal(got, want) || err != nil {
				t.Fatalf("events %+v, %v\nwant   %+v", got, err, want)
			}
			if len(rs.errs) != 1 || !errors.Is(rs.errs[0], c.cause) {
				t.Errorf("OnRetry got %v, want %v once", rs.errs, c.cause)
			}
			mu.Lock()
			defer mu.Unlock()
			wantSeen := []string{
				`POST {"q":1}, Authorization "Bearer t", Last-Event-ID ""`,
				`POST {"q":1}, Authorization "Bearer t", Last-Event-ID "1"`,
			}
			if !slices.Equal(seen, wantSeen) {
				t.Errorf("requests:\n%q\nwant\n%q", seen, wantSeen)
			}
		})
	}

	// The caller's Last-Event-ID makes a POST resumable from the start, as
	// when it resumes a stream that an earlier process read.
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request, n int) {
		if n == 1 {
			respond(w, "data: a\n\n")
			return
		}
		respond(w, "data: "+r.Header.Get("Last-Event-ID")+"\n\n")
		hold(r)
	})
	req := post(t, srv.URL, "q")
	req.Header.Set("Last-Event-ID", "7")
	if got, err := read(fast(nil), req, 2); err != nil || len(got) != 2 || got[1].Data != "7" {
		t.Errorf("%+v, %v; want a, then 7", got, err)
	}
}

// A body without GetBody is no obstacle to a stream that is never resumed;
// one that must be resumed ends, with ErrBodyNotReplayable, after the one
// request that sent the body.
func TestBodyWithoutGetBody(t *testing.T) {
	for _, tt := range []struct {
		name     string
		response string
		want     error // beside ErrStreamCut and io.EOF
	}{
		{"no id: not to be resumed", "data: a\n\n", nil},
		{"an id: to be resumed", "id: 1\ndata: a\n\n", ErrBodyNotReplayable},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := newServer(t, func(w http.ResponseWriter, r *http.Request, n int) {
				if n > 1 {
					t.Errorf("request %d", n)
					return
				}
				io.ReadAll(r.Body)
				respond(w, tt.response)
			})
			req := post(t, srv.URL, "")
			body := &closeRecorder{Reader: strings.NewReader("q")}
			req.Body = body
			var rs retries
			got, err := read(fast(&rs), req, 10)
			if len(got) != 1 || !errors.Is(err, ErrStreamCut) || !errors.Is(err, io.EOF) || (tt.want != nil) != errors.Is(err, ErrBodyNotReplayable) {
				t.Errorf("%+v, %v; want one event, then %v and io.EOF, and %v", got, err, ErrStreamCut, tt.want)
			}
			if n := srv.n.Load(); n != 1 || len(rs.errs) != 0 || !body.closed.Load() {
				t.Errorf("%d requests, retries after %v, body closed %v; want 1, none, true", n, rs.errs, body.closed.Load())
			}
		})
	}
}

// The caller's body is sent by the first request, which closes it, as
// http.Client.Do does; each later request sends one from GetBody. A body that
// no request sends, as the stream ends first, is closed too.
func TestBodyClosed(t *testing.T) {
	var bodies []string
	var mu sync.Mutex
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request, n int) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		bodies = append(bodies, string(b))
		mu.Unlock()
		respond(w, fmt.Sprintf("id: %d\ndata: %d\n\n", n, n))
		if n == 3 {
			hold(r)
		}
	})
	req := get(t, srv.URL)
	req.Method = "POST"
	body := &closeRecorder{Reader: strings.NewReader("q")} // of unknown length: sent chunked, and closed before its end
	req.Body = body
	gets := 0
	req.GetBody = func() (io.ReadCloser, error) {
		gets++
		return io.NopCloser(strings.NewReader("q")), nil
	}
	if got, err := read(fast(nil), req, 3); err != nil || len(got) != 3 {
		t.Fatalf("%+v, %v", got, err)
	}
	mu.Lock()
	defer mu.Unlock()
	if !body.closed.Load() || gets != 2 || !slices.Equal(bodies, []string{"q", "q", "q"}) {
		t.Errorf("body closed: %v; GetBody called %d times, want 2; bodies %q", body.closed.Load(), gets, bodies)
	}

	// A Last-Event-ID that cannot be sent ends the stream before any
	// request.
	req = get(t, srv.URL)
	req.Method = "POST"
	body = &closeRecorder{Reader: strings.NewReader("q")}
	req.Body = body
	req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader("q")), nil }
	req.Header.Set("Last-Event-ID", "\x01")
	c := fast(nil)
	c.OnRetry = func(error, time.Duration) { t.Fatal("a retry") }
	before := srv.n.Load()
	if _, err := read(c, req, 1); !errors.Is(err, ErrInvalidLastEventID) || !body.closed.Load() || srv.n.Load() != before {
		t.Errorf("%v after %d requests, body closed: %v; want %v before any request, and the body closed",
			err, srv.n.Load()-before, body.closed.Load(), ErrInvalidLastEventID)
	}
}

// closeRecorder is a request body that records whether it was closed.
type closeRecorder struct {
	io.Reader
	closed atomic.Bool
}

func (c *closeRecorder) Close() error {
	c.closed.Store(true)
	return nil
}

// An id that net/http cannot send in a header (a control byte other than
// tab) ends the stream with ErrInvalidLastEventID when a request must send
// it, rather than make requests that fail again and again; so does one that
// the caller's request sets, before any request. Tabs and bytes above ASCII
// are sent as they are.
func TestInvalidLastEventID(t *testing.T) {
	for _, id := range []string{"a\x01b", "a\x7fb", "\x1b[0m", "\x1f"} {
		srv := newServer(t, func(w http.ResponseWriter, r *http.Request, n int) {
			respond(w, "id: "+id+"\ndata: x\n\n")
		})
		var rs retries
		c, req := giveUp(t, &rs, srv.URL)
		got, err := read(c, req, 2)
		if len(got) != 1 || !errors.Is(err, ErrInvalidLastEventID) || srv.n.Load() != 1 || len(rs.errs) != 1 || rs.errs[0] != io.EOF {
			t.Errorf("id %q: %+v, %v after %d requests and retries after %v; want one event, then %v after one request and one retry",
				id, got, err, srv.n.Load(), rs.errs, ErrInvalidLastEventID)
		}

		rs = retries{}
		c, req = giveUp(t, &rs, srv.URL)
		req.Header.Set("Last-Event-ID", id)
		before := srv.n.Load()
		if _, err := read(c, req, 1); !errors.Is(err, ErrInvalidLastEventID) || srv.n.Load() != before || len(rs.errs) != 0 {
			t.Errorf("Last-Event-ID %q set by the caller: %v after %d requests and retries after %v; want %v before any",
				id, err, srv.n.Load()-before, rs.errs, ErrInvalidLastEventID)
		}
	}

	for _, id := range []string{"a\tb", "日本", "\xff"} {
		var sent atomic.Value
		srv := newServer(t, func(w http.ResponseWriter, r *http.Request, n int) {
			if n == 1 {
				respond(w, "id: "+id+"\ndata: x\n\n")
				return
			}
			sent.Store(r.Header.Get("Last-Event-ID"))
			respond(w, "data: y\n\n")
			hold(r)
		})
		want := strings.ToValidUTF8(id, "\uFFFD") // as the Reader decodes it
		if got, err := read(fast(nil), get(t, srv.URL), 2); err != nil || len(got) != 2 || sent.Load() != want {
			t.Errorf("id %q: %+v, %v; Last-Event-ID %q, want %q", id, got, err, sent.Load(), want)
		}
	}
}

// giveUp returns a fast Client whose OnRetry records the retries in rs, and a
// GET request for url whose context that OnRetry cancels at the third retry:
// a test of a stream that should end for good ends either way.
func giveUp(t *testing.T, rs *retries, url string) (*Client, *http.Request) {
	req := get(t, url)
	ctx, cancel := context.WithCancel(req.Context())
	c := fast(nil)
	c.OnRetry = func(err error, wait time.Duration) {
		if rs.on(err, wait); len(rs.errs) == 3 {
			cancel()
		}
	}
	return c, req.WithContext(ctx)
}

// A caller's Accept header is kept: some APIs want more than one type.
func TestCallerAcceptKept(t *testing.T) {
	var accept atomic.Value
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request, n int) {
		accept.Store(r.Header.Get("Accept"))
		respond(w, "data: x\n\n")
	})
	req := get(t, srv.URL)
	req.Header.Set("Accept", "application/json, text/event-stream")
	if _, err := read(fast(nil), req, 1); err != nil || accept.Load() != "application/json, text/event-stream" {
		t.Errorf("Accept %q, %v", accept.Load(), err)
	}
}

// Cancelling the request's context ends the stream, and its connection, at
// once; so does a break out of the loop.
func TestContextAndBreakEndTheConnection(t *testing.T) {
	gone := make(chan int, 2)
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request, n int) {
		respond(w, "data: x\n\n")
		<-r.Context().Done()
		gone <- n
	})
	req := get(t, srv.URL)
	ctx, cancel := context.WithCancel(req.Context())
	defer cancel()
	req = req.WithContext(ctx)
	var errs []error
	var rs retries
	for _, err := range fast(&rs).Events(req) {
		errs = append(errs, err)
		cancel()
	}
	if len(errs) != 2 || errs[0] != nil || !errors.Is(errs[1], context.Canceled) || len(rs.errs) != 0 {
		t.Errorf("errors %v, want nil, then context.Canceled, and no retry (OnRetry got %v)", errs, rs.errs)
	}
	if n := <-gone; n != 1 {
		t.Errorf("handler %d saw the client leave", n)
	}

	if _, err := read(fast(nil), get(t, srv.URL), 1); err != nil {
		t.Errorf("break: %v", err)
	}
	if n := <-gone; n != 2 {
		t.Errorf("handler %d saw the client leave", n)
	}
}

// An event over MaxEventSize ends the stream: reconnecting would only read it
// again.
func TestEventTooLargeStops(t *testing.T) {
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request, n int) {
		respond(w, "data: small\n\ndata: "+strings.Repeat("x", 100)+"\n\n")
	})
	c := fast(nil)
	c.MaxEventSize = 64
	got, err := read(c, get(t, srv.URL), 3)
	if len(got) != 1 || !errors.Is(err, ErrEventTooLarge) || srv.n.Load() != 1 {
		t.Errorf("%+v, %v after %d requests", got, err, srv.n.Load())
	}
}

// Done ends the stream for good after the event it picks, which the caller
// gets first: the connection is closed, no request follows (the server here
// would answer one, with more events), and the iterator ends without an
// error; the stream's last event ID counts that event. It ends a POST whose
// server sent no id without ErrStreamCut, and a GET, which would reconnect.
func TestDoneEndsTheStream(t *testing.T) {
	for _, method := range []string{"GET", "POST"} {
		t.Run(method, func(t *testing.T) {
			left := make(chan bool, 1)
			srv := newServer(t, func(w http.ResponseWriter, r *http.Request, n int) {
				if n > 1 {
					respond(w, "data: a new completion\n\n")
					return
				}
				respond(w, "data: a\n\n", "id: 9\ndata: [DONE]\n\n")
				select { // hold the response open, for the client to leave
				case <-r.Context().Done():
					left <- true
				case <-time.After(5 * time.Second): // a client that stays: a failure, not a hang
					left <- false
				}
			})
			req := post(t, srv.URL, `{"q":1}`)
			if method == "GET" {
				req = get(t, srv.URL)
			}
			c := fast(nil)
			var done []string
			c.Done = func(ev sse.Event) bool {
				done = append(done, ev.Data)
				return ev.Data == "[DONE]"
			}
			s := c.Stream(req)
			var got []sse.Event
			var err error
			for ev, e := range s.Events() {
				if err = e; e != nil || len(got) == 5 {
					break
				}
				got = append(got, ev)
			}
			want := []sse.Event{{Data: "a"}, {ID: "9", Data: "[DONE]"}}
			if !slices.Equal(got, want) || err != nil || !slices.Equal(done, []string{"a", "[DONE]"}) {
				t.Errorf("events %+v, %v, Done asked about %q\nwant   %+v, nil, and asked about both", got, err, done, want)
			}
			if !<-left {
				t.Error("the connection is still open after Done")
			}
			if n := srv.n.Load(); n != 1 || s.LastEventID() != "9" {
				t.Errorf("%d requests, LastEventID %q; want 1 and 9", n, s.LastEventID())
			}
		})
	}
}

// The options rule: a negative value where no off exists ends the stream
// before any request, with an error that names the field; a negative
// IdleTimeout is off, as 0 is.
func TestClientOptionsRule(t *testing.T) {
	var requests atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprint(w, "data: x\n\n")
	}))
	defer srv.Close()
	for _, tt := range []struct {
		c     Client
		field string
	}{
		{Client{Retry: -1}, "Retry"},
		{Client{MaxDelay: -1}, "MaxDelay"},
		{Client{MaxEventSize: -1}, "MaxEventSize"},
	} {
		req, _ := http.NewRequest("GET", srv.URL, nil)
		for _, err := range tt.c.Events(req) {
			if !errors.Is(err, ErrInvalidOptions) || !strings.Contains(err.Error(), tt.field) {
				t.Errorf("%+v: %v, want ErrInvalidOptions naming %s", tt.c, err, tt.field)
			}
			break
		}
	}
	if n := requests.Load(); n != 0 {
		t.Errorf("%d requests sent with options refused", n)
	}
	c := Client{IdleTimeout: -1, Done: func(sse.Event) bool { return true }}
	req, _ := http.NewRequest("GET", srv.URL, nil)
	for ev, err := range c.Events(req) {
		if err != nil || ev.Data != "x" {
			t.Errorf("IdleTimeout -1: %+v, %v; want the event", ev, err)
		}
	}
	r := NewReader(strings.NewReader("data: x\n\n"))
	r.MaxEventSize = -1
	if _, err := r.Next(); !errors.Is(err, ErrInvalidOptions) {
		t.Errorf("a Reader with MaxEventSize -1: %v, want ErrInvalidOptions", err)
	}
}
