package main

import (
	"testing"
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
