package sseclient

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lightsse/sse"
	"github.com/lightsse/sse/internal/brokertest"
	"github.com/lightsse/sse/internal/leakcheck"
	"github.com/lightsse/sse/internal/ssetest"
)

// ---- Reading a stream (event.go) -----------------------------------------

// The examples of the WHATWG standard's section on the format, which nobody on
// this project wrote, read as the Reader's fields describe them. Each stream is
// read whole and one byte per Read.
func TestReaderStandardExamples(t *testing.T) {
	tests := []struct {
		name   string
		stream string
		want   []sse.Event
		lastID string
	}{
		{"stock ticker: data lines join with LF",
			"data: YHOO\ndata: +2\ndata: 10\n\n",
			[]sse.Event{{Data: "YHOO\n+2\n10"}}, ""},
		{"comment, id set then reset, one leading space removed",
			": test stream\n\ndata: first event\nid: 1\n\ndata:second event\nid\n\ndata:  third event\n\n",
			[]sse.Event{{ID: "1", Data: "first event"}, {Data: "second event"}, {Data: " third event"}}, ""},
		{"empty data, a lone newline, and an unterminated block dropped",
			"data\n\ndata\ndata\n\ndata:",
			[]sse.Event{{Data: ""}, {Data: "\n"}}, ""},
		{"the space after the colon is optional",
			"data:test\n\ndata: test\n\n",
			[]sse.Event{{Data: "test"}, {Data: "test"}}, ""},
		{"an event type and a retry belong to their event",
			"event: add\nretry: 1500\ndata: 73857293\n\nevent: remove\ndata: 2153\n\n",
			[]sse.Event{{Type: "add", Data: "73857293", Retry: 1500 * time.Millisecond}, {Type: "remove", Data: "2153"}}, ""},
		{"the last event ID persists, and an id without data still sets it",
			"id: 7\ndata: a\n\ndata: b\n\nid: 9\n\n",
			[]sse.Event{{ID: "7", Data: "a"}, {Data: "b"}}, "9"},
	}
	for _, tt := range tests {
		for _, how := range []string{"whole", "byte by byte"} {
			t.Run(tt.name+"/"+how, func(t *testing.T) {
				src := io.Reader(strings.NewReader(tt.stream))
				if how != "whole" {
					src = oneByte(tt.stream)
				}
				got, r, err := readAll(src)
				if !slices.Equal(got, tt.want) {
					t.Errorf("events = %+v\nwant     %+v", got, tt.want)
				}
				if r.LastEventID() != tt.lastID {
					t.Errorf("LastEventID = %q, want %q", r.LastEventID(), tt.lastID)
				}
				wantErr := io.EOF
				if strings.HasSuffix(tt.stream, "data:") {
					wantErr = io.ErrUnexpectedEOF
				}
				if err != wantErr {
					t.Errorf("err = %v, want %v", err, wantErr)
				}
			})
		}
	}
}

// Each rule of the standard's parser, one case each, read whole and in the
// pieces given (a "|" marks where one Read ends and the next begins).
func TestReaderRules(t *testing.T) {
	tests := []struct {
		rule   string
		stream string
		want   []sse.Event
	}{
		{"LF, CR and CRLF end lines", "data: a\rdata: b\r\ndata: c\n\r\n", []sse.Event{{Data: "a\nb\nc"}}},
		{"CR CR is two line ends: a blank line", "data: a\r\rdata: b\r\r", []sse.Event{{Data: "a"}, {Data: "b"}}},
		{"LF CR is two line ends", "data: a\n\rdata: b\n\n", []sse.Event{{Data: "a"}, {Data: "b"}}},
		{"a CRLF split across two reads is one line end", "data: a\r|\ndata: b\r|\n\r|\n", []sse.Event{{Data: "a\nb"}}},
		{"a CR at the end of a read, then a blank line", "data: a\r|\r", []sse.Event{{Data: "a"}}},
		{"a BOM at the start is skipped", "\uFEFFdata: a\n\n", []sse.Event{{Data: "a"}}},
		{"a BOM split across reads is skipped", "\xEF|\xBB|\xBFdata: a\n\n", []sse.Event{{Data: "a"}}},
		{"a BOM alone on the first line makes it blank", "\uFEFF\ndata: a\n\n", []sse.Event{{Data: "a"}}},
		{"a second BOM is part of the field name", "\uFEFF\uFEFFdata: a\n\ndata: b\n\n", []sse.Event{{Data: "b"}}},
		{"a BOM after the first line is not skipped", "data: a\n\uFEFFdata: b\n\n", []sse.Event{{Data: "a"}}},
		{"a field with no colon has an empty value", "data\ndata\n\n", []sse.Event{{Data: "\n"}}},
		{"exactly one space is stripped", "data:  two\nevent:   three\nid:  one\n\n", []sse.Event{{ID: " one", Type: "  three", Data: " two"}}},
		{"a tab is not a space", "data:\tx\n\n", []sse.Event{{Data: "\tx"}}},
		{"a colon in the value stays", "data: a: b:c\n\n", []sse.Event{{Data: "a: b:c"}}},
		{"field names are case-sensitive", "Data: no\nDATA: no\ndata: yes\n\n", []sse.Event{{Data: "yes"}}},
		{"unknown fields are ignored", "foo: bar\ndata: x\nfoo\n\n", []sse.Event{{Data: "x"}}},
		{"a comment inside an event changes nothing", "data: a\n: c\ndata: b\n\n", []sse.Event{{Data: "a\nb"}}},
		{"an id with NUL is ignored", "id: 1\ndata: a\n\nid: x\x00y\ndata: b\n\n", []sse.Event{{ID: "1", Data: "a"}, {Data: "b"}}},
		{"the last id field of an event wins", "id: 1\nid: 2\ndata: a\n\n", []sse.Event{{ID: "2", Data: "a"}}},
		{"an empty id field resets the id", "id: 1\nid\ndata: a\n\n", []sse.Event{{Data: "a"}}},
		{"the last event field wins", "event: a\nevent: b\ndata: x\n\n", []sse.Event{{Type: "b", Data: "x"}}},
		{"an empty event field means message", "event: a\nevent:\ndata: x\n\n", []sse.Event{{Data: "x"}}},
		{"\"message\" stays as sent", "event: message\ndata: x\n\n", []sse.Event{{Type: "message", Data: "x"}}},
		{"no data: no event, and its type is forgotten", "event: a\n\ndata: x\n\n", []sse.Event{{Data: "x"}}},
		{"retry with digits only", "retry: 0\ndata: a\n\nretry: 250\ndata: b\n\n", []sse.Event{{Data: "a"}, {Data: "b", Retry: 250 * time.Millisecond}}},
		{"retry that is not all digits is ignored", "retry: 1.5\nretry: -1\nretry: 10ms\nretry\nretry:  5\ndata: a\n\n", []sse.Event{{Data: "a"}}},
		{"a valid retry survives a later invalid one", "retry: 7\nretry: x\ndata: a\n\n", []sse.Event{{Data: "a", Retry: 7 * time.Millisecond}}},
		{"a retry too long for a Duration gives the longest", "retry: 99999999999999999999999999\ndata: a\n\n", []sse.Event{{Data: "a", Retry: time.Duration(1<<63 - 1)}}},
		{"blank lines alone dispatch nothing", "\n\n\r\n\r\r", nil},
		{"a line split across many reads", "da|ta|: he|llo\n|\n", []sse.Event{{Data: "hello"}}},
	}
	for _, tt := range tests {
		t.Run(tt.rule, func(t *testing.T) {
			c := chunks(strings.Split(tt.stream, "|"))
			for _, src := range []io.Reader{strings.NewReader(strings.ReplaceAll(tt.stream, "|", "")), &c} {
				got, _, err := readAll(src)
				if !slices.Equal(got, tt.want) || err != io.EOF {
					t.Errorf("%q: %+v, %v\nwant %+v, EOF", tt.stream, got, err, tt.want)
				}
			}
		})
	}
}

// The stream's state: the last event ID and the reconnection time, which
// change even in blocks that dispatch nothing, and SetLastEventID.
func TestReaderStreamState(t *testing.T) {
	r := NewReader(strings.NewReader("retry: 300\n\nid: a\n\ndata: 1\n\nid\ndata: 2\n\nretry: x\nid: b\n"))
	if d, ok := r.Retry(); d != 0 || ok {
		t.Errorf("before reading: Retry() = %v, %v", d, ok)
	}
	ev, err := r.Next()
	if ev != (sse.Event{Data: "1"}) || err != nil || r.LastEventID() != "a" {
		t.Errorf("first event %+v, %v, LastEventID %q; want data 1, id a", ev, err, r.LastEventID())
	}
	if d, ok := r.Retry(); d != 300*time.Millisecond || !ok {
		t.Errorf("Retry() = %v, %v; want 300ms from a block without data", d, ok)
	}
	ev, _ = r.Next()
	if ev != (sse.Event{Data: "2"}) || r.LastEventID() != "" {
		t.Errorf("second event %+v, LastEventID %q; want an empty id to reset it", ev, r.LastEventID())
	}
	if _, err := r.Next(); err != io.ErrUnexpectedEOF || r.LastEventID() != "" {
		t.Errorf("at the end: %v, LastEventID %q; want ErrUnexpectedEOF, and the id of the cut-off block unused", err, r.LastEventID())
	}
	if d, ok := r.Retry(); d != 300*time.Millisecond || !ok {
		t.Errorf("Retry() = %v, %v; want an invalid retry ignored", d, ok)
	}

	r = NewReader(strings.NewReader("data: a\n\nid: 5\ndata: b\n\ndata: c\n\n"))
	r.SetLastEventID("4")
	for _, want := range []string{"4", "5", "5"} {
		if _, err := r.Next(); err != nil || r.LastEventID() != want {
			t.Errorf("LastEventID = %q, %v; want %q", r.LastEventID(), err, want)
		}
	}
}

func TestReaderDecodesUTF8LikeWHATWG(t *testing.T) {
	for in, want := range map[string]string{
		"a\xff\xffb":       "a\uFFFD\uFFFDb",     // two invalid bytes: two replacements
		"\xe2\x82":         "\uFFFD",             // a cut-short sequence: one
		"\xe2\x82x":        "\uFFFDx",            //
		"\xed\xa0\x80":     "\uFFFD\uFFFD\uFFFD", // a surrogate: ED, then two lone continuations
		"\xf0\x9f\x98\x80": "😀",
		"\xf0\x9f\x98":     "\uFFFD",                   // one, for a 4-byte form cut short
		"\xf4\x90\x80\x80": "\uFFFD\uFFFD\uFFFD\uFFFD", // over U+10FFFF
		"\xc0\xaf":         "\uFFFD\uFFFD",             // an overlong form
		"\xc3(":            "\uFFFD(",
		"\xe0\x80\xaf":     "\uFFFD\uFFFD\uFFFD", // E0 takes A0-BF next
		"\uFFFD":           "\uFFFD",             // a real U+FFFD stays one
	} {
		stream := "id: " + in + "\nevent: " + in + "\ndata: " + in + "\n\n"
		got, _, _ := readAll(strings.NewReader(stream))
		if len(got) != 1 || got[0] != (sse.Event{ID: want, Type: want, Data: want}) {
			t.Errorf("%q: %+q, want %q in each field", in, got, want)
		}
	}
	var text string
	r := NewReader(strings.NewReader(":\xe2\x82\n"))
	r.OnComment = func(s string) { text = s }
	r.Next()
	if text != "\uFFFD" {
		t.Errorf("comment %q, want U+FFFD", text)
	}
}

func TestReaderEnd(t *testing.T) {
	for stream, want := range map[string]error{
		"":                     io.EOF,
		"data: a\n\n":          io.EOF,
		"data: a\n\n: bye\n":   io.EOF, // a comment is not an event
		"data: a\n\n\n":        io.EOF,
		"data: a\n\ndata: b\n": io.ErrUnexpectedEOF, // an event without its blank line
		"data: a\n\ndata: b":   io.ErrUnexpectedEOF, // a line without its end
		"data: a\n\nid: 1\n":   io.ErrUnexpectedEOF,
		"data: a\n\n: partial": io.ErrUnexpectedEOF,
		"data: a\r\n\r":        io.EOF,
		"\uFEFF":               io.EOF,              // a BOM alone: the stream decodes to nothing
		"\xEF\xBB":             io.ErrUnexpectedEOF, // a BOM cut short is U+FFFD, a line without its end
		"\uFEFF:":              io.ErrUnexpectedEOF,
	} {
		got, r, err := readAll(strings.NewReader(stream))
		events := 0
		if strings.HasPrefix(stream, "data: a") {
			events = 1
		}
		if err != want || len(got) != events {
			t.Errorf("%q: %+v, %v; want %d events, %v", stream, got, err, events, want)
		}
		if _, again := r.Next(); again != err {
			t.Errorf("%q: a second call gave %v after %v", stream, again, err)
		}
	}

	// A read error comes after the whole events read before it.
	boom := errors.New("boom")
	r := NewReader(io.MultiReader(strings.NewReader("data: a\n\ndata: b\n\ndata: c"), &failingReader{boom}))
	var got []string
	for ev, err := range r.Events() {
		if err != nil {
			if !errors.Is(err, boom) {
				t.Errorf("error %v, want %v", err, boom)
			}
			break
		}
		got = append(got, ev.Data)
	}
	if !slices.Equal(got, []string{"a", "b"}) {
		t.Errorf("events before the error: %q", got)
	}
}

// A reader that returns nothing, again and again, ends the stream.
func TestReaderNoProgress(t *testing.T) {
	if _, err := NewReader(&failingReader{nil}).Next(); err != io.ErrNoProgress {
		t.Errorf("err = %v, want io.ErrNoProgress", err)
	}
}

func TestReaderEvents(t *testing.T) {
	var got []string
	for ev, err := range NewReader(strings.NewReader("data: a\n\ndata: b\n\n")).Events() {
		if err != nil {
			t.Fatalf("a clean end yielded %v", err)
		}
		got = append(got, ev.Data)
	}
	if !slices.Equal(got, []string{"a", "b"}) {
		t.Errorf("events %q", got)
	}

	var errs []error
	for ev, err := range NewReader(strings.NewReader("data: a\n\ndata: cut")).Events() {
		if err != nil && ev != (sse.Event{}) {
			t.Errorf("an error came with %+v", ev)
		}
		errs = append(errs, err)
	}
	if !slices.Equal(errs, []error{nil, io.ErrUnexpectedEOF}) {
		t.Errorf("errors %v, want nil then ErrUnexpectedEOF", errs)
	}

	// Breaking out of the loop leaves the rest for Next.
	r := NewReader(strings.NewReader("data: a\n\ndata: b\n\n"))
	for range r.Events() {
		break
	}
	if ev, err := r.Next(); ev.Data != "b" || err != nil {
		t.Errorf("after break: %+v, %v", ev, err)
	}
}

func TestReaderComments(t *testing.T) {
	var b []byte
	b, _ = commentBytes(b, "")
	b, _ = commentBytes(b, "hello")
	b = append(b, "data: x\n:no space\n:  two spaces\n\n"...)
	b, _ = commentBytes(b, "a\r\nb\rc")
	var got []string
	r := NewReader(bytes.NewReader(b))
	r.OnComment = func(text string) { got = append(got, text) }
	evs := slices.Collect(func(yield func(sse.Event) bool) {
		for ev, err := range r.Events() {
			if err != nil || !yield(ev) {
				return
			}
		}
	})
	want := []string{"", "hello", "no space", " two spaces", "a", "b", "c"}
	if !slices.Equal(got, want) || len(evs) != 1 {
		t.Errorf("comments %q, want %q; events %+v", got, want, evs)
	}
}

// The bound is on the event, not the line: an event of exactly MaxEventSize
// bytes (one byte per line end) passes, one more fails; comments do not count,
// however many arrive between events (heartbeats), but a comment line over the
// bound fails too.
func TestReaderMaxEventSize(t *testing.T) {
	const most = 64
	event := "id: 1\nevent: e\ndata: " + strings.Repeat("x", most-6-9-7) + "\n" // 64 bytes
	if len(event) != most {
		t.Fatalf("the test's event is %d bytes", len(event))
	}
	heartbeats := strings.Repeat(":\n", 100) + ": " + strings.Repeat("c", most-3) + "\n"
	for name, tt := range map[string]struct {
		stream string
		ok     bool
	}{
		"at the bound":                       {heartbeats + event + "\n" + heartbeats + event + "\n", true},
		"at the bound, a comment inside":     {"id: 1\nevent: e\n" + heartbeats + "data: " + strings.Repeat("x", most-6-9-7) + "\n\n", true},
		"at the bound, CRLF counted as one":  {strings.ReplaceAll(event, "\n", "\r\n") + "\r\n", true},
		"at the bound, after a BOM":          {"\uFEFF" + event + "\n", true},
		"one byte over, in one line":         {"id: 1\nevent: e\ndata: " + strings.Repeat("x", most-6-9-7+1) + "\n\n", false},
		"one byte over, in many lines":       {strings.Repeat("data: x\n", most/8) + "d\n\n", false},
		"one byte over, in lines not data":   {strings.Repeat("foo: ba\n", most/8) + "d\n\n", false},
		"a comment line one byte over":       {":" + strings.Repeat("c", most) + "\ndata: x\n\n", false},
		"a line over the bound, with no end": {"data: " + strings.Repeat("x", 10*most), false},
		"a comment over the bound, no end":   {":" + strings.Repeat("x", 10*most), false},
	} {
		for _, how := range []string{"whole", "byte by byte"} {
			src := io.Reader(strings.NewReader(tt.stream))
			if how != "whole" {
				src = oneByte(tt.stream)
			}
			r := NewReader(src)
			r.MaxEventSize = most
			var err error
			for err == nil {
				_, err = r.Next()
			}
			if tt.ok && err != io.EOF || !tt.ok && !errors.Is(err, ErrEventTooLarge) {
				t.Errorf("%s, %s: %v", name, how, err)
			}
			if _, again := r.Next(); again != err {
				t.Errorf("%s, %s: a second call gave %v after %v", name, how, again, err)
			}
		}
	}
}

// A line that never ends fails once it passes the bound, having read little
// more than the bound; by default the bound is 16 MiB, above the 64 KiB at
// which other readers fail.
func TestReaderBoundsAnEndlessLine(t *testing.T) {
	for _, max := range []int{0, 100, 1 << 20} {
		src := &endlessLine{}
		r := NewReader(io.MultiReader(strings.NewReader("data: "), src))
		r.MaxEventSize = max
		_, err := r.Next()
		limit := max
		if max == 0 {
			limit = DefaultMaxEventSize
		}
		if !errors.Is(err, ErrEventTooLarge) || src.read > 2*limit+readBufferSize {
			t.Errorf("MaxEventSize %d: %v after reading %d bytes", max, err, src.read)
		}
	}
	big := "data: " + strings.Repeat("x", 2<<20) + "\n\n"
	if evs, _, err := readAll(strings.NewReader(big + big + "data: x\n\n")); len(evs) != 3 || len(evs[1].Data) != 2<<20 || err != io.EOF {
		t.Errorf("two events of 2 MiB and a small one: %d events, %v", len(evs), err)
	}
	half := strings.Repeat("y", 1<<20)
	long := "data: " + half + "\ndata: " + half + "\n\n"
	if evs, _, err := readAll(strings.NewReader(long + "data: x\n\n")); len(evs) != 2 || evs[0].Data != half+"\n"+half || err != io.EOF {
		t.Errorf("an event of two 1 MiB lines and a small one: %d events, %v", len(evs), err)
	}
}

// A Reader allocates nothing per line, and per event only its strings: for
// events that arrive together, one string shared by many, which makes a
// fraction of an allocation each; for data of several lines, one string.
func TestReaderAllocations(t *testing.T) {
	for _, tt := range []struct {
		stream string
		allocs float64 // per 100 events
	}{
		{"data: " + typical.Data + "\n\n", 8},
		{"event: token\ndata: {\"t\":\"hello\"}\n\n", 2},
		{": heartbeat\nid: 42\nevent: update\nretry: 1000\ndata: a b c\n\n", 3},
		{"id: 1\ndata: a\n\nid: 2\ndata: b\n\n", 1},                  // ids that change
		{"id: 1\nevent: aa\ndata: x\n\nevent: bb\ndata: y\n\n", 101}, // types that change: one string each
		{"data: a\ndata: b\ndata: c\n\n", 101},                       // data of several lines
		{"data: \xff\n\n", 101},                                      // invalid UTF-8
	} {
		r := NewReader(&repeatReader{s: tt.stream})
		r.Next() // the buffer
		got := testing.AllocsPerRun(100, func() {
			for range 100 {
				if _, err := r.Next(); err != nil {
					t.Fatal(err)
				}
			}
		})
		if got > tt.allocs {
			t.Errorf("%q: %v allocations per 100 events, want at most %v", tt.stream, got, tt.allocs)
		}
	}
}

// The Reader reads a Writer's stream, a Broker's, over a real socket.
func TestReaderReadsWriterAndBroker(t *testing.T) {
	leakcheck.Check(t)
	events := []sse.Event{
		{ID: "1", Type: "a", Data: "one\ntwo", Retry: time.Second},
		{Data: ""},
		{Type: "b", Data: "\n"},
	}
	srv := serveFunc(t, func(w http.ResponseWriter, r *http.Request) {
		sw, err := sse.NewWriter(w, r, &sse.Options{Retry: 3 * time.Second})
		if err != nil {
			return
		}
		defer sw.Close()
		sw.Comment("hi")
		for _, e := range events {
			sw.Send(e)
		}
	})
	resp, err := srv.Client().Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var comments []string
	r := NewReader(resp.Body)
	r.OnComment = func(s string) { comments = append(comments, s) }
	var got []sse.Event
	for ev, err := range r.Events() {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, ev)
	}
	if !slices.Equal(got, events) || !slices.Equal(comments, []string{"hi"}) {
		t.Errorf("events %+v, comments %q\nwant %+v", got, comments, events)
	}
	if d, _ := r.Retry(); d != time.Second {
		t.Errorf("Retry() = %v, want the last one, 1s", d)
	}

	b := brokertest.New(t, nil)
	bsrv := httptest.NewServer(b)
	defer bsrv.Close()
	defer b.Close()
	resp, err = bsrv.Client().Get(bsrv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	r = NewReader(resp.Body)
	for b.Subscribers() < 1 { // once counted, every later event reaches the stream
		time.Sleep(time.Millisecond)
	}
	b.Publish(sse.Event{Type: "news", Data: "x"})
	ev, err := r.Next()
	if err != nil || ev.Type != "news" || ev.Data != "x" || ev.ID == "" || r.LastEventID() != ev.ID {
		t.Errorf("from a Broker: %+v, %v, LastEventID %q", ev, err, r.LastEventID())
	}
}

// FuzzReaderMatchesReference reads arbitrary bytes with the Reader and with
// internal/ssetest, which follows the standard step by step, whole and one
// byte per Read: they must agree on every event, the last event ID at each,
// the comments, the reconnection time and whether the stream was cut.
func FuzzReaderMatchesReference(f *testing.F) {
	for _, s := range []string{
		"data: YHOO\ndata: +2\ndata: 10\n\n",
		": test stream\n\ndata: first event\nid: 1\n\ndata:second event\nid\n\ndata:  third event\n\n",
		"data\n\ndata\ndata\n\ndata:",
		"\uFEFFevent: a\rdata: 1\r\ndata: 2\n\r\n",
		"id: 7\ndata: a\n\nid: x\x00y\ndata: b\n\nretry: 12\nretry: x\n",
		"data: a\xff\xe2\x82\n\n\xEF\xBB\xBF",
		"event: message\ndata\n\nevent\ndata: \n\n",
		"\uFEFF",
		"\xEF\xBB",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, stream []byte) {
		want, ref := ssetest.Parse(string(stream))
		matchReference(t, stream, bytes.NewReader(stream), want, ref)
		matchReference(t, stream, oneByte(string(stream)), want, ref)
		matchReference(t, stream, varied(string(stream)), want, ref)
	})
}

// Long streams read in pieces of random sizes, so that lines span many reads
// and the buffer is moved, grown and shrunk, agree with the reference.
func TestReaderMatchesReferenceOnLongStreams(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	pieces := []string{"data: ", "data:", "id: ", "event: ", "retry: ", ":", "\n", "\r", "\r\n", "\n\n", "\n\n",
		"x", "12", " ", "\xff", "\xe2\x82", "\uFEFF", "\x00", "日本",
		strings.Repeat("y", 3000), strings.Repeat("z", 70000), strings.Repeat("w", 1<<20+1)}
	for range 40 {
		var b []byte
		for len(b) < 300_000 {
			p := pieces[rng.IntN(len(pieces))]
			if len(p) > 1<<20 && rng.IntN(10) > 0 {
				continue
			}
			b = append(b, p...)
		}
		want, ref := ssetest.Parse(string(b))
		var c chunks
		for rest := string(b); rest != ""; {
			n := min(len(rest), 1+rng.IntN([]int{3, 100, 10_000}[rng.IntN(3)]))
			c, rest = append(c, rest[:n]), rest[n:]
		}
		matchReference(t, b, &c, want, ref)
	}
}

// Many events that AppendText wrote, read in pieces of random sizes, come
// back as they were: values are taken from the right bytes whatever the reads
// do to the buffer.
func TestReaderRoundTripInPieces(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	words := []string{"", "a", "data: x", "日本語", "😀", "\t", " ", "{\"k\":1}", strings.Repeat("z", 300)}
	pick := func(n int) string {
		var b strings.Builder
		for range rng.IntN(n) {
			b.WriteString(words[rng.IntN(len(words))])
		}
		return b.String()
	}
	var want []sse.Event
	var wire []byte
	for i := range 3000 {
		e := sse.Event{Data: pick(6), Retry: time.Duration(rng.IntN(3)) * time.Second}
		if rng.IntN(2) == 0 {
			e.ID = strconv.Itoa(i)
		}
		if rng.IntN(3) == 0 {
			e.Type = pick(3)
		}
		if rng.IntN(10) == 0 {
			e.Data += "\n" + pick(4)
		}
		wire, _ = e.AppendText(wire)
		want = append(want, e)
	}
	for _, most := range []int{1, 7, 100, 5000} {
		var c chunks
		for rest := string(wire); rest != ""; {
			n := min(len(rest), 1+rng.IntN(most))
			c, rest = append(c, rest[:n]), rest[n:]
		}
		got, _, err := readAll(&c)
		if err != io.EOF || len(got) != len(want) {
			t.Fatalf("reads of up to %d bytes: %d events, %v; want %d", most, len(got), err, len(want))
		}
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("reads of up to %d bytes: event %d is %+q, want %+q", most, i, got[i], want[i])
			}
		}
	}
}

// FuzzRoundTrip: any event AppendText accepts comes back from the Reader
// identical, but for CR and CRLF in Data, which come back as LF, and Retry,
// which travels in whole milliseconds; so do the comments before it. The
// event after it, which has no id or type, comes back without them.
func FuzzRoundTrip(f *testing.F) {
	f.Add("1", "", "hello", int64(0), "")
	f.Add("", "update", "a\r\nb\rc\n", int64(3000), "beat")
	f.Add(" sp ", "message", " lead\n\n", int64(1), "a\r\nb")
	f.Add("日本", "\t", "\uFEFFdata", int64(9223372036854775807), ":")
	f.Fuzz(func(t *testing.T, id, typ, data string, retry int64, comment string) {
		e := sse.Event{ID: id, Type: typ, Data: data, Retry: time.Duration(retry)}
		b, err := commentBytes(nil, comment)
		if err != nil {
			return
		}
		if b, err = e.AppendText(b); err != nil {
			return
		}
		b, _ = sse.Event{Data: "next"}.AppendText(b)
		want := []sse.Event{{ID: id, Type: typ, Data: toLF(data), Retry: e.Retry.Truncate(time.Millisecond)}, {Data: "next"}}
		wantComments := strings.Split(toLF(comment), "\n")
		for _, src := range []io.Reader{bytes.NewReader(b), oneByte(string(b))} {
			r := NewReader(src)
			var comments []string
			r.OnComment = func(s string) { comments = append(comments, s) }
			got, err := readAllFrom(r)
			if !slices.Equal(got, want) || err != io.EOF || !slices.Equal(comments, wantComments) {
				t.Fatalf("%+v, comment %q\nwire %q\nread %+v, %v, comments %q", e, comment, b, got, err, comments)
			}
			if id != "" && r.LastEventID() != id {
				t.Fatalf("LastEventID %q, want %q", r.LastEventID(), id)
			}
		}
	})
}

func BenchmarkReader(b *testing.B) {
	var typicals, tokens, invalid []byte
	for i := range 1000 {
		typicals, _ = sse.Event{ID: strconv.Itoa(i), Type: typical.Type, Data: typical.Data}.AppendText(typicals)
		tokens, _ = sse.Event{Data: `{"t":"` + strings.Repeat("a", 12+i%20) + `"}`}.AppendText(tokens)
		invalid = append(invalid, "data: "+strings.Repeat("b", 12+i%20)+"\n\n"...)
		if i%5 == 0 { // one token in five with a byte that is not UTF-8
			invalid = append(invalid, "data: \xff\n\n"...)
		}
	}
	for name, stream := range map[string][]byte{"typical": typicals, "tokens": tokens, "tokens-invalid-utf8": invalid} {
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(stream) / bytes.Count(stream, []byte("\n\n")))) // per event
			b.ReportAllocs()
			src := bytes.NewReader(stream)
			r := NewReader(src)
			for b.Loop() {
				if _, err := r.Next(); err != nil {
					src.Reset(stream)
					r = NewReader(src)
				}
			}
		})
	}
}

// BenchmarkReaderLoneCRs shows that a stream of lines ending in CR alone is
// read in linear time: MB/s stays the same as the buffer grows.
func BenchmarkReaderLoneCRs(b *testing.B) {
	for _, size := range []int{1 << 10, 1 << 14, 1 << 18} {
		stream := "data: " + strings.Repeat("x\rdata: ", size/8) + "\r\r"
		b.Run(strconv.Itoa(size), func(b *testing.B) {
			b.SetBytes(int64(len(stream)))
			for b.Loop() {
				r := NewReader(strings.NewReader(stream))
				r.MaxEventSize = 1 << 30
				if _, err := r.Next(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// ---- Helpers: reading ----------------------------------------------------

// readAll reads every event from src with a fresh Reader, and returns them
// with the Reader and the error that ended the stream.
func readAll(src io.Reader) ([]sse.Event, *Reader, error) {
	r := NewReader(src)
	events, err := readAllFrom(r)
	return events, r, err
}

// readAllFrom reads every event from r, and returns them with the error that
// ended the stream.
func readAllFrom(r *Reader) ([]sse.Event, error) {
	var events []sse.Event
	for {
		ev, err := r.Next()
		if err != nil {
			return events, err
		}
		events = append(events, ev)
	}
}

// chunks is a stream that arrives in the given pieces, one per Read.
type chunks []string

func (c *chunks) Read(p []byte) (int, error) {
	if len(*c) == 0 {
		return 0, io.EOF
	}
	n := copy(p, (*c)[0])
	if (*c)[0] = (*c)[0][n:]; (*c)[0] == "" {
		*c = (*c)[1:]
	}
	return n, nil
}

// oneByte returns a stream of s that arrives one byte per Read.
func oneByte(s string) io.Reader {
	c := make(chunks, len(s))
	for i := 0; i < len(s); i++ {
		c[i] = s[i : i+1]
	}
	return &c
}

// varied returns a stream of s that arrives in pieces of 1 to 7 bytes, sized
// by the bytes of s.
func varied(s string) io.Reader {
	var c chunks
	for s != "" {
		n := min(len(s), 1+int(s[0])%7)
		c, s = append(c, s[:n]), s[n:]
	}
	return &c
}

type failingReader struct{ err error }

func (f *failingReader) Read([]byte) (int, error) { return 0, f.err }

// endlessLine is a stream of one line that never ends.
type endlessLine struct{ read int }

func (e *endlessLine) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 'x'
	}
	e.read += len(p)
	return len(p), nil
}

// repeatReader is an endless stream of the same bytes, for counting allocations.
type repeatReader struct {
	s   string
	off int
}

func (r *repeatReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		c := copy(p[n:], r.s[r.off:])
		n += c
		r.off = (r.off + c) % len(r.s)
	}
	return n, nil
}

// matchReference reads stream from src and fails t unless the Reader agrees
// with what the reference parser made of it.
func matchReference(t testing.TB, stream []byte, src io.Reader, want []ssetest.Event, ref *ssetest.Reader) {
	t.Helper()
	r := NewReader(src)
	comments := 0
	r.OnComment = func(string) { comments++ }
	var got []ssetest.Event
	var err error
	for {
		var ev sse.Event
		if ev, err = r.Next(); err != nil {
			break
		}
		if ev.ID != "" && ev.ID != r.LastEventID() {
			t.Fatalf("event id %q, last event ID %q", ev.ID, r.LastEventID())
		}
		typ := ev.Type
		if typ == "" {
			typ = "message"
		}
		got = append(got, ssetest.Event{Type: typ, Data: ev.Data, LastEventID: r.LastEventID()})
	}
	if !slices.Equal(got, want) {
		t.Fatalf("%.200q\nReader:    %.200q\nreference: %.200q", stream, got, want)
	}
	if d, _ := r.Retry(); d != ref.Retry || r.LastEventID() != ref.LastEventID || comments != ref.Comments {
		t.Fatalf("%.200q: retry %v, last id %q, %d comments; reference %v, %q, %d",
			stream, d, r.LastEventID(), comments, ref.Retry, ref.LastEventID, ref.Comments)
	}
	if cut := err == io.ErrUnexpectedEOF; cut != ref.Pending || !cut && err != io.EOF {
		t.Fatalf("%.200q: ended with %v; reference pending %v", stream, err, ref.Pending)
	}
}

// commentBytes returns what a Writer's Comment writes for text, and its
// error.
func commentBytes(b []byte, text string) ([]byte, error) {
	rec := httptest.NewRecorder()
	w, err := sse.NewWriter(rec, httptest.NewRequest("GET", "/", nil), &sse.Options{Heartbeat: -1})
	if err != nil {
		panic(err)
	}
	defer w.Close()
	err = w.Comment(text)
	return append(b, rec.Body.Bytes()...), err
}

// serveFunc serves h on a real socket until the test ends.
func serveFunc(t *testing.T, h http.HandlerFunc) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

// toLF returns s with CRLF and lone CR as LF, as a client reads them in Data.
func toLF(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "\r\n", "\n"), "\r", "\n")
}

// typical is the event the benchmarks read: an id, a type and a 200-byte JSON
// line.
var typical = sse.Event{
	ID:   "1f3a-42",
	Type: "price",
	Data: `{"symbol":"ACME","price":1234.56,"currency":"USD","venue":"XNAS","ts":"2026-11-24T12:00:00.000Z","bid":1234.5,"ask":1234.6,"volume":1200345,"note":"a typical JSON payload of about two hundred bytes!"}`,
}
