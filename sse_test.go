package sse

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
	"unicode/utf8"

	"github.com/lightsse/sse/internal/leakcheck"
	"github.com/lightsse/sse/internal/ssetest"
)

// TestMain fails the run if any goroutine outlives the tests.
func TestMain(m *testing.M) { leakcheck.Main(m) }

// ---- Encoding: one case per line 7-15 of SPEC.md -------------------------

func TestEncodeWire(t *testing.T) {
	tests := []struct {
		rule  string
		event Event
		wire  string          // exact bytes
		want  []ssetest.Event // what a spec-exact client dispatches
	}{
		{"7: lines end in LF only",
			Event{Type: "t", Data: "a"},
			"event: t\ndata: a\n\n",
			[]ssetest.Event{{Type: "t", Data: "a"}}},
		{"8: one space after the colon keeps a leading space",
			Event{Data: "  x"},
			"data:   x\n\n",
			[]ssetest.Event{{Type: "message", Data: "  x"}}},
		{"9: data splits at LF",
			Event{Data: "a\nb"},
			"data: a\ndata: b\n\n",
			[]ssetest.Event{{Type: "message", Data: "a\nb"}}},
		{"9: CRLF is one break and arrives as LF",
			Event{Data: "a\r\nb"},
			"data: a\ndata: b\n\n",
			[]ssetest.Event{{Type: "message", Data: "a\nb"}}},
		{"9: a lone CR is split, so it cannot inject an id",
			Event{Data: "a\rid: evil"},
			"data: a\ndata: id: evil\n\n",
			[]ssetest.Event{{Type: "message", Data: "a\nid: evil"}}},
		{"9: CR LF CR LF is three breaks",
			Event{Data: "a\r\r\n\nb"},
			"data: a\ndata: \ndata: \ndata: b\n\n",
			[]ssetest.Event{{Type: "message", Data: "a\n\n\nb"}}},
		{"9: a trailing newline needs a final empty data line",
			Event{Data: "a\n"},
			"data: a\ndata: \n\n",
			[]ssetest.Event{{Type: "message", Data: "a\n"}}},
		{"9: a lone newline needs two data lines",
			Event{Data: "\n"},
			"data: \ndata: \n\n",
			[]ssetest.Event{{Type: "message", Data: "\n"}}},
		{"10: empty data still writes one data line",
			Event{},
			"data: \n\n",
			[]ssetest.Event{{Type: "message", Data: ""}}},
		{"11: event names the type",
			Event{Type: "time", Data: "12:00"},
			"event: time\ndata: 12:00\n\n",
			[]ssetest.Event{{Type: "time", Data: "12:00"}}},
		{"12: id sets the last event ID",
			Event{ID: "42", Data: "x"},
			"id: 42\ndata: x\n\n",
			[]ssetest.Event{{Type: "message", Data: "x", LastEventID: "42"}}},
		{"12: an id with a leading space survives",
			Event{ID: " 42", Data: "x"},
			"id:  42\ndata: x\n\n",
			[]ssetest.Event{{Type: "message", Data: "x", LastEventID: " 42"}}},
		{"13: retry in whole milliseconds",
			Event{Retry: 1500*time.Millisecond + 999*time.Microsecond, Data: "x"},
			"retry: 1500\ndata: x\n\n",
			[]ssetest.Event{{Type: "message", Data: "x"}}},
		{"13: zero retry is omitted, never written empty",
			Event{Retry: 0, Data: "x"},
			"data: x\n\n",
			[]ssetest.Event{{Type: "message", Data: "x"}}},
		{"15: unicode passes as UTF-8, no BOM",
			Event{Type: "日本", Data: "😀 שלום"},
			"event: 日本\ndata: 😀 שלום\n\n",
			[]ssetest.Event{{Type: "日本", Data: "😀 שלום"}}},
		{"15: field-like text inside data stays data",
			Event{Data: "event: x\nid: y\nretry: 1\n: c"},
			"data: event: x\ndata: id: y\ndata: retry: 1\ndata: : c\n\n",
			[]ssetest.Event{{Type: "message", Data: "event: x\nid: y\nretry: 1\n: c"}}},
	}
	for _, tt := range tests {
		t.Run(tt.rule, func(t *testing.T) {
			b, err := tt.event.AppendText(nil)
			if err != nil {
				t.Fatalf("AppendText: %v", err)
			}
			if string(b) != tt.wire {
				t.Errorf("wire = %q\nwant   %q", b, tt.wire)
			}
			got, r := ssetest.Parse(string(b))
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("client got %q\nwant       %q", got, tt.want)
			}
			if r.Pending {
				t.Error("the event is not terminated by a blank line")
			}
			if tt.event.Retry > 0 && r.Retry != tt.event.Retry.Truncate(time.Millisecond) {
				t.Errorf("client retry = %v, want %v", r.Retry, tt.event.Retry.Truncate(time.Millisecond))
			}
		})
	}
}

func TestEncodeLastEventIDPersists(t *testing.T) {
	var b []byte
	for _, e := range []Event{{ID: "1", Data: "a"}, {Data: "b"}, {ID: "2", Data: "c"}} {
		b, _ = e.AppendText(b)
	}
	got, r := ssetest.Parse(string(b))
	ids := []string{got[0].LastEventID, got[1].LastEventID, got[2].LastEventID}
	if fmt.Sprint(ids) != "[1 1 2]" || r.LastEventID != "2" {
		t.Errorf("last event IDs = %q (final %q), want [1 1 2] (final 2)", ids, r.LastEventID)
	}
}

func TestEncodeComment(t *testing.T) {
	for text, want := range map[string]string{
		"":              ":\n",
		"ping":          ": ping\n",
		"a\nb\r\nc\rd":  ": a\n: b\n: c\n: d\n",
		"data: smuggle": ": data: smuggle\n",
	} {
		b, err := appendComment(nil, text)
		if err != nil || string(b) != want {
			t.Errorf("comment %q = %q, %v; want %q", text, b, err, want)
		}
		if got, r := ssetest.Parse(string(b)); len(got) != 0 || r.Pending {
			t.Errorf("comment %q: client saw events %q (pending %v)", text, got, r.Pending)
		}
	}
	if _, err := appendComment(nil, "\xff"); !errors.Is(err, ErrInvalidComment) {
		t.Errorf("invalid UTF-8 comment: err = %v, want ErrInvalidComment", err)
	}
}

func TestEncodeRefuses(t *testing.T) {
	tests := []struct {
		event Event
		want  error
		field string // what the message must name
	}{
		{Event{ID: "a\nb"}, ErrInvalidID, "id"},
		{Event{ID: "a\rb"}, ErrInvalidID, "id"},
		{Event{ID: "a\x00b"}, ErrInvalidID, "id"},
		{Event{ID: "\xc3\x28"}, ErrInvalidID, "id"},
		{Event{Type: "a\nid: 1"}, ErrInvalidType, "event"},
		{Event{Type: "a\r"}, ErrInvalidType, "event"},
		{Event{Type: "\xff"}, ErrInvalidType, "event"},
		{Event{Data: "ok\xffno"}, ErrInvalidData, "data"},
		{Event{Retry: -time.Second}, ErrInvalidRetry, "retry"},
		{Event{Retry: time.Microsecond}, ErrInvalidRetry, "retry"},
	}
	for _, tt := range tests {
		prefix := []byte("kept")
		b, err := tt.event.AppendText(prefix)
		if !errors.Is(err, tt.want) {
			t.Errorf("%+v: err = %v, want %v", tt.event, err, tt.want)
			continue
		}
		if string(b) != "kept" {
			t.Errorf("%+v: a refused event wrote %q", tt.event, b[4:])
		}
		if !strings.Contains(err.Error(), tt.field) {
			t.Errorf("%+v: error %q does not name the field %q", tt.event, err, tt.field)
		}
		if _, err := tt.event.MarshalText(); !errors.Is(err, tt.want) {
			t.Errorf("%+v: MarshalText err = %v, want %v", tt.event, err, tt.want)
		}
	}
}

// FuzzEvent: every event the encoder accepts reaches a spec-exact client as
// the same ID, Type and Data (CR and CRLF read as LF); every event it refuses
// gets a named error and writes nothing.
func FuzzEvent(f *testing.F) {
	f.Add("1", "", "hello", int64(0))
	f.Add("", "update", "a\r\nb\rc\n", int64(3000))
	f.Add("x\ny", "t", "\n", int64(-1))
	f.Add(" sp ", "\xff", " lead", int64(500))
	f.Fuzz(func(t *testing.T, id, typ, data string, retryMs int64) {
		e := Event{ID: id, Type: typ, Data: data, Retry: time.Duration(retryMs) * time.Millisecond}
		b, err := e.AppendText([]byte("prefix"))
		if err != nil {
			if string(b) != "prefix" {
				t.Fatalf("refused event wrote %q", b)
			}
			if !errors.Is(err, ErrInvalidID) && !errors.Is(err, ErrInvalidType) &&
				!errors.Is(err, ErrInvalidData) && !errors.Is(err, ErrInvalidRetry) {
				t.Fatalf("unnamed error %v", err)
			}
			return
		}
		got, r := ssetest.Parse(string(b[len("prefix"):]))
		wantType := typ
		if wantType == "" {
			wantType = "message"
		}
		want := ssetest.Event{Type: wantType, Data: toLF(data), LastEventID: id}
		if len(got) != 1 || got[0] != want || r.Pending {
			t.Fatalf("%+v\nwire %q\nclient got %q, want %q", e, b, got, want)
		}
		if e.Retry > 0 && r.Retry != e.Retry {
			t.Fatalf("retry = %v, want %v", r.Retry, e.Retry)
		}
		if !utf8.Valid(b) || bytes.HasPrefix(b, []byte("\uFEFF")) {
			t.Fatalf("wire is not UTF-8 without BOM: %q", b)
		}
	})
}

func toLF(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "\r\n", "\n"), "\r", "\n")
}

var typical = Event{
	ID:   "1f3a-42",
	Type: "price",
	Data: `{"symbol":"ACME","price":1234.56,"currency":"USD","venue":"XNAS","ts":"2026-11-24T12:00:00.000Z","bid":1234.5,"ask":1234.6,"volume":1200345,"note":"a typical JSON payload of about two hundred bytes!"}`,
}

func TestAppendTextAllocatesNothing(t *testing.T) {
	buf := make([]byte, 0, 1024)
	if n := testing.AllocsPerRun(100, func() { buf, _ = typical.AppendText(buf[:0]) }); n != 0 {
		t.Errorf("AppendText with room: %v allocs, want 0", n)
	}
}

// ---- LastEventID ---------------------------------------------------------

func TestLastEventID(t *testing.T) {
	for header, want := range map[string]string{
		"":                                       "",
		"42":                                     "42",
		"epoch-17":                               "epoch-17",
		"\xff\xfe":                               "", // invalid UTF-8
		"a\x00b":                                 "",
		strings.Repeat("9", MaxLastEventIDLen):   strings.Repeat("9", MaxLastEventIDLen),
		strings.Repeat("9", MaxLastEventIDLen+1): "",
	} {
		r := httptest.NewRequest("GET", "/", nil)
		if header != "" {
			r.Header["Last-Event-Id"] = []string{header}
		}
		if got := LastEventID(r); got != want {
			t.Errorf("Last-Event-ID %.20q…: got %.20q, want %.20q", header, got, want)
		}
	}
}

// ---- Writer over real sockets --------------------------------------------

// serve starts a server for h, closed when the test ends.
func serve(t *testing.T, h http.HandlerFunc) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

// open GETs url as EventSource does and returns the response and a parser
// of its body. The request is cancelled when the test ends.
func open(t *testing.T, client *http.Client, url string, header http.Header) (*http.Response, *ssetest.Reader) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	req.Header.Set("Accept", "text/event-stream")
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := client.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		resp.Body.Close()
		client.CloseIdleConnections()
	})
	return resp, ssetest.NewReader(resp.Body)
}

func TestWriterHeaders(t *testing.T) {
	srv := serve(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Access-Control-Allow-Origin", "*")
		w.Header().Set("Connection", "keep-alive")
		w.Header().Set("Keep-Alive", "timeout=5")
		w.Header().Set("Content-Length", "10")
		s, err := NewWriter(w, r, nil)
		if err != nil {
			t.Error(err)
			return
		}
		s.Close()
	})
	resp, _ := open(t, srv.Client(), srv.URL, nil)
	for k, want := range map[string]string{
		"Content-Type":                "text/event-stream",
		"Cache-Control":               "no-cache",
		"X-Accel-Buffering":           "no",
		"Access-Control-Allow-Origin": "*",
		"Keep-Alive":                  "",
		"Content-Length":              "",
	} {
		if got := resp.Header.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	if resp.StatusCode != 200 || resp.Close || len(resp.Header.Values("Connection")) != 0 {
		t.Errorf("status %d, Connection %q", resp.StatusCode, resp.Header.Values("Connection"))
	}
}

// The headers arrive while the handler has sent no event, so open fires at
// once, and each event arrives without waiting for the next.
func TestWriterDeliversEachEventAtOnce(t *testing.T) {
	next := make(chan Event)
	srv := serve(t, func(w http.ResponseWriter, r *http.Request) {
		s, err := NewWriter(w, r, &Options{Retry: 3 * time.Second})
		if err != nil {
			t.Error(err)
			return
		}
		defer s.Close()
		for {
			select {
			case <-r.Context().Done():
				return
			case e := <-next:
				if err := s.Send(e); err != nil {
					t.Error(err)
					return
				}
			}
		}
	})
	resp, events := open(t, srv.Client(), srv.URL, nil) // returns before any event
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	for i := range 5 {
		sent := Event{ID: fmt.Sprint(i), Type: "tick", Data: strings.Repeat("x", i*100)}
		next <- sent // the handler now waits for the next event
		got, err := events.Next()
		if err != nil {
			t.Fatal(err)
		}
		if got != (ssetest.Event{Type: sent.Type, Data: sent.Data, LastEventID: sent.ID}) {
			t.Fatalf("got %+v, sent %+v", got, sent)
		}
	}
	if events.Retry != 3*time.Second {
		t.Errorf("retry = %v, want 3s from Options.Retry", events.Retry)
	}
}

// A refused event leaves the stream intact: what came before and after arrives.
func TestWriterRefusedEventKeepsStream(t *testing.T) {
	srv := serve(t, func(w http.ResponseWriter, r *http.Request) {
		s, err := NewWriter(w, r, nil)
		if err != nil {
			t.Error(err)
			return
		}
		defer s.Close()
		_ = s.Send(Event{Data: "before"})
		if err := s.Send(Event{ID: "x\nretry: 1", Data: "bad"}); !errors.Is(err, ErrInvalidID) {
			t.Errorf("bad id: err = %v, want ErrInvalidID", err)
		}
		if err := s.Comment("\xff"); !errors.Is(err, ErrInvalidComment) {
			t.Errorf("bad comment: err = %v, want ErrInvalidComment", err)
		}
		_ = s.Send(Event{Data: "after"})
	})
	_, events := open(t, srv.Client(), srv.URL, nil)
	for _, want := range []string{"before", "after"} {
		if got, err := events.Next(); err != nil || got.Data != want {
			t.Fatalf("got %+v, %v; want data %q", got, err, want)
		}
	}
	if _, err := events.Next(); err != io.EOF || events.Pending || events.Retry != 0 {
		t.Errorf("after the last event: %v, pending %v, retry %v", err, events.Pending, events.Retry)
	}
}

// unwrapping hides the ResponseWriter's Flush behind Unwrap, as logging or
// metrics middleware does.
type unwrapping struct{ rw http.ResponseWriter }

func (u unwrapping) Header() http.Header         { return u.rw.Header() }
func (u unwrapping) Write(p []byte) (int, error) { return u.rw.Write(p) }
func (u unwrapping) WriteHeader(code int)        { u.rw.WriteHeader(code) }
func (u unwrapping) Unwrap() http.ResponseWriter { return u.rw }

// opaque hides the Flush entirely.
type opaque struct{ rw http.ResponseWriter }

func (o opaque) Header() http.Header         { return o.rw.Header() }
func (o opaque) Write(p []byte) (int, error) { return o.rw.Write(p) }
func (o opaque) WriteHeader(code int)        { o.rw.WriteHeader(code) }

func TestWriterFindsFlusherThroughUnwrap(t *testing.T) {
	srv := serve(t, func(w http.ResponseWriter, r *http.Request) {
		s, err := NewWriter(unwrapping{w}, r, nil)
		if err != nil {
			t.Error(err)
			return
		}
		defer s.Close()
		_ = s.Send(Event{Data: "through the wrapper"})
		<-r.Context().Done()
	})
	_, events := open(t, srv.Client(), srv.URL, nil)
	if got, err := events.Next(); err != nil || got.Data != "through the wrapper" {
		t.Fatalf("got %+v, %v", got, err)
	}
}

func TestWriterWithoutFlusherFailsBeforeHeaders(t *testing.T) {
	srv := serve(t, func(w http.ResponseWriter, r *http.Request) {
		_, err := NewWriter(opaque{w}, r, nil)
		if !errors.Is(err, http.ErrNotSupported) {
			t.Errorf("err = %v, want http.ErrNotSupported", err)
		}
		http.Error(w, "streaming unsupported", http.StatusInternalServerError)
	})
	resp, err := srv.Client().Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 500 || resp.Header.Get("Content-Type") == "text/event-stream" {
		t.Errorf("status %d, Content-Type %q: want the handler's own 500", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
}

// A server-wide WriteTimeout of 1 s does not end a 3 s stream.
func TestWriterOutlivesServerWriteTimeout(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, err := NewWriter(w, r, nil)
		if err != nil {
			t.Error(err)
			return
		}
		defer s.Close()
		tick := time.NewTicker(250 * time.Millisecond)
		defer tick.Stop()
		for i := range 12 {
			<-tick.C
			if err := s.Send(Event{ID: fmt.Sprint(i), Data: "tick"}); err != nil {
				t.Errorf("Send %d: %v", i, err)
				return
			}
		}
	}))
	srv.Config.WriteTimeout = time.Second
	srv.Start()
	t.Cleanup(srv.Close)
	_, events := open(t, srv.Client(), srv.URL, nil)
	for i := range 12 {
		if got, err := events.Next(); err != nil || got.LastEventID != fmt.Sprint(i) {
			t.Fatalf("event %d: got %+v, %v", i, got, err)
		}
	}
	if _, err := events.Next(); err != io.EOF {
		t.Errorf("the stream ended with %v, want a clean end", err)
	}
}

// A client that stops reading makes Send fail within the write timeout
// instead of blocking for as long as the kernel keeps the connection.
func TestWriterStalledClientFailsWithinDeadline(t *testing.T) {
	const timeout = 200 * time.Millisecond
	result := make(chan error, 1)
	var blocked time.Duration
	srv := serve(t, func(w http.ResponseWriter, r *http.Request) {
		s, err := NewWriter(w, r, &Options{WriteTimeout: timeout})
		if err != nil {
			t.Error(err)
			return
		}
		defer s.Close()
		big := Event{Data: strings.Repeat("x", 64<<10)}
		for i := 0; i < 10000; i++ { // 640 MiB: far more than socket buffers hold
			start := time.Now()
			if err = s.Send(big); err != nil {
				blocked = time.Since(start)
				break
			}
		}
		result <- err
	})
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n")
	// ...and never read.
	select {
	case err := <-result:
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("Send: %v, want a deadline error", err)
		}
		if blocked > timeout+time.Second {
			t.Errorf("the failing Send blocked %v with a %v write timeout", blocked, timeout)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Send still blocked after 30 s")
	}
}

// A client that leaves ends the handler: its context ends and Send fails.
func TestWriterClientLeavesEndsHandler(t *testing.T) {
	done := make(chan struct{})
	srv := serve(t, func(w http.ResponseWriter, r *http.Request) {
		defer close(done)
		s, err := NewWriter(w, r, nil)
		if err != nil {
			t.Error(err)
			return
		}
		defer s.Close()
		_ = s.Send(Event{Data: "hello"})
		<-r.Context().Done()
		if err := s.Send(Event{Data: "too late"}); !errors.Is(err, ErrClosed) {
			t.Errorf("Send after the client left: %v, want ErrClosed", err)
		}
	})
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL, nil)
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if ev, err := ssetest.NewReader(resp.Body).Next(); err != nil || ev.Data != "hello" {
		t.Fatalf("got %+v, %v", ev, err)
	}
	cancel()
	resp.Body.Close()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the handler did not end after the client left")
	}
}

func TestWriterHTTP2(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "keep-alive") // as the seed article does
		s, err := NewWriter(w, r, nil)
		if err != nil {
			t.Error(err)
			return
		}
		defer s.Close()
		for i := range 3 {
			if err := s.Send(Event{ID: fmt.Sprint(i), Data: "over h2"}); err != nil {
				t.Error(err)
				return
			}
		}
		<-r.Context().Done()
	}))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	t.Cleanup(srv.Close)
	resp, events := open(t, srv.Client(), srv.URL, nil)
	if resp.ProtoMajor != 2 {
		t.Fatalf("protocol %s, want HTTP/2", resp.Proto)
	}
	if v := resp.Header.Values("Connection"); len(v) != 0 {
		t.Errorf("Connection header %q sent over HTTP/2", v)
	}
	for i := range 3 {
		if got, err := events.Next(); err != nil || got.LastEventID != fmt.Sprint(i) {
			t.Fatalf("event %d: got %+v, %v", i, got, err)
		}
	}
}

// ---- Heartbeat and Close, on a fake clock --------------------------------

// flushRecorder is a ResponseWriter whose output a test can read while the
// heartbeat writes it from a timer goroutine.
type flushRecorder struct {
	mu sync.Mutex
	*httptest.ResponseRecorder
	flushes int
}

func newFlushRecorder() *flushRecorder {
	return &flushRecorder{ResponseRecorder: httptest.NewRecorder()}
}

func (f *flushRecorder) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.ResponseRecorder.Write(p)
}

func (f *flushRecorder) Flush() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.flushes++
	f.ResponseRecorder.Flush()
}

func (f *flushRecorder) body() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.Body.String()
}

func TestHeartbeat(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		rec := newFlushRecorder()
		s, err := NewWriter(rec, httptest.NewRequestWithContext(ctx, "GET", "/", nil), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		step := func(d time.Duration, want string) {
			t.Helper()
			time.Sleep(d)
			synctest.Wait()
			if got := rec.body(); got != want {
				t.Fatalf("after %v more: body %q, want %q", d, got, want)
			}
		}
		step(DefaultHeartbeat-time.Millisecond, "")
		step(time.Millisecond, ":\n") // 15 s of silence
		step(10*time.Second, ":\n")
		_ = s.Send(Event{Data: "x"}) // restarts the silence
		step(14*time.Second, ":\ndata: x\n\n")
		step(time.Second, ":\ndata: x\n\n:\n")
		step(DefaultHeartbeat, ":\ndata: x\n\n:\n:\n")
		cancel() // the client left: no more heartbeats
		step(time.Hour, ":\ndata: x\n\n:\n:\n")
		if err := s.Send(Event{}); !errors.Is(err, ErrClosed) {
			t.Errorf("Send after the context ended: %v, want ErrClosed", err)
		}
	})
}

func TestHeartbeatOptions(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := newFlushRecorder()
		s, _ := NewWriter(rec, httptest.NewRequest("GET", "/", nil), &Options{Heartbeat: time.Second})
		time.Sleep(3500 * time.Millisecond)
		synctest.Wait()
		if got := rec.body(); got != ":\n:\n:\n" {
			t.Errorf("1 s heartbeat after 3.5 s: %q", got)
		}
		s.Close()
		time.Sleep(time.Hour)
		synctest.Wait()
		if got := rec.body(); got != ":\n:\n:\n" {
			t.Errorf("heartbeat after Close: %q", got)
		}

		rec = newFlushRecorder()
		s, _ = NewWriter(rec, httptest.NewRequest("GET", "/", nil), &Options{Heartbeat: -1})
		defer s.Close()
		time.Sleep(time.Hour)
		synctest.Wait()
		if got := rec.body(); got != "" {
			t.Errorf("disabled heartbeat wrote %q", got)
		}
	})
}

func TestWriterClose(t *testing.T) {
	rec := newFlushRecorder()
	s, err := NewWriter(rec, httptest.NewRequest("GET", "/", nil), nil)
	if err != nil {
		t.Fatal(err)
	}
	if rec.Code != 200 || rec.flushes != 1 {
		t.Errorf("after NewWriter: status %d, %d flushes; want 200 flushed once", rec.Code, rec.flushes)
	}
	_ = s.Send(Event{Data: "a"})
	if err := s.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := s.Send(Event{Data: "b"}); !errors.Is(err, ErrClosed) {
		t.Errorf("Send after Close: %v, want ErrClosed", err)
	}
	if err := s.Comment("c"); !errors.Is(err, ErrClosed) {
		t.Errorf("Comment after Close: %v, want ErrClosed", err)
	}
	if got := rec.body(); got != "data: a\n\n" {
		t.Errorf("body %q", got)
	}
}

func TestNewWriterRefusesBadRetry(t *testing.T) {
	rec := httptest.NewRecorder()
	_, err := NewWriter(rec, httptest.NewRequest("GET", "/", nil), &Options{Retry: -time.Second})
	if !errors.Is(err, ErrInvalidRetry) {
		t.Errorf("err = %v, want ErrInvalidRetry", err)
	}
	if rec.Code != 200 || rec.Body.Len() != 0 || len(rec.Header()) != 0 {
		t.Errorf("a refused option wrote a response: %d %q %v", rec.Code, rec.Body, rec.Header())
	}
}
