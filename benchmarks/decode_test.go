package main

import (
	"slices"
	"testing"
	"time"
)

// go test -run '^$' -bench Parse -count 6 | benchstat -col /reader -

func BenchmarkParse(b *testing.B) {
	for _, s := range decodeStreams {
		for _, d := range decoders {
			b.Run("stream="+s.name+"/reader="+d.short, benchDecoder(d, s.stream))
		}
	}
}

// TestDecoders checks that every reader gets the same events from each
// stream, ids aside for a reader that reads none.
func TestDecoders(t *testing.T) {
	type event struct{ typ, id, data string }
	for _, s := range decodeStreams {
		var want []event
		for _, d := range decoders {
			var got []event
			err := d.parse(s.stream, func(typ, id, data string) { got = append(got, event{typ, id, data}) })
			if err != nil {
				t.Errorf("%s, %s: %v", s.name, d.name, err)
				continue
			}
			if want == nil {
				want = got
			}
			if len(got) != decodeEvents {
				t.Errorf("%s, %s: %d events, want %d", s.name, d.name, len(got), decodeEvents)
				continue
			}
			for i, ev := range got {
				w := want[i]
				if d.noID {
					w.id = ""
				}
				if ev != w {
					t.Errorf("%s, %s: event %d is %.80q, want %.80q", s.name, d.name, i, ev, w)
					break
				}
			}
		}
	}
}

// BenchmarkParseAlternating parses each stream with every reader in turn, one
// stream each, and reports each reader's median time per event: on a machine
// shared with other work, load that comes and goes falls on all readers
// alike, where BenchmarkParse runs one reader for a second, then the next.
//
//	go test -run '^$' -bench ParseAlternating -benchtime 400x
func BenchmarkParseAlternating(b *testing.B) {
	for _, s := range decodeStreams {
		b.Run("stream="+s.name, func(b *testing.B) {
			times := make([][]time.Duration, len(decoders))
			for b.Loop() {
				for i, d := range decoders {
					start := time.Now()
					if err := d.parse(s.stream, nil); err != nil {
						b.Fatal(err)
					}
					times[i] = append(times[i], time.Since(start))
				}
			}
			for i, d := range decoders {
				slices.Sort(times[i])
				b.ReportMetric(float64(times[i][len(times[i])/2].Nanoseconds())/decodeEvents, "ns/event-"+d.short)
			}
		})
	}
}
