package browser

import (
	"cmp"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/lightsse/sse"
)

// writerCase is one stream the page reads through to its "end" event.
type writerCase struct {
	name   string
	opts   *sse.Options
	events []sse.Event
	pause  time.Duration // between events
	want   []record      // what the page sees before "end"
	check  func(t *testing.T, beats int64)
}

// endEvent closes each case's stream: the page closes its EventSource on it.
const endEvent = "end"

func writerCases() []writerCase {
	mib := bigData(1 << 20)
	many := make([]sse.Event, 10000)
	manyWant := make([]record, len(many))
	for i := range many {
		id, data := strconv.Itoa(i+1), fmt.Sprintf("event %d of %d", i+1, len(many))
		typ := ""
		if i%2 == 1 {
			typ = "odd"
		}
		many[i] = sse.Event{ID: id, Type: typ, Data: data}
		manyWant[i] = ev(cmp.Or(typ, "message"), data, id)
	}
	return []writerCase{
		{
			name: "default-and-named",
			events: []sse.Event{
				{Data: "plain"},
				{Type: "greeting", Data: "hello"},
				{ID: "1", Data: "with an id"},
				{Type: "greeting", Data: "the id stays"},
				{ID: "ид-2 é", Type: "x.y-z_1", Data: "unicode id, dotted name"},
				{Type: "message", Data: "named message"},
				{ID: "3", Type: "événement", Data: "unicode name"},
			},
			want: []record{
				ev("message", "plain", ""),
				ev("greeting", "hello", ""),
				ev("message", "with an id", "1"),
				ev("greeting", "the id stays", "1"),
				ev("x.y-z_1", "unicode id, dotted name", "ид-2 é"),
				ev("message", "named message", "ид-2 é"),
				ev("événement", "unicode name", "3"),
			},
		},
		{
			name: "line-breaks",
			events: []sse.Event{
				{Data: "a\nb"},
				{Data: "a\r\nb"},
				{Data: "a\rb"},
				{Data: "a\r\r\n\nb"},
				{Data: "a\rid: evil\revent: evil"},
				{Data: "trailing\n"},
				{Data: "trailing crlf\r\n"},
				{Data: "trailing cr\r"},
				{Data: "\n"},
				{Data: "\n\n"},
				{Data: "\r\n\r\n"},
			},
			want: []record{
				ev("message", "a\nb", ""),
				ev("message", "a\nb", ""),
				ev("message", "a\nb", ""),
				ev("message", "a\n\n\nb", ""),
				ev("message", "a\nid: evil\nevent: evil", ""),
				ev("message", "trailing\n", ""),
				ev("message", "trailing crlf\n", ""),
				ev("message", "trailing cr\n", ""),
				ev("message", "\n", ""),
				ev("message", "\n\n", ""),
				ev("message", "\n\n", ""),
			},
		},
		{
			name: "spaces-and-empty",
			events: []sse.Event{
				{Data: " one space"},
				{Data: "   three"},
				{Data: "\ttab"},
				{Data: "trailing  "},
				{Data: ""},
				{Type: "named", Data: ""},
				{Data: " "},
				{Data: ":not a comment"},
				{Data: "data: nested"},
				{Data: "a\n b\n  c"},
			},
			want: []record{
				ev("message", " one space", ""),
				ev("message", "   three", ""),
				ev("message", "\ttab", ""),
				ev("message", "trailing  ", ""),
				ev("message", "", ""),
				ev("named", "", ""),
				ev("message", " ", ""),
				ev("message", ":not a comment", ""),
				ev("message", "data: nested", ""),
				ev("message", "a\n b\n  c", ""),
			},
		},
		{
			name: "unicode",
			events: []sse.Event{
				{Data: "emoji 😀 👍🏽 👨‍👩‍👧 🇫🇷"},
				{Data: "CJK 漢字 かな カナ 한국어"},
				{Data: "RTL שלום עולם · مرحبا بالعالم"},
				{Data: "combining e\u0301 and a\u0308"},
				{Data: "zero width \u200b\u200d and BOM \ufeff inside"},
				{Data: "line separator \u2028 paragraph separator \u2029 NEL \u0085 stay"},
				{Data: "NUL \x00 inside"},
				{ID: "🔑", Type: "ユニコード", Data: "𝄞 astral"},
			},
			want: []record{
				ev("message", "emoji 😀 👍🏽 👨‍👩‍👧 🇫🇷", ""),
				ev("message", "CJK 漢字 かな カナ 한국어", ""),
				ev("message", "RTL שלום עולם · مرحبا بالعالم", ""),
				ev("message", "combining e\u0301 and a\u0308", ""),
				ev("message", "zero width \u200b\u200d and BOM \ufeff inside", ""),
				ev("message", "line separator \u2028 paragraph separator \u2029 NEL \u0085 stay", ""),
				ev("message", "NUL \x00 inside", ""),
				ev("ユニコード", "𝄞 astral", "🔑"),
			},
		},
		{
			name:   "one-mebibyte",
			events: []sse.Event{{ID: "big", Data: mib}, {Data: "after"}},
			want:   []record{ev("message", mib, "big"), ev("message", "after", "big")},
		},
		{
			name:   "ten-thousand",
			events: many,
			want:   manyWant,
		},
		{
			name:   "heartbeats",
			opts:   &sse.Options{Heartbeat: time.Second},
			events: []sse.Event{{Data: "before"}, {ID: "h", Data: "between"}, {Data: "after"}},
			pause:  time.Second + 300*time.Millisecond,
			want: []record{
				ev("message", "before", ""),
				ev("message", "between", "h"),
				ev("message", "after", "h"),
			},
			check: func(t *testing.T, beats int64) {
				// Three pauses (one before the first event), each longer than
				// a heartbeat's period of silence: a beat in each.
				if beats < 3 {
					t.Errorf("only %d heartbeats written; the case proves nothing", beats)
				}
			},
		},
	}
}

// bigData returns n bytes of text: numbered lines of mixed scripts, and
// every kind of line break, which all arrive as LF.
func bigData(n int) string {
	var b strings.Builder
	for i := 0; b.Len() < n; i++ {
		fmt.Fprintf(&b, "line %06d: the quick brown fox, 速い茶色の狐, שועל חום 🦊", i)
		b.WriteString([]string{"\n", "\n", "\n", ""}[i%4])
	}
	s := b.String()[:n]
	for !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s + strings.Repeat("x", n-len(s))
}

// countBeats counts heartbeat comments going through a ResponseWriter. It
// unwraps, so the Writer still finds the Flusher and the write deadline.
type countBeats struct {
	http.ResponseWriter
	beats atomic.Int64
}

func (c *countBeats) Write(p []byte) (int, error) {
	if string(p) == ":\n" {
		c.beats.Add(1)
	}
	return c.ResponseWriter.Write(p)
}

func (c *countBeats) Unwrap() http.ResponseWriter { return c.ResponseWriter }

// TestWriterEvents runs every Writer case in one page, one EventSource after
// another, and checks the exact sequence each one received.
func TestWriterEvents(t *testing.T) {
	p := newPage(t)
	cases := writerCases()
	byName := map[string]*writerCase{}
	types := map[string]bool{"message": true, endEvent: true}
	var names []string
	for i := range cases {
		c := &cases[i]
		byName[c.name] = c
		names = append(names, c.name)
		for _, e := range c.events {
			types[cmp.Or(e.Type, "message")] = true
		}
	}
	var (
		mu       sync.Mutex
		requests = map[string]int{}
		beats    = map[string]int64{}
	)
	p.Mux.HandleFunc("GET /case/{name}", func(w http.ResponseWriter, r *http.Request) {
		c := byName[r.PathValue("name")]
		if c == nil {
			http.NotFound(w, r)
			return
		}
		mu.Lock()
		requests[c.name]++
		mu.Unlock()
		cw := &countBeats{ResponseWriter: w}
		defer func() {
			mu.Lock()
			beats[c.name] += cw.beats.Load()
			mu.Unlock()
		}()
		sw, err := sse.NewWriter(cw, r, c.opts)
		if err != nil {
			t.Errorf("%s: NewWriter: %v", c.name, err)
			return
		}
		defer sw.Close()
		for _, e := range c.events {
			if c.pause > 0 {
				time.Sleep(c.pause)
			}
			if err := sw.Send(e); err != nil {
				t.Errorf("%s: Send: %v", c.name, err)
				return
			}
		}
		if err := sw.Send(sse.Event{Type: endEvent}); err != nil {
			t.Errorf("%s: Send end: %v", c.name, err)
			return
		}
		// Hold the stream open until the page closes it, so that what it
		// saw cannot include a reconnection.
		select {
		case <-r.Context().Done():
		case <-p.ctx.Done():
		}
	})

	namesJSON, _ := json.Marshal(names)
	var typeList []string
	for typ := range types {
		typeList = append(typeList, typ)
	}
	typesJSON, _ := json.Marshal(typeList)
	p.start(fmt.Sprintf(`
for (const name of %s) {
  seen.length = 0;
  const es = new EventSource('/case/' + name);
  watch(es, %s);
  await new Promise(done => es.addEventListener('end', () => { es.close(); done(); }));
  await report(name, seen);
}
`, namesJSON, typesJSON))

	for _, c := range cases {
		var got []record
		p.await(c.name, &got)
		want := append([]record{opened()}, c.want...)
		want = append(want, ev(endEvent, "", want[len(want)-1].LastEventID))
		checkSeq(t, c.name, got, want)
	}
	// Each stream ended in the page's close: one request each, and the
	// handlers have returned once the page's requests are gone.
	p.waitFor("the handlers to return", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(beats) == len(cases)
	})
	mu.Lock()
	defer mu.Unlock()
	for _, c := range cases {
		if n := requests[c.name]; n != 1 {
			t.Errorf("%s: %d requests, want 1", c.name, n)
		}
		if c.check != nil {
			c.check(t, beats[c.name])
		}
	}
}
