package ssetest

import (
	"math"
	"reflect"
	"testing"
	"time"
)

// The parser is checked against the examples in the WHATWG standard's
// "Server-sent events" section, which nobody on this project wrote.
func TestStandardExamples(t *testing.T) {
	tests := []struct {
		name   string
		stream string
		want   []Event
		lastID string
	}{
		{
			name:   "stock ticker: data lines join with LF",
			stream: "data: YHOO\ndata: +2\ndata: 10\n\n",
			want:   []Event{{Type: "message", Data: "YHOO\n+2\n10"}},
		},
		{
			name: "comment, id set then reset, one leading space removed",
			stream: ": test stream\n\ndata: first event\nid: 1\n\n" +
				"data:second event\nid\n\ndata:  third event\n\n",
			want: []Event{
				{Type: "message", Data: "first event", LastEventID: "1"},
				{Type: "message", Data: "second event", LastEventID: ""},
				{Type: "message", Data: " third event", LastEventID: ""},
			},
		},
		{
			name:   "empty data, a lone newline, and an unterminated block dropped",
			stream: "data\n\ndata\ndata\n\ndata:",
			want:   []Event{{Type: "message", Data: ""}, {Type: "message", Data: "\n"}},
		},
		{
			name:   "the space after the colon is optional",
			stream: "data:test\n\ndata: test\n\n",
			want:   []Event{{Type: "message", Data: "test"}, {Type: "message", Data: "test"}},
		},
		{
			name:   "CR, CRLF and LF all end lines; a BOM is skipped",
			stream: "\uFEFFevent: a\rdata: 1\r\ndata: 2\n\r\n",
			want:   []Event{{Type: "a", Data: "1\n2"}},
		},
		{
			name:   "an id with NUL is ignored; the last id persists",
			stream: "id: 7\ndata: a\n\nid: x\x00y\ndata: b\n\n",
			want:   []Event{{Type: "message", Data: "a", LastEventID: "7"}, {Type: "message", Data: "b", LastEventID: "7"}},
			lastID: "7",
		},
		{
			name:   "field names are case-sensitive; unknown fields are ignored",
			stream: "Data: no\nfoo: bar\ndata: yes\n\n",
			want:   []Event{{Type: "message", Data: "yes"}},
		},
		{
			name:   "an id with no data sets the last event ID at the blank line",
			stream: "id: 9\n\n",
			lastID: "9",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, r := Parse(tt.stream)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("events = %q\nwant     %q", got, tt.want)
			}
			if r.LastEventID != tt.lastID {
				t.Errorf("LastEventID = %q, want %q", r.LastEventID, tt.lastID)
			}
		})
	}
}

func TestRetry(t *testing.T) {
	for stream, want := range map[string]time.Duration{
		"retry: 2500\n":                    2500 * time.Millisecond,
		"retry: 100\nretry:\n":             100 * time.Millisecond, // empty: ignored
		"retry: -1\n":                      0,
		"retry: 1.5\n":                     0,
		"retry:  5\n":                      0,             // a second space is part of the value
		"retry: 9223372036854775\n":        math.MaxInt64, // too long for a Duration
		"retry: 99999999999999999999999\n": math.MaxInt64, // too long for an int64
		"retry: 9223372036854\n":           9223372036854 * time.Millisecond,
	} {
		if _, r := Parse(stream); r.Retry != want {
			t.Errorf("%q: Retry = %v, want %v", stream, r.Retry, want)
		}
	}
}

func TestPendingAtEOF(t *testing.T) {
	if _, r := Parse("data: cut"); !r.Pending {
		t.Error("a line without its end: Pending = false, want true")
	}
	if _, r := Parse("data: cut\n"); !r.Pending {
		t.Error("an event without its blank line: Pending = false, want true")
	}
	if _, r := Parse("data: whole\n\n"); r.Pending {
		t.Error("a whole event: Pending = true, want false")
	}
	if _, r := Parse("\uFEFF"); r.Pending {
		t.Error("a BOM alone, which decodes to nothing: Pending = true, want false")
	}
	if _, r := Parse("\xEF\xBB"); !r.Pending {
		t.Error("a BOM cut short, which decodes to U+FFFD: Pending = false, want true")
	}
}

func TestDecodeUTF8LikeWHATWG(t *testing.T) {
	for in, want := range map[string]string{
		"a\xff\xffb":       "a\uFFFD\uFFFDb",     // two invalid bytes: two replacements
		"\xe2\x82":         "\uFFFD",             // a cut-short sequence: one
		"\xe2\x82x":        "\uFFFDx",            //
		"\xed\xa0\x80":     "\uFFFD\uFFFD\uFFFD", // a surrogate: ED, then two lone continuations
		"\xf0\x9f\x98\x80": "😀",
		"\xc0\xaf":         "\uFFFD\uFFFD", // an overlong form
	} {
		if got := decodeUTF8([]byte(in)); got != want {
			t.Errorf("decode %q = %q, want %q", in, got, want)
		}
	}
	if ev, _ := Parse("data: a\xff\xffb\n\n"); ev[0].Data != "a\uFFFD\uFFFDb" {
		t.Errorf("parsed %q", ev[0].Data)
	}
}
