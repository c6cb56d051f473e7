package brokertest

import (
	"testing"

	"github.com/lightsse/sse/ssebroker"
)

func TestNew(t *testing.T) {
	b := New(t, &ssebroker.Options{HistoryLen: 4})
	defer b.Close()
	if b.Subscribers() != 0 {
		t.Errorf("a new Broker counts %d streams", b.Subscribers())
	}
}
