package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"testing"
	"time"
)

// The smoke test runs the harness in this process (servers and clients as
// goroutines, talking over pipes) with a few clients, for every contender,
// and checks that every event arrives once, in order, and valid by the spec
// parser. It checks the harness and the adapters, not performance.

func TestMain(m *testing.M) {
	inProcess = true
	quietWait = 0
	os.Exit(m.Run())
}

func smokeOptions() options {
	o := defaultOptions(true)
	o.fanoutEvents = 30
	o.fanoutInterval = time.Millisecond
	o.slowClients = 4
	o.slowEvents = 50
	o.slowSize = 1024
	o.slowWT = 500 * time.Millisecond
	o.idleN = 5
	o.idleHeartbeat = time.Second // the shortest the package allows
	o.idleWindow = time.Second + 350*time.Millisecond
	o.idleSettle = 0
	o.manyHB = time.Second
	o.manyWindow = time.Second + 350*time.Millisecond
	o.manySettle = 0
	o.manySteady = 500 * time.Millisecond
	o.manyRate = 20
	return o
}

func TestFanoutEveryContender(t *testing.T) {
	o := smokeOptions()
	for _, ci := range contenders {
		if ci.floor || ci.variant {
			continue
		}
		t.Run(ci.name, func(t *testing.T) {
			t.Parallel()
			r := runFanout(o, ci, 3, 1, io.Discard)
			if r.err != nil {
				t.Fatal(r.err)
			}
			if r.delivered != r.want || r.want != int64(3*o.fanoutEvents) || r.lost+r.dup+r.reord+r.bad != 0 {
				t.Errorf("delivered %d of %d, lost %d, dup %d, reordered %d, invalid %d (%s)",
					r.delivered, r.want, r.lost, r.dup, r.reord, r.bad, r.note)
			}
			if !(r.p99 > 0) {
				t.Errorf("p99 = %v", r.p99)
			}
		})
	}
}

// ours and the hub keep serving the others while a client is stalled, and
// the stalled client catches up when it reads again (the A/B pairs).
func TestSlowConsumer(t *testing.T) {
	o := smokeOptions()
	for _, name := range []string{"ours", "hub"} {
		ci, _ := findContender(name)
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			r := runSlow(o, ci, io.Discard)
			if r.err != nil {
				t.Fatal(r.err)
			}
			if r.completeA != r.others || r.completeB != r.others || r.others != o.slowClients-1 {
				t.Errorf("complete A %d, B %d of %d", r.completeA, r.completeB, r.others)
			}
			// Every pair, then the last burst: client 0 stopped, read
			// again and caught up between them.
			if r.pairs != o.slowPairs {
				t.Errorf("%d of %d pairs valid: %s", r.pairs, o.slowPairs, r.note)
			}
			if want := (o.slowPairs + 1) * o.slowEvents; r.blockedB || r.publishedB != want || r.wantB != want {
				t.Errorf("publish B blocked: published %d of %d", r.publishedB, r.wantB)
			}
			if r.lostA+r.lostB != 0 || !(r.p99A > 0) || !(r.p99B > 0) || !(r.ratio > 0) {
				t.Errorf("lost %d+%d, p99 A %v B %v, ratio %v", r.lostA, r.lostB, r.p99A, r.p99B, r.ratio)
			}
		})
	}
}

func TestIdleHeartbeats(t *testing.T) {
	o := smokeOptions()
	for _, ci := range contenders {
		if ci.variant {
			continue // TestMany
		}
		t.Run(ci.name, func(t *testing.T) {
			t.Parallel()
			r := runIdle(o, ci, io.Discard)
			if r.err != nil {
				t.Fatal(r.err)
			}
			if r.connected != o.idleN {
				t.Errorf("%d of %d connected", r.connected, o.idleN)
			}
			if !ci.floor && r.beats < 1 {
				t.Errorf("%.1f heartbeats per stream in %v", r.beats, o.idleWindow)
			}
		})
	}
}

// The many workload's variants, with 6 streams over two lean client
// processes: every stream connects, gets heartbeats, the broadcast and
// every steady event, and none is dropped.
func TestMany(t *testing.T) {
	o := smokeOptions()
	for _, name := range manyContenders {
		ci, _ := findContender(name)
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			const n = 6
			r := runMany(o, ci, n, 3, io.Discard)
			if r.err != nil {
				t.Fatal(r.err)
			}
			if r.connected != n || r.failed != 0 {
				t.Errorf("%d of %d connected, %d failed", r.connected, n, r.failed)
			}
			if r.beats < 1 {
				t.Errorf("%.1f heartbeats per stream in %v", r.beats, o.manyWindow)
			}
			if r.bGot != n || r.bDropped != "0" || !(r.bP99 > 0) {
				t.Errorf("broadcast: %d of %d got it, dropped %s, p99 %v", r.bGot, n, r.bDropped, r.bP99)
			}
			if want := int64(n * r.sEvents); r.sEvents != 10 || r.sGot != want || r.sWant != want || r.sLost+r.sDup != 0 || r.sDropped != "0" {
				t.Errorf("steady: %d events, delivered %d of %d, lost %d, dup %d, dropped %s", r.sEvents, r.sGot, r.sWant, r.sLost, r.sDup, r.sDropped)
			}
			if r.note != "" {
				t.Errorf("note: %s", r.note)
			}
		})
	}
}

func TestLeanParserChunked(t *testing.T) {
	c := &leanClient{args: leanArgs{size: 100}, streams: make([]leanStream, 1)}
	c.arm(0, 3)
	p := leanParser{c: c, s: &c.streams[0], chunked: true}
	var body []byte
	for _, ev := range []string{": hi\n\n", "data: sync\n\n", "id: 1\nevent: tick\ndata: " + makePayload(0, time.Now().UnixNano(), 100) + "\n\n",
		"data: " + makePayload(2, time.Now().UnixNano(), 100) + "\r\n\r\n", "data: " + makePayload(1, time.Now().UnixNano(), 100) + "\n\n"} {
		body = fmt.Appendf(body, "%x;ext\r\n%s\r\n", len(ev), ev)
	}
	body = append(body, "0\r\n\r\n"...)
	// Fed a few bytes at a time, so that lines and chunk sizes straddle reads.
	for i := 0; i < len(body); i += 7 {
		if !p.feed(body[i:min(i+7, len(body))]) {
			if i+7 < len(body)-2 {
				t.Fatalf("ended early at %d of %d", i, len(body))
			}
			break
		}
	}
	s := &c.streams[0]
	if c.beats.Load() != 1 || !s.synced.Load() || s.got.Load() != 2 || s.dup.Load() != 1 || s.lastSeq.Load() != 2 {
		t.Errorf("beats %d, synced %v, got %d, dup %d, last %d", c.beats.Load(), s.synced.Load(), s.got.Load(), s.dup.Load(), s.lastSeq.Load())
	}
}

func TestParser(t *testing.T) {
	in := "\xEF\xBB\xBFid: 1\r\nevent: tick\rdata: a\ndata:b\r\n: c\n\nretry: 10\nid\ndata\n\nevent: x\n\ndata: partial"
	evs, err := parseAll(in)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 2 {
		t.Fatalf("got %d events: %+v", len(evs), evs)
	}
	if evs[0].Type != "tick" || string(evs[0].Data) != "a\nb" || evs[0].LastEventID != "1" {
		t.Errorf("first: %+v", evs[0])
	}
	if evs[1].Type != "message" || string(evs[1].Data) != "" || evs[1].LastEventID != "" {
		t.Errorf("second: %+v", evs[1])
	}
}

func TestPayload(t *testing.T) {
	for _, size := range []int{0, 47, 200, 1024} {
		p := makePayload(42, 1732500000000000000, size)
		if len(p) != max(size, minPayload) || !strings.HasPrefix(p, `{"seq":00000042,`) {
			t.Errorf("size %d: %q", size, p)
		}
		seq, ts, ok := parsePayload([]byte(p), size)
		if !ok || seq != 42 || ts != 1732500000000000000 {
			t.Errorf("size %d: %d %d %v", size, seq, ts, ok)
		}
		if _, _, ok := parsePayload([]byte(p[:len(p)-1]+"x"), size); ok {
			t.Errorf("size %d: accepted a corrupt payload", size)
		}
	}
	for _, v := range []int64{0, 1, 255, 256, 511, 512, 1000, 123456, 1 << 30} {
		b := bucketOf(v)
		if mid := bucketMid(b); mid < float64(v)*0.99-1 || mid > float64(v)*1.01+1 {
			t.Errorf("bucket of %d: %d, mid %v", v, b, mid)
		}
	}
}
