package ssetest

import (
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
)

// A Recorder is an httptest.ResponseRecorder that can flush, whose output a
// test can read while another goroutine (a heartbeat's timer, a pump)
// writes it.
type Recorder struct {
	mu sync.Mutex
	*httptest.ResponseRecorder
	flushes int
}

// NewRecorder returns an empty Recorder.
func NewRecorder() *Recorder {
	return &Recorder{ResponseRecorder: httptest.NewRecorder()}
}

// Write records p.
func (f *Recorder) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.ResponseRecorder.Write(p)
}

// Flush records a flush.
func (f *Recorder) Flush() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.flushes++
	f.ResponseRecorder.Flush()
}

// Body returns what was written so far.
func (f *Recorder) Body() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.ResponseRecorder.Body.String()
}

// Flushes returns how many times the Recorder was flushed.
func (f *Recorder) Flushes() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.flushes
}

// Discard is a ResponseWriter that can flush and keeps nothing, for
// benchmarks; it counts its writes in Writes, if set. Set Head, or Header
// returns a new header each call.
type Discard struct {
	Head   http.Header
	Writes *atomic.Int64
}

// Header returns d.Head.
func (d *Discard) Header() http.Header {
	if d.Head == nil {
		return http.Header{}
	}
	return d.Head
}

// Write counts a write and keeps nothing.
func (d *Discard) Write(p []byte) (int, error) {
	if d.Writes != nil {
		d.Writes.Add(1)
	}
	return len(p), nil
}

// WriteHeader does nothing.
func (d *Discard) WriteHeader(int) {}

// Flush does nothing.
func (d *Discard) Flush() {}
