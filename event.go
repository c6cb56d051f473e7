package sse

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"iter"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
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

// appendChecked appends the wire form of e, which has been validated; plain
// is e.plain().
func (e *Event) appendChecked(b []byte, plain bool) []byte {
	if plain {
		return e.appendPlain(b)
	}
	return e.appendWire(b)
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
		b = appendField(b, "id: ", e.ID)
	}
	if e.Type != "" {
		b = appendField(b, "event: ", e.Type)
	}
	if e.Retry > 0 {
		b = appendRetryField(b, e.Retry)
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

// appendField appends one line: prefix, value, LF. The value holds no break.
func appendField(b []byte, prefix, value string) []byte {
	b = append(b, prefix...)
	b = append(b, value...)
	return append(b, '\n')
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
			return appendField(b, prefix, text)
		}
		b = appendField(b, prefix, text[:i])
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

// ---- The stream's own lines: heartbeat, retry, position, reset ----------
//
// Besides the events it is given, a stream carries lines of its own. They are
// built here, with the events, so that every byte of the format comes from
// this file.

// heartbeatLine is the comment sent after a silence: clients ignore it, and
// proxies see traffic.
var heartbeatLine = []byte(":\n")

// appendRetryField appends a retry line: d in whole milliseconds (truncated),
// which must be at least one.
func appendRetryField(b []byte, d time.Duration) []byte {
	b = append(b, "retry: "...)
	b = strconv.AppendInt(b, d.Milliseconds(), 10)
	return append(b, '\n')
}

// appendRetry appends a retry line and a blank line: it sets the client's
// reconnection delay and dispatches nothing. It appends nothing for d <= 0.
func appendRetry(b []byte, d time.Duration) []byte {
	if d <= 0 {
		return b
	}
	return append(appendRetryField(b, d), '\n')
}

// appendPosition appends p as an event id: epoch, dash, offset.
func appendPosition(b []byte, p Position) []byte {
	b = append(b, p.Epoch...)
	b = append(b, '-')
	return strconv.AppendUint(b, p.Offset, 10)
}

// appendIDLine appends the id line of the event at p, which a Broker writes
// before an event that it numbered.
func appendIDLine(b []byte, p Position) []byte {
	return append(appendPosition(append(b, "id: "...), p), '\n')
}

// appendPlace appends an id line alone and a blank line: it sets the client's
// last event ID to p and dispatches nothing, since the data buffer is empty.
func appendPlace(b []byte, p Position) []byte {
	return append(appendIDLine(b, p), '\n')
}

// appendReset appends the ResetEvent: id p, where the stream goes on, and as
// data the id after which events were lost (valid UTF-8 without CR, LF or
// NUL, as LastEventID returns it).
func appendReset(b []byte, p Position, after string) []byte {
	b = appendIDLine(b, p)
	b = appendField(b, "event: ", ResetEvent)
	return append(appendField(b, "data: ", after), '\n')
}

// ownID returns the id that a publisher gave the event encoded in wire, if it
// gave one: AppendText writes the id line first.
func ownID(wire []byte) (string, bool) {
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

// oneEvent reports whether wire has the shape of one encoded event, as a Log
// must hand it back: lines ending in LF, no CR, the one blank line at the end.
func oneEvent(wire []byte) bool {
	n := len(wire)
	return n >= 2 && bytes.Index(wire, []byte("\n\n")) == n-2 && bytes.IndexByte(wire, '\r') < 0
}

// fieldError wraps one of the field sentinels with what is wrong in the field.
func fieldError(sentinel error, format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{sentinel}, args...)...)
}

// ---- Reading: the other half of the wire format ---------------------------
//
// A Reader parses a stream as the WHATWG standard's "event stream
// interpretation" does, line by line, and decodes what it returns as the
// standard's UTF-8 decoder would. It is the inverse of AppendText: an Event
// that AppendText accepts comes back from a Reader as it was, except that CR
// and CRLF in Data come back as LF.

// DefaultMaxEventSize is the largest event a Reader accepts when its
// MaxEventSize is not set: 16 MiB, far above what real streams send (an LLM's
// tokens take tens of bytes, a large JSON document some hundreds of KiB), and
// a bound on the memory that a stream that never ends its event can take.
const DefaultMaxEventSize = 16 << 20

// ErrEventTooLarge is returned by [Reader.Next] for an event larger than the
// Reader's MaxEventSize. The Reader stops there: every later call returns the
// same error, since what follows cannot be told apart from the rest of the
// event.
var ErrEventTooLarge = errors.New("sse: event too large")

// A Reader reads events from a text/event-stream, exactly as a browser's
// EventSource parses it: lines end in CRLF, LF or CR (a CRLF split between
// two reads is one line end); a byte order mark is skipped at the start of
// the stream and nowhere else; a line with no colon is a field with an empty
// value; one space after the colon is dropped, and only one; an id that
// holds NUL is ignored, and so is a retry that is not all ASCII digits;
// invalid UTF-8 is read as U+FFFD, one for each maximal invalid sequence, as
// the WHATWG Encoding standard's decoder does; a blank line dispatches the
// event, unless it has no data line; field names are case-sensitive, and
// unknown fields are ignored.
//
// Each Event returned describes the lines of one event, as AppendText would
// write them:
//   - ID is the value of the event's last valid id field, or "" if it had
//     none (or an empty one). The stream's last event ID, which persists from
//     one event to the next as the standard says, is LastEventID.
//   - Type is the value of the event's event field, or "" if it had none; as
//     for AppendText, "" means "message". (A stream that says "event:
//     message" gets Type "message".)
//   - Data is the event's data lines, joined with LF.
//   - Retry is the value of the event's last valid retry field, or 0 if it
//     had none. The stream's reconnection time, which also changes with a
//     retry field in a block that dispatches nothing, is Retry.
//
// A Reader allocates little, and nothing for each line: the ID and Data of
// the events that arrive in one read share one string of at most 4 KiB (as
// encoding/csv's fields of one record share one), so that keeping one of
// them keeps at most 4 KiB of memory; Data of several lines, or over 4 KiB,
// gets a string of its own; and an event's Type is the string of the last
// event of that type. It buffers what it reads, so it may read past the last
// event returned. It is not safe for concurrent use.
type Reader struct {
	// MaxEventSize bounds one event: the bytes of its field lines, from its
	// first to the blank line that ends it, counting one byte for each line
	// end, and comments not at all. A single line, comments included, is
	// bounded likewise. Over the bound, Next returns an error that matches
	// ErrEventTooLarge. 0 (or less) means DefaultMaxEventSize. Set it before
	// the first call to Next.
	MaxEventSize int
	// OnComment, if not nil, is called from Next with the text of each
	// comment line (a line that starts with a colon), without the colon and
	// without the one space after it, if any: what Writer.Comment sent. A
	// heartbeat calls it with "". Clients ignore comments, so this is how a
	// caller sees that a quiet stream is still alive. It must not call Next.
	OnComment func(text string)

	src        io.Reader
	buf        []byte // buf[start:end] has been read and not yet parsed
	start, end int
	lf, cr     int   // index in buf of the next LF, CR at or after start, or -1
	lfScanned  int   // with lf == -1: buf[start:lfScanned] holds no LF
	crScanned  int   // with cr == -1: buf[start:crScanned] holds no CR
	srcErr     error // from src: returned once no whole line is left in buf
	err        error // returned by every call to Next from now on
	started    bool  // the first line, which may start with a BOM, is read
	skipLF     bool  // the last line ended in CR: an LF next belongs to it

	// The event being read. Its first data line and its id are left in buf,
	// at buf[dataAt:dataEnd] and buf[idAt:idEnd], until fill moves what buf
	// holds (or a second data line comes): most events have one data line,
	// which is then copied only into the string returned. They are kept as
	// indexes, not slices, since storing a pointer into the Reader costs a
	// write barrier while the garbage collector runs.
	size      int  // bytes of its field lines so far, one per line end
	pending   bool // it has a field line
	hasData   bool // it has a data line
	hasType   bool // it has an event field: its value is lastType
	hasID     bool // it has a valid id field
	dataInBuf bool
	idInBuf   bool
	dataAt    int
	dataEnd   int
	idAt      int
	idEnd     int
	data      []byte // its data lines, joined, when not in buf
	id        []byte // its id, when not in buf
	retry     time.Duration

	// chunk holds buf[chunkAt:chunkAt+len(chunk)], valid UTF-8, for text to
	// take the strings it returns from. noChunk: below it, text makes none.
	chunk   string
	chunkAt int
	noChunk int

	// The stream's state, kept from event to event.
	lastType     string // the last event field read, kept to reuse its string
	idBuf        string // the last event ID buffer
	lastID       string // the last event ID, set from idBuf at each blank line
	reconnect    time.Duration
	reconnectSet bool
}

const (
	// readBufferSize is the size of a Reader's first buffer. It grows for a
	// longer line.
	readBufferSize = 4096
	// maxKeptReadBuffer bounds the buffers a Reader keeps once the line or
	// event they grew for is read.
	maxKeptReadBuffer = 1 << 20
	// maxChunk bounds the strings that the values of several events share:
	// a value kept keeps at most this much memory.
	maxChunk = 4096
	// maxDuration is the longest time.Duration, which a longer retry gives.
	maxDuration = time.Duration(1<<63 - 1)
)

// bom is the UTF-8 byte order mark, which a stream may start with.
var bom = []byte("\uFEFF")

// NewReader returns a Reader that reads the stream from src.
func NewReader(src io.Reader) *Reader {
	return &Reader{src: src, lf: -1, cr: -1}
}

// Next returns the next event of the stream.
//
// At the end of the stream it returns io.EOF, or io.ErrUnexpectedEOF if the
// stream ended inside an event or a line: that event is discarded, as the
// standard says, and the error tells the caller that the stream was cut. An
// event over MaxEventSize gives an error matching ErrEventTooLarge. An error
// from the underlying reader is returned as it is, once the events read
// before it have been returned. After an error, every call returns the same
// error.
func (r *Reader) Next() (Event, error) {
	for r.err == nil {
		line, end := r.line()
		if end < 0 {
			r.fill()
			continue
		}
		if !r.process(line, end) {
			continue
		}
		// A blank line ended an event with data: return it. (Written out
		// here, not in a function: copying the Event out of one more
		// function cost this path a tenth of its time.)
		ev := Event{Retry: r.retry}
		if r.hasType {
			ev.Type = r.lastType
		}
		if r.hasID {
			r.updateIDBuf()
			ev.ID = r.idBuf
		}
		if r.dataInBuf {
			ev.Data = r.text(r.dataAt, r.dataEnd)
		} else {
			ev.Data = decodeString(r.data)
		}
		r.lastID = r.idBuf
		r.reset()
		return ev, nil
	}
	return Event{}, r.err
}

// Events returns an iterator over the rest of the stream's events, for use
// with range:
//
//	for ev, err := range r.Events() {
//		if err != nil {
//			return err
//		}
//		...
//	}
//
// It yields each event with a nil error. It ends after the last event of a
// stream that ends cleanly (Next's io.EOF is not yielded); otherwise it ends
// by yielding the error Next returned, with a zero Event.
func (r *Reader) Events() iter.Seq2[Event, error] {
	return func(yield func(Event, error) bool) {
		for {
			ev, err := r.Next()
			if err == io.EOF {
				return
			}
			if !yield(ev, err) || err != nil {
				return
			}
		}
	}
}

// LastEventID returns the stream's last event ID: the id set by the last id
// field before the last blank line, which persists across events until
// another id field changes it (an empty one resets it). A client that
// reconnects sends it in the Last-Event-ID header. It is "" until the stream
// sets one, or what SetLastEventID set.
func (r *Reader) LastEventID() string { return r.lastID }

// SetLastEventID sets the stream's last event ID, as a reconnecting client
// does for the new connection with the id it sent in Last-Event-ID: an event
// after it without an id field then leaves LastEventID as it was, as in a
// browser. Call it before the first call to Next.
func (r *Reader) SetLastEventID(id string) {
	r.idBuf = id
	r.lastID = id
}

// Retry returns the stream's reconnection time, set by the last valid retry
// field read (whether or not its event was dispatched), and whether any was
// read. A retry too long for a time.Duration gives the longest one.
func (r *Reader) Retry() (time.Duration, bool) { return r.reconnect, r.reconnectSet }

// limit returns the bound on an event's size.
func (r *Reader) limit() int {
	if r.MaxEventSize > 0 {
		return r.MaxEventSize
	}
	return DefaultMaxEventSize
}

// line returns the next whole line in the buffer, without its line end, and
// the index in buf where it ends; or -1 if the buffer holds no whole line.
// The line is valid until the next call to fill.
//
// It finds line ends with IndexByte, which scans many bytes per instruction,
// and remembers where the next LF and the next CR are, so that each byte is
// scanned at most once for each: a stream without CR costs one scan for CR
// per read, not one per line.
func (r *Reader) line() ([]byte, int) {
	if r.skipLF {
		if r.start == r.end {
			return nil, -1
		}
		r.skipLF = false
		if r.buf[r.start] == '\n' {
			r.start++
		}
	}
	if r.lf < r.start {
		r.lf, r.lfScanned = r.next('\n', r.lfScanned)
	}
	if r.cr < r.start && (r.cr >= 0 || r.crScanned < r.end) { // most streams have no CR
		r.cr, r.crScanned = r.next('\r', r.crScanned)
	}
	i := r.lf
	if uint(r.cr) < uint(i) { // the nearer of the two; -1 is the farthest
		i = r.cr
	}
	if i < 0 {
		return nil, -1
	}
	line := r.buf[r.start:i]
	r.start = i + 1
	if i == r.cr {
		if r.start == r.end {
			r.skipLF = true
		} else if r.buf[r.start] == '\n' {
			r.start++
		}
	}
	return line, i
}

// next returns the index of the first c in the buffer at or after start, or
// -1; scanned, and what it returns with -1, is how far the buffer is known
// to hold no c.
func (r *Reader) next(c byte, scanned int) (int, int) {
	from := max(r.start, scanned)
	if i := bytes.IndexByte(r.buf[from:r.end], c); i >= 0 {
		return from + i, scanned
	}
	return -1, r.end
}

// fill reads more of the stream into the buffer, which holds no whole line,
// or sets r.err: at the end of the stream, on a read error, or when the line
// in the buffer is already too long.
func (r *Reader) fill() {
	if r.srcErr != nil {
		r.err = r.srcErr
		// What is left is a line without its end, which is cut off, unless
		// it is the BOM of a stream that holds nothing else: decoded, that
		// stream is empty.
		partial := r.start < r.end && (r.started || !bytes.Equal(r.buf[r.start:r.end], bom))
		if r.err == io.EOF && (r.pending || partial) {
			r.err = io.ErrUnexpectedEOF
		}
		return
	}
	if err := r.checkPartial(); err != nil {
		r.err = err
		return
	}
	r.keepData()
	r.keepID()
	// Move the partial line to the front, or into a smaller buffer if a long
	// line grew this one; grow it if the partial line fills it.
	n := r.end - r.start
	shrink := len(r.buf) > maxKeptReadBuffer && n <= readBufferSize/2
	if r.start > 0 || shrink {
		dst := r.buf
		if shrink {
			dst = make([]byte, readBufferSize)
		}
		copy(dst, r.buf[r.start:r.end])
		// The buffer holds no whole line, so r.lf and r.cr are before
		// start: no use now.
		r.lf, r.cr = -1, -1
		r.chunk, r.chunkAt, r.noChunk = "", 0, 0 // holds what was there
		r.lfScanned = max(0, r.lfScanned-r.start)
		r.crScanned = max(0, r.crScanned-r.start)
		r.buf, r.start, r.end = dst, 0, n
	}
	if r.buf == nil {
		r.buf = make([]byte, readBufferSize)
	}
	if r.end == len(r.buf) {
		// checkPartial holds a partial line under limit()+3 bytes (a BOM
		// is not counted), so the buffer stays under limit()+4.
		buf := make([]byte, min(2*len(r.buf), r.limit()+4))
		copy(buf, r.buf[:r.end])
		r.buf = buf
	}
	for range 100 {
		n, err := r.src.Read(r.buf[r.end:])
		if n < 0 || n > len(r.buf)-r.end {
			r.srcErr = errors.New("sse: reader returned an invalid count")
			return
		}
		r.end += n
		if err != nil {
			r.srcErr = err
			return
		}
		if n > 0 {
			return
		}
	}
	r.srcErr = io.ErrNoProgress
}

// checkPartial returns an error if the partial line in the buffer already
// makes its line, or its event, too large: the line will be at least one byte
// longer, its line end.
func (r *Reader) checkPartial() error {
	p := r.buf[r.start:r.end]
	if n := min(len(p), len(bom)); !r.started && bytes.Equal(p[:n], bom[:n]) {
		p = p[n:] // a BOM, or the start of one
	}
	if len(p) == 0 {
		return nil
	}
	size := len(p) + 1
	if p[0] != ':' {
		size += r.size
	}
	if size > r.limit() {
		return r.tooLarge()
	}
	return nil
}

func (r *Reader) tooLarge() error {
	return fmt.Errorf("%w: over %d bytes", ErrEventTooLarge, r.limit())
}

// process applies one line, which ends at buf[end], as the standard's "event
// stream interpretation" says. It reports whether the line is a blank line
// that dispatches an event, which Next then returns.
func (r *Reader) process(line []byte, end int) bool {
	if !r.started {
		r.started = true
		line = bytes.TrimPrefix(line, bom)
	}
	if len(line) == 0 {
		if r.hasData {
			return true
		}
		// No event, but the last event ID is set all the same.
		if r.hasID {
			r.updateIDBuf()
		}
		r.lastID = r.idBuf
		r.reset()
		return false
	}
	if line[0] == ':' {
		if len(line)+1 > r.limit() {
			r.err = r.tooLarge()
		} else if r.OnComment != nil {
			text := line[1:]
			if len(text) > 0 && text[0] == ' ' {
				text = text[1:]
			}
			r.OnComment(decodeString(text))
		}
		return false
	}
	if r.size += len(line) + 1; r.size > r.limit() {
		r.err = r.tooLarge()
		return false
	}
	r.pending = true
	// The field name is what comes before the first colon: it is one of the
	// four the standard knows if the line starts with it and goes on with a
	// colon or ends there. Anything else is ignored. A value ends the line,
	// so it is at buf[end-len(value):end].
	switch line[0] {
	case 'd':
		if value, ok := fieldValue(line, "data"); !ok {
		} else if !r.hasData {
			r.hasData, r.dataInBuf = true, true
			r.dataAt, r.dataEnd = end-len(value), end
		} else {
			r.keepData()
			r.data = append(r.data, '\n')
			r.data = append(r.data, value...)
		}
	case 'e':
		if value, ok := fieldValue(line, "event"); ok {
			// Streams repeat a few types: keep the string while it is the
			// same.
			if len(value) > 0 && string(value) != r.lastType {
				r.lastType = decodeString(value)
			}
			r.hasType = len(value) > 0
		}
	case 'i':
		if value, ok := fieldValue(line, "id"); ok && bytes.IndexByte(value, 0) < 0 {
			r.hasID, r.idInBuf = true, true
			r.idAt, r.idEnd = end-len(value), end
		}
	case 'r':
		if value, ok := fieldValue(line, "retry"); ok {
			if d, ok := parseRetry(value); ok {
				r.retry, r.reconnect, r.reconnectSet = d, d, true
			}
		}
	}
	return false
}

// fieldValue returns the value of line, without the one space that may
// follow the colon, if its field name is name.
func fieldValue(line []byte, name string) ([]byte, bool) {
	n := len(name)
	if len(line) < n || string(line[:n]) != name || len(line) > n && line[n] != ':' {
		return nil, false
	}
	value := line[min(n+1, len(line)):]
	if len(value) > 0 && value[0] == ' ' {
		value = value[1:]
	}
	return value, true
}

// updateIDBuf sets the last event ID buffer to the event's id field, which
// it has, keeping the string it holds if the id is the same.
func (r *Reader) updateIDBuf() {
	switch {
	case !r.idInBuf:
		if string(r.id) != r.idBuf {
			r.idBuf = decodeString(r.id)
		}
	case string(r.buf[r.idAt:r.idEnd]) != r.idBuf:
		r.idBuf = r.text(r.idAt, r.idEnd)
	}
}

// text returns buf[at:end], a value that ends its line, decoded as
// decodeString does. For a valid one it returns a substring of chunk, a
// string that holds the rest of the buffer (up to maxChunk bytes), and makes
// chunk first if it does not hold buf[at:end] yet: the events read from one
// buffer full then share one allocation, as encoding/csv's fields of one
// record do.
func (r *Reader) text(at, end int) string {
	if at == end {
		return ""
	}
	if at < r.chunkAt || end > r.chunkAt+len(r.chunk) {
		if end > at+maxChunk || at < r.noChunk {
			return decodeString(r.buf[at:end])
		}
		b := r.buf[at:min(r.end, at+maxChunk)]
		for i := len(b) - 1; i >= max(0, len(b)-utf8.UTFMax) && i >= end-at; i-- {
			if utf8.RuneStart(b[i]) { // leave out a character cut short
				if !utf8.FullRune(b[i:]) {
					b = b[:i]
				}
				break
			}
		}
		if !utf8.Valid(b) {
			// Not here: decode each value alone until past b, which
			// could otherwise be read again for each value in it.
			r.noChunk = at + len(b)
			return decodeString(r.buf[at:end])
		}
		r.chunk, r.chunkAt = string(b), at
	}
	return r.chunk[at-r.chunkAt : end-r.chunkAt]
}

// keepData copies the first data line out of buf into data, if it is there.
func (r *Reader) keepData() {
	if r.dataInBuf {
		r.data = append(r.data[:0], r.buf[r.dataAt:r.dataEnd]...)
		r.dataInBuf = false
	}
}

// keepID copies the id out of buf into id, if it is there.
func (r *Reader) keepID() {
	if r.idInBuf {
		r.id = append(r.id[:0], r.buf[r.idAt:r.idEnd]...)
		r.idInBuf = false
	}
}

// reset starts the next event.
func (r *Reader) reset() {
	if cap(r.data) > maxKeptReadBuffer {
		r.data = nil
	}
	r.data = r.data[:0]
	r.hasData, r.hasType, r.hasID, r.dataInBuf, r.idInBuf = false, false, false, false, false
	r.pending, r.size, r.retry = false, 0, 0
}

// parseRetry returns the time a retry field's value gives, and whether it is
// valid: ASCII digits only, a count of milliseconds.
func parseRetry(v []byte) (time.Duration, bool) {
	if len(v) == 0 {
		return 0, false
	}
	const maxMillis = int64(maxDuration / time.Millisecond)
	var ms int64
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, false
		}
		if ms <= maxMillis {
			ms = ms*10 + int64(c-'0')
		}
	}
	if ms > maxMillis {
		return maxDuration, true
	}
	return time.Duration(ms) * time.Millisecond, true
}

// decodeString returns b as a string, decoded as the WHATWG Encoding
// standard's UTF-8 decoder does: each maximal subpart of an invalid sequence
// becomes one U+FFFD. Decoding each line alone gives what decoding the stream
// would, since a byte below 0x80, such as a line end, colon or space, is never
// part of a sequence.
func decodeString(b []byte) string {
	if utf8.Valid(b) {
		return string(b)
	}
	out := make([]byte, 0, len(b)+8)
	for len(b) > 0 {
		c, n := utf8.DecodeRune(b)
		if c == utf8.RuneError && n == 1 {
			out = append(out, "\uFFFD"...)
			b = b[maximalSubpart(b):]
			continue
		}
		out = append(out, b[:n]...)
		b = b[n:]
	}
	return string(out)
}

// maximalSubpart returns the length of the invalid sequence at the start of
// b: its first byte, and the bytes after it that a valid sequence starting
// with that byte could have continued with.
func maximalSubpart(b []byte) int {
	c := b[0]
	need, lo, hi := 0, byte(0x80), byte(0xBF)
	switch {
	case c >= 0xC2 && c <= 0xDF:
		need = 1
	case c >= 0xE0 && c <= 0xEF:
		need = 2
		if c == 0xE0 {
			lo = 0xA0 // shorter forms are overlong
		} else if c == 0xED {
			hi = 0x9F // higher ones are surrogates
		}
	case c >= 0xF0 && c <= 0xF4:
		need = 3
		if c == 0xF0 {
			lo = 0x90
		} else if c == 0xF4 {
			hi = 0x8F // higher ones are over U+10FFFF
		}
	}
	n := 1
	for n <= need && n < len(b) && lo <= b[n] && b[n] <= hi {
		lo, hi = 0x80, 0xBF
		n++
	}
	return n
}
