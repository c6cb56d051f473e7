package sseclient

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"iter"
	"time"
	"unicode/utf8"

	"github.com/lightsse/sse"
)

// A Reader parses a stream as the WHATWG standard's "event stream
// interpretation" does, line by line, and decodes what it returns as the
// standard's UTF-8 decoder would. It is the inverse of sse.Event.AppendText: an sse.Event
// that sse.Event.AppendText accepts comes back from a Reader as it was, except that CR
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
var ErrEventTooLarge = errors.New("sseclient: event too large")

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
// Each sse.Event returned describes the lines of one event, as sse.Event.AppendText would
// write them:
//   - ID is the value of the event's last valid id field, or "" if it had
//     none (or an empty one). The stream's last event ID, which persists from
//     one event to the next as the standard says, is LastEventID.
//   - Type is the value of the event's event field, or "" if it had none; as
//     for sse.Event.AppendText, "" means "message". (A stream that says "event:
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
	// ErrEventTooLarge. 0 means DefaultMaxEventSize; a negative value makes
	// Next return an error matching ErrInvalidOptions. Set it before
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
func (r *Reader) Next() (sse.Event, error) {
	if r.MaxEventSize < 0 {
		return sse.Event{}, fmt.Errorf("%w: MaxEventSize %d is negative", ErrInvalidOptions, r.MaxEventSize)
	}
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
		// here, not in a function: copying the sse.Event out of one more
		// function cost this path a tenth of its time.)
		ev := sse.Event{Retry: r.retry}
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
	return sse.Event{}, r.err
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
// by yielding the error Next returned, with a zero sse.Event.
func (r *Reader) Events() iter.Seq2[sse.Event, error] {
	return func(yield func(sse.Event, error) bool) {
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
	if r.MaxEventSize == 0 {
		return DefaultMaxEventSize
	}
	return r.MaxEventSize
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
			r.srcErr = errors.New("sseclient: reader returned an invalid count")
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
