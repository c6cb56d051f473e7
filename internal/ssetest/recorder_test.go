package ssetest

import (
	"sync"
	"testing"
)

func TestRecorderConcurrent(t *testing.T) {
	r := NewRecorder()
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			r.Write([]byte("ab"))
			r.Flush()
		})
	}
	wg.Wait()
	if r.Body() != "abababab" || r.Flushes() != 4 {
		t.Errorf("body %q, %d flushes; want 4 writes and 4 flushes", r.Body(), r.Flushes())
	}
}
