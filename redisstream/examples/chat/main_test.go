package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/lightsse/sse/examples/chat/room"
	"github.com/lightsse/sse/internal/leakcheck"
	"github.com/lightsse/sse/internal/ssetest"
	"github.com/lightsse/sse/redisstream/internal/redistest"
	"github.com/redis/go-redis/v9"
)

// TestMain fails the run if a stream, connection or goroutine of go-redis
// outlives its test.
func TestMain(m *testing.M) { leakcheck.Main(m) }

// process starts what one chat process serves, on the Redis that spec
// names (as -redis does), until the test ends.
func process(t *testing.T, spec string) *httptest.Server {
	client, _, err := newClient(spec, false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	broker, streams, err := newBroker(client, "chat")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { streams.Close() })
	hs := httptest.NewServer(room.Handler(broker))
	t.Cleanup(hs.Close)
	t.Cleanup(func() { broker.Close() })
	return hs
}

// userinfo is the credentials of redistest.User in a URL: the chat runs with
// the least privilege the package doc documents.
var userinfo = url.UserPassword(redistest.User, redistest.Password).String()

// A message posted to one process reaches a tab served by the other, with
// the same id there as in a tab of the first: on one Redis, a Sentinel
// deployment, and a Cluster, each named by a URL.
func TestTwoProcessesOneRoom(t *testing.T) {
	t.Run("one node", func(t *testing.T) {
		srv := redistest.Start(t)
		twoProcesses(t, "redis://"+userinfo+"@"+srv.Addr()+"/0")
	})
	t.Run("Sentinel", func(t *testing.T) {
		d := redistest.StartSentinel(t)
		addrs := d.Addrs()
		twoProcesses(t, "redis://"+addrs[0]+"?master_name="+d.Name+"&addr="+addrs[1]+"&addr="+addrs[2]+
			"&username="+redistest.User+"&password="+url.QueryEscape(redistest.Password))
	})
	t.Run("Cluster", func(t *testing.T) {
		c := redistest.StartCluster(t, 3, 0)
		addrs := c.Addrs()
		twoProcesses(t, "redis://"+userinfo+"@"+addrs[0]+"?addr="+addrs[1])
	})
}

func twoProcesses(t *testing.T, spec string) {
	a, b := process(t, spec), process(t, spec)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	hc := &http.Client{Transport: tr}
	tabA, tabB := open(t, ctx, hc, a.URL), open(t, ctx, hc, b.URL)
	form := url.Values{"name": {"ann"}, "text": {"hello from A"}}.Encode()
	// The tabs may open before their process follows the room: post until
	// both have the message (each post is one more message).
	evA, evB := make(chan ssetest.Event, 1), make(chan ssetest.Event, 1)
	go func() { evA <- next(tabA) }()
	go func() { evB <- next(tabB) }()
	var gotA, gotB ssetest.Event
	for tick := time.NewTicker(200 * time.Millisecond); gotA.Type == "" || gotB.Type == ""; {
		resp, err := hc.Post(a.URL+"/send", "application/x-www-form-urlencoded", strings.NewReader(form))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNoContent {
			t.Fatalf("POST /send: %s", resp.Status)
		}
		select {
		case gotA = <-evA:
		case gotB = <-evB:
		case <-tick.C:
		case <-ctx.Done():
			t.Fatal("the message did not reach both tabs")
		}
	}
	for _, ev := range []ssetest.Event{gotA, gotB} {
		var m room.Message
		if err := json.Unmarshal([]byte(ev.Data), &m); err != nil || ev.Type != "chat" || m.Text != "hello from A" {
			t.Errorf("event %+v, want the chat message", ev)
		}
	}
	if gotA.LastEventID == "" {
		t.Error("the message has no id")
	}
}

func open(t *testing.T, ctx context.Context, hc *http.Client, base string) *ssetest.Reader {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, "GET", base+"/events", nil)
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != 200 {
		t.Fatalf("GET /events: %s", resp.Status)
	}
	return ssetest.NewReader(resp.Body)
}

func next(r *ssetest.Reader) ssetest.Event {
	ev, _ := r.Next()
	return ev
}

func TestNewClient(t *testing.T) {
	for _, tt := range []struct {
		spec    string
		cluster bool
		check   func(redis.UniversalClient) bool
		where   string
	}{
		{"10.0.0.5:6379", false, func(c redis.UniversalClient) bool {
			o := c.(*redis.Client).Options()
			return o.Addr == "10.0.0.5:6379" && o.ContextTimeoutEnabled
		}, "Redis at 10.0.0.5:6379"},
		{"redis://sse:secret@10.0.0.5:6379/2", false, func(c redis.UniversalClient) bool {
			o := c.(*redis.Client).Options()
			return o.Addr == "10.0.0.5:6379" && o.Username == "sse" && o.Password == "secret" && o.DB == 2 && o.TLSConfig == nil && o.ContextTimeoutEnabled
		}, "Redis at redis://sse:xxxxx@10.0.0.5:6379/2"},
		{"rediss://sse:secret@redis.example.com:6380", false, func(c redis.UniversalClient) bool {
			o := c.(*redis.Client).Options()
			return o.TLSConfig != nil && o.TLSConfig.ServerName == "redis.example.com"
		}, "Redis at rediss://sse:xxxxx@redis.example.com:6380"},
		{"redis://10.0.0.7:26379?master_name=mymaster&addr=10.0.0.8:26379&username=sse&password=secret", false, func(c redis.UniversalClient) bool {
			o := c.(*redis.Client).Options()
			return o.Username == "sse" && o.Password == "secret" && o.ContextTimeoutEnabled
		}, `the Redis master "mymaster" of the Sentinels at 10.0.0.7:26379, 10.0.0.8:26379`},
		{"redis://sse:secret@10.0.0.5:7000?addr=10.0.0.6:7000", false, func(c redis.UniversalClient) bool {
			o := c.(*redis.ClusterClient).Options()
			return len(o.Addrs) == 2 && o.Username == "sse" && o.Password == "secret" && o.ContextTimeoutEnabled
		}, "the Redis Cluster at 10.0.0.5:7000, 10.0.0.6:7000"},
		{"10.0.0.5:7000", true, func(c redis.UniversalClient) bool {
			o := c.(*redis.ClusterClient).Options()
			return len(o.Addrs) == 1 && o.ContextTimeoutEnabled
		}, "the Redis Cluster at 10.0.0.5:7000"},
	} {
		c, where, err := newClient(tt.spec, tt.cluster)
		if err != nil {
			t.Errorf("newClient(%q): %v", tt.spec, err)
			continue
		}
		if !tt.check(c) || where != tt.where {
			t.Errorf("newClient(%q, %v): %T, %q; not as expected (want %q)", tt.spec, tt.cluster, c, where, tt.where)
		}
		c.Close()
	}
	if c, _, err := newClient("redis://10.0.0.5:6379?bogus=1", false); err == nil {
		c.Close()
		t.Error("newClient with an unknown URL parameter: no error")
	}
}
