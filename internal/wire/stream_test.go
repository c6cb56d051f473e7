package wire

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"testing/synctest"
	"time"
)

func TestDuration(t *testing.T) {
	for _, tt := range []struct{ d, def, want time.Duration }{
		{0, time.Second, time.Second},
		{-1, time.Second, 0},
		{time.Minute, time.Second, time.Minute},
	} {
		if got := Duration(tt.d, tt.def); got != tt.want {
			t.Errorf("Duration(%v, %v) = %v, want %v", tt.d, tt.def, got, tt.want)
		}
	}
	for _, tt := range []struct{ d, want time.Duration }{
		{0, 15 * time.Second},
		{-time.Second, 0},
		{time.Nanosecond, MinHeartbeat},
		{time.Minute, time.Minute},
	} {
		if got := HeartbeatOf(tt.d, 15*time.Second); got != tt.want {
			t.Errorf("HeartbeatOf(%v) = %v, want %v", tt.d, got, tt.want)
		}
	}
}

type noFlush struct{ http.ResponseWriter }

type wrapped struct{ http.ResponseWriter }

func (w wrapped) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func TestNewStreamNeedsAFlusher(t *testing.T) {
	r := httptest.NewRequest("GET", "/", nil)
	if _, err := NewStream(noFlush{httptest.NewRecorder()}, r, 0); !errors.Is(err, http.ErrNotSupported) {
		t.Errorf("without a flusher: %v, want http.ErrNotSupported", err)
	}
	if _, err := NewStream(wrapped{httptest.NewRecorder()}, r, 0); err != nil {
		t.Errorf("through Unwrap: %v", err)
	}
}

func TestStreamWritesHeadersBytesAndEnds(t *testing.T) {
	rec := httptest.NewRecorder()
	rec.Header().Set("Connection", "keep-alive")
	ctx, cancel := context.WithCancel(context.Background())
	s, err := NewStream(rec, httptest.NewRequestWithContext(ctx, "GET", "/", nil), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	s.WriteHeader()
	if err := s.Write([]byte("data: a\n\n"), []byte("data: b\n\n")); err != nil {
		t.Fatal(err)
	}
	if h := rec.Header(); h.Get("Content-Type") != "text/event-stream" || h.Get("Connection") != "" || h.Get("X-Accel-Buffering") != "no" || !rec.Flushed {
		t.Errorf("headers %v, flushed %v", h, rec.Flushed)
	}
	if rec.Body.String() != "data: a\n\ndata: b\n\n" {
		t.Errorf("body %q", rec.Body)
	}
	cancel()
	if err := s.Write([]byte("data: c\n\n"), nil); !errors.Is(err, ErrDone) || rec.Body.Len() != 18 {
		t.Errorf("after the request ended: %v, body %q; want ErrDone and nothing written", err, rec.Body)
	}
}

func TestWaitRest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fired := make(chan time.Time, 1)
		timer := time.AfterFunc(time.Hour, func() { fired <- time.Now() })
		defer timer.Stop()
		if WaitRest(timer, time.Second, time.Second) {
			t.Error("a whole period passed: WaitRest re-armed the timer")
		}
		start := time.Now()
		if !WaitRest(timer, time.Second, 300*time.Millisecond) {
			t.Fatal("part of the period passed: WaitRest did not re-arm")
		}
		if at := <-fired; at.Sub(start) != 700*time.Millisecond {
			t.Errorf("fired after %v, want the rest of the period, 700ms", at.Sub(start))
		}
	})
}
