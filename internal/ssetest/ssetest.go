// Package ssetest reads text/event-stream as a browser does, following the
// WHATWG HTML standard's "event stream interpretation" step by step, so tests
// can check what a client would receive rather than what bytes were written.
package ssetest

import (
	"bufio"
	"bytes"
	"io"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Event is a dispatched event as EventSource hands it to a page.
type Event struct {
	Type        string // "message" when the stream named none
	Data        string
	LastEventID string // the source's last event ID when this event was dispatched
}

// Reader parses a stream incrementally. Its exported fields are the state the
// standard keeps on the EventSource, readable between calls to Next.
type Reader struct {
	// LastEventID is the source's last event ID string: set at each dispatch
	// from the id buffer, and sent as Last-Event-ID on reconnection.
	LastEventID string
	// Retry is the reconnection time set by the last valid retry field, or 0.
	Retry time.Duration
	// Comments counts the comment lines read so far.
	Comments int
	// Pending reports whether fields have been read since the last dispatch:
	// at io.EOF, a true Pending means an event was cut off and discarded.
	Pending bool

	br      *bufio.Reader
	started bool // past the optional leading BOM
	skipLF  bool // the last line ended in CR: a following LF is part of it
	data    strings.Builder
	typ     string
	idBuf   string
	line    []byte
}

// NewReader returns a Reader that parses the stream r.
func NewReader(r io.Reader) *Reader {
	return &Reader{br: bufio.NewReaderSize(r, 64<<10)}
}

// Next returns the next dispatched event. At the end of the stream it returns
// io.EOF (a partial event is discarded, as the standard says); a read error
// is returned as it is.
func (r *Reader) Next() (Event, error) {
	for {
		line, err := r.readLine()
		if err != nil {
			return Event{}, err
		}
		if ev, ok := r.processLine(line); ok {
			return ev, nil
		}
	}
}

// readLine returns the next line without its end (CRLF, LF or CR), decoded
// as UTF-8 with invalid bytes replaced by U+FFFD.
func (r *Reader) readLine() (string, error) {
	r.line = r.line[:0]
	for {
		if r.br.Buffered() == 0 {
			if _, err := r.br.Peek(1); err != nil {
				if err == io.EOF && len(r.line) > 0 && r.decode() != "" {
					r.Pending = true // a line with no end: never processed
				}
				return "", err
			}
		}
		buf, _ := r.br.Peek(r.br.Buffered())
		if r.skipLF {
			r.skipLF = false
			if buf[0] == '\n' {
				_, _ = r.br.Discard(1)
				continue
			}
		}
		i := bytes.IndexAny(buf, "\r\n")
		if i < 0 {
			r.line = append(r.line, buf...)
			_, _ = r.br.Discard(len(buf))
			continue
		}
		r.line = append(r.line, buf[:i]...)
		r.skipLF = buf[i] == '\r' // a CR may be the first half of a CRLF
		_, _ = r.br.Discard(i + 1)
		return r.decode(), nil
	}
}

func (r *Reader) decode() string {
	s := decodeUTF8(r.line)
	if !r.started {
		r.started = true
		s = strings.TrimPrefix(s, "\uFEFF")
	}
	return s
}

// decodeUTF8 decodes b as the WHATWG Encoding standard's UTF-8 decoder does:
// each maximal invalid subsequence becomes one U+FFFD. A line break is never
// part of a sequence, so decoding line by line equals decoding the stream.
func decodeUTF8(b []byte) string {
	if utf8.Valid(b) {
		return string(b)
	}
	var out strings.Builder
	var cp rune
	needed, seen := 0, 0
	lower, upper := byte(0x80), byte(0xBF)
	for i := 0; i < len(b); i++ {
		c := b[i]
		if needed == 0 {
			switch {
			case c <= 0x7F:
				out.WriteByte(c)
			case c >= 0xC2 && c <= 0xDF:
				needed, cp = 1, rune(c&0x1F)
			case c >= 0xE0 && c <= 0xEF:
				if c == 0xE0 {
					lower = 0xA0
				} else if c == 0xED {
					upper = 0x9F
				}
				needed, cp = 2, rune(c&0x0F)
			case c >= 0xF0 && c <= 0xF4:
				if c == 0xF0 {
					lower = 0x90
				} else if c == 0xF4 {
					upper = 0x8F
				}
				needed, cp = 3, rune(c&0x07)
			default:
				out.WriteRune(utf8.RuneError)
			}
			continue
		}
		if c < lower || c > upper {
			// The sequence is cut short: one U+FFFD, and c starts afresh.
			needed, seen, cp = 0, 0, 0
			lower, upper = 0x80, 0xBF
			out.WriteRune(utf8.RuneError)
			i--
			continue
		}
		lower, upper = 0x80, 0xBF
		cp = cp<<6 | rune(c&0x3F)
		if seen++; seen == needed {
			out.WriteRune(cp)
			needed, seen, cp = 0, 0, 0
		}
	}
	if needed != 0 {
		out.WriteRune(utf8.RuneError)
	}
	return out.String()
}

// processLine applies one line; it reports an event when the line dispatches one.
func (r *Reader) processLine(line string) (Event, bool) {
	if line == "" {
		return r.dispatch()
	}
	if line[0] == ':' {
		r.Comments++
		return Event{}, false
	}
	r.Pending = true
	field, value, found := strings.Cut(line, ":")
	if found {
		value = strings.TrimPrefix(value, " ")
	}
	switch field {
	case "event":
		r.typ = value
	case "data":
		r.data.WriteString(value)
		r.data.WriteByte('\n')
	case "id":
		if !strings.Contains(value, "\x00") {
			r.idBuf = value
		}
	case "retry":
		if value != "" && strings.Trim(value, "0123456789") == "" {
			// Digits only: the standard sets the reconnection time to any
			// such value. One too long for a Duration gives the longest.
			ms, err := strconv.ParseInt(value, 10, 64)
			if err != nil || ms > math.MaxInt64/int64(time.Millisecond) {
				r.Retry = math.MaxInt64
			} else {
				r.Retry = time.Duration(ms) * time.Millisecond
			}
		}
	}
	return Event{}, false
}

func (r *Reader) dispatch() (Event, bool) {
	r.Pending = false
	r.LastEventID = r.idBuf
	if r.data.Len() == 0 {
		r.typ = ""
		return Event{}, false
	}
	data := strings.TrimSuffix(r.data.String(), "\n")
	ev := Event{Type: r.typ, Data: data, LastEventID: r.LastEventID}
	if ev.Type == "" {
		ev.Type = "message"
	}
	r.data.Reset()
	r.typ = ""
	return ev, true
}

// Parse reads a whole stream and returns the events it dispatches, and the
// Reader with the state the stream left.
func Parse(stream string) ([]Event, *Reader) {
	r := NewReader(strings.NewReader(stream))
	var events []Event
	for {
		ev, err := r.Next()
		if err != nil {
			return events, r
		}
		events = append(events, ev)
	}
}
