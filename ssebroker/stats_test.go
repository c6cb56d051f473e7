package ssebroker

import (
	"encoding/json"
	"strings"
	"testing"
)

// ---- Counters --------------------------------------------------------------
//
// Each counter is also checked, exact, by the test that makes it happen.

// Stats marshals to JSON under stable snake_case names, and back.
func TestStatsJSON(t *testing.T) {
	in := Stats{Open: 1, Opened: 2, Ended: Ends{Closed: 3}, Resets: Resets{TooOld: 4}, Log: LogStats{GapsFilled: 5}}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{`"open":1`, `"opened":2`, `"closed":3`, `"too_old":4`, `"gaps_filled":5`, `"bytes_written":0`} {
		if !strings.Contains(string(b), key) {
			t.Errorf("JSON %s lacks %s", b, key)
		}
	}
	var out Stats
	if err := json.Unmarshal(b, &out); err != nil || out != in {
		t.Errorf("round trip: %+v, %v", out, err)
	}
}
