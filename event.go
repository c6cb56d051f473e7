package sse

import (
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/lightsse/sse/internal/wire"
)

// Errors returned for an Event or comment that cannot be written as the client
// would read it. Each names one field; test for them with [errors.Is]. The
// error's text says what in the field is wrong.
var (
	// ErrInvalidID: the ID holds CR, LF or NUL (a client would read a different
	// id, or ignore it), or is not valid UTF-8.
	ErrInvalidID = errors.New("sse: invalid id field")
	// ErrInvalidType: the Type holds CR or LF (it would inject fields), or is not
	// valid UTF-8.
	ErrInvalidType = errors.New("sse: invalid event field")
	// ErrInvalidData: the Data is not valid UTF-8 (a client would read U+FFFD).
	ErrInvalidData = errors.New("sse: invalid data field")
	// ErrInvalidRetry: the Retry is negative, or positive but under one
	// millisecond (the field carries whole milliseconds).
	ErrInvalidRetry = errors.New("sse: invalid retry field")
	// ErrInvalidComment: the comment text is not valid UTF-8.
	ErrInvalidComment = errors.New("sse: invalid comment")
)

// Event is one server-sent event. The zero Event is valid: it is a "message"
// with empty data.
//
// A client reads back exactly ID, Type and Data, with one documented loss: a
// CR or CRLF inside Data arrives as LF, because the format has only one kind
// of line break.
type Event struct {
	// ID becomes the client's last event ID, which the browser sends back in the
	// Last-Event-ID header when it reconnects. "" writes no id field and leaves
	// the client's last event ID as it was. It must not hold CR, LF or NUL.
	// Keep it under 128 bytes of URL-safe characters if clients reconnect across
	// origins: longer or unsafe values make the browser send a CORS preflight.
	// Keep control bytes out of it too: the browser sends it back in the
	// Last-Event-ID header, and net/http answers a header that holds one (tab
	// aside) with 400, after which the browser gives up. (Broker.Publish
	// refuses such an ID.)
	ID string
	// Type is the event name a client listens for with addEventListener; ""
	// means "message" (onmessage). It must not hold CR or LF. Avoid "open" and
	// "error": EventSource fires events of those names itself.
	Type string
	// Data is the payload. It is written as one data line per line of Data,
	// split at CRLF, LF and lone CR, so any text arrives whole.
	Data string
	// Retry, when positive, tells the client how long to wait before it
	// reconnects. It is written in whole milliseconds (truncated). 0 omits it.
	Retry time.Duration
}

// validate reports the first field of e that cannot be written faithfully.
func (e *Event) validate() error {
	if e.plain() {
		return nil
	}
	return e.validateExact()
}

// validateExact is validate without the plain shortcut: it checks each field
// byte by byte and says what is wrong.
func (e *Event) validateExact() error {
	if i, c := scanField(e.ID, true); i >= 0 {
		return fieldError(ErrInvalidID, "byte %d is %q", i, c)
	} else if i == invalidUTF8 {
		return fieldError(ErrInvalidID, "not valid UTF-8")
	}
	if i, c := scanField(e.Type, false); i >= 0 {
		return fieldError(ErrInvalidType, "byte %d is %q", i, c)
	} else if i == invalidUTF8 {
		return fieldError(ErrInvalidType, "not valid UTF-8")
	}
	if !utf8.ValidString(e.Data) {
		return fieldError(ErrInvalidData, "not valid UTF-8")
	}
	if e.Retry < 0 {
		return fieldError(ErrInvalidRetry, "%v is negative", e.Retry)
	}
	if e.Retry > 0 && e.Retry < time.Millisecond {
		return fieldError(ErrInvalidRetry, "%v is under one millisecond", e.Retry)
	}
	return nil
}

// invalidUTF8 is what scanField returns for a field that is not valid UTF-8.
const invalidUTF8 = -2

// scanField returns the index and value of the first CR or LF in s (or NUL,
// if nul is set); else invalidUTF8 if s is not valid UTF-8; else -1. One pass
// over the bytes: ids and event names are short.
func scanField(s string, nul bool) (int, byte) {
	var seen byte // every byte ORed: its high bit says whether any is non-ASCII
	for i := 0; i < len(s); i++ {
		c := s[i]
		seen |= c
		if c <= '\r' && (c == '\r' || c == '\n' || (c == 0 && nul)) {
			return i, c
		}
	}
	if seen >= utf8.RuneSelf && !utf8.ValidString(s) {
		return invalidUTF8, 0
	}
	return -1, 0
}

// AppendText appends the event's wire form to b and returns the extended
// slice: an id, event and retry line for each field that is set, one data line
// per line of Data (at least one), and the blank line that dispatches the
// event. Lines end in LF and every field name is followed by ": ".
//
// If a field cannot be written faithfully, AppendText returns b unchanged and
// an error that matches one of ErrInvalidID, ErrInvalidType, ErrInvalidData or
// ErrInvalidRetry. It allocates only when b lacks room.
//
// AppendText implements [encoding.TextAppender].
func (e Event) AppendText(b []byte) ([]byte, error) {
	// The test is e.plain(), written out: calling plain (a frame, and e moved
	// to memory) made BenchmarkEncode's x-raw ratio about 0.15 worse.
	if (e.Retry == 0 || e.Retry >= time.Millisecond) &&
		(notPlain(e.ID)|notPlain(e.Type)|notPlain(e.Data))&highBits == 0 {
		return e.appendPlain(b), nil
	}
	if err := e.validateExact(); err != nil {
		return b, err
	}
	return e.appendWire(b), nil
}

// plain reports whether e is valid and has a one-line Data because every byte
// of ID, Type and Data is in 0x0E-0x7F (ASCII without CR, LF, NUL or other low
// control bytes) and Retry is 0 or at least a millisecond. Most events are
// plain; for them, AppendText and validate skip the exact checks, and
// AppendText the line splitting. False only means "take the exact path": a
// tab, for one, is fine in every field. AppendText repeats this test.
func (e *Event) plain() bool {
	if e.Retry != 0 && e.Retry < time.Millisecond {
		return false
	}
	return (notPlain(e.ID)|notPlain(e.Type)|notPlain(e.Data))&highBits == 0
}

// appendPlain appends the wire form of e, which is plain: what appendWire
// writes, with Data as the one line it is.
func (e *Event) appendPlain(b []byte) []byte {
	b = e.appendHead(b)
	b = append(b, "data: "...)
	b = append(b, e.Data...)
	return append(b, "\n\n"...)
}

// Words of 8 bytes for notPlain.
const (
	highBits  = 0x8080808080808080 // the high bit of each byte
	plainLow  = 0x0E0E0E0E0E0E0E0E // 0x0E, the lowest plain byte, in each byte
	plainWord = 0x2020202020202020 // spaces, which are plain, in each byte
	plainFill = 0x2020202020000000 // spaces in the top 5 bytes, to pad 3 bytes
)

// notPlain returns a word with some byte's high bit set (&highBits != 0) if a
// byte of s is below 0x0E or at least 0x80, and with none set otherwise: it is
// plain's check of one field.
//
// It reads s eight bytes at a time as a word x and tests the 8 at once. A byte
// at or above 0x80 sets its own high bit in x. The least significant byte
// below 0x0E, if there is one, borrows in x-plainLow (the bytes below it, all
// at least 0x0E, lend nothing), which sets its high bit in the difference.
// With every byte in 0x0E-0x7F there is no borrow, and every byte of x and of
// x-plainLow is below 0x80. So (x-plainLow)|x has a high bit set exactly when
// x holds a byte outside 0x0E-0x7F, and the results for all words are ORed.
// Words may overlap: reading a byte twice changes nothing.
func notPlain(s string) uint64 {
	n := len(s)
	if n < 8 { // as ids and event names often are: one word
		x := uint64(plainWord) // for an empty s
		switch {
		case n >= 4: // two loads of 4 that overlap
			x = uint64(load32(s)) | uint64(load32(s[n-4:]))<<32
		case n > 0: // s[0], s[n/2] and s[n-1] are all the bytes
			x = plainFill | uint64(s[0]) | uint64(s[n/2])<<8 | uint64(s[n-1])<<16
		}
		return (x - plainLow) | x
	}
	var acc uint64
	i := 0
	for ; i <= n-32; i += 32 {
		w := s[i : i+32]
		a, b, c, d := load64(w), load64(w[8:]), load64(w[16:]), load64(w[24:])
		// Grouped as a tree, not a chain, so that the CPU can work on the
		// four words at once.
		acc |= ((a - plainLow) | a | (b - plainLow) | b) | ((c - plainLow) | c | (d - plainLow) | d)
	}
	for ; i < n-8; i += 8 {
		x := load64(s[i : i+8])
		acc |= (x - plainLow) | x
	}
	x := load64(s[n-8:]) // the last 8 bytes, which may overlap those read
	return acc | (x - plainLow) | x
}

// load64 returns s[0:8] as a little-endian word. The compiler makes it a
// single load, without package unsafe.
func load64(s string) uint64 {
	_ = s[7]
	return uint64(s[0]) | uint64(s[1])<<8 | uint64(s[2])<<16 | uint64(s[3])<<24 |
		uint64(s[4])<<32 | uint64(s[5])<<40 | uint64(s[6])<<48 | uint64(s[7])<<56
}

// load32 returns s[0:4] as a little-endian word, in one load as load64.
func load32(s string) uint32 {
	_ = s[3]
	return uint32(s[0]) | uint32(s[1])<<8 | uint32(s[2])<<16 | uint32(s[3])<<24
}

// appendWire appends the wire form of e, which has been validated.
func (e *Event) appendWire(b []byte) []byte {
	b = e.appendHead(b)
	b = appendLines(b, "data: ", e.Data)
	return append(b, '\n')
}

// appendHead appends the lines before the data: id, event and retry, each if
// set.
func (e *Event) appendHead(b []byte) []byte {
	if e.ID != "" {
		b = wire.AppendField(b, "id: ", e.ID)
	}
	if e.Type != "" {
		b = wire.AppendField(b, "event: ", e.Type)
	}
	if e.Retry > 0 {
		b = wire.AppendRetryField(b, e.Retry)
	}
	return b
}

// MarshalText returns the event's wire form, as AppendText does, in a new
// slice. It implements [encoding.TextMarshaler].
func (e Event) MarshalText() ([]byte, error) {
	return e.AppendText(make([]byte, 0, len(e.ID)+len(e.Type)+len(e.Data)+48))
}

// appendComment appends text as comment lines, each starting with ": ", split
// at line breaks as Data is. Clients ignore comments; proxies see traffic.
func appendComment(b []byte, text string) ([]byte, error) {
	if !utf8.ValidString(text) {
		return b, fieldError(ErrInvalidComment, "not valid UTF-8")
	}
	if text == "" {
		return append(b, ":\n"...), nil
	}
	return appendLines(b, ": ", text), nil
}

// appendLines appends one line per line of text, each starting with prefix.
// CRLF, LF and lone CR each end a line; text that ends in a break is followed
// by an empty line, so the client reads the trailing break back.
//
// It finds breaks with IndexByte, which scans many bytes per instruction, and
// remembers the next LF, so that each byte is scanned once even in text made
// of many lone CRs.
func appendLines(b []byte, prefix, text string) []byte {
	lf := strings.IndexByte(text, '\n') // the next LF in text, or -1
	for {
		end := lf
		if end < 0 {
			end = len(text)
		}
		i := strings.IndexByte(text[:end], '\r')
		if i < 0 {
			i = lf
		}
		if i < 0 {
			return wire.AppendField(b, prefix, text)
		}
		b = wire.AppendField(b, prefix, text[:i])
		next := i + 1
		if text[i] == '\r' && next < len(text) && text[next] == '\n' {
			next++
		}
		text = text[next:]
		if lf >= 0 {
			if lf -= next; lf < 0 {
				lf = strings.IndexByte(text, '\n')
			}
		}
	}
}

// fieldError wraps one of the field sentinels with what is wrong in the field.
func fieldError(sentinel error, format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{sentinel}, args...)...)
}
