// Package wire holds what the sse packages write on an event stream besides
// the events themselves, and how they write it: the stream's own lines (the
// heartbeat, a retry, an id line, the opening of a new client's stream), the
// checks on encoded events that come back from a Log, and a Stream that
// writes bytes to one response and flushes them under a write deadline.
//
// Events are encoded by sse.Event.AppendText; this package builds the other
// lines, so that every byte of the format comes from one of those two places.
package wire

import (
	"bytes"
	"strconv"
	"time"
)

// Heartbeat is the comment sent after a silence: clients ignore it, and
// proxies see traffic.
var Heartbeat = []byte(":\n")

// AppendField appends one line: prefix, value, LF. The value holds no break.
func AppendField(b []byte, prefix, value string) []byte {
	b = append(b, prefix...)
	b = append(b, value...)
	return append(b, '\n')
}

// AppendRetryField appends a retry line: d in whole milliseconds (truncated),
// which must be at least one.
func AppendRetryField(b []byte, d time.Duration) []byte {
	b = append(b, "retry: "...)
	b = strconv.AppendInt(b, d.Milliseconds(), 10)
	return append(b, '\n')
}

// AppendRetry appends a retry line and a blank line: it sets the client's
// reconnection delay and dispatches nothing. It appends nothing for d <= 0.
func AppendRetry(b []byte, d time.Duration) []byte {
	if d <= 0 {
		return b
	}
	return append(AppendRetryField(b, d), '\n')
}

// AppendPosition appends the id of the event at offset in epoch: epoch, a
// dash, offset.
func AppendPosition(b []byte, epoch string, offset uint64) []byte {
	b = append(b, epoch...)
	b = append(b, '-')
	return strconv.AppendUint(b, offset, 10)
}

// AppendIDLine appends the id line of the event at offset in epoch, which a
// Broker writes before an event that it numbered.
func AppendIDLine(b []byte, epoch string, offset uint64) []byte {
	return append(AppendPosition(append(b, "id: "...), epoch, offset), '\n')
}

// IDLineLen is the longest line AppendIDLine appends for an epoch of n bytes.
func IDLineLen(n int) int { return len("id: -\n") + n + 20 } // 20: the digits of the largest offset

// AppendPlace appends an id line alone and a blank line: it sets the client's
// last event ID and dispatches nothing, since the data buffer is empty.
func AppendPlace(b []byte, epoch string, offset uint64) []byte {
	return append(AppendIDLine(b, epoch, offset), '\n')
}

// OwnID returns the id that a publisher gave the event encoded in wire, if it
// gave one: sse.Event.AppendText writes the id line first.
func OwnID(wire []byte) (string, bool) {
	const prefix = "id: "
	if len(wire) < len(prefix) || string(wire[:len(prefix)]) != prefix {
		return "", false
	}
	rest := wire[len(prefix):]
	end := bytes.IndexByte(rest, '\n')
	if end < 0 {
		return "", false
	}
	return string(rest[:end]), true
}

// OneEvent reports whether wire has the shape of one encoded event, as a Log
// must hand it back: lines ending in LF, no CR, the one blank line at the end.
func OneEvent(wire []byte) bool {
	n := len(wire)
	return n >= 2 && bytes.Index(wire, []byte("\n\n")) == n-2 && bytes.IndexByte(wire, '\r') < 0
}

// HeaderUnsafe returns the index of the first byte of v that net/http refuses
// in a header value (a control byte other than tab: below 0x20, or 0x7f; see
// golang.org/x/net/http/httpguts.ValidHeaderFieldValue), or -1 if there is
// none. A server answers a Last-Event-ID holding one with 400, and a client
// cannot send it.
func HeaderUnsafe(v string) int {
	for i := 0; i < len(v); i++ {
		if c := v[i]; (c < ' ' && c != '\t') || c == 0x7f {
			return i
		}
	}
	return -1
}

// ResetType is the type of the event a Broker sends a client whose history
// it cannot give whole (ssebroker.ResetEvent).
const ResetType = "reset"

// AppendReset appends a reset event: id the position (epoch, offset) where
// the stream goes on, and as data the id after which events were lost
// (valid UTF-8 without CR, LF or NUL, as sse.LastEventID returns it).
func AppendReset(b []byte, epoch string, offset uint64, after string) []byte {
	b = AppendIDLine(b, epoch, offset)
	b = AppendField(b, "event: ", ResetType)
	return append(AppendField(b, "data: ", after), '\n')
}
