package sse

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"testing/synctest"
	"time"
	"unicode/utf8"

	"github.com/lightsse/sse/internal/leakcheck"
	"github.com/lightsse/sse/internal/ssetest"
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

// ---- Reading a stream (event.go) -----------------------------------------

// The examples of the WHATWG standard's section on the format, which nobody on
// this project wrote, read as the Reader's fields describe them. Each stream is
// read whole and one byte per Read.
func TestReaderStandardExamples(t *testing.T) {
	tests := []struct {
		name   string
		stream string
		want   []Event
		lastID string
	}{
		{"stock ticker: data lines join with LF",
			"data: YHOO\ndata: +2\ndata: 10\n\n",
			[]Event{{Data: "YHOO\n+2\n10"}}, ""},
		{"comment, id set then reset, one leading space removed",
			": test stream\n\ndata: first event\nid: 1\n\ndata:second event\nid\n\ndata:  third event\n\n",
			[]Event{{ID: "1", Data: "first event"}, {Data: "second event"}, {Data: " third event"}}, ""},
		{"empty data, a lone newline, and an unterminated block dropped",
			"data\n\ndata\ndata\n\ndata:",
			[]Event{{Data: ""}, {Data: "\n"}}, ""},
		{"the space after the colon is optional",
			"data:test\n\ndata: test\n\n",
			[]Event{{Data: "test"}, {Data: "test"}}, ""},
		{"an event type and a retry belong to their event",
			"event: add\nretry: 1500\ndata: 73857293\n\nevent: remove\ndata: 2153\n\n",
			[]Event{{Type: "add", Data: "73857293", Retry: 1500 * time.Millisecond}, {Type: "remove", Data: "2153"}}, ""},
		{"the last event ID persists, and an id without data still sets it",
			"id: 7\ndata: a\n\ndata: b\n\nid: 9\n\n",
			[]Event{{ID: "7", Data: "a"}, {Data: "b"}}, "9"},
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
		want   []Event
	}{
		{"LF, CR and CRLF end lines", "data: a\rdata: b\r\ndata: c\n\r\n", []Event{{Data: "a\nb\nc"}}},
		{"CR CR is two line ends: a blank line", "data: a\r\rdata: b\r\r", []Event{{Data: "a"}, {Data: "b"}}},
		{"LF CR is two line ends", "data: a\n\rdata: b\n\n", []Event{{Data: "a"}, {Data: "b"}}},
		{"a CRLF split across two reads is one line end", "data: a\r|\ndata: b\r|\n\r|\n", []Event{{Data: "a\nb"}}},
		{"a CR at the end of a read, then a blank line", "data: a\r|\r", []Event{{Data: "a"}}},
		{"a BOM at the start is skipped", "\uFEFFdata: a\n\n", []Event{{Data: "a"}}},
		{"a BOM split across reads is skipped", "\xEF|\xBB|\xBFdata: a\n\n", []Event{{Data: "a"}}},
		{"a BOM alone on the first line makes it blank", "\uFEFF\ndata: a\n\n", []Event{{Data: "a"}}},
		{"a second BOM is part of the field name", "\uFEFF\uFEFFdata: a\n\ndata: b\n\n", []Event{{Data: "b"}}},
		{"a BOM after the first line is not skipped", "data: a\n\uFEFFdata: b\n\n", []Event{{Data: "a"}}},
		{"a field with no colon has an empty value", "data\ndata\n\n", []Event{{Data: "\n"}}},
		{"exactly one space is stripped", "data:  two\nevent:   three\nid:  one\n\n", []Event{{ID: " one", Type: "  three", Data: " two"}}},
		{"a tab is not a space", "data:\tx\n\n", []Event{{Data: "\tx"}}},
		{"a colon in the value stays", "data: a: b:c\n\n", []Event{{Data: "a: b:c"}}},
		{"field names are case-sensitive", "Data: no\nDATA: no\ndata: yes\n\n", []Event{{Data: "yes"}}},
		{"unknown fields are ignored", "foo: bar\ndata: x\nfoo\n\n", []Event{{Data: "x"}}},
		{"a comment inside an event changes nothing", "data: a\n: c\ndata: b\n\n", []Event{{Data: "a\nb"}}},
		{"an id with NUL is ignored", "id: 1\ndata: a\n\nid: x\x00y\ndata: b\n\n", []Event{{ID: "1", Data: "a"}, {Data: "b"}}},
		{"the last id field of an event wins", "id: 1\nid: 2\ndata: a\n\n", []Event{{ID: "2", Data: "a"}}},
		{"an empty id field resets the id", "id: 1\nid\ndata: a\n\n", []Event{{Data: "a"}}},
		{"the last event field wins", "event: a\nevent: b\ndata: x\n\n", []Event{{Type: "b", Data: "x"}}},
		{"an empty event field means message", "event: a\nevent:\ndata: x\n\n", []Event{{Data: "x"}}},
		{"\"message\" stays as sent", "event: message\ndata: x\n\n", []Event{{Type: "message", Data: "x"}}},
		{"no data: no event, and its type is forgotten", "event: a\n\ndata: x\n\n", []Event{{Data: "x"}}},
		{"retry with digits only", "retry: 0\ndata: a\n\nretry: 250\ndata: b\n\n", []Event{{Data: "a"}, {Data: "b", Retry: 250 * time.Millisecond}}},
		{"retry that is not all digits is ignored", "retry: 1.5\nretry: -1\nretry: 10ms\nretry\nretry:  5\ndata: a\n\n", []Event{{Data: "a"}}},
		{"a valid retry survives a later invalid one", "retry: 7\nretry: x\ndata: a\n\n", []Event{{Data: "a", Retry: 7 * time.Millisecond}}},
		{"a retry too long for a Duration gives the longest", "retry: 99999999999999999999999999\ndata: a\n\n", []Event{{Data: "a", Retry: time.Duration(1<<63 - 1)}}},
		{"blank lines alone dispatch nothing", "\n\n\r\n\r\r", nil},
		{"a line split across many reads", "da|ta|: he|llo\n|\n", []Event{{Data: "hello"}}},
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
	if ev != (Event{Data: "1"}) || err != nil || r.LastEventID() != "a" {
		t.Errorf("first event %+v, %v, LastEventID %q; want data 1, id a", ev, err, r.LastEventID())
	}
	if d, ok := r.Retry(); d != 300*time.Millisecond || !ok {
		t.Errorf("Retry() = %v, %v; want 300ms from a block without data", d, ok)
	}
	ev, _ = r.Next()
	if ev != (Event{Data: "2"}) || r.LastEventID() != "" {
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
		if len(got) != 1 || got[0] != (Event{ID: want, Type: want, Data: want}) {
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
		if err != nil && ev != (Event{}) {
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
	b, _ = appendComment(b, "")
	b, _ = appendComment(b, "hello")
	b = append(b, "data: x\n:no space\n:  two spaces\n\n"...)
	b, _ = appendComment(b, "a\r\nb\rc")
	var got []string
	r := NewReader(bytes.NewReader(b))
	r.OnComment = func(text string) { got = append(got, text) }
	evs := slices.Collect(func(yield func(Event) bool) {
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
	const max = 64
	event := "id: 1\nevent: e\ndata: " + strings.Repeat("x", max-6-9-7) + "\n" // 64 bytes
	if len(event) != max {
		t.Fatalf("the test's event is %d bytes", len(event))
	}
	heartbeats := strings.Repeat(":\n", 100) + ": " + strings.Repeat("c", max-3) + "\n"
	for name, tt := range map[string]struct {
		stream string
		ok     bool
	}{
		"at the bound":                       {heartbeats + event + "\n" + heartbeats + event + "\n", true},
		"at the bound, a comment inside":     {"id: 1\nevent: e\n" + heartbeats + "data: " + strings.Repeat("x", max-6-9-7) + "\n\n", true},
		"at the bound, CRLF counted as one":  {strings.ReplaceAll(event, "\n", "\r\n") + "\r\n", true},
		"at the bound, after a BOM":          {"\uFEFF" + event + "\n", true},
		"one byte over, in one line":         {"id: 1\nevent: e\ndata: " + strings.Repeat("x", max-6-9-7+1) + "\n\n", false},
		"one byte over, in many lines":       {strings.Repeat("data: x\n", max/8) + "d\n\n", false},
		"one byte over, in lines not data":   {strings.Repeat("foo: ba\n", max/8) + "d\n\n", false},
		"a comment line one byte over":       {":" + strings.Repeat("c", max) + "\ndata: x\n\n", false},
		"a line over the bound, with no end": {"data: " + strings.Repeat("x", 10*max), false},
		"a comment over the bound, no end":   {":" + strings.Repeat("x", 10*max), false},
	} {
		for _, how := range []string{"whole", "byte by byte"} {
			src := io.Reader(strings.NewReader(tt.stream))
			if how != "whole" {
				src = oneByte(tt.stream)
			}
			r := NewReader(src)
			r.MaxEventSize = max
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
	events := []Event{
		{ID: "1", Type: "a", Data: "one\ntwo", Retry: time.Second},
		{Data: ""},
		{Type: "b", Data: "\n"},
	}
	srv := serve(t, func(w http.ResponseWriter, r *http.Request) {
		sw, err := NewWriter(w, r, &Options{Retry: 3 * time.Second})
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
	var got []Event
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

	b := NewBroker(nil)
	bsrv := brokerServer(t, b)
	resp, err = bsrv.Client().Get(bsrv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	r = NewReader(resp.Body)
	waitFor(t, "the subscriber", func() bool { return b.Subscribers() == 1 })
	b.Publish(Event{Type: "news", Data: "x"})
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
	var want []Event
	var wire []byte
	for i := range 3000 {
		e := Event{Data: pick(6), Retry: time.Duration(rng.IntN(3)) * time.Second}
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
		e := Event{ID: id, Type: typ, Data: data, Retry: time.Duration(retry)}
		b, err := appendComment(nil, comment)
		if err != nil {
			return
		}
		if b, err = e.AppendText(b); err != nil {
			return
		}
		b, _ = Event{Data: "next"}.AppendText(b)
		want := []Event{{ID: id, Type: typ, Data: toLF(data), Retry: e.Retry.Truncate(time.Millisecond)}, {Data: "next"}}
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

// ---- The Writer's heartbeat, on a fake clock (writer.go) -----------------

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

// A heartbeat shorter than MinHeartbeat is raised to it.
func TestHeartbeatFloor(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := newFlushRecorder()
		s, _ := NewWriter(rec, httptest.NewRequest("GET", "/", nil), &Options{Heartbeat: time.Nanosecond})
		defer s.Close()
		time.Sleep(MinHeartbeat - time.Millisecond)
		synctest.Wait()
		if got := rec.body(); got != "" {
			t.Fatalf("a 1 ns heartbeat wrote %q before MinHeartbeat", got)
		}
		time.Sleep(time.Millisecond)
		synctest.Wait()
		if got := rec.body(); got != ":\n" {
			t.Errorf("a 1 ns heartbeat at MinHeartbeat: %q, want one comment", got)
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

// Epochs are 64 bits: 200,000 of them hold no repeat. (At 32 bits, a repeat
// among 200,000 is all but certain: 1 - e^(-4.66).)
func TestEpochsAreWide(t *testing.T) {
	seen := make(map[string]bool, 200_000)
	for range 200_000 {
		e := newEpoch()
		if !validEpoch(e) || seen[e] {
			t.Fatalf("epoch %q: repeated, or not 16 lowercase hex digits", e)
		}
		seen[e] = true
	}
}

// Ids a client could not resume from are refused by Publish: spaces at
// either end (the header that brings them back is trimmed), control bytes
// (net/http answers that header with 400), and the shape of the ids a
// Broker gives, which resume by position, not by name.
func TestBrokerRefusesUnresumablePublisherIDs(t *testing.T) {
	b := NewBroker(nil)
	defer b.Close()
	for _, id := range []string{" a", "a ", "\ta", "a\t", "a\x01b", "a\x1fb", "a\x7fb", "0123456789abcdef-0", epochOf(b) + "-3", "ffffffffffffffff-18446744073709551615"} {
		if err := b.Publish(Event{ID: id}); !errors.Is(err, ErrInvalidID) {
			t.Errorf("Publish with ID %q: %v, want ErrInvalidID", id, err)
		}
	}
	for _, id := range []string{"a b", "a\tb", "0123456789abcdef", "0123456789ABCDEF-3", "0123456789abcdef-x", "0123456789abcdef-99999999999999999999"} {
		if err := b.Publish(Event{ID: id}); err != nil {
			t.Errorf("Publish with ID %q: %v, want nil", id, err)
		}
	}
	if s := b.Stats(); s.Published != 6 || s.PublishErrors != 10 {
		t.Errorf("stats: %d published, %d errors; want 6 and 10", s.Published, s.PublishErrors)
	}
}

// Ids the Broker could not resume from are refused, or answered with a reset:
// never a silent gap.
func TestBrokerUnresumableIDs(t *testing.T) {
	leakcheck.Check(t)
	b := NewBroker(nil)
	srv := brokerServer(t, b)
	long := strings.Repeat("a", MaxLastEventIDLen+1)
	if err := b.Publish(Event{ID: long}); !errors.Is(err, ErrInvalidID) {
		t.Errorf("Publish with a %d-byte id: %v, want ErrInvalidID", len(long), err)
	}
	// A header LastEventID refuses gets a reset, not a fresh start.
	if ev := connect(t, srv.Client(), srv.URL, long).next(t); ev.Type != ResetEvent || ev.Data != "" {
		t.Errorf("an over-long Last-Event-ID: first event %+v, want a reset", ev)
	}
	// A publisher id seen twice in the history names no single position.
	_ = b.Publish(Event{ID: "x", Data: "seen"})
	_ = b.Publish(Event{Data: "missed"})
	_ = b.Publish(Event{ID: "x", Data: "also x"})
	if ev := connect(t, srv.Client(), srv.URL, "x").next(t); ev.Type != ResetEvent || ev.Data != "x" {
		t.Errorf("a repeated id: first event %+v, want a reset", ev)
	}
}

// ---- The Broker: delivery, replay and reset (sse.go) ---------------------

func TestBrokerDeliversAndResumes(t *testing.T) {
	leakcheck.Check(t)
	b := NewBroker(nil)
	srv := brokerServer(t, b)
	first := connect(t, srv.Client(), srv.URL, "")
	waitFor(t, "a subscriber", func() bool { return b.Subscribers() == 1 })
	for i := range 3 {
		if err := b.Publish(Event{Type: "n", Data: fmt.Sprint(i)}); err != nil {
			t.Fatal(err)
		}
	}
	var ids []string
	for i := range 3 {
		ev := first.next(t)
		if ev.Type != "n" || ev.Data != fmt.Sprint(i) || ev.LastEventID != epochOf(b)+"-"+fmt.Sprint(i+1) {
			t.Fatalf("event %d = %+v", i, ev)
		}
		ids = append(ids, ev.LastEventID)
	}
	// A client that saw only the first event resumes after it: no gap, no duplicate.
	again := connect(t, srv.Client(), srv.URL, ids[0])
	for _, want := range []string{"1", "2"} {
		if ev := again.next(t); ev.Data != want {
			t.Fatalf("replay: %+v, want data %s", ev, want)
		}
	}
	_ = b.Publish(Event{Data: "live"})
	if ev := again.next(t); ev.Data != "live" {
		t.Fatalf("after replay: %+v, want the live event", ev)
	}
	if ev := first.next(t); ev.Data != "live" {
		t.Fatalf("first client: %+v", ev)
	}
	first.cancel()
	again.cancel()
	waitFor(t, "both streams to end", func() bool { return b.Subscribers() == 0 })
	if s := b.Stats(); s.Opened != 2 || s.Ended.ClientLeft != 2 || s.Resumed.History != 1 || s.Published != 4 {
		t.Errorf("stats %+v; want 2 opened, 2 ended as the client left, 1 resumed, 4 published", s)
	}
}

// A new client gets a position before any event, invisibly: had its stream
// ended before its first event, it would still resume where it began.
func TestBrokerGivesNewClientsAPosition(t *testing.T) {
	leakcheck.Check(t)
	b := NewBroker(nil)
	srv := brokerServer(t, b)
	for range 3 {
		_ = b.Publish(Event{Data: "before"})
	}
	cl := connect(t, srv.Client(), srv.URL, "")
	waitFor(t, "the stream", func() bool { return b.Subscribers() == 1 })
	_ = b.Close()
	if rest := cl.ended(t); len(rest) != 0 {
		t.Fatalf("the position was dispatched as events: %q", rest)
	}
	if got, want := cl.reader.LastEventID, epochOf(b)+"-3"; got != want {
		t.Errorf("last event ID of a client that got no event = %q, want %q", got, want)
	}
}

// Once Subscribers counts a stream, an event published after that reaches
// it: the wait that ExampleBroker shows, over real sockets, 1,000 times, with
// and without a Log (whose head a new Broker learns only once it follows).
func TestBrokerSubscribersMeansDelivered(t *testing.T) {
	for _, withLog := range []bool{false, true} {
		t.Run(fmt.Sprintf("log=%v", withLog), func(t *testing.T) {
			var current atomic.Pointer[Broker]
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				current.Load().ServeHTTP(w, r)
			}))
			defer srv.Close()
			log := newMemLog()
			for i := range 1000 {
				var opts BrokerOptions
				if withLog {
					opts.Log = log
				}
				b := NewBroker(&opts)
				current.Store(b)
				if err := subscribedThenPublished(srv, b, strconv.Itoa(i)); err != nil {
					b.Close()
					t.Fatalf("iteration %d: %v", i, err)
				}
				b.Close()
			}
		})
	}
}

// subscribedThenPublished opens a stream of b from another goroutine, waits
// until b counts it, publishes data, and reads the stream until it arrives.
func subscribedThenPublished(srv *httptest.Server, b *Broker, data string) error {
	type answer struct {
		resp *http.Response
		err  error
	}
	got := make(chan answer, 1)
	go func() {
		resp, err := srv.Client().Get(srv.URL)
		got <- answer{resp, err}
	}()
	for b.Subscribers() < 1 {
		time.Sleep(50 * time.Microsecond)
	}
	if err := b.Publish(Event{Data: data}); err != nil {
		return err
	}
	a := <-got
	if a.err != nil {
		return a.err
	}
	defer a.resp.Body.Close()
	timer := time.AfterFunc(patience, func() { a.resp.Body.Close() })
	defer timer.Stop()
	lines := bufio.NewScanner(a.resp.Body)
	var seen []string
	for lines.Scan() {
		seen = append(seen, lines.Text())
		if lines.Text() == "data: "+data {
			return nil
		}
	}
	return fmt.Errorf("the event published after Subscribers counted the stream never came; the stream had %q", seen)
}

func TestBrokerResetsUnknownIDs(t *testing.T) {
	leakcheck.Check(t)
	b := NewBroker(&BrokerOptions{HistoryLen: 4})
	srv := brokerServer(t, b)
	for i := range 10 {
		_ = b.Publish(Event{Data: fmt.Sprint(i)})
	}
	for _, lastID := range []string{
		"junk",
		epochOf(b) + "-2",       // older than the history
		epochOf(b) + "-1000000", // from the future
		"0000000000000000-5",    // another epoch: another Broker or an earlier run
		epochOf(b) + "-",        //
	} {
		newest := epochOf(b) + "-" + strconv.FormatUint(headOf(b), 10)
		cl := connect(t, srv.Client(), srv.URL, lastID)
		ev := cl.next(t)
		if ev != (ssetest.Event{Type: ResetEvent, Data: lastID, LastEventID: newest}) {
			t.Errorf("Last-Event-ID %q: first event %+v, want a reset with id %s", lastID, ev, newest)
		}
		_ = b.Publish(Event{Data: "live " + lastID})
		if ev := cl.next(t); ev.Data != "live "+lastID {
			t.Errorf("after the reset: %+v, want only live events", ev)
		}
		cl.cancel()
	}
	// The reset's id resumes: no second reset.
	_ = b.Publish(Event{Data: "x"})
	cl := connect(t, srv.Client(), srv.URL, epochOf(b)+"-"+fmt.Sprint(headOf(b)-1))
	if ev := cl.next(t); ev.Data != "x" {
		t.Errorf("resuming at the newest event: %+v", ev)
	}
	if s := b.Stats(); s.Resets.UnknownID != 4 || s.Resets.TooOld != 1 || s.Resumed.History != 1 {
		t.Errorf("resets %+v, resumed %+v; want 4 unknown, 1 too old, 1 resumed", s.Resets, s.Resumed)
	}
}

// A client of one topic's Broker that reconnects to another topic's Broker
// with its id gets a reset and nothing of the first topic.
func TestBrokerTopicsAreIsolated(t *testing.T) {
	leakcheck.Check(t)
	news, sports := NewBroker(nil), NewBroker(nil)
	mux := http.NewServeMux()
	mux.Handle("/news", news)
	mux.Handle("/sports", sports)
	srv := httptest.NewServer(mux)
	t.Cleanup(func() { news.Close(); sports.Close(); srv.Close() })
	for i := range 5 {
		_ = news.Publish(Event{Data: "news " + fmt.Sprint(i)})
		_ = sports.Publish(Event{Data: "sports " + fmt.Sprint(i)})
	}
	newsID := epochOf(news) + "-2"
	cl := connect(t, srv.Client(), srv.URL+"/sports", newsID)
	if ev := cl.next(t); ev.Type != ResetEvent {
		t.Fatalf("a news id on sports: first event %+v, want a reset", ev)
	}
	_ = news.Publish(Event{Data: "news live"})
	_ = sports.Publish(Event{Data: "sports live"})
	if ev := cl.next(t); ev.Data != "sports live" {
		t.Fatalf("got %+v, want only sports' live event", ev)
	}
	// And its own id resumes only its own topic.
	cl = connect(t, srv.Client(), srv.URL+"/news", newsID)
	for _, want := range []string{"news 2", "news 3", "news 4", "news live"} {
		if ev := cl.next(t); ev.Data != want {
			t.Fatalf("news replay: %+v, want %q", ev, want)
		}
	}
}

func TestBrokerResumesPublisherIDs(t *testing.T) {
	leakcheck.Check(t)
	b := NewBroker(&BrokerOptions{HistoryLen: 3})
	srv := brokerServer(t, b)
	for _, id := range []string{"a", "b", "c", "d"} {
		_ = b.Publish(Event{ID: "row-" + id, Data: id})
	}
	cl := connect(t, srv.Client(), srv.URL, "row-b")
	for _, want := range []string{"c", "d"} {
		if ev := cl.next(t); ev.Data != want || ev.LastEventID != "row-"+want {
			t.Fatalf("got %+v, want %q", ev, want)
		}
	}
	if byID := b.hist.Load().byID; len(byID) != 3 || byID["row-a"].count != 0 {
		t.Errorf("the id index keeps events that left the history: %v", byID)
	}
	if cl := connect(t, srv.Client(), srv.URL, "row-a"); cl.next(t).Type != ResetEvent {
		t.Error("an id that left the history was not reset")
	}
}

// Clients that drop at random points while events are published, and come
// back with their Last-Event-ID, end up with every event exactly once.
func TestBrokerReplayAcrossRandomReconnects(t *testing.T) {
	leakcheck.Check(t)
	const clients, events = 20, 2000
	b := NewBroker(nil)
	srv := brokerServer(t, b)
	results := make(chan error, clients)
	ready := make(chan struct{}, clients)
	for c := range clients {
		go func() { results <- reconnectingClient(t, srv, c, events, ready) }()
	}
	for range clients {
		<-ready
	}
	for i := range events {
		_ = b.Publish(Event{Data: strconv.Itoa(i)})
		if i%50 == 0 {
			time.Sleep(time.Millisecond) // let clients drop and come back mid-stream
		}
	}
	for range clients {
		if err := <-results; err != nil {
			t.Fatal(err)
		}
	}
}

// 1,000 clients over loopback, 1,000 events from 4 goroutines: every client
// gets every event once, in the Broker's order, each publisher's in its own.
func TestBrokerFanOutThousand(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	leakcheck.Check(t)
	const clients, publishers, each = 1000, 4, 250
	// A thousand clients parsing under the race detector on a busy machine
	// may leave one unread for seconds: this test is about what arrives, and
	// others are about clients too slow to keep.
	b := NewBroker(&BrokerOptions{Stream: Options{WriteTimeout: time.Minute}})
	srv := brokerServer(t, b)
	httpClient := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 0}}
	t.Cleanup(httpClient.CloseIdleConnections)
	results := make(chan error, clients)
	moving := watchProgress(t)
	for range clients {
		cl := connect(t, httpClient, srv.URL, "")
		go func() { results <- checkSequence(cl, publishers, each, moving) }()
	}
	waitFor(t, "every client to subscribe", func() bool { return b.Subscribers() == clients })
	var wg sync.WaitGroup
	for p := range publishers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				if err := b.Publish(Event{Type: "p", Data: fmt.Sprintf("%d %d", p, i)}); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	for range clients {
		if err := <-results; err != nil {
			t.Fatalf("%v\n%d events received in all; %d streams open, %d pumps; %+v", err, moving.n.Load(), b.Subscribers(), pumps(), b.Stats())
		}
	}
}

// A stream answers GET only. HEAD gets the headers and ends, so the next
// request on its keep-alive connection is served; OPTIONS (a CORS
// preflight) and other methods get 405 with Allow; a GET that declares a
// body it never sends is refused at once. None holds a subscriber's place.
func TestBrokerMethods(t *testing.T) {
	leakcheck.Check(t)
	b := NewBroker(nil)
	srv := brokerServer(t, b)
	c := *srv.Client() // the server's transport, so its keep-alive connections
	c.Timeout = 10 * time.Second
	resp, err := c.Head(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Errorf("HEAD: %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	for _, method := range []string{"OPTIONS", "POST", "PUT", "DELETE"} {
		req, _ := http.NewRequest(method, srv.URL, nil)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 405 || resp.Header.Get("Allow") != "GET, HEAD" {
			t.Errorf("%s: %d, Allow %q; want 405 and GET, HEAD", method, resp.StatusCode, resp.Header.Get("Allow"))
		}
	}
	// The same connection still serves a stream after all that.
	cl := connect(t, srv.Client(), srv.URL, "")
	waitFor(t, "the stream", func() bool { return b.Subscribers() == 1 })
	_ = b.Publish(Event{Data: "x"})
	cl.expect(t, "x")

	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprint(conn, "GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n") // and no body
	resp, err = http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 400 {
		t.Errorf("GET with a declared body: %d, want 400", resp.StatusCode)
	}
	if s := b.Stats(); s.Opened != 1 || b.Subscribers() != 1 {
		t.Errorf("%d streams opened, %d open; want only the GET's", s.Opened, b.Subscribers())
	}
}

func TestBrokerRefusedStreamOptionAnswers500(t *testing.T) {
	b := NewBroker(&BrokerOptions{Stream: Options{Retry: time.Microsecond}})
	defer b.Close()
	rec := httptest.NewRecorder()
	b.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	if rec.Code != 500 || !strings.Contains(rec.Body.String(), "retry") {
		t.Errorf("a Retry NewWriter refuses: %d %q, want a 500 naming the field", rec.Code, rec.Body)
	}
}

// OnIdle runs each time the last open stream ends, and only then.
func TestBrokerOnIdle(t *testing.T) {
	leakcheck.Check(t)
	var idle atomic.Int32
	b := NewBroker(&BrokerOptions{OnIdle: func() { idle.Add(1) }})
	srv := brokerServer(t, b)
	one, two := connect(t, srv.Client(), srv.URL, ""), connect(t, srv.Client(), srv.URL, "")
	waitFor(t, "two streams", func() bool { return b.Subscribers() == 2 })
	one.cancel()
	waitFor(t, "one stream", func() bool { return b.Subscribers() == 1 })
	three := connect(t, srv.Client(), srv.URL, "")
	two.cancel()
	waitFor(t, "the other stream to end", func() bool { return b.Subscribers() == 1 })
	three.cancel()
	waitFor(t, "OnIdle", func() bool { return idle.Load() == 1 })
	connect(t, srv.Client(), srv.URL, "").cancel()
	waitFor(t, "OnIdle again", func() bool { return idle.Load() == 2 })
	if b.Subscribers() != 0 {
		t.Errorf("%d streams open", b.Subscribers())
	}
}

// ---- The Broker: Close and limits (sse.go) -------------------------------

func TestBrokerClose(t *testing.T) {
	leakcheck.Check(t)
	const clients = 50
	b := NewBroker(&BrokerOptions{CloseRetry: 10 * time.Second})
	srv := brokerServer(t, b)
	var streams []*client
	for range clients {
		streams = append(streams, connect(t, srv.Client(), srv.URL, ""))
	}
	waitFor(t, "every client", func() bool { return b.Subscribers() == clients })
	_ = b.Close()
	retries := map[time.Duration]bool{}
	for _, cl := range streams {
		if rest := cl.ended(t); len(rest) != 0 || cl.err != io.EOF || cl.reader.Pending {
			t.Fatalf("Close: stream ended with %v after %q", cl.err, rest)
		}
		r := cl.reader.Retry
		if r <= 0 || r > 10*time.Second {
			t.Fatalf("retry %v, want in (0, 10s]", r)
		}
		retries[r] = true
	}
	if len(retries) < clients/2 {
		t.Errorf("%d streams got only %d distinct retries: not jittered", clients, len(retries))
	}
	if err := b.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := b.Publish(Event{}); !errors.Is(err, ErrClosed) {
		t.Errorf("Publish after Close: %v, want ErrClosed", err)
	}
	// A request after Close: a 200 stream with a retry and no events, so the
	// browser comes back later instead of giving up as it would on a 503.
	late := connect(t, srv.Client(), srv.URL, "")
	if rest := late.ended(t); len(rest) != 0 || late.reader.Retry <= 0 {
		t.Errorf("after Close: events %q, retry %v", rest, late.reader.Retry)
	}
	waitFor(t, "streams to end", func() bool { return b.Subscribers() == 0 })
	if s := b.Stats(); s.Ended.Closed != clients || s.Ended.RefusedClosed != 1 || s.Opened != clients+1 {
		t.Errorf("stats %+v; want %d ended by Close, 1 refused after it, of %d", s, clients, clients+1)
	}
}

// An event published just before Close reaches every open stream, before
// the retry that ends it: a shutdown notice is exactly such an event.
func TestBrokerCloseSendsWhatCameBefore(t *testing.T) {
	leakcheck.Check(t)
	const streams = 50
	for round := range 5 {
		b := NewBroker(nil)
		srv := brokerServer(t, b)
		var clients []*client
		for range streams {
			clients = append(clients, connect(t, srv.Client(), srv.URL, ""))
		}
		waitFor(t, "the streams", func() bool { return b.Subscribers() == streams })
		if err := b.Publish(Event{Data: "shutting down"}); err != nil {
			t.Fatal(err)
		}
		_ = b.Close()
		for i, cl := range clients {
			if got := cl.ended(t); len(got) != 1 || got[0].Data != "shutting down" || cl.reader.Retry <= 0 {
				t.Fatalf("round %d, stream %d: %v then retry %v; want the last event, then a retry", round, i, got, cl.reader.Retry)
			}
		}
		if s := b.Stats(); s.Ended.Closed != streams {
			t.Errorf("Stats.Ended.Closed = %d, want %d", s.Ended.Closed, streams)
		}
	}
}

func TestBrokerMaxSubscribers(t *testing.T) {
	leakcheck.Check(t)
	b := NewBroker(&BrokerOptions{MaxSubscribers: 2})
	srv := brokerServer(t, b)
	one, two := connect(t, srv.Client(), srv.URL, ""), connect(t, srv.Client(), srv.URL, "")
	waitFor(t, "two streams", func() bool { return b.Subscribers() == 2 })
	third := connect(t, srv.Client(), srv.URL, "")
	if rest := third.ended(t); len(rest) != 0 || third.reader.Retry <= 0 {
		t.Errorf("over the cap: events %q, retry %v; want a retry and the end", rest, third.reader.Retry)
	}
	one.cancel()
	waitFor(t, "a place to free", func() bool { return b.Subscribers() == 1 })
	fourth := connect(t, srv.Client(), srv.URL, "")
	waitFor(t, "the place to be taken", func() bool { return b.Subscribers() == 2 })
	_ = b.Publish(Event{Data: "x"})
	if fourth.next(t).Data != "x" || two.next(t).Data != "x" {
		t.Error("streams under the cap did not get the event")
	}
	if s := b.Stats(); s.Ended.RefusedFull != 1 || s.Open != 2 {
		t.Errorf("stats %+v; want 1 refused over the cap, 2 open", s)
	}
}

// With Close wired to RegisterOnShutdown, Shutdown returns while 1,000
// streams are open.
func TestBrokerShutdownWithThousandStreams(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	leakcheck.Check(t)
	const streams = 1000
	b := NewBroker(nil)
	srv := httptest.NewUnstartedServer(b)
	srv.Config.RegisterOnShutdown(func() { b.Close() })
	srv.Start()
	defer srv.Close()
	httpClient := &http.Client{Transport: &http.Transport{}}
	defer httpClient.CloseIdleConnections()
	var clients []*client
	for range streams {
		clients = append(clients, connect(t, httpClient, srv.URL, ""))
	}
	waitFor(t, "every stream", func() bool { return b.Subscribers() == streams })
	// Without the Broker's Close, Shutdown would wait for the streams until
	// its context ends; with it, it returns as soon as they have ended.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := srv.Config.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown with %d streams: %v", streams, err)
	}
	for _, cl := range clients {
		cl.ended(t)
		if cl.reader.Retry <= 0 {
			t.Fatal("a stream ended by Shutdown got no retry")
		}
	}
}

// Close racing Publish and new streams: no panic, no race, no stream left.
func TestBrokerCloseRacesPublishAndSubscribe(t *testing.T) {
	leakcheck.Check(t)
	for range 5 {
		b := NewBroker(&BrokerOptions{HistoryLen: 8})
		srv := httptest.NewServer(b)
		var wg sync.WaitGroup
		stop := make(chan struct{})
		for p := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					if err := b.Publish(Event{Data: fmt.Sprint(p, i)}); err != nil && !errors.Is(err, ErrClosed) {
						t.Error(err)
					}
				}
			}()
		}
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					resp, err := srv.Client().Get(srv.URL)
					if err != nil {
						continue
					}
					_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
					resp.Body.Close()
				}
			}()
		}
		time.Sleep(20 * time.Millisecond)
		_ = b.Close()
		time.Sleep(20 * time.Millisecond)
		close(stop)
		wg.Wait()
		srv.Client().CloseIdleConnections()
		srv.Close() // waits for every handler
		if n := b.Subscribers(); n != 0 {
			t.Fatalf("%d streams counted after every handler returned", n)
		}
		if s := b.Stats(); s.Opened != endedSum(s.Ended) {
			t.Fatalf("after every stream ended: %d opened, %d ended (%+v)", s.Opened, endedSum(s.Ended), s.Ended)
		}
	}
}

// ---- The Broker's heartbeat (sse.go) -------------------------------------

// A Broker keeps one heartbeat for all its streams: after a period without a
// Publish, each stream writes a comment; a Publish restarts the period; with
// no stream left the timer rests.
func TestBrokerHeartbeat(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := NewBroker(nil)
		ctx, cancel := context.WithCancel(context.Background())
		recs := []*flushRecorder{newFlushRecorder(), newFlushRecorder()}
		for _, rec := range recs {
			go b.ServeHTTP(rec, httptest.NewRequestWithContext(ctx, "GET", "/", nil))
		}
		synctest.Wait()
		preamble := "id: " + epochOf(b) + "-0\n\n"
		step := func(d time.Duration, want string) {
			t.Helper()
			time.Sleep(d)
			synctest.Wait()
			for i, rec := range recs {
				if got := rec.body(); got != preamble+want {
					t.Fatalf("stream %d after %v more: %q, want %q", i, d, got, preamble+want)
				}
			}
		}
		step(DefaultHeartbeat-time.Millisecond, "")
		step(time.Millisecond, ":\n")
		step(5*time.Second, ":\n")
		_ = b.Publish(Event{Data: "x"}) // 5 s into a period: restarts it
		step(DefaultHeartbeat-time.Millisecond, ":\nid: "+epochOf(b)+"-1\ndata: x\n\n")
		step(time.Millisecond, ":\nid: "+epochOf(b)+"-1\ndata: x\n\n:\n")
		if n := b.Stats().Heartbeats; n != 4 {
			t.Errorf("Stats.Heartbeats = %d, want 4 (two beats, two streams)", n)
		}
		cancel()
		synctest.Wait()
		time.Sleep(time.Hour) // no stream: the timer fires once and rests
		synctest.Wait()
		b.mu.Lock()
		beating := b.beating
		b.mu.Unlock()
		if beating {
			t.Error("the heartbeat timer is still armed with no stream open")
		}
		b.Close()
	})
}

// A request whose client sent a pipelined byte and then reset the
// connection keeps a context that net/http never cancels (its background
// read took the byte and stopped reading); the heartbeat's write finds the
// connection gone and ends the stream.
func TestBrokerHeartbeatEndsGhostStreams(t *testing.T) {
	leakcheck.Check(t)
	b := NewBroker(&BrokerOptions{Stream: Options{Heartbeat: MinHeartbeat}})
	srv := httptest.NewUnstartedServer(b)
	ln := &readCounter{Listener: srv.Listener}
	srv.Listener = ln
	srv.Start()
	t.Cleanup(func() { b.Close(); srv.Close() })
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	request := "GET / HTTP/1.1\r\nHost: x\r\n\r\n"
	fmt.Fprint(conn, request)
	waitFor(t, "the stream", func() bool { return b.Subscribers() == 1 })
	fmt.Fprint(conn, "G") // one byte of a next request
	waitFor(t, "the server to read the byte", func() bool { return ln.read.Load() == int64(len(request)+1) })
	_ = conn.(*net.TCPConn).SetLinger(0)
	conn.Close() // a reset, which nothing reads
	waitFor(t, "the heartbeat to end the ghost stream", func() bool { return b.Subscribers() == 0 })
	if s := b.Stats(); s.Ended.ClientLeft != 1 {
		t.Errorf("Stats.Ended = %+v, want one client left", s.Ended)
	}
}

// ---- Counters (sse.go) ---------------------------------------------------
//
// Each counter is also checked, exact, by the test that makes it happen.

// Stats marshals to JSON under stable snake_case names, and back.
func TestStatsJSON(t *testing.T) {
	in := Stats{Open: 1, Opened: 2, Ended: Ends{Closed: 3}, Resets: Resets{TooOld: 4}, Log: LogStats{GapsFilled: 5}}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{`"open":1`, `"opened":2`, `"closed":3`, `"too_old":4`, `"gaps_filled":5`, `"bytes_written":0`} {
		if !strings.Contains(string(b), key) {
			t.Errorf("JSON %s lacks %s", b, key)
		}
	}
	var out Stats
	if err := json.Unmarshal(b, &out); err != nil || out != in {
		t.Errorf("round trip: %+v, %v", out, err)
	}
}

// ---- Streams: slow clients, batches and memory (sse.go) ------------------

// Events waiting for a stream go out in one write and one flush.
func TestBrokerBatchesWaitingEvents(t *testing.T) {
	leakcheck.Check(t)
	b := NewBroker(nil)
	for i := range 100 {
		_ = b.Publish(Event{Data: fmt.Sprint(i)})
	}
	rec := &countingWriter{flushRecorder: newFlushRecorder()}
	ctx, cancel := context.WithCancel(context.Background())
	req := httptest.NewRequestWithContext(ctx, "GET", "/", nil)
	req.Header.Set("Last-Event-ID", epochOf(b)+"-0")
	done := make(chan struct{})
	go func() { defer close(done); b.ServeHTTP(rec, req) }()
	waitFor(t, "the replay", func() bool { return strings.Count(rec.body(), "data: ") == 100 })
	cancel()
	<-done
	if rec.writes() != 1 || rec.flushes != 2 { // the headers' flush, then the batch's
		t.Errorf("100 waiting events: %d writes, %d flushes; want 1 write and 1 flush after the headers", rec.writes(), rec.flushes-1)
	}
	got, _ := ssetest.Parse(rec.body())
	if len(got) != 100 || got[99].Data != "99" {
		t.Errorf("got %d events", len(got))
	}
	if n := b.Stats().BytesWritten; n != uint64(len(rec.body())) {
		t.Errorf("Stats.BytesWritten = %d; the stream got %d", n, len(rec.body()))
	}
}

// A Publish and its delivery to every waiting stream allocate about the
// same with no stream and with 1,000: the encoded event and its entry; with
// streams waiting, the one channel that wakes them all, and now and then a
// pump's goroutine. Each round publishes once, waits until every stream has
// written the event and waits again, and counts every goroutine's
// allocations in between.
func TestBrokerPublishAllocsDoNotGrowWithSubscribers(t *testing.T) {
	if ssetest.Race {
		t.Skip("the race detector allocates on goroutine switches; .ci/run runs this test without it")
	}
	leakcheck.Check(t)
	allocs := func(streams int) float64 {
		b := NewBroker(nil)
		defer b.Close()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		var wg sync.WaitGroup
		var writes atomic.Int64
		for range streams {
			wg.Add(1)
			go func() {
				defer wg.Done()
				b.ServeHTTP(&discard{h: http.Header{}, writes: &writes}, httptest.NewRequestWithContext(ctx, "GET", "/", nil))
			}()
		}
		waitFor(t, "every stream to write its opening", func() bool { return writes.Load() == int64(streams) })
		const rounds = 50
		var total uint64
		for i := range rounds + 5 { // the first 5 warm the pools
			want := writes.Load() + int64(streams)
			before := mallocs()
			_ = b.Publish(typical)
			waitFor(t, "every stream to write the event", func() bool { return writes.Load() == want })
			waitFor(t, "every stream to wait again", func() bool { return streams == 0 || b.wake.waiting.Load() })
			if i >= 5 {
				total += mallocs() - before
			}
		}
		cancel()
		wg.Wait()
		return float64(total) / rounds
	}
	none, many := allocs(0), allocs(1000)
	if none > 2.5 || many > none+2.5 {
		t.Errorf("allocations per Publish and its deliveries: %.1f with no stream, %.1f with 1,000; want 2, and at most about 2 more with streams waiting", none, many)
	}
	t.Logf("allocations per Publish and its deliveries: %.1f with no stream, %.1f with 1,000", none, many)
}

// A client that stops reading delays no one: while its stream is stuck in
// a write, every Publish returns and every other client gets every event.
// (Nothing here is timed: the stuck stream's write timeout is a minute, far
// longer than the burst takes even on a busy machine, and the test checks
// that it is still stuck when everything else is done.)
func TestBrokerStalledClientDelaysNoOne(t *testing.T) {
	leakcheck.Check(t)
	const healthy, events = 20, 400
	b := NewBroker(&BrokerOptions{Stream: Options{WriteTimeout: time.Minute}})
	srv := stallingServer(b)
	t.Cleanup(func() { b.Close(); srv.Close() })

	stalled := dialStalled(t, srv.Listener.Addr().String())
	defer stalled.Close()
	waitFor(t, "the stalled client", func() bool { return b.Subscribers() == 1 })
	results := make(chan error, healthy)
	moving := watchProgress(t)
	for range healthy {
		cl := connect(t, srv.Client(), srv.URL, "")
		go func() { results <- checkSequence(cl, 1, events, moving) }()
	}
	waitFor(t, "every client", func() bool { return b.Subscribers() == healthy+1 })

	// 400 KiB: far more than the stalled connection buffers, so its stream
	// gets stuck in a write, holding a pump there.
	data := strings.Repeat("x", 1<<10)
	for i := range events {
		_ = b.Publish(Event{Data: "0 " + strconv.Itoa(i) + " " + data})
	}
	for range healthy {
		if err := <-results; err != nil {
			t.Fatal(err)
		}
	}
	// Every Publish has returned and every healthy client has everything,
	// while the stalled stream is still open, stuck in its write (the one
	// pump left once the others have gone idle): none waited for it.
	waitFor(t, "the healthy streams' pumps to go idle", func() bool { return pumps() == 1 })
	if s := b.Stats(); b.Subscribers() != healthy+1 || s.Ended.WriteTimeout != 0 {
		t.Fatalf("%d streams open, %d ended by a write timeout, when the healthy clients finished; want %d open, the stalled one still stuck", b.Subscribers(), s.Ended.WriteTimeout, healthy+1)
	}
	stalled.Close()
	waitFor(t, "the stalled stream to end with its connection", func() bool { return b.Subscribers() == healthy })
	b.mu.Lock()
	held := b.hist.Load().bytes
	b.mu.Unlock()
	if held > DefaultHistoryBytes {
		t.Errorf("history holds %d bytes, over its bound", held)
	}
}

// A Broker's stream whose client stops reading ends once a write has waited
// for the write timeout.
func TestBrokerWriteTimeoutEndsStalledStream(t *testing.T) {
	leakcheck.Check(t)
	const timeout = time.Second
	b := NewBroker(&BrokerOptions{Stream: Options{WriteTimeout: timeout}})
	srv := stallingServer(b)
	t.Cleanup(func() { b.Close(); srv.Close() })
	stalled := dialStalled(t, srv.Listener.Addr().String())
	defer stalled.Close()
	waitFor(t, "the stalled client", func() bool { return b.Subscribers() == 1 })
	start := time.Now()
	for range 100 {
		_ = b.Publish(Event{Data: strings.Repeat("x", 1<<10)})
	}
	waitFor(t, "the stalled stream to end", func() bool { return b.Subscribers() == 0 })
	// A write gets at least 7/8 of the timeout (Options.WriteTimeout).
	if waited := time.Since(start); waited < timeout*7/8 {
		t.Errorf("the stalled stream ended %v after the burst, before 7/8 of the write timeout of %v", waited, timeout)
	}
	if s := b.Stats(); s.Ended.WriteTimeout != 1 {
		t.Errorf("Stats.Ended = %+v, want one write timeout", s.Ended)
	}
}

// A stream that falls more than half the history behind, by count or by
// bytes, is ended, and its client, reconnecting with its last id, gets
// everything it missed.
func TestBrokerSlowStreamIsEndedAndResumes(t *testing.T) {
	for _, tt := range []struct {
		name        string
		opts        BrokerOptions
		size, burst int // event data size, events published while it is stuck
	}{
		{"by count", BrokerOptions{HistoryLen: 100}, 1, 60},
		{"by bytes", BrokerOptions{HistoryBytes: 10 << 10}, 1 << 10, 8},
	} {
		t.Run(tt.name, func(t *testing.T) {
			leakcheck.Check(t)
			b := NewBroker(&tt.opts)
			srv := brokerServer(t, b)
			g := &gate{flushRecorder: newFlushRecorder(), entered: make(chan struct{}, 1000), open: make(chan struct{}, 1000)}
			done := make(chan struct{})
			go func() { defer close(done); b.ServeHTTP(g, httptest.NewRequest("GET", "/", nil)) }()
			<-g.entered
			g.open <- struct{}{} // the new stream's id line
			waitFor(t, "the stream to wait for events", b.wake.waiting.Load)
			data := func(i int) string { return strconv.Itoa(i) + strings.Repeat("x", tt.size) }
			_ = b.Publish(Event{Data: data(0)})
			<-g.entered // the stream's write of event 0 waits at the gate
			for i := 1; i <= tt.burst; i++ {
				_ = b.Publish(Event{Data: data(i)}) // over half the history
			}
			for range 10 {
				g.open <- struct{}{}
			}
			select {
			case <-done:
			case <-time.After(20 * time.Second):
				t.Fatalf("a stream %d events behind was not ended", tt.burst)
			}
			got, r := ssetest.Parse(g.body())
			if len(got) != 1 || got[0].Data != data(0) {
				t.Fatalf("the slow stream got %d events", len(got))
			}
			if n := b.Stats().Ended.FellBehind; n != 1 {
				t.Errorf("Stats.Ended.FellBehind = %d, want 1", n)
			}
			cl := connect(t, srv.Client(), srv.URL, r.LastEventID)
			for i := 1; i <= tt.burst; i++ {
				if ev := cl.next(t); ev.Data != data(i) {
					t.Fatalf("after reconnecting: %.20q, want %.20q", ev.Data, data(i))
				}
			}
		})
	}
}

// Clients that stop reading while a large event is written hold no copy of
// it each: the heap with 200 of them stuck is about the heap with 50.
func TestBrokerStalledClientsHoldNoCopies(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	leakcheck.Check(t)
	const size = 2 << 20
	heap := func(n int) uint64 {
		b := NewBroker(&BrokerOptions{Stream: Options{WriteTimeout: time.Minute}})
		srv := stallingServer(b)
		defer srv.Close()
		defer b.Close()
		for range n {
			defer dialStalled(t, srv.Listener.Addr().String()).Close()
		}
		waitFor(t, "the streams", func() bool { return b.Subscribers() == n })
		_ = b.Publish(Event{Data: strings.Repeat("x", size)})
		// Every stream is stuck in its write of the event: n pumps.
		waitFor(t, "every stream stuck in a write", func() bool { return pumps() >= n })
		return heapInUse()
	}
	few, many := heap(50), heap(200)
	if many > few && many-few > 30<<20 {
		t.Errorf("heap with 200 clients stuck on a %d MiB event: %d MiB, with 50: %d MiB; the extra 150 hold copies", size>>20, many>>20, few>>20)
	}
	t.Logf("heap in use with 50 stuck clients: %.1f MiB, with 200: %.1f MiB", float64(few)/(1<<20), float64(many)/(1<<20))
}

// An idle stream's handler goroutine never writes (the Broker's pumps do), so
// its stack stays small: a Broker's idle streams, which have each received an
// event, take at most 7 KiB of goroutine stacks each. Writing from the
// handler, as a bare handler that writes its headers and waits does, grows
// its goroutine's stack to 8 KiB for as long as the stream lasts (10 KiB in
// all with net/http's reader).
func TestBrokerIdleStreamStack(t *testing.T) {
	if ssetest.Race {
		t.Skip("the race detector deepens every frame, so stacks grow in any case; .ci/run runs this test without it")
	}
	leakcheck.Check(t)
	const n = 200
	perStream := func(h http.Handler, open func() int, publish func()) float64 {
		srv := httptest.NewServer(h)
		defer srv.Close()
		before := stackInUse()
		conns := make([]*rawStream, n)
		for i := range conns {
			s, err := dialStream(srv.Listener.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer s.conn.Close()
			conns[i] = s
		}
		waitFor(t, "the streams", func() bool { return open() == n })
		publish()
		return float64(stackInUse()-before) / n / 1024
	}
	var started atomic.Int64
	bare := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(200)
		http.NewResponseController(w).Flush()
		started.Add(1)
		<-r.Context().Done()
	})
	floor := perStream(bare, func() int { return int(started.Load()) }, func() {})
	b := NewBroker(nil)
	defer b.Close()
	ours := perStream(b, b.Subscribers, func() {
		_ = b.Publish(Event{Data: "x"})
		// Each stream has written the event: let the pumps go idle.
		waitFor(t, "the pumps to exit", func() bool { return pumps() == 0 })
	})
	t.Logf("goroutine stacks per stream: Broker %.1f KiB, bare handler %.1f KiB", ours, floor)
	// The bare handler's figure is only shown: repeated in one process (-count)
	// it reuses stacks freed by earlier runs and can read far below 10 KiB.
	if ours > 7 {
		t.Errorf("goroutine stacks per idle stream: %.1f KiB, want at most 7 (4 KiB for the handler, 2 for net/http's reader, and the shared pumps)", ours)
	}
}

// ---- Pumps (sse.go) ------------------------------------------------------

// A stream holds a pump only while it has something to write: pumps are
// shared, a stream whose client is stuck in a write holds up no other, idle
// pumps exit after pumpIdle, and none outlives Close.
func TestBrokerPumps(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := NewBroker(nil)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		const n = 50
		recs := make([]*flushRecorder, n)
		for i := range recs {
			recs[i] = newFlushRecorder()
			go b.ServeHTTP(recs[i], httptest.NewRequestWithContext(ctx, "GET", "/", nil))
		}
		stuck := &blockingWriter{flushRecorder: newFlushRecorder(), release: make(chan struct{})}
		go b.ServeHTTP(stuck, httptest.NewRequestWithContext(ctx, "GET", "/", nil))
		synctest.Wait()
		idle := func(when string) {
			t.Helper()
			time.Sleep(pumpIdle)
			synctest.Wait()
			if p := pumps(); p != 0 {
				t.Fatalf("%s: %d pumps a second after the last write, want 0", when, p)
			}
		}
		idle("streams open and idle")

		stuck.block.Store(true)
		_ = b.Publish(Event{Data: "x"})
		synctest.Wait()
		for i, rec := range recs {
			if !strings.HasSuffix(rec.body(), "data: x\n\n") {
				t.Fatalf("stream %d, with another stuck in a write: %q", i, rec.body())
			}
		}
		// A pump is free again once its write is done, so about one per CPU
		// does (plus the stuck one). The race detector shuffles the scheduler,
		// which makes streams wait for pumps less often: there, some sharing.
		most := 2*runtime.GOMAXPROCS(0) + 2
		if ssetest.Race {
			most = n
		}
		if p := pumps(); p < 1 || int(p) > most {
			t.Errorf("%d pumps for %d streams, one stuck: want at least 1 and at most %d", p, n+1, most)
		}
		close(stuck.release)
		synctest.Wait()
		if !strings.HasSuffix(stuck.body(), "data: x\n\n") {
			t.Fatalf("the stuck stream, released: %q", stuck.body())
		}
		idle("after a Publish")

		_ = b.Publish(Event{Data: "y"}) // pumps start again
		synctest.Wait()
		for i, rec := range recs {
			if !strings.HasSuffix(rec.body(), "data: y\n\n") {
				t.Fatalf("stream %d after the pumps had exited: %q", i, rec.body())
			}
		}
		b.Close() // ends the streams, and the idle pumps at once
		synctest.Wait()
		if p := pumps(); p != 0 {
			t.Errorf("%d pumps left after Close", p)
		}
	})
}

// A Broker in a testing/synctest bubble need not be closed: once its last
// stream ends, its pumps exit, and the bubble can end.
func TestBrokerInBubbleWithoutClose(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := NewBroker(&BrokerOptions{Stream: Options{Heartbeat: -1}})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			defer close(done)
			b.ServeHTTP(newFlushRecorder(), httptest.NewRequestWithContext(ctx, "GET", "/", nil))
		}()
		synctest.Wait()
		_ = b.Publish(Event{Data: "x"})
		synctest.Wait()
		cancel()
		<-done
		synctest.Wait()
		if p := pumps(); p != 0 {
			t.Errorf("%d pumps left with no stream open", p)
		}
	})
}

// A panic in a pump (here, in a Log) reaches the stream's handler, where
// net/http reports it as it does any handler's, and leaves other streams and
// the pumps working.
func TestBrokerPumpPanicReachesHandler(t *testing.T) {
	leakcheck.Check(t)
	boom := errors.New("log exploded")
	log := newMemLog()
	b := NewBroker(&BrokerOptions{HistoryLen: 2, Log: log})
	defer b.Close()
	publishN(t, b, "", 5)
	log.onRead = func(context.Context) error { panic(boom) }
	req := httptest.NewRequest("GET", "/", nil)
	req.Header.Set("Last-Event-ID", log.head().Epoch+"-1") // older than the history: asks the Log
	var got any
	func() {
		defer func() { got = recover() }()
		b.ServeHTTP(newFlushRecorder(), req)
	}()
	if err, ok := got.(error); !ok || !errors.Is(err, boom) || !strings.Contains(err.Error(), "ReadAfter") {
		t.Fatalf("handler panicked with %v, want an error wrapping %v, with the Log's stack", got, boom)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rec := newFlushRecorder()
	go b.ServeHTTP(rec, httptest.NewRequestWithContext(ctx, "GET", "/", nil))
	waitFor(t, "another stream, placed", func() bool { return strings.Contains(rec.body(), "id: ") })
	_ = b.Publish(Event{Data: "after"})
	waitFor(t, "the next event", func() bool { return strings.Contains(rec.body(), "data: after") })
	if n := b.Stats().Ended.Failed; n != 1 {
		t.Errorf("Stats.Ended.Failed = %d, want 1", n)
	}
}

// A pump's runtime.Goexit (a t.FailNow in a fake Log, say) ends the stream
// and its handler the same way, and a pump's http.ErrAbortHandler reaches the
// handler unchanged, for net/http to abort quietly.
func TestBrokerPumpGoexitAndAbort(t *testing.T) {
	leakcheck.Check(t)
	for _, tt := range []struct {
		name   string
		onRead func(context.Context) error
		check  func(t *testing.T, exited bool, p any)
	}{
		{"Goexit", func(context.Context) error { runtime.Goexit(); return nil }, func(t *testing.T, exited bool, p any) {
			if !exited || p != nil {
				t.Errorf("handler: Goexit %v, panic %v; want Goexit", exited, p)
			}
		}},
		{"ErrAbortHandler", func(context.Context) error { panic(http.ErrAbortHandler) }, func(t *testing.T, exited bool, p any) {
			if p != http.ErrAbortHandler {
				t.Errorf("handler panicked with %v, want http.ErrAbortHandler itself", p)
			}
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			log := newMemLog()
			b := NewBroker(&BrokerOptions{HistoryLen: 2, Log: log})
			defer b.Close()
			publishN(t, b, "", 5)
			log.onRead = tt.onRead
			req := httptest.NewRequest("GET", "/", nil)
			req.Header.Set("Last-Event-ID", log.head().Epoch+"-1") // older than the history: asks the Log
			exited, recovered := true, any(nil)
			done := make(chan struct{})
			go func() {
				defer close(done)
				defer func() { recovered = recover() }()
				b.ServeHTTP(newFlushRecorder(), req)
				exited = false
			}()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("the handler did not return")
			}
			tt.check(t, exited && recovered == nil, recovered)
			if n := b.Subscribers(); n != 0 {
				t.Errorf("%d subscribers after the stream ended", n)
			}
			if n := log.follows.Load(); n != 0 {
				t.Errorf("%d Follows of the Log running with no stream open", n)
			}
		})
	}
}

// ---- A Broker with a Log (sse.go) ----------------------------------------

// A Broker with a Log replays from the Log what is older than its own
// history, then goes on live; what the Log has lost is announced.
func TestBrokerLogServesOlderEvents(t *testing.T) {
	leakcheck.Check(t)
	log := newMemLog()
	b := NewBroker(&BrokerOptions{HistoryLen: 4, Log: log})
	srv := brokerServer(t, b)
	publishN(t, b, "", 20)
	epoch := log.head().Epoch
	cl := connect(t, srv.Client(), srv.URL, epoch+"-3")
	for i := 3; i < 20; i++ {
		cl.expect(t, strconv.Itoa(i))
	}
	_ = b.Publish(Event{Data: "live"})
	if ev := cl.next(t); ev.Data != "live" || ev.LastEventID != epoch+"-21" {
		t.Fatalf("after the replay: %+v, want the live event with id %s-21", ev, epoch)
	}
	// Events the Log has dropped are announced, not skipped silently.
	log.trim(6)
	cl = connect(t, srv.Client(), srv.URL, epoch+"-4")
	if ev := cl.next(t); ev.Type != ResetEvent || ev.LastEventID != epoch+"-21" || ev.Data != epoch+"-4" {
		t.Fatalf("events gone from the Log: first event %+v, want a reset", ev)
	}
	if s := b.Stats(); s.Resumed.Log != 1 || s.Resets.TooOld != 1 {
		t.Errorf("stats: resumed %+v, resets %+v; want 1 resume from the Log, 1 reset too old", s.Resumed, s.Resets)
	}
}

// Two Brokers on one Log serve one stream: events published on either reach
// the clients of both, in one order, with the same ids, and a client resumes
// on the other.
func TestBrokersShareALog(t *testing.T) {
	leakcheck.Check(t)
	log := newMemLog()
	a, b := NewBroker(&BrokerOptions{Log: log}), NewBroker(&BrokerOptions{Log: log})
	srvA, srvB := brokerServer(t, a), brokerServer(t, b)
	onA, onB := connect(t, srvA.Client(), srvA.URL, ""), connect(t, srvB.Client(), srvB.URL, "")
	// connect returns once each stream knows where it starts.
	var wg sync.WaitGroup
	for _, br := range []*Broker{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 100 {
				if err := br.Publish(Event{Data: fmt.Sprint(i)}); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	var seen [2][]ssetest.Event
	for i, cl := range []*client{onA, onB} {
		for range 200 {
			seen[i] = append(seen[i], cl.next(t))
		}
	}
	if !slices.Equal(seen[0], seen[1]) {
		t.Fatalf("the two Brokers' clients saw different streams")
	}
	for i, ev := range seen[0] {
		if want := fmt.Sprintf("%s-%d", log.head().Epoch, i+1); ev.LastEventID != want {
			t.Fatalf("event %d has id %q, want %q", i, ev.LastEventID, want)
		}
	}
	if n := len(b.hist.Load().byID); n != 0 {
		t.Errorf("%d events without a publisher ID in the publisher ids' index", n)
	}
	// A client of A that saw half resumes on B.
	again := connect(t, srvB.Client(), srvB.URL, seen[0][99].LastEventID)
	for _, want := range seen[0][100:] {
		if ev := again.next(t); ev != want {
			t.Fatalf("resumed on the other Broker: %+v, want %+v", ev, want)
		}
	}
}

// A gap in the Log's feed is filled from the Log before later events go out.
func TestBrokerLogFillsGaps(t *testing.T) {
	leakcheck.Check(t)
	_, b, cl := withGap(t, 3)
	_ = b.Publish(Event{Data: "next"})
	cl.expect(t, "missed 0", "missed 1", "missed 2", "next")
	if s := b.Stats().Log; s.GapsFilled != 1 || s.EventsFilled != 3 {
		t.Errorf("log stats %+v, want one gap of 3 events filled", s)
	}
}

// When the Log loses its history (a new epoch), open streams get a reset and
// go on in the new epoch; ids of the old one resume nothing.
func TestBrokerLogNewEpochResets(t *testing.T) {
	leakcheck.Check(t)
	log := newMemLog()
	b := NewBroker(&BrokerOptions{Log: log})
	srv := brokerServer(t, b)
	cl := connect(t, srv.Client(), srv.URL, "")
	publishN(t, b, "old ", 2)
	cl.expect(t, "old 0", "old 1")
	old := log.head()
	log.lose()
	_ = b.Publish(Event{Data: "new"})
	ev := cl.next(t)
	if ev.Type != ResetEvent || ev.Data != old.String() {
		t.Fatalf("after the Log lost its history: %+v, want a reset from %v", ev, old)
	}
	cl.expect(t, "new")
	if got := cl.reader.LastEventID; got != log.head().String() {
		t.Errorf("last event id %q, want %q", got, log.head())
	}
	if ev := connect(t, srv.Client(), srv.URL, old.String()).next(t); ev.Type != ResetEvent {
		t.Errorf("an id of the lost epoch: %+v, want a reset", ev)
	}
}

// A Publish whose Log.Append fails returns the error; nothing is delivered.
func TestBrokerLogAppendErrorFailsPublish(t *testing.T) {
	leakcheck.Check(t)
	log := newMemLog()
	errDown := errors.New("log down")
	var down atomic.Bool
	down.Store(true)
	log.onAppend = func(context.Context) error {
		if down.Load() {
			return errDown
		}
		return nil
	}
	b := NewBroker(&BrokerOptions{Log: log})
	srv := brokerServer(t, b)
	cl := connect(t, srv.Client(), srv.URL, "")
	if err := b.Publish(Event{Data: "lost"}); !errors.Is(err, errDown) {
		t.Fatalf("Publish: %v, want the Log's error", err)
	}
	down.Store(false)
	_ = b.Publish(Event{Data: "kept"})
	if ev := cl.next(t); ev.Data != "kept" || ev.LastEventID != log.head().Epoch+"-1" {
		t.Errorf("got %+v, want the next event, at offset 1", ev)
	}
	if s := b.Stats(); s.PublishErrors != 1 || s.Published != 1 || s.Log.Errors != 1 {
		t.Errorf("stats: %d published, %d errors, log errors %d; want 1, 1, 1", s.Published, s.PublishErrors, s.Log.Errors)
	}
}

// A Log that blocks stalls nothing else: Close returns and new streams open
// while an Append is stuck, and a stream stuck in ReadAfter ends when its
// client leaves, and at Close.
func TestBrokerBlockingLogStallsNothing(t *testing.T) {
	leakcheck.Check(t)
	log := newMemLog()
	b := NewBroker(&BrokerOptions{HistoryLen: 2, Log: log})
	srv := brokerServer(t, b)
	publishN(t, b, "", 5)
	stuck := make(chan struct{}, 10)
	block := func(ctx context.Context) error {
		stuck <- struct{}{}
		<-ctx.Done()
		return ctx.Err()
	}

	// A stream whose replay waits on the Log ends when its client leaves.
	log.onRead = block
	cl := connect(t, srv.Client(), srv.URL, log.head().Epoch+"-1")
	<-stuck
	cl.cancel()
	waitFor(t, "the stream stuck in ReadAfter to end with its client", func() bool { return b.Subscribers() == 0 })

	// Another waits there, and an Append blocks too.
	cl = connect(t, srv.Client(), srv.URL, log.head().Epoch+"-1")
	<-stuck
	log.onAppend = block
	published := make(chan error, 1)
	go func() { published <- b.Publish(Event{Data: "stuck"}) }()
	<-stuck
	// A new client gets its headers (connect returns) meanwhile.
	fresh := connect(t, srv.Client(), srv.URL, "")
	waitFor(t, "the new stream", func() bool { return b.Subscribers() == 2 })
	_ = b.Close() // returns with Append still blocked: it does not wait
	if err := <-published; !errors.Is(err, ErrClosed) {
		t.Errorf("the Publish stuck in Append, at Close: %v, want ErrClosed", err)
	}
	cl.ended(t)
	fresh.ended(t)
	waitFor(t, "every stream to end", func() bool { return b.Subscribers() == 0 })
}

// What a Log answers is checked: events past its own head, a wire form that
// is not one event, or a head with no epoch are its errors, and the client
// gets a reset, never a silent gap or a forged event.
func TestBrokerDistrustsLog(t *testing.T) {
	leakcheck.Check(t)
	event := []byte("data: forged\n\n")
	for _, tt := range []struct {
		name string
		read func(after Position) ([][]byte, Position)
	}{
		{"past the head", func(after Position) ([][]byte, Position) {
			return [][]byte{event, event}, Position{after.Epoch, after.Offset + 1}
		}},
		{"another epoch", func(after Position) ([][]byte, Position) {
			return [][]byte{event}, Position{"0000000000000000", after.Offset + 1}
		}},
		{"an empty event", func(after Position) ([][]byte, Position) {
			return [][]byte{{}}, Position{after.Epoch, after.Offset + 1}
		}},
		{"two events in one", func(after Position) ([][]byte, Position) {
			return [][]byte{[]byte("data: a\n\ndata: b\n\n")}, Position{after.Epoch, after.Offset + 1}
		}},
		{"a head with no epoch", func(after Position) ([][]byte, Position) {
			return nil, Position{"", 100}
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			log := newMemLog()
			b := NewBroker(&BrokerOptions{HistoryLen: 2, Log: log})
			srv := brokerServer(t, b)
			publishN(t, b, "", 5)
			from := log.head().Epoch + "-1"
			log.read = func(after Position, _ int) ([][]byte, Position, error) {
				w, h := tt.read(after)
				return w, h, nil
			}
			cl := connect(t, srv.Client(), srv.URL, from)
			if ev := cl.next(t); ev.Type != ResetEvent || ev.Data != from {
				t.Fatalf("first event %+v, want a reset from %s", ev, from)
			}
			_ = b.Publish(Event{Data: "live"})
			cl.expect(t, "live")
			if s := b.Stats(); s.Log.Errors != 1 || s.Resets.LogFailed != 1 {
				t.Errorf("stats: log errors %d, log-failed resets %d; want 1 and 1", s.Log.Errors, s.Resets.LogFailed)
			}
		})
	}
}

// A Log that fails while the feed fills a gap costs this delivery, not a
// reset: the next delivery finds the gap again and fills it.
func TestBrokerLogFillFailureIsRetried(t *testing.T) {
	leakcheck.Check(t)
	log, b, cl := withGap(t, 2)
	var failed atomic.Bool
	log.onRead = func(context.Context) error {
		if failed.CompareAndSwap(false, true) {
			return errors.New("log down for a moment")
		}
		return nil
	}
	_ = b.Publish(Event{Data: "after"})
	waitFor(t, "the failed fill", failed.Load)
	_ = b.Publish(Event{Data: "later"})
	cl.expect(t, "missed 0", "missed 1", "after", "later")
	if s := b.Stats(); s.Log.NewHistories != 0 || s.Resets.NewHistory != 0 || s.Log.Errors != 1 || s.Log.GapsFilled != 1 {
		t.Errorf("stats: log %+v, resets %+v; want one error, one gap filled, no new history", s.Log, s.Resets)
	}
}

// Close while the feed is stuck filling a gap ends the streams with their
// retry, and no false reset; and the last stream's end does not wait for
// the stuck fill.
func TestBrokerCloseDuringFill(t *testing.T) {
	leakcheck.Check(t)
	for _, how := range []string{"Close", "last stream ends"} {
		t.Run(how, func(t *testing.T) {
			log, b, cl := withGap(t, 2)
			stuck := make(chan struct{}, 1)
			log.onRead = func(ctx context.Context) error {
				stuck <- struct{}{}
				<-ctx.Done()
				return ctx.Err()
			}
			_ = b.Publish(Event{Data: "after"})
			<-stuck // the feed is filling the gap, and waits
			if how == "Close" {
				_ = b.Close()
				if got := cl.ended(t); len(got) != 0 || cl.reader.Retry <= 0 {
					t.Errorf("after Close during a fill: events %+v, retry %v; want no event (no reset), a retry", got, cl.reader.Retry)
				}
			} else {
				cl.cancel()
			}
			waitFor(t, "the stream to end", func() bool { return b.Subscribers() == 0 })
			waitFor(t, "the feed to stop", func() bool { return log.follows.Load() == 0 })
			if s := b.Stats(); s.Log.NewHistories != 0 || s.Resets.NewHistory != 0 {
				t.Errorf("stats: log %+v, resets %+v; want no new history", s.Log, s.Resets)
			}
		})
	}
}

// Over HTTP/2 the refusal of a GET with a body leaves the connection, which
// the browser's other streams share, open.
func TestBrokerRefusedBodyKeepsHTTP2Connection(t *testing.T) {
	leakcheck.Check(t)
	b := NewBroker(nil)
	srv := httptest.NewUnstartedServer(b)
	var conns atomic.Int32
	srv.Config.ConnState = func(_ net.Conn, state http.ConnState) {
		if state == http.StateNew {
			conns.Add(1)
		}
	}
	srv.EnableHTTP2 = true
	srv.StartTLS()
	t.Cleanup(func() { b.Close(); srv.Close() })
	c := srv.Client()
	req, _ := http.NewRequest("GET", srv.URL, strings.NewReader("body"))
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 400 || resp.ProtoMajor != 2 {
		t.Fatalf("GET with a body over %s: %d, want 400 over HTTP/2", resp.Proto, resp.StatusCode)
	}
	cl := connect(t, c, srv.URL, "")
	waitFor(t, "the stream", func() bool { return b.Subscribers() == 1 })
	_ = b.Publish(Event{Data: "x"})
	cl.expect(t, "x")
	if n := conns.Load(); n != 1 {
		t.Errorf("%d connections for two requests: the refusal ended the first", n)
	}
}

// ---- The ring (sse.go) ---------------------------------------------------

func TestRingBounds(t *testing.T) {
	r := (&Broker{historyLen: 2}).newRing("e", 0)
	push := func(size, maxLen, maxBytes int) {
		r.push(&entry{wire: make([]byte, size), id: fmt.Sprint("id", r.head.Load()+1)}, maxLen, maxBytes)
	}
	state := func() string {
		return fmt.Sprintf("head %d tail %d bytes %d slots %d", r.head.Load(), r.tail.Load(), r.bytes, len(*r.slots.Load()))
	}
	for range 10 {
		push(10, 4, 1000)
	}
	if got := state(); got != "head 10 tail 7 bytes 40 slots 4" {
		t.Errorf("by count: %s", got)
	}
	if len(r.byID) != 4 || r.byID["id7"].offset != 7 || r.byID["id6"].count != 0 {
		t.Errorf("the id index after dropping 1-6: %v", r.byID)
	}
	for off := uint64(1); off <= 10; off++ {
		if held := r.get(off) != nil; held != (off >= 7) {
			t.Errorf("get(%d) held = %v", off, held)
		}
	}
	push(25, 4, 50) // 30+25 > 50: drop two
	if got := state(); got != "head 11 tail 9 bytes 45 slots 4" {
		t.Errorf("by bytes: %s", got)
	}
	if r.get(8) != nil {
		t.Error("an event dropped by bytes is still held")
	}
	push(500, 4, 50) // larger than the bound: kept alone
	if got := state(); got != "head 12 tail 12 bytes 500 slots 4" {
		t.Errorf("oversized: %s", got)
	}
	if r.lagging(12, 12, 0, 0) {
		t.Error("a stream with only the newest event to send counts as lagging")
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
		w, _ := NewWriter(&discard{h: http.Header{}}, httptest.NewRequest("GET", "/", nil), &Options{Heartbeat: -1})
		defer w.Close()
		for b.Loop() {
			_ = w.Send(typical)
		}
	})
	b.Run("discard/raw", func(b *testing.B) {
		b.ReportAllocs()
		d := &discard{h: http.Header{}}
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
func BenchmarkPublish(b *testing.B) {
	for _, subs := range []int{0, 100, 1000} {
		b.Run(fmt.Sprintf("subscribers=%d", subs), func(b *testing.B) {
			br := NewBroker(nil)
			ctx, cancel := context.WithCancel(context.Background())
			var wg sync.WaitGroup
			for range subs {
				wg.Add(1)
				go func() {
					defer wg.Done()
					br.ServeHTTP(&discard{h: http.Header{}}, httptest.NewRequestWithContext(ctx, "GET", "/", nil))
				}()
			}
			for br.Subscribers() < subs {
				time.Sleep(time.Millisecond)
			}
			b.ReportAllocs()
			for b.Loop() {
				_ = br.Publish(typical)
			}
			b.StopTimer()
			cancel()
			br.Close()
			wg.Wait()
		})
	}
}

// BenchmarkFanOut: one op publishes an event carrying its publish time and
// waits until every loopback client has parsed it; clients record latency.
// Reported: deliveries/s, and p50/p99 latency from Publish to a client
// having read the whole event.
func BenchmarkFanOut(b *testing.B) {
	for _, clients := range []int{1000, fdBound(10000)} {
		b.Run(fmt.Sprintf("clients=%d", clients), func(b *testing.B) {
			raiseFileLimit(b, clients)
			br := NewBroker(nil)
			srv := httptest.NewServer(br)
			defer srv.Close()
			defer br.Close()
			addr := srv.Listener.Addr().String()
			var got atomic.Int64
			all := make(chan struct{}, 1)
			latencies := make([][]time.Duration, clients)
			var wg sync.WaitGroup
			for c := range clients {
				s, err := dialStream(addr)
				if err != nil {
					b.Fatal(err)
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					defer s.conn.Close()
					for {
						line, err := s.body.ReadSlice('\n')
						if err != nil {
							return
						}
						if ts, ok := bytes.CutPrefix(line, []byte("data: ")); ok {
							sent, _ := strconv.ParseInt(string(bytes.TrimSpace(ts)), 10, 64)
							latencies[c] = append(latencies[c], time.Since(time.Unix(0, sent)))
							if got.Add(1) == int64(clients) {
								all <- struct{}{}
							}
						}
					}
				}()
			}
			for br.Subscribers() < clients {
				time.Sleep(time.Millisecond)
			}
			b.ResetTimer()
			start := time.Now()
			for b.Loop() {
				got.Store(0)
				_ = br.Publish(Event{Type: "t", Data: strconv.FormatInt(time.Now().UnixNano(), 10)})
				<-all
			}
			elapsed := time.Since(start)
			b.StopTimer()
			br.Close()
			wg.Wait()
			var lat []time.Duration
			for _, l := range latencies {
				lat = append(lat, l...)
			}
			slices.Sort(lat)
			b.ReportMetric(float64(len(lat))/elapsed.Seconds(), "deliveries/s")
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
		})
	}
}

// BenchmarkIdleStream: memory (heap and goroutine stacks, both ends of the
// loopback connection, in one process) per open idle stream: the Broker's,
// next to a bare net/http handler that only waits on its context (the floor).
// The figure is per stream; the op is opening 2,000 streams.
func BenchmarkIdleStream(b *testing.B) {
	const streams = 2000
	var started atomic.Int64
	bare := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(200)
		http.NewResponseController(w).Flush()
		started.Add(1)
		<-r.Context().Done()
	})
	for _, tt := range []struct {
		name string
		h    func() (http.Handler, func() int, func())
	}{
		{"bare-handler", func() (http.Handler, func() int, func()) {
			started.Store(0)
			return bare, func() int { return int(started.Load()) }, func() {}
		}},
		{"Broker", func() (http.Handler, func() int, func()) {
			br := NewBroker(nil)
			return br, br.Subscribers, func() { br.Close() }
		}},
	} {
		b.Run(tt.name, func(b *testing.B) {
			raiseFileLimit(b, streams)
			var perStream float64
			for b.Loop() {
				b.StopTimer()
				h, open, closeAll := tt.h()
				srv := httptest.NewServer(h)
				before := memInUse()
				b.StartTimer()
				conns := make([]*rawStream, streams)
				for i := range conns {
					s, err := dialStream(srv.Listener.Addr().String())
					if err != nil {
						b.Fatal(err)
					}
					conns[i] = s
				}
				for open() < streams {
					time.Sleep(time.Millisecond)
				}
				b.StopTimer()
				perStream = float64(memInUse()-before) / streams / 1024
				closeAll()
				for _, s := range conns {
					s.conn.Close()
				}
				srv.Close()
				b.StartTimer()
			}
			b.ReportMetric(perStream, "KiB/stream")
		})
	}
}

// BenchmarkReader reads typical events (an id, a type and a 200-byte JSON
// line) and LLM-style tokens (20 to 40 bytes of data), from memory; and
// tokens of which one in six is not valid UTF-8, whose MB/s should stay
// within a small factor of the valid ones'.
func BenchmarkReader(b *testing.B) {
	var typicals, tokens, invalid []byte
	for i := range 1000 {
		typicals, _ = Event{ID: strconv.Itoa(i), Type: typical.Type, Data: typical.Data}.AppendText(typicals)
		tokens, _ = Event{Data: `{"t":"` + strings.Repeat("a", 12+i%20) + `"}`}.AppendText(tokens)
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

// ---- Helpers: reading ----------------------------------------------------

// readAll reads every event from src with a fresh Reader, and returns them
// with the Reader and the error that ended the stream.
func readAll(src io.Reader) ([]Event, *Reader, error) {
	r := NewReader(src)
	events, err := readAllFrom(r)
	return events, r, err
}

// readAllFrom reads every event from r, and returns them with the error that
// ended the stream.
func readAllFrom(r *Reader) ([]Event, error) {
	var events []Event
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
		var ev Event
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

// blockingWriter's writes wait for release once block is set.
type blockingWriter struct {
	*flushRecorder
	block   atomic.Bool
	release chan struct{}
}

func (w *blockingWriter) Write(p []byte) (int, error) {
	if w.block.Load() {
		<-w.release
	}
	return w.flushRecorder.Write(p)
}

type countingWriter struct {
	*flushRecorder
	n int
}

func (c *countingWriter) Write(p []byte) (int, error) {
	c.mu.Lock()
	c.n++
	c.mu.Unlock()
	return c.flushRecorder.Write(p)
}

func (c *countingWriter) writes() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

// gate is a ResponseWriter whose writes wait for the test: a client that
// reads slowly, on a connection without deadlines.
type gate struct {
	*flushRecorder
	entered chan struct{} // a write is waiting
	open    chan struct{} // lets one write through
}

func (g *gate) Write(p []byte) (int, error) {
	g.entered <- struct{}{}
	<-g.open
	return g.flushRecorder.Write(p)
}

// discard is a ResponseWriter that flushes and keeps nothing; it counts its
// writes in writes, if set.
type discard struct {
	h      http.Header
	writes *atomic.Int64
}

func (d *discard) Header() http.Header { return d.h }
func (d *discard) Write(p []byte) (int, error) {
	if d.writes != nil {
		d.writes.Add(1)
	}
	return len(p), nil
}
func (d *discard) WriteHeader(int) {}
func (d *discard) Flush()          {}

// ---- Helpers: clients of a Broker ----------------------------------------

// brokerServer serves b on a loopback server closed at the end of the test.
func brokerServer(t *testing.T, b *Broker) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(b)
	t.Cleanup(func() { b.Close(); srv.Close() })
	return srv
}

// patience is how long a test waits for what should happen at once before it
// calls it a failure: long, so that a busy machine fails nothing.
const patience = time.Minute

// waitFor polls cond, for conditions that other goroutines make true.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(patience); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// client is a stream opened on a Broker, read in its own goroutine.
type client struct {
	events chan ssetest.Event // closed when the stream ends
	cancel context.CancelFunc
	reader *ssetest.Reader
	err    error // why the stream ended, read after events is closed
}

func connect(t *testing.T, c *http.Client, url, lastID string) *client {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := c.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	cl := &client{events: make(chan ssetest.Event, 64), cancel: cancel, reader: ssetest.NewReader(resp.Body)}
	go func() {
		defer close(cl.events)
		defer resp.Body.Close()
		for {
			ev, err := cl.reader.Next()
			if err != nil {
				cl.err = err
				return
			}
			cl.events <- ev
		}
	}()
	t.Cleanup(func() {
		cancel()
		for range cl.events {
		}
		c.CloseIdleConnections()
	})
	return cl
}

func (cl *client) next(t *testing.T) ssetest.Event {
	t.Helper()
	select {
	case ev, ok := <-cl.events:
		if !ok {
			t.Fatalf("stream ended: %v", cl.err)
		}
		return ev
	case <-time.After(patience):
		t.Fatalf("no event within %v", patience)
		return ssetest.Event{}
	}
}

// ended waits for the stream to end and returns the events that came first.
func (cl *client) ended(t *testing.T) []ssetest.Event {
	t.Helper()
	var rest []ssetest.Event
	timeout := time.After(patience)
	for {
		select {
		case ev, ok := <-cl.events:
			if !ok {
				return rest
			}
			rest = append(rest, ev)
		case <-timeout:
			t.Fatalf("stream still open after %v", patience)
		}
	}
}

// expect reads one event per data in want from cl.
func (cl *client) expect(t *testing.T, want ...string) {
	t.Helper()
	for _, w := range want {
		if ev := cl.next(t); ev.Data != w || ev.Type == ResetEvent {
			t.Fatalf("got %+v, want data %q", ev, w)
		}
	}
}

// checkSequence reads publishers*each events and checks that ids count up by
// one from 1 and that each publisher's events arrive in its order. It waits
// for as long as events reach some client (moving).
func checkSequence(cl *client, publishers, each int, moving *progress) error {
	next := make([]int, publishers)
	for n := 1; n <= publishers*each; n++ {
		var ev ssetest.Event
		select {
		case e, ok := <-cl.events:
			if !ok {
				return fmt.Errorf("stream ended after %d events: %v", n-1, cl.err)
			}
			ev = e
		case <-moving.stalled:
			return fmt.Errorf("no event %d: no client has received anything for %v", n, stallAfter)
		}
		moving.n.Add(1)
		ps, rest, _ := strings.Cut(ev.Data, " ")
		is, _, _ := strings.Cut(rest, " ")
		p, err1 := strconv.Atoi(ps)
		i, err2 := strconv.Atoi(is)
		if err1 != nil || err2 != nil || p >= publishers || i != next[p] {
			return fmt.Errorf("event %d = %+v, want publisher %d's event %d", n, ev, p, next[p])
		}
		next[p]++
		if _, off, _ := strings.Cut(ev.LastEventID, "-"); off != strconv.Itoa(n) {
			return fmt.Errorf("event %d has id %q", n, ev.LastEventID)
		}
	}
	return nil
}

// A progress counts the events that many clients receive, so that a test
// waits for as long as they advance and gives up only once all have stood
// still for stallAfter. On a busy machine one client can wait for a CPU for
// tens of seconds while the others go on; that is not a fault, and a budget
// per event would call it one.
type progress struct {
	n       atomic.Int64
	stalled chan struct{} // closed when n has not moved for stallAfter
}

const stallAfter = time.Minute

// watchProgress returns a progress watched until the test ends.
func watchProgress(t *testing.T) *progress {
	p := &progress{stalled: make(chan struct{})}
	done := make(chan struct{})
	go func() {
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		last, since := int64(-1), time.Now()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
			}
			if n := p.n.Load(); n != last {
				last, since = n, time.Now()
			} else if time.Since(since) > stallAfter {
				close(p.stalled)
				return
			}
		}
	}()
	t.Cleanup(func() { close(done) })
	return p
}

// smallBuffers shrinks each accepted connection's send buffer, so that a
// client that stops reading blocks the server after kilobytes, not megabytes.
type smallBuffers struct{ net.Listener }

func (l smallBuffers) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetWriteBuffer(16 << 10)
	}
	return c, err
}

// stallingServer serves b with smallBuffers, for clients that stop reading.
// The caller closes it.
func stallingServer(b *Broker) *httptest.Server {
	srv := httptest.NewUnstartedServer(b)
	srv.Listener = smallBuffers{srv.Listener}
	srv.Start()
	return srv
}

// dialStalled opens a stream on addr with a small receive buffer, and never
// reads it. The caller closes it.
func dialStalled(t *testing.T, addr string) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	_ = conn.(*net.TCPConn).SetReadBuffer(4 << 10)
	fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	return conn
}

func reconnectingClient(t *testing.T, srv *httptest.Server, seed, events int, ready chan<- struct{}) error {
	rng := rand.New(rand.NewPCG(uint64(seed), 1))
	lastID, want, reconnects := "", 0, 0
	for want < events {
		ctx, cancel := context.WithCancel(context.Background())
		req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL, nil)
		if lastID != "" {
			req.Header.Set("Last-Event-ID", lastID)
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			cancel()
			return err
		}
		if lastID == "" {
			ready <- struct{}{}
			lastID = "connected" // the first stream sees everything live
		}
		r := ssetest.NewReader(resp.Body)
		for stay := 1 + rng.IntN(300); stay > 0 && want < events; stay-- {
			ev, err := r.Next()
			if err != nil {
				cancel()
				resp.Body.Close()
				return fmt.Errorf("client %d: %v after event %d", seed, err, want-1)
			}
			if ev.Type == ResetEvent || ev.Data != strconv.Itoa(want) {
				cancel()
				resp.Body.Close()
				return fmt.Errorf("client %d after %d reconnects: got %+v, want event %d", seed, reconnects, ev, want)
			}
			want++
			lastID = ev.LastEventID
		}
		cancel()
		resp.Body.Close()
		reconnects++
	}
	srv.Client().CloseIdleConnections()
	return nil
}

// readCounter counts the bytes read from the connections it accepts.
type readCounter struct {
	net.Listener
	read atomic.Int64
}

func (l *readCounter) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &countedConn{Conn: c, n: &l.read}, nil
}

type countedConn struct {
	net.Conn
	n *atomic.Int64
}

func (c *countedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// rawStream is a loopback client with no goroutine of its own until it reads:
// a raw connection and the response, without http.Transport.
type rawStream struct {
	conn net.Conn
	body *bufio.Reader
}

func dialStream(addr string) (*rawStream, error) {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	req, _ := http.NewRequest("GET", "http://"+addr+"/", nil)
	if err := req.Write(conn); err != nil {
		conn.Close()
		return nil, err
	}
	resp, err := http.ReadResponse(bufio.NewReaderSize(conn, 512), req)
	if err != nil {
		conn.Close()
		return nil, err
	}
	return &rawStream{conn: conn, body: bufio.NewReaderSize(resp.Body, 4096)}, nil
}

// fdBound returns n, or fewer if this process cannot open both ends of n
// connections (a container may cap RLIMIT_NOFILE even for root): the
// benchmark's name then says how many it ran.
func fdBound(n int) int {
	var lim syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim) == nil && uint64(2*n+1000) > lim.Max {
		return max(int(lim.Max)/2-500, 1)
	}
	return n
}

// raiseFileLimit lets one process hold both ends of n connections.
func raiseFileLimit(b *testing.B, n int) {
	var lim syscall.Rlimit
	_ = syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim)
	if want := uint64(2*n + 1000); lim.Cur < want {
		lim.Cur, lim.Max = want, max(lim.Max, want)
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			b.Skipf("%d connections need %d file descriptors: %v", n, want, err)
		}
	}
}

// ---- Helpers: a Broker's insides -----------------------------------------

// epochOf returns the epoch of b's history.
func epochOf(b *Broker) string { return b.hist.Load().epoch }

// headOf returns the offset of the newest event in b's history.
func headOf(b *Broker) uint64 { return b.hist.Load().head.Load() }

// pumps counts the goroutines running pumpPool.pump, in any Broker.
func pumps() int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			return strings.Count(string(buf[:n]), "sse.(*pumpPool).pump(")
		}
		buf = make([]byte, 2*len(buf))
	}
}

// publishN publishes n events with data prefix0, prefix1, ...
func publishN(t *testing.T, b *Broker, prefix string, n int) {
	t.Helper()
	for i := range n {
		if err := b.Publish(Event{Data: prefix + strconv.Itoa(i)}); err != nil {
			t.Fatal(err)
		}
	}
}

// endedSum adds up every reason streams ended for.
func endedSum(e Ends) uint64 {
	return e.ClientLeft + e.WriteTimeout + e.FellBehind + e.Closed + e.RefusedFull + e.RefusedClosed + e.LogFailed + e.Failed
}

// stackInUse returns the bytes of goroutine stacks in use, after a GC (which
// frees the stacks of goroutines that have exited).
func stackInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.StackInuse
}

// memInUse returns the bytes of heap and goroutine stacks in use, after two
// GCs (the second frees what the first's finalizers let go).
func memInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse + m.StackInuse
}

// heapInUse returns the bytes of heap in use, after a GC. (Each of these
// reads runtime.MemStats in its own frame: passing the 5 KiB struct around
// grows and shrinks the caller's stack, which moves the stack figures.)
func heapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

// mallocs returns how many heap objects every goroutine has allocated so far.
func mallocs() uint64 {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.Mallocs
}

// withGap returns a Broker on a memLog, served, with one client, whose feed
// has skipped the n events just published ("missed 0", "missed 1", ...):
// the feed's next delivery finds a gap.
func withGap(t *testing.T, n int) (*memLog, *Broker, *client) {
	t.Helper()
	log := newMemLog()
	b := NewBroker(&BrokerOptions{Log: log})
	srv := brokerServer(t, b)
	cl := connect(t, srv.Client(), srv.URL, "")
	log.mute.Store(true)
	publishN(t, b, "missed ", n)
	waitFor(t, "the feed to skip them", func() bool { return log.passed.Load() == uint64(n) })
	log.mute.Store(false)
	return log, b, cl
}

// ---- Helpers: a Log in memory --------------------------------------------

// memLog is a Log in memory, standing in for one outside the process (Redis
// Streams, a table). It numbers events, keeps the newest keep of them (all,
// for 0), and hands them to each follower from a goroutine of its own, as a
// subscription would. Its hooks make it misbehave.
type memLog struct {
	mu      sync.Mutex
	epoch   string
	events  [][]byte      // events[i] is at offset first+i
	first   uint64        // offset of events[0]
	keep    int           // how many events it keeps; 0: all
	changed chan struct{} // closed and replaced at every change

	onAppend func(ctx context.Context) error // runs first in Append
	onRead   func(ctx context.Context) error // runs first in ReadAfter
	read     func(after Position, max int) ([][]byte, Position, error)
	mute     atomic.Bool   // followers skip events, as a subscription that lost messages
	follows  atomic.Int32  // Follows running
	passed   atomic.Uint64 // offset of the last event a follower delivered or skipped
}

func newMemLog() *memLog {
	return &memLog{epoch: newEpoch(), first: 1, changed: make(chan struct{})}
}

// headLocked returns the position of the newest event.
func (m *memLog) headLocked() Position {
	return Position{m.epoch, m.first + uint64(len(m.events)) - 1}
}

func (m *memLog) notifyLocked() {
	close(m.changed)
	m.changed = make(chan struct{})
}

func (m *memLog) Append(ctx context.Context, wire []byte) (Position, error) {
	if m.onAppend != nil {
		if err := m.onAppend(ctx); err != nil {
			return Position{}, err
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.events = append(m.events, wire)
	if m.keep > 0 && len(m.events) > m.keep {
		m.events = m.events[1:]
		m.first++
	}
	m.notifyLocked()
	return m.headLocked(), nil
}

func (m *memLog) ReadAfter(ctx context.Context, after Position, max int) ([][]byte, Position, error) {
	if m.onRead != nil {
		if err := m.onRead(ctx); err != nil {
			return nil, Position{}, err
		}
	}
	if m.read != nil {
		return m.read(after, max)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	head := m.headLocked()
	if after.Epoch != m.epoch || after.Offset+1 < m.first || after.Offset >= head.Offset {
		return nil, head, nil
	}
	var wires [][]byte
	for i, n := after.Offset+1-m.first, 0; i < uint64(len(m.events)) && n < max; i++ {
		wires = append(wires, m.events[i])
		n += len(m.events[i])
	}
	return wires, head, nil
}

func (m *memLog) Follow(deliver func(Position, []byte)) (stop func()) {
	quit, done := make(chan struct{}), make(chan struct{})
	m.follows.Add(1)
	go func() {
		defer close(done)
		defer m.follows.Add(-1)
		m.mu.Lock()
		at, changed := m.headLocked(), m.changed
		m.mu.Unlock()
		deliver(at, nil)
		for {
			select {
			case <-quit:
				return
			case <-changed:
			}
			m.mu.Lock()
			head, events, first := m.headLocked(), m.events, m.first
			changed = m.changed
			m.mu.Unlock()
			if head.Epoch != at.Epoch {
				at = Position{head.Epoch, first - 1}
				if len(events) == 0 {
					deliver(head, nil)
				}
			}
			for ; at.Offset < head.Offset; at.Offset++ {
				if i := at.Offset + 1 - first; i < uint64(len(events)) && !m.mute.Load() {
					deliver(Position{at.Epoch, at.Offset + 1}, events[i])
				}
				m.passed.Store(at.Offset + 1)
			}
		}
	}()
	return func() { close(quit); <-done }
}

// trim drops the events before offset from.
func (m *memLog) trim(from uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.events = m.events[from-m.first:]
	m.first = from
}

// lose forgets every event and starts a new epoch, as a Redis that
// restarted without persistence.
func (m *memLog) lose() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.epoch, m.events, m.first = newEpoch(), nil, 1
	m.notifyLocked()
}

func (m *memLog) head() Position {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.headLocked()
}
