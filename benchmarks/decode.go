package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/lightsse/sse/sseclient"

	ldes "github.com/launchdarkly/eventsource"
	"github.com/lightsse/sse"
	"github.com/openai/openai-go/v3/packages/ssestream"
	r3sse "github.com/r3labs/sse/v2"
	tmsse "github.com/tmaxmax/go-sse"
)

// The parse workload: each reader parses a stream of decodeEvents events held
// in memory, as the library's documentation has a program read a response
// body, and hands over each event's type, id and data. One benchmark op is
// the whole stream, so the cost of starting a reader (buffers, goroutines) is
// shared by its events. The smoke test checks that every reader gets the same
// events.

// decodeEvents is the number of events in each stream.
const decodeEvents = 1000

// decodeStreams are the streams of the workload.
var decodeStreams = []struct {
	name, note string
	stream     []byte
}{
	{"typical", "id, type, a 200-byte JSON line", typicalStream()},
	{"tokens", "LLM-style: data only, 20 to 40 bytes of JSON", tokenStream()},
}

// typicalStream is the encode workload's event, with ids counting up.
func typicalStream() []byte {
	var b []byte
	for i := range decodeEvents {
		b, _ = sse.Event{ID: strconv.Itoa(1_000_000 + i), Type: encType, Data: encData}.AppendText(b)
	}
	return b
}

// tokenStream is what LLM APIs send: one small JSON object per token, with no
// id or type.
func tokenStream() []byte {
	var b []byte
	for i := range decodeEvents {
		data := `{"i":` + strconv.Itoa(i%10) + `,"t":"` + strings.Repeat("a", 10+i%21) + `"}` // 20 to 40 bytes
		b, _ = sse.Event{Data: data}.AppendText(b)
	}
	return b
}

// A decoder parses a whole stream. It calls got, when not nil, with each
// event's type ("" for message), id (the last event ID; "" if the library
// has none) and data; the benchmark passes nil, so that no reader pays for a
// conversion it would not make.
type decoder struct {
	short string // in benchmark names
	name  string
	note  string
	noID  bool // the library does not read ids
	parse func(stream []byte, got func(typ, id, data string)) error
}

var decoders = []decoder{
	{short: "ours", name: "ours: sseclient.Reader", note: "NewReader(body); Next until io.EOF; LastEventID per event", parse: func(stream []byte, got func(typ, id, data string)) error {
		r := sseclient.NewReader(bytes.NewReader(stream))
		for {
			ev, err := r.Next()
			if err == io.EOF {
				return nil
			}
			if err != nil {
				return err
			}
			if got != nil {
				got(ev.Type, r.LastEventID(), ev.Data)
			}
		}
	}},
	{short: "tmaxmax", name: "tmaxmax: sse.Read", note: "range over sse.Read(body, nil) (64 KiB event limit)", parse: func(stream []byte, got func(typ, id, data string)) error {
		for ev, err := range tmsse.Read(bytes.NewReader(stream), nil) {
			if err != nil {
				return err
			}
			if got != nil {
				got(ev.Type, ev.LastEventID, ev.Data)
			}
		}
		return nil
	}},
	{short: "launchdarkly", name: "launchdarkly: Decoder.Decode", note: "NewDecoder(body); Decode until io.EOF (a goroutine sends it each line on a channel)", parse: func(stream []byte, got func(typ, id, data string)) error {
		d := ldes.NewDecoder(bytes.NewReader(stream))
		for {
			ev, err := d.Decode()
			if err == io.EOF {
				return nil
			}
			if err != nil {
				return err
			}
			if got != nil {
				got(ev.Event(), ev.Id(), ev.Data())
			}
		}
	}},
	{short: "r3labs", name: "r3labs: Client.SubscribeRaw", note: "its Client on an http.Client whose transport answers with the stream from memory (it has no public parser: EventStreamReader only splits events); a goroutine sends each event on a channel", parse: func(stream []byte, got func(typ, id, data string)) error {
		c := r3sse.NewClient("http://memory/events")
		c.Connection = &http.Client{Transport: memoryTransport(stream)}
		return c.SubscribeRawWithContext(context.Background(), func(ev *r3sse.Event) {
			if got != nil {
				got(string(ev.Event), string(ev.ID), string(ev.Data))
			}
		})
	}},
	{short: "openai", name: "openai-go: ssestream.Decoder", noID: true, note: "NewDecoder(response); Next until false (a bufio.Scanner: LF and CRLF only; no id field)", parse: func(stream []byte, got func(typ, id, data string)) error {
		d := ssestream.NewDecoder(memoryResponse(stream))
		for d.Next() {
			if got != nil {
				ev := d.Event()
				got(ev.Type, "", strings.TrimSuffix(string(ev.Data), "\n"))
			}
		}
		return d.Err()
	}},
}

// memoryResponse is a 200 text/event-stream response whose body is stream.
func memoryResponse(stream []byte) *http.Response {
	return &http.Response{
		StatusCode: 200,
		Header:     http.Header{"Content-Type": {"text/event-stream"}},
		Body:       io.NopCloser(bytes.NewReader(stream)),
	}
}

// memoryTransport answers every request with memoryResponse.
type memoryTransport []byte

func (t memoryTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp := memoryResponse(t)
	resp.Request = req
	return resp, nil
}

// benchDecoder returns a benchmark of d on stream: one op parses the whole
// stream. It reports ns, allocations and bytes per event.
func benchDecoder(d decoder, stream []byte) func(b *testing.B) {
	return func(b *testing.B) {
		b.SetBytes(int64(len(stream)))
		b.ReportAllocs()
		var m0, m1 runtime.MemStats
		runtime.ReadMemStats(&m0)
		for b.Loop() {
			if err := d.parse(stream, nil); err != nil {
				b.Fatal(err)
			}
		}
		runtime.ReadMemStats(&m1)
		events := float64(b.N) * decodeEvents
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/events, "ns/event")
		b.ReportMetric(float64(m1.Mallocs-m0.Mallocs)/events, "allocs/event")
		b.ReportMetric(float64(m1.TotalAlloc-m0.TotalAlloc)/events, "B/event")
	}
}

// writeParse runs the parse workload and writes its table.
func writeParse(o options, out, log io.Writer) {
	_ = flag.Set("test.benchtime", o.benchtime.String())
	fmt.Fprintf(out, "### Parse: a stream of %d events in memory, read as a program reads a response body\n\n", decodeEvents)
	fmt.Fprintf(out, "| stream | reader | ns/event | MB/s | B/event | allocs/event | notes |\n|---|---|--:|--:|--:|--:|---|\n")
	for _, s := range decodeStreams {
		for _, d := range decoders {
			fmt.Fprintf(log, "parse: %s, %s\n", s.name, d.name)
			r := testing.Benchmark(benchDecoder(d, s.stream))
			events := float64(r.N) * decodeEvents
			fmt.Fprintf(out, "| %s (%s) | %s | %.1f | %.0f | %.1f | %.3f | %s |\n", s.name, s.note, d.name,
				float64(r.T.Nanoseconds())/events, float64(r.Bytes)*float64(r.N)/r.T.Seconds()/1e6,
				float64(r.MemBytes)/events, float64(r.MemAllocs)/events, d.note)
		}
	}
	fmt.Fprintln(out)
}
