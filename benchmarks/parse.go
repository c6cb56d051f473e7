package main

import (
	"bufio"
	"bytes"
	"io"
	"strings"
	"sync/atomic"
)

// event is a dispatched event as an EventSource hands it to a page.
type event struct {
	Type        string // "message" when the stream named none
	Data        []byte // valid until the next call to next
	LastEventID string
}

// parser reads text/event-stream following the WHATWG "event stream
// interpretation" steps: lines end in CRLF, LF or CR; a leading BOM is
// dropped; a line starting with ':' is a comment; "field: value" with one
// optional space after the colon; an empty line dispatches. It is written for
// this harness (the package's own test parser is internal to the root module)
// and keeps allocations low, since one client process reads millions of
// events.
type parser struct {
	br       *bufio.Reader
	started  bool
	skipLF   bool
	pending  bool   // fields read since the last dispatch
	data     []byte // data buffer
	hasData  bool
	typ      []byte
	idBuf    string
	lastID   string
	Comments int
	counter  *atomic.Int64 // if set, counts comment lines as they are read
	line     []byte        // line assembly when a line spans buffer refills
}

func newParser(r io.Reader, size int) *parser {
	return &parser{br: bufio.NewReaderSize(r, size)}
}

// next returns the next dispatched event, or the read error (io.EOF at the
// end of the stream; a partial event is discarded, as the standard says).
func (p *parser) next() (event, error) {
	for {
		line, err := p.readLine()
		if err != nil {
			return event{}, err
		}
		if ev, ok := p.process(line); ok {
			return ev, nil
		}
	}
}

// readLine returns the next line without its terminator. The slice is valid
// until the next call.
func (p *parser) readLine() ([]byte, error) {
	p.line = p.line[:0]
	for {
		if p.skipLF {
			c, err := p.br.ReadByte()
			if err != nil {
				return nil, err
			}
			p.skipLF = false
			if c != '\n' {
				_ = p.br.UnreadByte()
			}
		}
		// Look at what is buffered for the first CR or LF.
		if p.br.Buffered() == 0 {
			if _, err := p.br.Peek(1); err != nil {
				return nil, err
			}
		}
		buf, _ := p.br.Peek(p.br.Buffered())
		i := indexCRLF(buf)
		if i < 0 {
			p.line = append(p.line, buf...)
			_, _ = p.br.Discard(len(buf))
			continue
		}
		var line []byte
		if len(p.line) == 0 {
			line = buf[:i]
		} else {
			p.line = append(p.line, buf[:i]...)
			line = p.line
		}
		if buf[i] == '\r' {
			p.skipLF = true
		}
		// The returned slice may alias the bufio buffer: process it before
		// the next read. Discard does not move the buffer's contents.
		_, _ = p.br.Discard(i + 1)
		if !p.started {
			p.started = true
			line = bytes.TrimPrefix(line, []byte("\xEF\xBB\xBF"))
		}
		return line, nil
	}
}

func (p *parser) process(line []byte) (event, bool) {
	if len(line) == 0 {
		return p.dispatch()
	}
	if line[0] == ':' {
		p.Comments++
		if p.counter != nil {
			p.counter.Add(1)
		}
		return event{}, false
	}
	p.pending = true
	field, value := line, []byte(nil)
	if i := bytes.IndexByte(line, ':'); i >= 0 {
		field, value = line[:i], line[i+1:]
		if len(value) > 0 && value[0] == ' ' {
			value = value[1:]
		}
	}
	switch string(field) {
	case "event":
		p.typ = append(p.typ[:0], value...)
	case "data":
		if p.hasData {
			p.data = append(p.data, '\n')
		}
		p.data = append(p.data, value...)
		p.hasData = true
	case "id":
		if bytes.IndexByte(value, 0) < 0 && string(value) != p.idBuf {
			p.idBuf = string(value)
		}
	case "retry":
		// Parsed for validity only; the harness never reconnects.
	}
	return event{}, false
}

func (p *parser) dispatch() (event, bool) {
	p.pending = false
	p.lastID = p.idBuf
	if !p.hasData {
		p.typ = p.typ[:0]
		return event{}, false
	}
	typ := "message"
	if len(p.typ) > 0 {
		if string(p.typ) == "tick" {
			typ = "tick"
		} else {
			typ = string(p.typ)
		}
	}
	ev := event{Type: typ, Data: p.data, LastEventID: p.lastID}
	p.data = p.data[:0]
	p.hasData = false
	p.typ = p.typ[:0]
	return ev, true
}

// parseAll parses a whole stream held in a string (tests and encode checks).
func parseAll(s string) ([]event, error) {
	p := newParser(strings.NewReader(s), 4096)
	var out []event
	for {
		ev, err := p.next()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		ev.Data = bytes.Clone(ev.Data)
		out = append(out, ev)
	}
}

// indexCRLF returns the index of the first CR or LF in b, or -1. Two
// vectorized IndexByte passes beat IndexAny's byte loop; CR is rare.
func indexCRLF(b []byte) int {
	i := bytes.IndexByte(b, '\n')
	if i < 0 {
		return bytes.IndexByte(b, '\r')
	}
	if j := bytes.IndexByte(b[:i], '\r'); j >= 0 {
		return j
	}
	return i
}
