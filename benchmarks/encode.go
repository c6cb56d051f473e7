package main

import (
	"bytes"
	"fmt"
	"testing"

	avsse "github.com/alexandrevicenzi/go-sse"
	ldes "github.com/launchdarkly/eventsource"
	"github.com/lightsse/sse"
	tmsse "github.com/tmaxmax/go-sse"
)

// The encode workload: one event (id, type, a 200-byte JSON line) into a
// buffer that is reused, as a server would. Each encoder's output is checked
// with the spec parser by the smoke test. r3labs/sse has no encoder of its
// own (its handler writes each field with fmt.Fprintf straight to the
// connection), so it has no row here.

var (
	encID   = "1234567"
	encType = eventType
	encData = `{"id":1234567,"user":"someone@example.com","action":"update","path":"/documents/42/sections/7","ts":"2024-11-24T23:41:00Z","changes":[{"op":"replace","field":"title","value":"Quarterly report v3.1"}]}`
)

type encoder struct {
	name string
	note string
	// setup returns a function that encodes the event once into a reused
	// buffer and returns the bytes written.
	setup func() func() []byte
}

var encoders = []encoder{
	{name: "raw append (no checks)", note: "append of the field names and values, no validation", setup: func() func() []byte {
		buf := make([]byte, 0, 512)
		return func() []byte {
			b := append(buf[:0], "id: "...)
			b = append(b, encID...)
			b = append(b, "\nevent: "...)
			b = append(b, encType...)
			b = append(b, "\ndata: "...)
			b = append(b, encData...)
			b = append(b, "\n\n"...)
			buf = b
			return b
		}
	}},
	{name: "ours: Event.AppendText", note: "validates every field (UTF-8, line breaks), splits data at CR/LF", setup: func() func() []byte {
		buf := make([]byte, 0, 512)
		ev := sse.Event{ID: encID, Type: encType, Data: encData}
		return func() []byte {
			b, err := ev.AppendText(buf[:0])
			if err != nil {
				panic(err)
			}
			buf = b
			return b
		}
	}},
	{name: "tmaxmax: Message.WriteTo", note: "message built once (AppendData splits lines); WriteTo a reused bytes.Buffer", setup: func() func() []byte {
		var bb bytes.Buffer
		m := &tmsse.Message{ID: tmsse.ID(encID), Type: tmsse.Type(encType)}
		m.AppendData(encData)
		return func() []byte {
			bb.Reset()
			if _, err := m.WriteTo(&bb); err != nil {
				panic(err)
			}
			return bb.Bytes()
		}
	}},
	{name: "launchdarkly: Encoder.Encode", note: "NewEncoder on a reused bytes.Buffer", setup: func() func() []byte {
		var bb bytes.Buffer
		enc := ldes.NewEncoder(&bb, false)
		ev := ldEvent{id: encID, data: encData}
		return func() []byte {
			bb.Reset()
			if err := enc.Encode(ev); err != nil {
				panic(err)
			}
			return bb.Bytes()
		}
	}},
	{name: "alexandrevicenzi: Message.Bytes", note: "returns a new buffer each call (fmt.Sprintf per field)", setup: func() func() []byte {
		m := avsse.NewMessage(encID, encData, encType)
		return func() []byte { return m.Bytes() }
	}},
	{name: "blog: fmt.Fprintf", note: `fmt.Fprintf(&buf, "id: %s\nevent: %s\ndata: %s\n\n", ...)`, setup: func() func() []byte {
		var bb bytes.Buffer
		return func() []byte {
			bb.Reset()
			fmt.Fprintf(&bb, "id: %s\nevent: %s\ndata: %s\n\n", encID, encType, encData)
			return bb.Bytes()
		}
	}},
}

func benchEncoder(e encoder) func(b *testing.B) {
	return func(b *testing.B) {
		f := e.setup()
		b.ReportAllocs()
		var n int
		for b.Loop() {
			n += len(f())
		}
		if n == 0 {
			b.Fatal("nothing encoded")
		}
	}
}
