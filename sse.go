// Package sse streams Server-Sent Events (text/event-stream) from net/http
// handlers, exactly as the WHATWG HTML standard's parser reads them.
//
// A browser opens a stream with new EventSource(url). The server answers with
// one long response and writes events into it; the browser reconnects by
// itself when the stream ends, sending the last event id it saw in a
// Last-Event-ID header so the server can resume.
//
// A handler that streams the time until the client leaves:
//
//	func clock(w http.ResponseWriter, r *http.Request) {
//		stream, err := sse.NewWriter(w, r, nil)
//		if err != nil {
//			http.Error(w, err.Error(), http.StatusInternalServerError)
//			return
//		}
//		defer stream.Close()
//		tick := time.NewTicker(time.Second)
//		defer tick.Stop()
//		for {
//			select {
//			case <-r.Context().Done():
//				return
//			case t := <-tick.C:
//				if err := stream.Send(sse.Event{Type: "time", Data: t.Format(time.RFC3339)}); err != nil {
//					return
//				}
//			}
//		}
//	}
//
// Beside this package:
//
//   - github.com/lightsse/sse/ssebroker sends the same events to many clients:
//     a Broker is an http.Handler with a Publish method. It keeps recent
//     events, so a browser that reconnects with a Last-Event-ID header gets
//     what it missed; it never lets a slow client delay the others; and with
//     a Log shared by several processes (redisstream, pgstream), Brokers in
//     all of them serve one stream.
//   - github.com/lightsse/sse/sseclient reads streams from Go: a Reader that
//     parses exactly as a browser does, and a Client that reconnects and
//     resumes.
//
// # What goes on the wire
//
// [Event.AppendText] writes every field as "name: value" with LF line ends,
// splits Data at CRLF, LF and CR into data lines, and refuses, with an error
// naming the field, anything a client would read differently: CR or LF in an
// id or event name, NUL in an id, invalid UTF-8, a retry that is negative or
// under a millisecond. A refused event writes nothing and leaves the stream
// intact.
//
// # Options
//
// Options, here and in every package of this module, follow one rule: 0
// means the default; a negative value means off where off exists (a
// Writer's WriteTimeout and Heartbeat), and is refused, with an error that
// names the field, where it does not (a Retry: ErrInvalidRetry).
//
// # Deployment
//
//   - Proxies: the Writer sends X-Accel-Buffering: no, so nginx passes events
//     through at once, and a comment after 15 s of silence (Options.Heartbeat),
//     so load balancers with idle timeouts (60 s on AWS ALB, about 100 s on
//     Cloudflare) keep the stream open.
//   - http.Server.WriteTimeout would end every stream after that time; the
//     Writer replaces it with a deadline per write (Options.WriteTimeout), which
//     also ends a stream whose client stopped reading.
//   - HTTP/2: a browser holds at most six HTTP/1.1 connections per host, shared
//     by all its tabs, so a seventh stream waits. Serve over TLS and Go speaks
//     HTTP/2, where streams share one connection. The Writer never sends the
//     Connection or Keep-Alive headers, which HTTP/2 forbids.
//   - Shutdown: http.Server.Shutdown waits for responses to finish but does not
//     cancel their contexts, so open streams hold it until its deadline. End
//     them from http.Server.RegisterOnShutdown, or give the server a
//     BaseContext you cancel.
//   - A status other than 200 makes a browser give up for good; to make it come
//     back later, answer 200 with a retry (Options.Retry) and end the stream.
//     Status 204 tells it to stop reconnecting.
//   - Authentication: EventSource sends cookies but cannot send an
//     Authorization header. Check the cookie (or a token in the query string)
//     before NewWriter (or a Broker's ServeHTTP); a 401 then stops the browser for
//     good, which suits "log in again".
//   - A request whose client vanished without closing its connection keeps
//     its context: net/http notices a closed connection only while it reads.
//     The heartbeat's write ends it, so keep heartbeats on; set
//     http.Server.ReadHeaderTimeout, and a Broker's MaxSubscribers to bound
//     what such requests hold meanwhile.
package sse

import (
	"errors"
	"net/http"
	"time"
)

// Defaults used when Options leaves a field zero.
const (
	// DefaultWriteTimeout bounds one write and flush of the stream. A client
	// that has not taken the bytes by then is treated as gone.
	DefaultWriteTimeout = 10 * time.Second
	// DefaultHeartbeat is the silence after which a Writer sends a comment, well
	// under the 60 s idle timeout of common load balancers.
	DefaultHeartbeat = 15 * time.Second
)

// ErrClosed is returned by Writer methods called after Close or after the
// request's context ended, and by a Broker's Publish (package ssebroker)
// after its Close.
var ErrClosed = errors.New("sse: closed")

// MaxLastEventIDLen is the longest Last-Event-ID header LastEventID accepts, in
// bytes.
const MaxLastEventIDLen = 256

// LastEventID returns the Last-Event-ID header of r: the id of the last event a
// reconnecting client received. It returns "" when the header is absent, longer
// than MaxLastEventIDLen, or not an id an Event could carry (invalid UTF-8, or
// CR, LF or NUL), so whatever it returns is a valid Event.ID.
//
// The value comes from the network: look it up, never use it as a position you
// trust. (Go trims spaces around header values, so an id that begins or ends
// with a space does not come back intact.)
func LastEventID(r *http.Request) string {
	id := r.Header.Get("Last-Event-ID")
	if len(id) > MaxLastEventIDLen || (&Event{ID: id}).validate() != nil {
		return ""
	}
	return id
}
