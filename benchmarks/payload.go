package main

import (
	"strconv"
	"strings"
)

// A payload is one line of JSON of a fixed size that carries the event's
// sequence number and its scheduled publish time (Unix ns), so that a client
// in another process can measure latency and check order and completeness:
//
//	{"seq":00000042,"t":1732500000000000000,"p":"xxxx…"}
const (
	payloadHead = len(`{"seq":00000000,"t":0000000000000000000,"p":"`)
	payloadTail = len(`"}`)
	minPayload  = payloadHead + payloadTail
)

// syncData and pingData are the data of events that are not measured: sync
// events make sure every stream is subscribed before a run; ping is the
// heartbeat of a library that cannot send comments.
const (
	syncData = "sync"
	pingData = "ping"
)

var padding = strings.Repeat("x", 1<<20)

// appendPayload appends the payload of size bytes for seq scheduled at t.
func appendPayload(b []byte, seq int, t int64, size int) []byte {
	size = max(size, minPayload)
	b = append(b, `{"seq":`...)
	b = appendPadded(b, int64(seq), 8)
	b = append(b, `,"t":`...)
	b = appendPadded(b, t, 19)
	b = append(b, `,"p":"`...)
	b = append(b, padding[:size-minPayload]...)
	return append(b, `"}`...)
}

func makePayload(seq int, t int64, size int) string {
	return string(appendPayload(make([]byte, 0, max(size, minPayload)), seq, t, size))
}

func appendPadded(b []byte, v int64, width int) []byte {
	var tmp [20]byte
	s := strconv.AppendInt(tmp[:0], v, 10)
	for i := len(s); i < width; i++ {
		b = append(b, '0')
	}
	return append(b, s...)
}

// parsePayload checks that data is exactly a payload of size bytes and
// returns its sequence number and scheduled time.
func parsePayload(data []byte, size int) (seq int, t int64, ok bool) {
	size = max(size, minPayload)
	if len(data) != size || string(data[:7]) != `{"seq":` || string(data[15:20]) != `,"t":` ||
		string(data[39:45]) != `,"p":"` || string(data[size-2:]) != `"}` ||
		string(data[payloadHead:size-2]) != padding[:size-minPayload] {
		return 0, 0, false
	}
	s, ok1 := digits(data[7:15])
	tt, ok2 := digits(data[20:39])
	if !ok1 || !ok2 {
		return 0, 0, false
	}
	return int(s), tt, true
}

// digits parses a fixed-width decimal number (no sign, at most 19 digits).
func digits(b []byte) (int64, bool) {
	var v int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + int64(c-'0')
	}
	return v, true
}
