package redisstream

import (
	"context"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lightsse/sse/internal/logtest"
	"github.com/lightsse/sse/internal/ssetest"
	"github.com/lightsse/sse/redisstream/internal/redistest"
)

// The proxy of DEPLOY.md, between the markers, which TestDeployDocShowsProxy
// finds there.

// deploy.md: begin
// nextBackend sends each request to one of backends, in turn, and to the
// next one when it cannot connect: a dial that failed sent nothing, so
// any request may go elsewhere. A backend that dies mid-stream ends the
// stream; the client reconnects, through the proxy, with its Last-Event-ID.
type nextBackend struct {
	backends []*url.URL
	turn     atomic.Uint64
	tr       *http.Transport
}

func (t *nextBackend) RoundTrip(r *http.Request) (*http.Response, error) {
	first := int(t.turn.Add(1))
	var err error
	for i := range t.backends {
		b := t.backends[(first+i)%len(t.backends)]
		out := r.Clone(r.Context())
		out.URL.Scheme, out.URL.Host = b.Scheme, b.Host
		resp, e := t.tr.RoundTrip(out)
		var op *net.OpError
		if e == nil || !errors.As(e, &op) || op.Op != "dial" {
			return resp, e
		}
		err = e
	}
	return nil, err
}

func newBalancer(backends []*url.URL) *httputil.ReverseProxy {
	return &httputil.ReverseProxy{
		Rewrite:       func(r *httputil.ProxyRequest) { r.Out.URL.Scheme, r.Out.URL.Host = "http", "backend" },
		Transport:     &nextBackend{backends: backends, tr: &http.Transport{DialContext: (&net.Dialer{Timeout: 2 * time.Second}).DialContext}},
		FlushInterval: -1, // write each event at once
	}
}

// deploy.md: end

// Behind a proxy that sends a request to the next instance when it cannot
// connect, a client whose instance dies reconnects, through the proxy, to
// another, and resumes with no gap; behind one that answers 502 (as
// httputil.ReverseProxy does by default, and nginx without
// proxy_next_upstream), an EventSource would give up for good.
func TestProxyToNextInstance(t *testing.T) {
	srv := redistest.Start(t)
	ins := logtest.NewInstances(t, 2, withOptions(srv, nil), nil)
	var backends []*url.URL
	for _, in := range ins {
		u, _ := url.Parse(in.URL)
		backends = append(backends, u)
	}
	quiet := log.New(io.Discard, "", 0)
	px := newBalancer(backends)
	px.ErrorLog = quiet
	t.Cleanup(px.Transport.(*nextBackend).tr.CloseIdleConnections)
	front := httptest.NewServer(px)
	t.Cleanup(front.Close)
	plainTr := &http.Transport{}
	t.Cleanup(plainTr.CloseIdleConnections)
	plain := httptest.NewServer(&httputil.ReverseProxy{ // to the first instance only
		Rewrite:   func(r *httputil.ProxyRequest) { r.SetURL(backends[0]) },
		Transport: plainTr,
		ErrorLog:  quiet,
	})
	t.Cleanup(plain.Close)

	c := logtest.NewClient(t, "client", logtest.HeadID(t, ins[0].Log))
	via := logtest.At("the proxy", front.URL)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ins[1].Publish(t, 1, 5)
	c.Session(ctx, via, func(n int, _ ssetest.Event) bool { return n < 5 })
	ins[0].Kill()
	ins[1].Publish(t, 6, 10)
	for have := len(c.Numbers()); have < 10 && ctx.Err() == nil; have = len(c.Numbers()) {
		// In turn, the proxy tries the dead instance first half the time.
		if !c.Session(ctx, via, func(n int, _ ssetest.Event) bool { return have+n < 10 && n < 2 }) {
			t.Fatal("the proxy refused a stream, with an instance left")
		}
	}
	if got := strings.Join(c.Numbers(), ","); got != "1,2,3,4,5,6,7,8,9,10" {
		t.Errorf("through the proxy, across an instance's death: %s, want 1 to 10", got)
	}
	resp, err := plainTr.RoundTrip(httptest.NewRequest("GET", plain.URL, nil).WithContext(ctx))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway {
		t.Errorf("a plain ReverseProxy to the dead instance answered %s; want 502 Bad Gateway, after which an EventSource gives up", resp.Status)
	}
}

// DEPLOY.md shows the proxy that TestProxyToNextInstance runs.
func TestDeployDocShowsProxy(t *testing.T) {
	src, err := os.ReadFile("deploy_test.go")
	if err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile("DEPLOY.md")
	if err != nil {
		t.Fatal(err)
	}
	_, code, _ := strings.Cut(string(src), "// deploy.md: begin\n")
	code, _, _ = strings.Cut(code, "\n// deploy.md: end")
	if !strings.Contains(string(doc), code) {
		t.Errorf("DEPLOY.md does not show the proxy of deploy_test.go as it is:\n%s", code)
	}
}
