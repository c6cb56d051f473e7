package sseclient

import (
	"fmt"
	"strings"
)

// checkContentType returns nil if a response whose Content-Type header lines
// are values opens an event stream, as a browser decides, and an error
// matching ErrContentType if not.
//
// The MIME type is the one the Fetch standard extracts from the header
// ("extract a MIME type"): the lines are joined and split at the commas
// outside quoted strings, each piece is parsed as a MIME type, and the last
// that parses (and is not */*) is the response's. Its essence, type/subtype,
// is compared without regard to case; its parameters do not count, but for
// its charset, the first charset parameter it has. Chromium and Safari
// refuse a stream whose charset is not UTF-8, and this Client does too: the
// stream is read as UTF-8 whatever its label says (the standard has it so,
// and Firefox reads it so), which would turn the text of a stream truly in
// another encoding into U+FFFD without a word. The labels that name UTF-8 in
// the Encoding standard are accepted, any case: utf-8, and also utf8 and the
// rare unicode-1-1-utf-8, unicode11utf8, unicode20utf8 and x-unicode20utf8,
// which Chromium refuses.
//
// TestContentType's table holds what Chromium 156's EventSource did with
// each of its 32 headers; this check differs from it on those other labels
// only.
func checkContentType(values []string) error {
	header := strings.Join(values, ", ")
	essence, charset, ok := extractMIMEType(values)
	switch {
	case !ok || essence != "text/event-stream":
		return fmt.Errorf("%w: Content-Type %q", ErrContentType, header)
	case charset != "" && !utf8Labels[strings.ToLower(charset)]:
		return fmt.Errorf("%w: Content-Type %q: charset %q is not UTF-8", ErrContentType, header, charset)
	}
	return nil
}

// utf8Labels are the Encoding standard's labels of UTF-8.
var utf8Labels = map[string]bool{
	"utf-8": true, "utf8": true, "unicode-1-1-utf-8": true,
	"unicode11utf8": true, "unicode20utf8": true, "x-unicode20utf8": true,
}

// extractMIMEType is the Fetch standard's "extract a MIME type" from the
// Content-Type header lines values, reduced to what EventSource needs: the
// MIME type's essence, lower case, and its charset parameter, trimmed of
// whitespace ("" if none). ok is false if no piece parses.
func extractMIMEType(values []string) (essence, charset string, ok bool) {
	if len(values) == 0 {
		return "", "", false
	}
	// The standard's charset variable: the charset of the first piece of
	// the essence last seen, which a later piece of that essence without
	// one takes.
	var first string
	var firstSet bool
	for _, v := range splitHeader(strings.Join(values, ",")) {
		e, params, parsed := parseMIMEType(v)
		if !parsed || e == "*/*" {
			continue
		}
		c, has := params["charset"]
		switch {
		case e != essence:
			essence, first, firstSet = e, c, has
		case !has && firstSet:
			c = first
		}
		charset, ok = c, true
	}
	return essence, strings.Trim(charset, httpWhitespace), ok
}

// splitHeader is the Fetch standard's "get, decode, and split" of a header
// value: it splits v at the commas outside quoted strings, and trims each
// piece of spaces and tabs.
func splitHeader(v string) []string {
	var values []string
	var piece strings.Builder
	for i := 0; ; {
		j := i + strings.IndexAny(v[i:], `",`)
		if j < i {
			j = len(v)
		}
		piece.WriteString(v[i:j])
		i = j
		if i < len(v) && v[i] == '"' {
			j = i + quotedStringEnd(v[i:])
			piece.WriteString(v[i:j])
			if i = j; i < len(v) {
				continue
			}
		}
		values = append(values, strings.Trim(piece.String(), " \t"))
		piece.Reset()
		if i >= len(v) {
			return values
		}
		i++ // the comma
	}
}

// quotedStringEnd returns the length of the HTTP quoted string s starts with
// (s[0] is the opening quote): up to and including its closing quote, or all
// of s if it has none.
func quotedStringEnd(s string) int {
	for i := 1; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return len(s)
}

// quotedStringValue returns the value of the HTTP quoted string s starts
// with, its escapes undone, and the length of s it spans.
func quotedStringValue(s string) (value string, n int) {
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		switch s[i] {
		case '\\':
			if i++; i == len(s) {
				b.WriteByte('\\')
				return b.String(), i
			}
			b.WriteByte(s[i])
		case '"':
			return b.String(), i + 1
		default:
			b.WriteByte(s[i])
		}
	}
	return b.String(), len(s)
}

// httpWhitespace is HTTP whitespace, as the MIME Sniffing standard has it.
const httpWhitespace = " \t\r\n"

// parseMIMEType is the MIME Sniffing standard's "parse a MIME type": it
// returns the essence of the MIME type s, lower case, and its parameters,
// each name lower case and at its first value; ok is false if s is not a
// MIME type. A parameter that does not parse is skipped, as the standard
// says, not an error.
func parseMIMEType(s string) (essence string, params map[string]string, ok bool) {
	s = strings.Trim(s, httpWhitespace)
	typ, rest, found := strings.Cut(s, "/")
	if !found || !isToken(typ) {
		return "", nil, false
	}
	subtype, rest, _ := strings.Cut(rest, ";")
	subtype = strings.TrimRight(subtype, httpWhitespace)
	if !isToken(subtype) {
		return "", nil, false
	}
	params = make(map[string]string)
	for rest != "" {
		rest = strings.TrimLeft(rest, httpWhitespace)
		i := strings.IndexAny(rest, ";=")
		if i < 0 {
			break // a name alone at the end
		}
		name := strings.ToLower(rest[:i])
		if rest[i] == ';' {
			rest = rest[i+1:]
			continue
		}
		rest = rest[i+1:]
		var value string
		if strings.HasPrefix(rest, `"`) {
			var n int
			value, n = quotedStringValue(rest)
			_, rest, _ = strings.Cut(rest[n:], ";")
		} else {
			value, rest, _ = strings.Cut(rest, ";")
			if value = strings.TrimRight(value, httpWhitespace); value == "" {
				continue
			}
		}
		if _, dup := params[name]; !dup && isToken(name) && isQuotedStringText(value) {
			params[name] = value
		}
	}
	return strings.ToLower(typ + "/" + subtype), params, true
}

// isToken reports whether s is a non-empty HTTP token.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0 {
			continue
		}
		return false
	}
	return true
}

// isQuotedStringText reports whether every byte of s is an HTTP
// quoted-string token code point: tab, a printable ASCII character, or a
// byte from 0x80 (the header is decoded byte by byte).
func isQuotedStringText(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c != '\t' && (c < 0x20 || c == 0x7f) {
			return false
		}
	}
	return true
}
