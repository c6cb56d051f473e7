package wire

import (
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// A detached Stream has left net/http: Hijack took its HTTP/1.x connection,
// and the Stream writes the response itself. What net/http kept for the
// connection (its read and write buffers, the request, the response, the
// goroutine serving it, grown deep by the request's handling) is gone; what
// is left is the connection, this Stream and a goroutine that reads the
// connection on a small stack, so as to learn at once when the client leaves.
type detached struct {
	conn    net.Conn
	head    []byte // the response's head, until the first write sends it
	chunked bool   // HTTP/1.1: the body goes in chunks; HTTP/1.0: until close
	broken  bool   // a write failed: the connection is only closed
}

// Hijack takes the connection of s's response to r, an HTTP/1.x request, from
// net/http, before anything of the response is written: from then on s writes
// the response itself, the head with its first Write (status 200 and the
// headers WriteHeader sets, with the handler's own, Connection: close and,
// for HTTP/1.1, chunked transfer coding), and Done is closed when the client
// closes the connection or Finish does. A goroutine reads the connection
// until then, discarding what it reads (an EventSource sends nothing), and
// calls left, if not nil, once it ends.
//
// It returns an error, leaving s as it was, where the connection cannot be
// taken: one matching http.ErrNotSupported for HTTP/2 or a ResponseWriter
// (or wrapper, looked through by Unwrap) that cannot hijack, or net/http's
// error when it refuses.
func (s *Stream) Hijack(r *http.Request, left func()) error {
	if r.ProtoMajor != 1 {
		return fmt.Errorf("sse: %s connections cannot be hijacked: %w", r.Proto, http.ErrNotSupported)
	}
	h := s.w.Header()
	setHeaders(h)
	conn, rw, err := s.rc.Hijack()
	if err != nil {
		return err
	}
	chunked := r.ProtoAtLeast(1, 1)
	head := append(make([]byte, 0, 256), "HTTP/1.1 200 OK\r\n"...)
	if _, ok := h["Date"]; !ok { // net/http keeps a Date the handler set
		head = append(head, "Date: "...)
		head = time.Now().UTC().AppendFormat(head, http.TimeFormat)
		head = append(head, "\r\n"...)
	}
	head = append(head, "Connection: close\r\n"...)
	if chunked {
		head = append(head, "Transfer-Encoding: chunked\r\n"...)
	}
	head = appendHeader(head, h)
	head = append(head, "\r\n"...)
	_ = rw // its reader holds only what the client sent after its request; its writer is empty
	done := make(chan struct{})
	s.d = &detached{conn: conn, head: head, chunked: chunked}
	s.done, s.w, s.rc = done, nil, http.ResponseController{}
	go watch(conn, done, left)
	return nil
}

// appendHeader appends h in HTTP/1 form, dropping what the detached response
// sets itself and values no HTTP/1 header may hold.
func appendHeader(b []byte, h http.Header) []byte {
	for k, vs := range h {
		switch http.CanonicalHeaderKey(k) {
		case "Connection", "Transfer-Encoding", "Content-Length", "Keep-Alive", "Trailer":
			continue
		}
		if !validHeaderName(k) {
			continue // as net/http drops it
		}
		for _, v := range vs {
			if HeaderUnsafe(v) >= 0 {
				continue // net/http would have replaced the bytes; a stream drops the line
			}
			b = append(b, k...)
			b = append(b, ": "...)
			b = append(b, strings.Trim(v, " \t")...) // as net/http trims
			b = append(b, "\r\n"...)
		}
	}
	return b
}

// validHeaderName reports whether k is a token (RFC 9110, 5.6.2), as a
// header's name must be: net/http drops a header whose name is not.
func validHeaderName(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		switch c := k[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// watch reads conn until it fails (the client closed it, or Finish did),
// then closes done and calls left.
func watch(conn net.Conn, done chan struct{}, left func()) {
	buf := make([]byte, 16)
	for {
		if _, err := conn.Read(buf); err != nil {
			break
		}
	}
	close(done)
	if left != nil {
		left()
	}
}

// Detached reports whether Hijack took s's connection.
func (s *Stream) Detached() bool { return s.d != nil }

var framePool = sync.Pool{New: func() any { b := make([]byte, 0, 34<<10); return &b }}

// write writes p and q to a detached stream's connection, as one chunk,
// after the response's head if it is not sent yet.
func (d *detached) write(p, q []byte) error {
	n := len(p) + len(q)
	if n == 0 && d.head == nil {
		return nil
	}
	bp := framePool.Get().(*[]byte)
	buf := append((*bp)[:0], d.head...)
	if d.chunked && n > 0 {
		buf = strconv.AppendUint(buf, uint64(n), 16)
		buf = append(buf, "\r\n"...)
	}
	buf = append(buf, p...)
	var err error
	if len(q) > 0 && len(buf)+len(q) > cap(buf) {
		// A large event goes from where it is, not copied.
		bufs := net.Buffers{buf, q}
		if d.chunked {
			bufs = append(bufs, crlf)
		}
		_, err = bufs.WriteTo(d.conn)
	} else {
		buf = append(buf, q...)
		if d.chunked && n > 0 {
			buf = append(buf, crlf...)
		}
		_, err = d.conn.Write(buf)
	}
	if cap(buf) <= 128<<10 {
		*bp = buf[:0]
		framePool.Put(bp)
	}
	if err != nil {
		d.broken = true
		return err
	}
	d.head = nil
	return nil
}

var crlf = []byte("\r\n")

// finish ends a detached response: unless a write failed, it writes what is
// left (the head, if nothing was written, and the last chunk) under one
// more write timeout, then closes the connection.
func (d *detached) finish(timeout time.Duration) {
	if !d.broken {
		if timeout > 0 {
			_ = d.conn.SetWriteDeadline(time.Now().Add(timeout))
		}
		end := d.head
		if d.chunked {
			end = append(end, "0\r\n\r\n"...)
		}
		if len(end) > 0 {
			_, _ = d.conn.Write(end)
		}
	}
	_ = d.conn.Close()
}
