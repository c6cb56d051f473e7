package sseticket

import (
	"bytes"
	"encoding/binary"
	"errors"
	"regexp"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/lightsse/sse/internal/leakcheck"
)

// TestMain fails the run if a goroutine outlives the tests.
func TestMain(m *testing.M) { leakcheck.Main(m) }

// key returns a key of MinKeyLen bytes, all b.
func key(b byte) []byte { return bytes.Repeat([]byte{b}, MinKeyLen) }

// signer returns a Signer with keys made by key.
func signer(t testing.TB, bs ...byte) *Signer {
	t.Helper()
	var keys [][]byte
	for _, b := range bs {
		keys = append(keys, key(b))
	}
	s, err := New(keys...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// A ticket opens its scope: it is "v1.", the payload and the MAC, in
// unpadded base64url; different scopes and expiries give different tickets.
func TestRoundTrip(t *testing.T) {
	s := signer(t, 1)
	format := regexp.MustCompile(`^v1\.[A-Za-z0-9_-]{54}\.[A-Za-z0-9_-]{43}$`)
	seen := map[string]bool{}
	for _, scope := range []string{"run:1", "run:2", "user:42", "日本", strings.Repeat("x", 10000)} {
		for _, ttl := range []time.Duration{time.Second, time.Hour} {
			tk := s.Sign(scope, ttl)
			if err := s.Verify(tk, scope); err != nil || !format.MatchString(tk) || seen[tk] {
				t.Errorf("Sign(%.10q, %v) = %q: Verify says %v; matches the format: %v; seen before: %v",
					scope, ttl, tk, err, format.MatchString(tk), seen[tk])
			}
			seen[tk] = true
		}
	}
}

// A ticket opens its scope until its expiry, to the millisecond, and not
// from then on, on the fake clock; a ttl of 0 or less makes one already
// expired.
func TestExpired(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := signer(t, 1)
		tk := s.Sign("run:1", time.Minute)
		time.Sleep(time.Minute - time.Millisecond)
		if err := s.Verify(tk, "run:1"); err != nil {
			t.Errorf("a millisecond before the expiry: %v", err)
		}
		time.Sleep(time.Millisecond)
		if err := s.Verify(tk, "run:1"); !errors.Is(err, ErrExpired) {
			t.Errorf("at the expiry: %v, want %v", err, ErrExpired)
		}
		time.Sleep(24 * time.Hour)
		if err := s.Verify(tk, "run:1"); !errors.Is(err, ErrExpired) {
			t.Errorf("a day after: %v, want %v", err, ErrExpired)
		}
		for _, ttl := range []time.Duration{0, -time.Hour} {
			if err := s.Verify(s.Sign("run:1", ttl), "run:1"); !errors.Is(err, ErrExpired) {
				t.Errorf("ttl %v: %v, want %v", ttl, err, ErrExpired)
			}
		}
	})
}

// Any change to a ticket makes it invalid: each bit of each byte flipped,
// each character replaced, cut short, made longer, spliced from two
// tickets, re-versioned. None is
// said to be expired or for another scope, though the one it came from is
// both by now.
func TestTampered(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := signer(t, 1)
		tk := s.Sign("run:1", time.Minute)
		other := s.Sign("run:2", time.Hour)
		time.Sleep(time.Hour) // tk has expired; other has not
		invalid := func(what, bad string) {
			t.Helper()
			if err := s.Verify(bad, "run:1"); !errors.Is(err, ErrInvalid) {
				t.Errorf("%s: %q: %v, want %v", what, bad, err, ErrInvalid)
			}
		}
		for i := range len(tk) {
			for bit := range 8 {
				b := []byte(tk)
				b[i] ^= 1 << bit
				invalid("a bit flipped", string(b))
			}
		}
		// Each character replaced by each other that a ticket may hold:
		// base64url has several texts for the last byte of the MAC, but
		// for one, which the decoder's strict mode insists on.
		const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_."
		for i := range len(tk) {
			for _, c := range []byte(alphabet) {
				if b := []byte(tk); b[i] != c {
					b[i] = c
					invalid("a character replaced", string(b))
				}
			}
		}
		for n := 1; n < len(tk); n++ {
			invalid("cut short", tk[:n])
		}
		invalid("longer", tk+"A")
		invalid("longer", tk+".")
		invalid("another version", "v2"+tk[2:])
		dot := strings.LastIndexByte(tk, '.')
		invalid("the payload of one, the MAC of another", tk[:dot]+other[dot:])
		invalid("the payload of another, the MAC of one", other[:dot]+tk[dot:])
		invalid("another key", signer(t, 2).Sign("run:1", time.Hour))
		if err := s.Verify(tk, "run:1"); !errors.Is(err, ErrExpired) {
			t.Errorf("the ticket as it was: %v, want %v", err, ErrExpired)
		}
	})
}

// A genuine ticket opens its scope and no other, the empty scope included;
// a ticket for "" opens nothing. A ticket for another scope is said to be
// so before it is said to be expired.
func TestOtherScope(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := signer(t, 1)
		tk := s.Sign("run:1", time.Minute)
		for _, scope := range []string{"run:2", "run:10", "run:", "user:1", "Run:1", "run:1 ", ""} {
			if err := s.Verify(tk, scope); !errors.Is(err, ErrWrongScope) {
				t.Errorf("scope %q: %v, want %v", scope, err, ErrWrongScope)
			}
		}
		if err := s.Verify(s.Sign("", time.Minute), ""); !errors.Is(err, ErrWrongScope) {
			t.Errorf("a ticket for the empty scope: %v, want %v", err, ErrWrongScope)
		}
		time.Sleep(time.Hour)
		if err := s.Verify(tk, "run:2"); !errors.Is(err, ErrWrongScope) {
			t.Errorf("expired and for another scope: %v, want %v", err, ErrWrongScope)
		}
		if err := s.Verify("", "run:1"); !errors.Is(err, ErrMissing) {
			t.Errorf("no ticket: %v, want %v", err, ErrMissing)
		}
	})
}

// Rotation: the new key signs while the old one still verifies the tickets
// it signed; once the old key is removed, they are invalid, and the new
// key's still open their scope.
func TestRotation(t *testing.T) {
	before := signer(t, 1)      // the old key alone
	rotating := signer(t, 2, 1) // the new key first, the old one kept
	after := signer(t, 2)       // the old key dropped
	oldT, newT := before.Sign("run:1", time.Hour), rotating.Sign("run:1", time.Hour)
	for _, tt := range []struct {
		name   string
		s      *Signer
		ticket string
		want   error
	}{
		{"old ticket, old key", before, oldT, nil},
		{"new ticket, old key alone", before, newT, ErrInvalid},
		{"old ticket, while rotating", rotating, oldT, nil},
		{"new ticket, while rotating", rotating, newT, nil},
		{"old ticket, old key removed", after, oldT, ErrInvalid},
		{"new ticket, old key removed", after, newT, nil},
	} {
		if err := tt.s.Verify(tt.ticket, "run:1"); !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
			t.Errorf("%s: %v, want %v", tt.name, err, tt.want)
		}
	}
}

// New refuses no key and a short key, and keeps its own copy of the keys.
func TestNew(t *testing.T) {
	if _, err := New(); !errors.Is(err, ErrNoKey) {
		t.Errorf("no key: %v", err)
	}
	if _, err := New(key(1), make([]byte, MinKeyLen-1)); !errors.Is(err, ErrShortKey) {
		t.Errorf("a short key: %v", err)
	}
	if _, err := New(nil); !errors.Is(err, ErrShortKey) {
		t.Errorf("a nil key: %v", err)
	}
	synctest.Test(t, func(t *testing.T) { // a clock that stands still, for Sign to sign the same twice
		k := key(1)
		s, err := New(k)
		if err != nil {
			t.Fatal(err)
		}
		tk := s.Sign("run:1", time.Hour)
		k[0] ^= 1
		if err := s.Verify(tk, "run:1"); err != nil || s.Sign("run:1", time.Hour) != tk {
			t.Errorf("the caller's key changed after New changed the Signer: %v", err)
		}
	})
}

// Verify never panics, returns nil or one of its errors, and accepts
// nothing but a ticket that one of its keys signed for that scope, to the
// byte. The corpus is seeded with genuine tickets, and their ways to go
// wrong.
func FuzzVerify(f *testing.F) {
	s := signer(f, 1, 2)
	for _, scope := range []string{"run:1", "user:42", ""} {
		tk := s.Sign(scope, 1000*time.Hour)
		f.Add(tk, scope)
		f.Add(tk, scope+"x")
		f.Add(tk[:len(tk)-1], scope)
		f.Add(strings.Replace(tk, "v1.", "v2.", 1), scope)
		dot := strings.LastIndexByte(tk, '.')
		f.Add(tk[:dot+1]+strings.Repeat("A", len(tk)-dot-1), scope) // a MAC of zeros
		// The MAC's last character, with a bit changed that encodes
		// nothing: another text for the same MAC.
		const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
		f.Add(tk[:len(tk)-1]+string(alphabet[strings.IndexByte(alphabet, tk[len(tk)-1])^1]), scope)
	}
	f.Add("", "")
	f.Add("v1..", "run:1")
	f.Add(strings.Repeat(".", ticketLen), "run:1")
	f.Add("v1."+strings.Repeat("\n", ticketLen-3), "run:1")
	f.Fuzz(func(t *testing.T, ticket, scope string) {
		err := s.Verify(ticket, scope)
		switch {
		case err == nil:
			// The expiry it holds, to sign it again with each key.
			var p [payloadLen]byte
			if n, err := b64.Decode(p[:], []byte(ticket[len(version):signedLen])); err != nil || n != payloadLen {
				t.Fatalf("Verify(%q, %q) accepted a ticket whose payload does not decode", ticket, scope)
			}
			expiry := int64(binary.BigEndian.Uint64(p[:8]))
			if ticket != s.sign(key(1), scope, expiry) && ticket != s.sign(key(2), scope, expiry) {
				t.Errorf("Verify(%q, %q) accepted a ticket it did not sign for that scope", ticket, scope)
			}
		case !errors.Is(err, ErrMissing) && !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrWrongScope) && !errors.Is(err, ErrExpired):
			t.Errorf("Verify(%q, %q) = %v, not one of its errors", ticket, scope, err)
		}
	})
}
