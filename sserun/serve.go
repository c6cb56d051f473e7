package sserun

import (
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/lightsse/sse"
	"github.com/lightsse/sse/internal/wire"
	"github.com/lightsse/sse/ssebroker"
)

// ServeHTTP streams the run the request names (Options.RunID) to a viewer,
// as the package doc describes: 403 Forbidden when Options.Authorize refuses
// it, Options.NotFound for a run that does not exist, 204 No Content for a
// reconnection after the run's terminal event, and otherwise a stream. HEAD
// gets a stream's headers and no body; a method other than GET and HEAD gets
// 405 with an Allow header. When the run's Log cannot be read, the answer is
// a stream with a retry of a second and no events, so that the browser
// comes back.
func (rs *Runs) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
	default:
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "sserun: a run's stream is read with GET", http.StatusMethodNotAllowed)
		return
	}
	id := rs.runID(r)
	if rs.authorize != nil {
		if err := rs.authorize(r, id); err != nil {
			http.Error(w, "sserun: not allowed to view this run", http.StatusForbidden)
			return
		}
	}
	st, err := rs.lookup(r.Context(), id)
	switch {
	case err != nil:
		rs.retryLater(w, r)
		return
	case st == nil:
		rs.notFound.ServeHTTP(w, r)
		return
	}
	if rs.cursor != "" && r.Header.Get("Last-Event-ID") == "" {
		if c := r.URL.Query().Get(rs.cursor); c != "" {
			r2 := *r
			r2.Header = r.Header.Clone()
			r2.Header.Set("Last-Event-ID", c)
			r = &r2
		}
	}
	st.mu.Lock()
	end, b := st.end, st.broker
	st.mu.Unlock()
	switch {
	case end.Offset != 0:
		rs.serveFinished(w, r, st, end)
	case b != nil:
		b.ServeHTTP(w, r)
	default: // closed
		rs.retryLater(w, r)
	}
}

// retryLater answers a stream that only tells the client to come back in a
// second.
func (rs *Runs) retryLater(w http.ResponseWriter, r *http.Request) {
	sw, err := sse.NewWriter(w, r, &sse.Options{Retry: time.Second, Heartbeat: -1, WriteTimeout: rs.stream.WriteTimeout})
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	sw.Close()
}

// finishedBatch is how many bytes of events a finished run's stream reads
// from the Log, and writes, at once.
const finishedBatch = 1 << 20

// serveFinished streams a finished run, whose terminal event is at end, from
// its Log: every event after the request's Last-Event-ID (from the first
// without one), then a short retry, and the stream ends. A Last-Event-ID
// that names no event of the run before end gets a ResetEvent at end (the
// client should reload). The first read decides, before any byte, whether
// the Log still holds the run: if not, the answer is Options.NotFound.
func (rs *Runs) serveFinished(w http.ResponseWriter, r *http.Request, st *run, end ssebroker.Position) {
	lastID := sse.LastEventID(r)
	if lastID == end.String() {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	after, ok := ssebroker.Position{Epoch: end.Epoch}, true
	if r.Header.Get("Last-Event-ID") != "" {
		after, ok = positionIn(lastID, end)
	}
	from := after
	if !ok {
		from = ssebroker.Position{Epoch: end.Epoch, Offset: end.Offset - 1} // to see that the run is there
	}
	wires, head, err := st.log.ReadAfter(r.Context(), from, finishedBatch)
	switch {
	case err != nil:
		rs.retryLater(w, r)
		return
	case len(wires) == 0 || head.Epoch != end.Epoch || head.Offset < end.Offset:
		rs.notFound.ServeHTTP(w, r) // gone
		return
	}
	if r.Method == http.MethodHead {
		wire.WriteHeader(w)
		return
	}
	out, err := wire.NewStream(w, r, wire.Duration(rs.stream.WriteTimeout, sse.DefaultWriteTimeout))
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	out.WriteHeader()
	defer out.Finish()
	buf := wire.AppendRetry(nil, rs.stream.Retry)
	if !ok {
		buf = wire.AppendReset(buf, end.Epoch, end.Offset, lastID)
		_ = out.Write(append(buf, endRetryLine...), nil)
		return
	}
	for next := after.Offset + 1; ; {
		n := min(uint64(len(wires)), end.Offset+1-next)
		size := len(buf) + len(endRetryLine) + int(n)*wire.IDLineLen(len(end.Epoch))
		for _, w := range wires[:n] {
			size += len(w)
		}
		buf = slices.Grow(buf, size-len(buf))
		for i, w := range wires[:n] {
			buf = wire.AppendIDLine(buf, end.Epoch, next+uint64(i))
			buf = append(buf, w...)
		}
		next += n
		if next > end.Offset {
			break
		}
		if err := out.Write(buf, nil); err != nil {
			return
		}
		buf = buf[:0]
		wires, _, err = st.log.ReadAfter(r.Context(), ssebroker.Position{Epoch: end.Epoch, Offset: next - 1}, finishedBatch)
		if err != nil || len(wires) == 0 {
			return // the client resumes from what it has
		}
	}
	_ = out.Write(append(buf, endRetryLine...), nil)
}

// endRetryLine ends a finished run's stream: its client reconnects soon,
// to be answered 204.
var endRetryLine = wire.AppendRetry(nil, endRetry)

// positionIn returns the position an id names among the events of the run
// that precede end: the Broker's form of ids, "<epoch>-<offset>".
func positionIn(id string, end ssebroker.Position) (ssebroker.Position, bool) {
	const epochLen = 16
	if len(id) <= epochLen+1 || id[:epochLen] != end.Epoch || id[epochLen] != '-' {
		return ssebroker.Position{}, false
	}
	digits := id[epochLen+1:]
	if digits[0] == '+' || digits[0] == '-' {
		return ssebroker.Position{}, false
	}
	off, err := strconv.ParseUint(digits, 10, 64)
	if err != nil || off >= end.Offset {
		return ssebroker.Position{}, false
	}
	return ssebroker.Position{Epoch: end.Epoch, Offset: off}, true
}
