package main

import (
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
	return o
}

func TestFanoutEveryContender(t *testing.T) {
	o := smokeOptions()
	for _, ci := range contenders {
		if ci.floor {
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
