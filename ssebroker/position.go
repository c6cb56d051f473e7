package ssebroker

import (
	"crypto/rand"
	"encoding/hex"
	"strconv"

	"github.com/lightsse/sse/internal/wire"
)

// ResetEvent is the type of the event a Broker sends, first, to a client whose
// Last-Event-ID it cannot resume from: an id from another Broker or an earlier
// run, a made-up one, or one so old that the events after it are gone. Its
// Data is the id after which events were lost (the one the client sent, or
// empty when LastEventID refused the header), and its ID the position from
// which the stream goes on. The client should fill the gap another way
// (reload its state, say). Listen for it with addEventListener("reset", ...).
//
// A Broker with a Log also sends it in the middle of a stream when the Log's
// history is lost (its epoch changes) or loses events this Broker had not yet
// delivered.
const ResetEvent = "reset"

// A Position is where an event sits in a Broker's history: the epoch of the
// history and the event's offset in it. An event the Broker numbers carries
// its Position as its id, "<epoch>-<offset>" (see String).
type Position struct {
	// Epoch names one unbroken history. It is 16 lowercase hexadecimal digits,
	// drawn at random when the history starts and changed whenever the
	// history is lost, so that an id from a lost history resumes nothing.
	Epoch string
	// Offset counts the epoch's events from 1, with no gaps; 0 is the
	// position before the first event.
	Offset uint64
}

// String returns the id of the event at p: its epoch, a dash, its offset.
func (p Position) String() string { return string(wire.AppendPosition(nil, p.Epoch, p.Offset)) }

// epochLen is the length of an epoch: 64 random bits in hexadecimal. At that
// width two of even a billion Brokers share an epoch with a probability
// under 3%, and two of a million under one in 30 million.
const epochLen = 16

// NewEpoch returns a new random epoch: 64 bits from crypto/rand, as 16
// lowercase hexadecimal digits. A Log calls it when it starts a history.
func NewEpoch() string {
	var b [epochLen / 2]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand documents it)
	return hex.EncodeToString(b[:])
}

// validEpoch reports whether s has the shape of an epoch.
func validEpoch(s string) bool {
	if len(s) != epochLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// parsePosition returns the Position an id names, if it has the shape of one:
// an epoch, a dash and 1 to 20 decimal digits that fit in a uint64.
func parsePosition(id string) (Position, bool) {
	if len(id) < epochLen+2 || len(id) > epochLen+21 || id[epochLen] != '-' || !validEpoch(id[:epochLen]) {
		return Position{}, false
	}
	digits := id[epochLen+1:]
	for i := 0; i < len(digits); i++ {
		if digits[i] < '0' || digits[i] > '9' {
			return Position{}, false
		}
	}
	off, err := strconv.ParseUint(digits, 10, 64)
	return Position{Epoch: id[:epochLen], Offset: off}, err == nil
}
