package sseclient

import (
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
)

// The Content-Types a stream is read with, over a real socket: those
// Chromium's EventSource accepts, and no other but for the UTF-8 labels it
// does not know. chromium is what Chromium 156 did with each (a page opened
// an EventSource on a server that sent these header lines, and saw a message
// or an error).
func TestContentType(t *testing.T) {
	for _, tt := range []struct {
		lines    []string // the Content-Type header lines; nil for none
		ok       bool     // the Client reads the stream
		chromium bool     // Chromium 156 reads it
	}{
		{[]string{"text/event-stream"}, true, true},
		{[]string{"text/event-stream; charset=utf-8"}, true, true},
		{[]string{"Text/Event-Stream"}, true, true},
		{[]string{"TEXT/EVENT-STREAM; CHARSET=UTF-8"}, true, true},
		{[]string{"text/event-stream ; charset=utf-8"}, true, true},
		{[]string{"text/event-stream;"}, true, true},
		{[]string{`text/event-stream; charset="utf-8"`}, true, true},
		{[]string{`text/event-stream; charset="utf-8`}, true, true},
		{[]string{"text/event-stream; charset= utf-8"}, true, true},
		// The charset twice: the first counts.
		{[]string{"text/event-stream; charset=utf-8; charset=utf-8"}, true, true},
		{[]string{"text/event-stream; charset=utf-8; charset=UTF-8"}, true, true},
		{[]string{"text/event-stream; charset=utf-8; charset=iso-8859-1"}, true, true},
		{[]string{"text/event-stream; charset=iso-8859-1; charset=utf-8"}, false, false},
		// Parameters that do not parse are skipped.
		{[]string{"text/event-stream; charset"}, true, true},
		{[]string{`text/event-stream; foo="a b`}, true, true},
		{[]string{"text/event-stream; a=b/c"}, true, true},
		// Another charset: refused.
		{[]string{"text/event-stream; charset=iso-8859-1"}, false, false},
		{[]string{"text/event-stream; charset=windows-1252"}, false, false},
		// Other labels of UTF-8: read, as they are UTF-8, where Chromium
		// refuses them.
		{[]string{"text/event-stream; charset=utf8"}, true, false},
		{[]string{"text/event-stream; charset=unicode-1-1-utf-8"}, true, false},
		// Several values, in one line or several: the last valid one
		// counts, and */* does not.
		{[]string{"text/event-stream, text/html"}, false, false},
		{[]string{"text/html, text/event-stream"}, true, true},
		{[]string{"text/event-stream, */*"}, true, true},
		{[]string{"text/event-stream", "text/event-stream"}, true, true},
		{[]string{"text/html", "text/event-stream"}, true, true},
		{[]string{"text/event-stream", "text/html"}, false, false},
		// Not text/event-stream.
		{[]string{"text/plain"}, false, false},
		{[]string{"text/event-streams"}, false, false},
		{[]string{"text /event-stream"}, false, false},
		{[]string{"*/*"}, false, false},
		{[]string{""}, false, false},
		{nil, false, false},
	} {
		srv := newServer(t, func(w http.ResponseWriter, r *http.Request, n int) {
			w.Header()["Content-Type"] = tt.lines
			io.WriteString(w, "data: ok\n\n")
		})
		got, err := read(fast(nil), get(t, srv.URL), 1)
		if tt.ok && (err != nil || len(got) != 1) || !tt.ok && !errors.Is(err, ErrContentType) {
			t.Errorf("Content-Type %q: %+v, %v; want read: %v", tt.lines, got, err, tt.ok)
		}
		if err != nil && !strings.Contains(err.Error(), strings.Join(tt.lines, ", ")) {
			t.Errorf("Content-Type %q: the error does not say which: %v", tt.lines, err)
		}
		if tt.ok != tt.chromium && !strings.Contains(tt.lines[0], "charset=utf8") && !strings.Contains(tt.lines[0], "charset=unicode-") {
			t.Errorf("Content-Type %q: the table has the Client differ from Chromium", tt.lines)
		}
	}
}

// The error says which charset was refused.
func TestContentTypeCharsetError(t *testing.T) {
	err := checkContentType([]string{"text/event-stream; charset=ISO-8859-1"})
	if !errors.Is(err, ErrContentType) || !strings.Contains(err.Error(), `charset "ISO-8859-1" is not UTF-8`) {
		t.Errorf("%v", err)
	}
}

// checkContentType never panics, and reads anything that starts with the
// essence, whatever follows but a charset or a comma.
func FuzzContentType(f *testing.F) {
	for _, s := range []string{"text/event-stream", `text/event-stream; a="b\"c"; charset=utf-8`, "a/b, c/d", `"`, `\`, ";", "/"} {
		f.Add(s, "")
	}
	f.Fuzz(func(t *testing.T, line, params string) {
		checkContentType([]string{line, params})
		if strings.ContainsAny(params, `,"`) || strings.Contains(strings.ToLower(params), "charset") {
			return
		}
		if err := checkContentType([]string{"text/event-stream;" + params}); err != nil {
			t.Errorf("parameters %q: %v", params, err)
		}
	})
}
