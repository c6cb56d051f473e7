package sse

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"testing/synctest"
	"time"
	"unicode/utf8"

	"github.com/lightsse/sse/internal/leakcheck"
	"github.com/lightsse/sse/internal/ssetest"
	"github.com/lightsse/sse/internal/wire"
)

// TestMain fails the run if any goroutine outlives the tests.
func TestMain(m *testing.M) { leakcheck.Main(m) }

// ---- Encoding an event (event.go) ----------------------------------------

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

func TestAppendTextAllocatesNothing(t *testing.T) {
	buf := make([]byte, 0, 1024)
	if n := testing.AllocsPerRun(100, func() { buf, _ = typical.AppendText(buf[:0]) }); n != 0 {
		t.Errorf("AppendText with room: %v allocs, want 0", n)
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

// ---- The encoder's fast path (event.go) ----------------------------------
//
// The plain fast path of Event.AppendText (plain, notPlain, appendPlain) must
// write byte for byte what the exact path (validateExact, then appendWire)
// writes, and report the same errors.

func TestFastPathMatchesExactSpecialBytes(t *testing.T) {
	check := func(e Event) { checkFastMatchesExact(t, e) }
	for n := 0; n <= 40; n++ {
		base := []byte(strings.Repeat("abcdefghijklmnopqrstuvwxyz0123456789{}\":,", 2)[:n])
		eachField(string(base), check)
		for i := 0; i < n; i++ {
			for _, c := range specialBytes {
				s := bytes.Clone(base)
				s[i] = c
				eachField(string(s), check)
				// and a second special byte, 1, 7, 8 and 9 bytes on
				for _, d := range []int{1, 7, 8, 9} {
					if i+d < n {
						s2 := bytes.Clone(s)
						s2[i+d] = '\n'
						eachField(string(s2), check)
						s2[i+d] = 0x80
						eachField(string(s2), check)
					}
				}
			}
		}
	}
}

func TestFastPathMatchesExactUTF8AndBreaks(t *testing.T) {
	for _, s := range []string{
		"", "a", "ab", "abc", "abcd", "abcdefg", "abcdefgh", "abcdefghi",
		"é", "héllo", "日本語のテキスト", "emoji 😀 here", "\u2028\u2029",
		"\xc3", "\xc3(", "\xe2\x82", "\xed\xa0\x80", "\xf4\x90\x80\x80",
		"\r", "\n", "\r\n", "a\rb", "a\nb", "a\r\nb", "a\r\r\nb\n", "line\n",
		"tab\there", "nul\x00here", "del\x7f", "ctl\x01\x02\x1f",
		strings.Repeat("x", 31) + "\n", strings.Repeat("x", 32) + "\r",
		strings.Repeat("x", 33) + "é", strings.Repeat("y", 64) + "\x00",
		strings.Repeat("z", 200), strings.Repeat("z", 199) + "\x80",
	} {
		eachField(s, func(e Event) { checkFastMatchesExact(t, e) })
	}
}

func TestFastPathMatchesExactRetry(t *testing.T) {
	for _, r := range []time.Duration{
		0, 1, -1, time.Millisecond - 1, time.Millisecond, time.Millisecond + 1,
		1500 * time.Microsecond, 3 * time.Second, -time.Second, 1<<63 - 1, -1 << 63,
	} {
		for _, data := range []string{"", "x", typical.Data, "a\nb", "\xff"} {
			checkFastMatchesExact(t, Event{ID: typical.ID, Type: typical.Type, Data: data, Retry: r})
			checkFastMatchesExact(t, Event{Data: data, Retry: r})
		}
	}
}

func TestFastPathMatchesExactRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	alphabets := []string{
		"abc{}:\", 0123",                 // plain only
		"abc \t\r\n\x00\x0e\x7f",         // ASCII with controls
		"ab\x80\xbf\xc3\xa9\xe2\x82\xac", // UTF-8 pieces, valid or not
		"\x00\x01\n\r\x0d\x0e\x7f\x80\xff a",
	}
	randString := func() string {
		alpha := alphabets[rng.IntN(len(alphabets))]
		n := rng.IntN(80)
		if rng.IntN(8) == 0 {
			n = rng.IntN(600)
		}
		b := make([]byte, n)
		for i := range b {
			b[i] = alpha[rng.IntN(len(alpha))]
		}
		// Mostly plain text, with now and then one byte from elsewhere.
		if n > 0 && rng.IntN(2) == 0 {
			b[rng.IntN(n)] = byte(rng.IntN(256))
		}
		return string(b)
	}
	retries := []time.Duration{0, 0, 0, time.Second, time.Millisecond - 1, -5}
	for range 20000 {
		checkFastMatchesExact(t, Event{
			ID: randString(), Type: randString(), Data: randString(),
			Retry: retries[rng.IntN(len(retries))],
		})
	}
}

// An error leaves b as it was, and a plain event with room allocates nothing.
func TestFastPathErrorsAndAllocs(t *testing.T) {
	b := []byte("kept")
	for _, e := range []Event{{ID: "a\nb"}, {Type: "\r"}, {Data: "\xff"}, {Retry: -1}} {
		got, err := e.AppendText(b)
		if err == nil || string(got) != "kept" || len(got) != 4 {
			t.Errorf("%#v: %q, %v; want %q and an error", e, got, err, "kept")
		}
	}
	buf := make([]byte, 0, 1024)
	withRetry := typical
	withRetry.Retry = 2500 * time.Millisecond
	for _, e := range []Event{typical, withRetry, {}, {Data: "x"}} {
		if !e.plain() {
			t.Fatalf("%#v is not plain", e)
		}
		if n := testing.AllocsPerRun(100, func() { buf, _ = e.AppendText(buf[:0]) }); n != 0 {
			t.Errorf("%#v: %v allocs, want 0", e, n)
		}
	}
}

func FuzzFastPathMatchesExact(f *testing.F) {
	f.Add(typical.ID, typical.Type, typical.Data, int64(0))
	f.Add("", "", "", int64(0))
	f.Add("a\x00", "t\r", "d\r\nx\n", int64(time.Second))
	f.Add("é", "\t", "\xff\x80abcdefgh", int64(-1))
	f.Add("12345678", "abcdefghi", strings.Repeat("q", 33), int64(time.Millisecond-1))
	f.Fuzz(func(t *testing.T, id, typ, data string, retry int64) {
		checkFastMatchesExact(t, Event{ID: id, Type: typ, Data: data, Retry: time.Duration(retry)})
	})
}

// ---- The Writer, over real sockets (writer.go) ---------------------------

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

// A server-wide WriteTimeout of 1 s does not end a 3 s stream, and neither
// does the Writer's own 500 ms one: each write moves the deadline on.
func TestWriterOutlivesServerWriteTimeout(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, err := NewWriter(w, r, &Options{WriteTimeout: 500 * time.Millisecond})
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

// The same over HTTP/2, where the Writer clears its deadline after each write
// and so must set it again before the next, however soon that comes.
func TestWriterHTTP2StalledClientFailsWithinDeadline(t *testing.T) {
	result := make(chan error, 1)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, err := NewWriter(w, r, &Options{WriteTimeout: 200 * time.Millisecond})
		if err != nil {
			t.Error(err)
			return
		}
		defer s.Close()
		big := Event{Data: strings.Repeat("x", 16<<10)}
		for i := 0; i < 100000; i++ { // 1.6 GB: far past any flow-control window
			if err = s.Send(big); err != nil {
				break
			}
		}
		result <- err
	}))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	t.Cleanup(srv.Close)
	resp, _ := open(t, srv.Client(), srv.URL, nil) // and never read
	if resp.ProtoMajor != 2 {
		t.Fatalf("protocol %s, want HTTP/2", resp.Proto)
	}
	select {
	case err := <-result:
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("Send: %v, want a deadline error", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Send still blocked after 10 s with a 200 ms write timeout")
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

// On HTTP/2 a write deadline resets the stream when it passes even if
// nothing is being written: a stream quiet for longer than the write timeout
// must survive.
func TestWriterHTTP2QuietStreamSurvivesDeadline(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, err := NewWriter(w, r, &Options{WriteTimeout: 200 * time.Millisecond, Heartbeat: -1})
		if err != nil {
			t.Error(err)
			return
		}
		defer s.Close()
		_ = s.Send(Event{Data: "first"})
		select {
		case <-time.After(time.Second): // five write timeouts of silence
		case <-r.Context().Done():
			return
		}
		_ = s.Send(Event{Data: "second"})
	}))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	t.Cleanup(srv.Close)
	_, events := open(t, srv.Client(), srv.URL, nil)
	for _, want := range []string{"first", "second"} {
		if ev, err := events.Next(); err != nil || ev.Data != want {
			t.Fatalf("want %q: got %+v, %v", want, ev, err)
		}
	}
}

func TestWriterClose(t *testing.T) {
	rec := ssetest.NewRecorder()
	s, err := NewWriter(rec, httptest.NewRequest("GET", "/", nil), nil)
	if err != nil {
		t.Fatal(err)
	}
	if rec.Code != 200 || rec.Flushes() != 1 {
		t.Errorf("after NewWriter: status %d, %d flushes; want 200 flushed once", rec.Code, rec.Flushes())
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
	if got := rec.Body(); got != "data: a\n\n" {
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

// ---- The Writer's heartbeat, on a fake clock (writer.go) -----------------

func TestHeartbeat(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		rec := ssetest.NewRecorder()
		s, err := NewWriter(rec, httptest.NewRequestWithContext(ctx, "GET", "/", nil), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		step := func(d time.Duration, want string) {
			t.Helper()
			time.Sleep(d)
			synctest.Wait()
			if got := rec.Body(); got != want {
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
		rec := ssetest.NewRecorder()
		s, _ := NewWriter(rec, httptest.NewRequest("GET", "/", nil), &Options{Heartbeat: time.Second})
		time.Sleep(3500 * time.Millisecond)
		synctest.Wait()
		if got := rec.Body(); got != ":\n:\n:\n" {
			t.Errorf("1 s heartbeat after 3.5 s: %q", got)
		}
		s.Close()
		time.Sleep(time.Hour)
		synctest.Wait()
		if got := rec.Body(); got != ":\n:\n:\n" {
			t.Errorf("heartbeat after Close: %q", got)
		}

		rec = ssetest.NewRecorder()
		s, _ = NewWriter(rec, httptest.NewRequest("GET", "/", nil), &Options{Heartbeat: -1})
		defer s.Close()
		time.Sleep(time.Hour)
		synctest.Wait()
		if got := rec.Body(); got != "" {
			t.Errorf("disabled heartbeat wrote %q", got)
		}
	})
}

// A heartbeat shorter than wire.MinHeartbeat is raised to it.
func TestHeartbeatFloor(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := ssetest.NewRecorder()
		s, _ := NewWriter(rec, httptest.NewRequest("GET", "/", nil), &Options{Heartbeat: time.Nanosecond})
		defer s.Close()
		time.Sleep(wire.MinHeartbeat - time.Millisecond)
		synctest.Wait()
		if got := rec.Body(); got != "" {
			t.Fatalf("a 1 ns heartbeat wrote %q before wire.MinHeartbeat", got)
		}
		time.Sleep(time.Millisecond)
		synctest.Wait()
		if got := rec.Body(); got != ":\n" {
			t.Errorf("a 1 ns heartbeat at wire.MinHeartbeat: %q, want one comment", got)
		}
	})
}

// ---- Ids and positions (sse.go) ------------------------------------------

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

// ---- Benchmarks ----------------------------------------------------------
//
// go test -run='^$' -bench=. -benchmem .

// typical is the event the benchmarks encode: an id, a type and a 200-byte
// JSON line.
var typical = Event{
	ID:   "1f3a-42",
	Type: "price",
	Data: `{"symbol":"ACME","price":1234.56,"currency":"USD","venue":"XNAS","ts":"2026-11-24T12:00:00.000Z","bid":1234.5,"ask":1234.6,"volume":1200345,"note":"a typical JSON payload of about two hundred bytes!"}`,
}

// rawAppend writes typical's bytes by hand, checking nothing: the floor for
// BenchmarkEncode.
func rawAppend(b []byte) []byte {
	b = append(b, "id: "...)
	b = append(b, typical.ID...)
	b = append(b, "\nevent: "...)
	b = append(b, typical.Type...)
	b = append(b, "\ndata: "...)
	b = append(b, typical.Data...)
	return append(b, "\n\n"...)
}

func TestRawAppendMatches(t *testing.T) {
	if got, _ := typical.AppendText(nil); string(got) != string(rawAppend(nil)) {
		t.Fatalf("the benchmark's floor writes other bytes:\n%q\n%q", rawAppend(nil), got)
	}
}

// BenchmarkEncode: one event (id, type, 200-byte JSON line) into a buffer
// with room, next to a hand-written append of the same bytes. The ratio
// metric times both, interleaved, in the same run.
func BenchmarkEncode(b *testing.B) {
	buf := make([]byte, 0, 1024)
	b.Run("AppendText", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(rawAppend(nil))))
		for b.Loop() {
			buf, _ = typical.AppendText(buf[:0])
		}
	})
	b.Run("raw", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(rawAppend(nil))))
		for b.Loop() {
			buf = rawAppend(buf[:0])
		}
	})
	b.Run("ratio", func(b *testing.B) {
		const batch = 1000
		var ours, raw time.Duration
		for b.Loop() {
			start := time.Now()
			for range batch {
				buf, _ = typical.AppendText(buf[:0])
			}
			mid := time.Now()
			for range batch {
				buf = rawAppend(buf[:0])
			}
			ours, raw = ours+mid.Sub(start), raw+time.Since(mid)
		}
		b.ReportMetric(float64(ours)/float64(raw), "x-raw")
	})
}

// BenchmarkEncodeLoneCRs: hostile data made of lone CRs encodes in linear
// time: MB/s stays flat as the payload grows.
func BenchmarkEncodeLoneCRs(b *testing.B) {
	for _, n := range []int{1 << 10, 1 << 14, 1 << 18} {
		b.Run(fmt.Sprintf("bytes=%d", n), func(b *testing.B) {
			e := Event{Data: strings.Repeat("\r", n-1) + "\n"}
			buf, _ := e.AppendText(nil)
			b.SetBytes(int64(n))
			for b.Loop() {
				buf, _ = e.AppendText(buf[:0])
			}
		})
	}
}

// BenchmarkFastPathPieces: the fast path's check and its append, each next to
// rawAppend in the same run (the x-raw metric), so that a busy machine moves
// both.
func BenchmarkFastPathPieces(b *testing.B) {
	buf := make([]byte, 0, 1024)
	pieces := []struct {
		name string
		f    func()
	}{
		{"notPlain/Data", func() { sinkBits |= notPlain(typical.Data) }},
		{"notPlain/ID+Type", func() { sinkBits |= notPlain(typical.ID) | notPlain(typical.Type) }},
		{"plain", func() {
			if typical.plain() {
				sinkBits++
			}
		}},
		{"appendPlain", func() { buf = typical.appendPlain(buf[:0]) }},
		{"exact", func() { buf, _ = exactAppendText(typical, buf[:0]) }},
	}
	for _, p := range pieces {
		b.Run(p.name, func(b *testing.B) {
			const batch = 1000
			var ours, raw time.Duration
			for b.Loop() {
				start := time.Now()
				for range batch {
					p.f()
				}
				mid := time.Now()
				for range batch {
					buf = rawAppend(buf[:0])
				}
				ours, raw = ours+mid.Sub(start), raw+time.Since(mid)
			}
			b.ReportMetric(float64(ours)/float64(raw), "x-raw")
			b.ReportMetric(float64(ours)/float64(b.N*batch), "ns/piece")
		})
	}
}

// BenchmarkFastPathSizes: AppendText on plain data of several sizes.
func BenchmarkFastPathSizes(b *testing.B) {
	for _, n := range []int{0, 7, 32, 200, 1000, 10000} {
		e := Event{ID: typical.ID, Type: typical.Type, Data: strings.Repeat("x", n)}
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			buf := make([]byte, 0, n+64)
			b.SetBytes(int64(n))
			for b.Loop() {
				buf, _ = e.AppendText(buf[:0])
			}
		})
	}
}

// BenchmarkFastPathRejected: events the fast path turns down pay for its check
// on top of the exact path. x-exact is AppendText's time over the exact
// path's (what AppendText was before the fast path), timed in the same run.
func BenchmarkFastPathRejected(b *testing.B) {
	for _, c := range []struct {
		name string
		e    Event
	}{
		{"lines", Event{ID: typical.ID, Type: typical.Type, Data: strings.ReplaceAll(typical.Data, ",", ",\n")}},
		{"utf8", Event{ID: typical.ID, Type: typical.Type, Data: strings.ReplaceAll(typical.Data, "ACME", "ÄCMÉ")}},
		{"tab", Event{ID: typical.ID, Type: typical.Type, Data: strings.ReplaceAll(typical.Data, " ", "\t")}},
	} {
		b.Run(c.name, func(b *testing.B) {
			buf := make([]byte, 0, 1024)
			const batch = 100
			var ours, exact time.Duration
			for b.Loop() {
				start := time.Now()
				for range batch {
					buf, _ = c.e.AppendText(buf[:0])
				}
				mid := time.Now()
				for range batch {
					buf, _ = exactAppendText(c.e, buf[:0])
				}
				ours, exact = ours+mid.Sub(start), exact+time.Since(mid)
			}
			b.ReportMetric(float64(ours)/float64(exact), "x-exact")
			b.ReportMetric(float64(ours)/float64(b.N*batch), "ns/AppendText")
		})
	}
}

// BenchmarkSend: Send through a Writer (validate, encode, deadline, write,
// flush) next to writing hand-encoded bytes and flushing: on a ResponseWriter
// that discards (the Writer's own cost), and on a real loopback response read
// by a client (what a handler sees).
func BenchmarkSend(b *testing.B) {
	b.Run("discard/Writer", func(b *testing.B) {
		b.ReportAllocs()
		w, _ := NewWriter(&ssetest.Discard{Head: http.Header{}}, httptest.NewRequest("GET", "/", nil), &Options{Heartbeat: -1})
		defer w.Close()
		for b.Loop() {
			_ = w.Send(typical)
		}
	})
	b.Run("discard/raw", func(b *testing.B) {
		b.ReportAllocs()
		d := &ssetest.Discard{Head: http.Header{}}
		var buf []byte
		for b.Loop() {
			buf = rawAppend(buf[:0])
			_, _ = d.Write(buf)
			d.Flush()
		}
	})
	loopback := func(b *testing.B, send func(w http.ResponseWriter, r *http.Request)) {
		done := make(chan struct{})
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			defer close(done)
			send(w, r)
		}))
		defer srv.Close()
		resp, err := srv.Client().Get(srv.URL)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		<-done
	}
	b.Run("loopback/Writer", func(b *testing.B) {
		loopback(b, func(w http.ResponseWriter, r *http.Request) {
			sw, _ := NewWriter(w, r, &Options{Heartbeat: -1})
			defer sw.Close()
			b.ReportAllocs()
			for b.Loop() {
				_ = sw.Send(typical)
			}
		})
	})
	b.Run("loopback/raw", func(b *testing.B) {
		loopback(b, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/event-stream")
			rc := http.NewResponseController(w)
			var buf []byte
			b.ReportAllocs()
			for b.Loop() {
				buf = rawAppend(buf[:0])
				_, _ = w.Write(buf)
				_ = rc.Flush()
			}
		})
	})
}

// BenchmarkPublish: allocations per Publish do not grow with subscribers.
// ---- Helpers: encoding ---------------------------------------------------

// sinkBits keeps the compiler from dropping a benchmarked call.
var sinkBits uint64

// toLF is what a client reads back for s: CR and CRLF become LF.
func toLF(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "\r\n", "\n"), "\r", "\n")
}

// exactAppendText is AppendText without the fast path.
func exactAppendText(e Event, b []byte) ([]byte, error) {
	if err := e.validateExact(); err != nil {
		return b, err
	}
	return e.appendWire(b), nil
}

// isPlainRef is what notPlain computes, one byte at a time: every byte of s
// is in 0x0E-0x7F.
func isPlainRef(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x0E || s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// errText is err's text, or "" for nil.
func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// checkFastMatchesExact fails t if the fast path and the exact path disagree
// on e in any way: output bytes, error, what validate says, or if plain
// accepts an event the byte-by-byte reference does not.
func checkFastMatchesExact(t testing.TB, e Event) {
	t.Helper()
	prefix := []byte("prefix\n")
	want, wantErr := exactAppendText(e, bytes.Clone(prefix))
	got, gotErr := e.AppendText(bytes.Clone(prefix))
	if !bytes.Equal(got, want) || errText(gotErr) != errText(wantErr) {
		t.Fatalf("%#v:\nAppendText  %q, %v\nexact path  %q, %v", e, got, gotErr, want, wantErr)
	}
	if errText(e.validate()) != errText(wantErr) {
		t.Fatalf("%#v: validate says %v, exact path %v", e, e.validate(), wantErr)
	}
	for _, s := range []string{e.ID, e.Type, e.Data} {
		if (notPlain(s)&highBits == 0) != isPlainRef(s) {
			t.Fatalf("notPlain(%q) = %#x, but the byte-by-byte check says plain=%v", s, notPlain(s), isPlainRef(s))
		}
	}
	refPlain := isPlainRef(e.ID) && isPlainRef(e.Type) && isPlainRef(e.Data) &&
		(e.Retry == 0 || e.Retry >= time.Millisecond)
	if e.plain() != refPlain {
		t.Fatalf("%#v: plain() = %v, reference %v", e, e.plain(), refPlain)
	}
	if refPlain {
		if wantErr != nil {
			t.Fatalf("%#v: plain, but the exact path fails: %v", e, wantErr)
		}
		if p := e.appendPlain(bytes.Clone(prefix)); !bytes.Equal(p, want) {
			t.Fatalf("%#v:\nappendPlain %q\nappendWire  %q", e, p, want)
		}
	}
}

// specialBytes are the bytes at and around the fast path's edges, and the
// ones the exact path treats specially.
var specialBytes = []byte{
	0x00, 0x01, '\t', '\n', 0x0B, 0x0C, '\r', 0x0E, 0x0F, 0x1F, ' ', '~', 0x7F,
	0x80, 0x8D, 0x8E, 0xBF, 0xC2, 0xC3, 0xE2, 0xF0, 0xF4, 0xF5, 0xFE, 0xFF,
}

// eachField calls f with events that put s in ID, Type and Data in turn (the
// others typical), and in all three at once.
func eachField(s string, f func(Event)) {
	f(Event{ID: s, Type: typical.Type, Data: typical.Data})
	f(Event{ID: typical.ID, Type: s, Data: typical.Data})
	f(Event{ID: typical.ID, Type: typical.Type, Data: s})
	f(Event{ID: s, Type: s, Data: s})
}

// ---- Helpers: responses --------------------------------------------------

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
	// A bound on the whole stream: an event that never arrives (a missing
	// flush, say) fails the read within it instead of hanging the run.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
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
