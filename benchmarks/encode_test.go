package main

import "testing"

// go test -run '^$' -bench Encode -benchmem

func BenchmarkEncodeRawAppend(b *testing.B)        { benchEncoder(encoders[0])(b) }
func BenchmarkEncodeOurs(b *testing.B)             { benchEncoder(encoders[1])(b) }
func BenchmarkEncodeTmaxmax(b *testing.B)          { benchEncoder(encoders[2])(b) }
func BenchmarkEncodeLaunchDarkly(b *testing.B)     { benchEncoder(encoders[3])(b) }
func BenchmarkEncodeAlexandrevicenzi(b *testing.B) { benchEncoder(encoders[4])(b) }
func BenchmarkEncodeBlogFprintf(b *testing.B)      { benchEncoder(encoders[5])(b) }

// TestEncoders checks that every encoder writes the same event, as a client
// reads it.
func TestEncoders(t *testing.T) {
	for _, e := range encoders {
		out := string(e.setup()())
		evs, err := parseAll(out)
		if err != nil || len(evs) != 1 {
			t.Errorf("%s: %d events, %v, from %q", e.name, len(evs), err, out)
			continue
		}
		ev := evs[0]
		if ev.Type != encType || string(ev.Data) != encData || ev.LastEventID != encID {
			t.Errorf("%s: got %+v", e.name, ev)
		}
	}
}
