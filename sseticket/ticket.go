// Package sseticket makes and checks tickets: short-lived tokens, signed
// with HMAC-SHA256, that let the holder open one scope (a run's stream, a
// user's stream, any resource a string names) until they expire.
//
// An EventSource cannot send headers, so a stream's URL must carry its
// proof of access; and the id in a URL (a run's, a user's) is no secret:
// it is in logs, in the page, guessable. A ticket is the proof: the server
// where the user is logged in signs one for the scope, the page puts it in
// the stream's query, and the stream's handler checks it before it writes
// a byte:
//
//	signer, err := sseticket.New(key) // key: 32 random bytes or more
//	...
//	// The page's own server, after its session check:
//	ticket := signer.Sign("run:"+runID, time.Minute)
//	// new EventSource("/runs/" + runID + "/events?ticket=" + ticket)
//
//	// The stream, behind the check:
//	http.Handle("GET /runs/{id}/events", signer.Require(
//		func(r *http.Request) string { return "run:" + r.PathValue("id") },
//		streamHandler))
//
// # The contract
//
// A ticket binds a scope and an expiry, under a key. Verify accepts a
// ticket only if one of the Signer's keys signed it (checked with
// hmac.Equal, in constant time), for that very scope, and it has not
// expired; otherwise it returns an error matching one of ErrMissing,
// ErrInvalid (not a ticket, or not signed by any of the keys: forged,
// tampered, truncated, signed with a key since removed), ErrWrongScope and
// ErrExpired, in that order of precedence. Require answers any of those
// with 403 Forbidden and a short text body, before the handler behind it
// runs: no event-stream header, no byte of the stream, and the same answer
// whatever the reason, so that it tells a prober nothing.
//
// Scopes are strings the application chooses; give each kind of resource
// its prefix ("run:", "user:") so that a ticket for one never opens
// another. The empty scope is none: Verify refuses it (ErrWrongScope), so
// that a scopeOf that finds no resource opens nothing.
//
// # Keys
//
// New takes one key or more, each at least MinKeyLen (32) bytes: the first
// signs, all verify. To rotate, put the new key first and keep the old one
// second for as long as its tickets live (their ttl), then drop it: its
// tickets then fail with ErrInvalid. Every server that checks tickets needs
// the same keys, and clocks close enough for the expiry.
//
// # What a ticket shows
//
// A ticket is signed, not encrypted: "v1." then, in unpadded base64url, its
// expiry (Unix milliseconds) and the SHA-256 of its scope, then "." and the
// HMAC-SHA256 of what precedes. Anyone who sees it learns when it expires,
// and can test a guess of its scope; the scope is in the stream's URL
// anyway. A query string lands in access logs, proxies' included: keep the
// ttl short, so that a logged ticket is soon worth nothing.
//
// # Expiry and reconnections
//
// A ticket is checked when a stream opens, and again each time the
// EventSource reconnects, to the same URL, with the same ticket. Once it has
// expired, the reconnection gets 403, and an EventSource gives up for good
// on a status other than 200 (readyState CLOSED). Either give tickets a ttl
// as long as a stream may need to reconnect, or, as a short ttl is worth
// more, have the page fetch a new ticket and open a new EventSource when
// its old one closes.
package sseticket

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// MinKeyLen is the least length of a key, in bytes: HMAC-SHA256's output.
const MinKeyLen = 32

// Errors of New.
var (
	// ErrNoKey: New was given no key.
	ErrNoKey = errors.New("sseticket: no key")
	// ErrShortKey: a key is shorter than MinKeyLen bytes.
	ErrShortKey = errors.New("sseticket: key shorter than 32 bytes")
)

// Errors of Verify, Check and Require: why a ticket opens nothing. Test for
// them with errors.Is.
var (
	// ErrMissing: there is no ticket (an empty one, or no query parameter).
	ErrMissing = errors.New("sseticket: no ticket")
	// ErrInvalid: the ticket is not one that one of the Signer's keys
	// signed: malformed, of another version, tampered with, forged, or
	// signed with a key the Signer no longer has. (Or, for Check, the
	// request carries more than one.)
	ErrInvalid = errors.New("sseticket: invalid ticket")
	// ErrWrongScope: the ticket is genuine, but for another scope; or the
	// scope asked for is empty.
	ErrWrongScope = errors.New("sseticket: ticket is for another scope")
	// ErrExpired: the ticket is genuine and for this scope, but its time is
	// up.
	ErrExpired = errors.New("sseticket: ticket expired")
)

// A Signer signs tickets with its first key and verifies them with any of
// its keys. Make one with New. It is safe for concurrent use; set Param, if
// at all, before its first use.
type Signer struct {
	// Param is the name of the query parameter that Check and Require read
	// the ticket from; "" means DefaultParam.
	Param string

	keys [][]byte
}

// New returns a Signer that signs with keys[0] and verifies with every key
// in keys. It copies the keys. It returns ErrNoKey if there is none, and an
// error matching ErrShortKey if one is shorter than MinKeyLen bytes (make
// keys with crypto/rand, 32 bytes of it).
func New(keys ...[]byte) (*Signer, error) {
	if len(keys) == 0 {
		return nil, ErrNoKey
	}
	s := &Signer{}
	for i, k := range keys {
		if len(k) < MinKeyLen {
			return nil, fmt.Errorf("%w: key %d has %d", ErrShortKey, i, len(k))
		}
		s.keys = append(s.keys, append([]byte(nil), k...))
	}
	return s, nil
}

// The ticket's layout: version, then the payload (expiry, scope hash) in
// base64url, ".", and the MAC in base64url.
const (
	version    = "v1."
	payloadLen = 8 + sha256.Size
	signedLen  = len(version) + (payloadLen*8+5)/6 // "v1." and the payload, encoded
	ticketLen  = signedLen + 1 + (sha256.Size*8+5)/6
)

// b64 is unpadded base64url that refuses a non-zero trailing bit, so that
// each payload and MAC has one text only.
var b64 = base64.RawURLEncoding.Strict()

// macContext is the start of every MAC's input, so that a key used for
// something else, against advice, does not vouch for tickets.
const macContext = "sseticket\x00"

// Sign returns a ticket for scope that expires ttl from now (a ttl of 0 or
// less gives one already expired). scope must not be empty: a ticket for ""
// opens nothing. The ticket is 101 bytes of unpadded base64url and dots,
// safe in a URL's query as it is.
func (s *Signer) Sign(scope string, ttl time.Duration) string {
	return s.sign(s.keys[0], scope, time.Now().Add(ttl).UnixMilli())
}

// sign returns the ticket for scope that expires at expiry, in Unix
// milliseconds, signed with key.
func (s *Signer) sign(key []byte, scope string, expiry int64) string {
	var p [payloadLen]byte
	binary.BigEndian.PutUint64(p[:8], uint64(expiry))
	h := sha256.Sum256([]byte(scope))
	copy(p[8:], h[:])
	t := make([]byte, 0, ticketLen)
	t = append(t, version...)
	t = b64.AppendEncode(t, p[:])
	mac := s.mac(key, t)
	t = append(t, '.')
	t = b64.AppendEncode(t, mac)
	return string(t)
}

// Verify returns nil if ticket opens scope now: one of the Signer's keys
// signed it, for scope, and it has not expired. Otherwise it returns
// ErrMissing if ticket is empty, ErrInvalid if no key signed it as it is,
// ErrWrongScope if it is for another scope (or scope is empty), and
// ErrExpired if its time is up, checked in that order: a ticket that is
// not genuine is never said to be expired or for another scope. The
// signature is compared in constant time.
func (s *Signer) Verify(ticket, scope string) error {
	if ticket == "" {
		return ErrMissing
	}
	if len(ticket) != ticketLen || ticket[:len(version)] != version || ticket[signedLen] != '.' {
		return ErrInvalid
	}
	var p [payloadLen]byte
	var mac [sha256.Size]byte
	n, err := b64.Decode(p[:], []byte(ticket[len(version):signedLen]))
	if err != nil || n != len(p) {
		return ErrInvalid
	}
	n, err = b64.Decode(mac[:], []byte(ticket[signedLen+1:]))
	if err != nil || n != len(mac) {
		return ErrInvalid
	}
	signed := []byte(ticket[:signedLen])
	genuine := false
	for _, k := range s.keys { // every key, whichever matches
		genuine = hmac.Equal(mac[:], s.mac(k, signed)) || genuine
	}
	if !genuine {
		return ErrInvalid
	}
	h := sha256.Sum256([]byte(scope))
	if scope == "" || subtle.ConstantTimeCompare(h[:], p[8:]) != 1 {
		return ErrWrongScope
	}
	if expiry := int64(binary.BigEndian.Uint64(p[:8])); time.Now().UnixMilli() >= expiry {
		return ErrExpired
	}
	return nil
}

// mac returns the MAC of signed under key.
func (s *Signer) mac(key, signed []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(macContext))
	m.Write(signed)
	return m.Sum(nil)
}
