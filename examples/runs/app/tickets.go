package app

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"time"
)

// tickets signs and checks the demo's viewer tickets: a run id and an expiry,
// signed with HMAC-SHA-256. (The project's sseticket package does this for
// real applications.)
type tickets struct {
	key []byte
	ttl time.Duration
}

// Errors of a ticket that verify refuses.
var (
	errBadTicket     = errors.New("app: ticket malformed, or not for this run")
	errExpiredTicket = errors.New("app: ticket expired")
)

// sign returns a ticket to view run id from now until the tickets' ttl has
// passed: its expiry and its MAC, in base64url.
func (k tickets) sign(id string, now time.Time) string {
	var b [8 + sha256.Size]byte
	binary.BigEndian.PutUint64(b[:8], uint64(now.Add(k.ttl).Unix()))
	copy(b[8:], k.mac(id, b[:8]))
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// verify returns nil for a ticket that sign made for id and that has not
// expired at now; errBadTicket for a missing, malformed, tampered or
// other-run ticket; errExpiredTicket for an expired one.
func (k tickets) verify(ticket, id string, now time.Time) error {
	b, err := base64.RawURLEncoding.DecodeString(ticket)
	if err != nil || len(b) != 8+sha256.Size || !hmac.Equal(b[8:], k.mac(id, b[:8])) {
		return errBadTicket
	}
	if now.Unix() >= int64(binary.BigEndian.Uint64(b[:8])) {
		return errExpiredTicket
	}
	return nil
}

func (k tickets) mac(id string, exp []byte) []byte {
	m := hmac.New(sha256.New, k.key)
	m.Write(exp)
	m.Write([]byte(id))
	return m.Sum(nil)
}
