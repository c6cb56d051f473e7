package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lightsse/sse/internal/brokertest"

	"github.com/lightsse/sse/ssebroker"

	"github.com/lightsse/sse/examples/chat/room"
	"github.com/lightsse/sse/internal/leakcheck"
	"github.com/lightsse/sse/internal/ssetest"
)

// TestMain fails the run if a stream or connection outlives its test.
func TestMain(m *testing.M) { leakcheck.Main(m) }

// newServer serves the demo's mux on a new Broker until the test ends, when
// it closes the Broker (ending the streams) and then the server.
func newServer(t *testing.T) (*httptest.Server, *ssebroker.Broker) {
	b := brokertest.New(t, nil)
	srv := httptest.NewServer(room.Handler(b))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { b.Close() })
	return srv, b
}

// testContext bounds a test's requests; it is canceled before the cleanups
// of newServer run.
func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// openStream opens the event stream at base/events, resuming after lastID
// if it is not "".
func openStream(t *testing.T, ctx context.Context, client *http.Client, base, lastID string) (*http.Response, *ssetest.Reader) {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, "GET", base+"/events", nil)
	req.Header.Set("Accept", "text/event-stream")
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("GET /events: status %d, Content-Type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	return resp, ssetest.NewReader(resp.Body)
}

// post sends a form body to base/send and returns the status and body.
func post(t *testing.T, ctx context.Context, client *http.Client, base, contentType, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, "POST", base+"/send", strings.NewReader(body))
	req.Header.Set("Content-Type", contentType)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	text, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(text)
}

func send(t *testing.T, ctx context.Context, client *http.Client, base, name, text string) {
	t.Helper()
	form := url.Values{"name": {name}, "text": {text}}.Encode()
	if status, body := post(t, ctx, client, base, "application/x-www-form-urlencoded", form); status != http.StatusNoContent {
		t.Fatalf("POST /send %s: status %d %q, want 204", form, status, body)
	}
}

// nextChat reads the next event and checks that it is a chat event carrying
// name and text.
func nextChat(t *testing.T, events *ssetest.Reader, name, text string) ssetest.Event {
	t.Helper()
	ev, err := events.Next()
	if err != nil {
		t.Fatal(err)
	}
	if ev.Type != "chat" {
		t.Fatalf("event %+v, want type chat", ev)
	}
	var m room.Message
	if err := json.Unmarshal([]byte(ev.Data), &m); err != nil {
		t.Fatalf("data %q: %v", ev.Data, err)
	}
	if m.Name != name || m.Text != text || time.Since(m.Time).Abs() > time.Minute {
		t.Fatalf("data %q: got %+v, want name %q, text %q and the time now", ev.Data, m, name, text)
	}
	if ev.LastEventID == "" {
		t.Errorf("event %q has no id", ev.Data)
	}
	return ev
}

// A posted message reaches a stream as a chat event with JSON data, and a
// stream that reconnects with its last id gets what it missed.
func TestSendReachesStream(t *testing.T) {
	srv, _ := newServer(t)
	client := srv.Client()
	ctx := testContext(t)

	streamCtx, cancel := context.WithCancel(ctx)
	_, events := openStream(t, streamCtx, client, srv.URL, "")
	send(t, ctx, client, srv.URL, "  ann ", `<b>hi</b> & "bye" ☃ `) // spaces trimmed
	ev := nextChat(t, events, "ann", `<b>hi</b> & "bye" ☃`)
	if !strings.Contains(ev.Data, `"name":"ann"`) {
		t.Errorf("data %q lacks the JSON field name", ev.Data)
	}
	cancel() // the tab goes away; a message is sent while it is gone

	send(t, ctx, client, srv.URL, "bob", "while you were away")
	_, events = openStream(t, ctx, client, srv.URL, ev.LastEventID)
	nextChat(t, events, "bob", "while you were away")
}

// A bad form gets 400 and publishes nothing; messages at the bounds pass.
func TestSendRejects(t *testing.T) {
	srv, _ := newServer(t)
	client := srv.Client()
	ctx := testContext(t)
	_, events := openStream(t, ctx, client, srv.URL, "")

	const form = "application/x-www-form-urlencoded"
	long := func(n int) string { return url.QueryEscape(strings.Repeat("é", n)) }
	for _, c := range []struct{ contentType, body string }{
		{form, ""},
		{form, "name=ann"},
		{form, "text=hi"},
		{form, "name=+++&text=hi"},
		{form, "name=ann&text=%FF"},             // invalid UTF-8
		{form, "name=%C3&text=hi"},              // cut UTF-8
		{form, "name=a%0Ab&text=hi"},            // line break in the name
		{form, "name=ann&text=a%00b"},           // NUL
		{form, "name=" + long(33) + "&text=hi"}, // too long
		{form, "name=ann&text=" + long(501)},
		{form, "name=ann&text=" + strings.Repeat("a", room.MaxForm)}, // too large
		{form, "name=ann&text=%zz"},                                  // bad escape
		{"application/json", `{"name":"ann","text":"hi"}`},
	} {
		if status, _ := post(t, ctx, client, srv.URL, c.contentType, c.body); status != http.StatusBadRequest {
			t.Errorf("POST %s %.40q: status %d, want 400", c.contentType, c.body, status)
		}
	}

	resp, err := client.Get(srv.URL + "/send")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET /send: status %d, want 405", resp.StatusCode)
	}

	// The first event on the stream is the first valid message.
	name, text := strings.Repeat("é", room.MaxName), strings.Repeat("€", room.MaxText)
	send(t, ctx, client, srv.URL, name, text)
	nextChat(t, events, name, text)
}

func get(t *testing.T, client *http.Client, url string) (*http.Response, string) {
	t.Helper()
	resp, err := client.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(body)
}

func TestPages(t *testing.T) {
	srv, _ := newServer(t)
	client := srv.Client()

	resp, body := get(t, client, srv.URL)
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Errorf("GET /: status %d, Content-Type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	for _, want := range []string{`new EventSource("/events")`, `addEventListener("chat"`, `addEventListener("reset"`, `fetch("/send"`} {
		if !strings.Contains(body, want) {
			t.Errorf("the chat page lacks %s", want)
		}
	}

	for query, n := range map[string]string{"?n=7": "7", "?n=50": "50", "": "20"} {
		resp, body := get(t, client, srv.URL+"/many"+query)
		if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
			t.Errorf("GET /many%s: status %d, Content-Type %q", query, resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		body = strings.Join(strings.Fields(body), "") // as the template spaces it
		for _, want := range []string{`newEventSource("/events")`, "constn=" + n + ";", "cameover<b>HTTP/1.1</b>", "OverHTTP/1.1withsixstreamsopen"} {
			if !strings.Contains(body, want) {
				t.Errorf("GET /many%s: the page lacks %s", query, want)
			}
		}
	}
	for _, query := range []string{"?n=0", "?n=51", "?n=-1", "?n=x", "?n=2e1"} {
		if resp, _ := get(t, client, srv.URL+"/many"+query); resp.StatusCode != http.StatusBadRequest {
			t.Errorf("GET /many%s: status %d, want 400", query, resp.StatusCode)
		}
	}
	if resp, _ := get(t, client, srv.URL+"/nothing"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /nothing: status %d, want 404", resp.StatusCode)
	}
}

// With the throwaway certificate, a client that trusts it gets the stream,
// and the messages, over HTTP/2.
func TestTLSServesHTTP2(t *testing.T) {
	cert, err := selfSigned(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	b := brokertest.New(t, nil)
	srv := httptest.NewUnstartedServer(room.Handler(b))
	srv.EnableHTTP2 = true
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	t.Cleanup(func() { b.Close() })

	roots := x509.NewCertPool()
	roots.AddCert(cert.Leaf)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}, ForceAttemptHTTP2: true}
	t.Cleanup(tr.CloseIdleConnections)
	client := &http.Client{Transport: tr}
	ctx := testContext(t)

	// The server is at 127.0.0.1; the client checks the certificate names it.
	resp, events := openStream(t, ctx, client, srv.URL, "")
	if resp.ProtoMajor != 2 {
		t.Fatalf("stream served over %s, want HTTP/2", resp.Proto)
	}
	send(t, ctx, client, srv.URL, "ann", "over h2")
	nextChat(t, events, "ann", "over h2")

	if _, body := get(t, client, srv.URL+"/many?n=20"); !strings.Contains(body, "<b>HTTP/2.0</b>") || strings.Contains(body, "Over HTTP/1.1 with six streams open") {
		t.Error("the /many page does not say it came over HTTP/2.0, or says what only HTTP/1.1 does")
	}
}

// /stats shows the Broker's counters as JSON, and they move as streams open
// and messages are sent.
func TestStats(t *testing.T) {
	srv, b := newServer(t)
	client := srv.Client()
	ctx := testContext(t)
	_, events := openStream(t, ctx, client, srv.URL, "")
	send(t, ctx, client, srv.URL, "ann", "counted")
	nextChat(t, events, "ann", "counted")
	resp, body := get(t, client, srv.URL+"/stats")
	var got ssebroker.Stats
	if err := json.Unmarshal([]byte(body), &got); err != nil || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("GET /stats: %v, %q: %s", err, resp.Header.Get("Content-Type"), body)
	}
	if got.Open != 1 || got.Opened != 1 || got.Published != 1 || got.BytesWritten == 0 || got != b.Stats() {
		t.Errorf("GET /stats: %+v; want one stream open, one message published, as Stats says: %+v", got, b.Stats())
	}
}

func TestSelfSigned(t *testing.T) {
	now := time.Now()
	cert, err := selfSigned(now)
	if err != nil {
		t.Fatal(err)
	}
	leaf := cert.Leaf
	for _, host := range []string{"localhost", "127.0.0.1", "::1"} {
		if err := leaf.VerifyHostname(host); err != nil {
			t.Error(err)
		}
	}
	if _, ok := leaf.PublicKey.(*ecdsa.PublicKey); !ok {
		t.Errorf("public key %T, want ECDSA", leaf.PublicKey)
	}
	if d := leaf.NotAfter.Sub(now); d < 23*time.Hour || d > 25*time.Hour {
		t.Errorf("valid until %v from now, want 24h", d)
	}
	roots := x509.NewCertPool()
	roots.AddCert(leaf)
	if _, err := leaf.Verify(x509.VerifyOptions{DNSName: "localhost", Roots: roots}); err != nil {
		t.Error(err)
	}
}

// -cert and -key load the given files, and must be given together.
func TestCertificateFiles(t *testing.T) {
	if _, _, err := certificate("cert.pem", ""); err == nil {
		t.Error("-cert without -key: no error")
	}
	cert, generated, err := certificate("", "")
	if err != nil || !generated || cert.Leaf == nil {
		t.Fatalf("no files: generated %v, err %v", generated, err)
	}

	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	der, err := x509.MarshalECPrivateKey(cert.PrivateKey.(*ecdsa.PrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	loaded, generated, err := certificate(certFile, keyFile)
	if err != nil || generated {
		t.Fatalf("from files: generated %v, err %v", generated, err)
	}
	if string(loaded.Certificate[0]) != string(cert.Certificate[0]) {
		t.Error("the loaded certificate is not the one written")
	}
}

func TestBaseURL(t *testing.T) {
	bound := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8080}
	for addr, want := range map[string]string{
		"localhost:8080": "http://localhost:8080",
		":8080":          "http://localhost:8080",
		"0.0.0.0:0":      "http://localhost:8080",
		"127.0.0.1:0":    "http://127.0.0.1:8080",
		"[::1]:8080":     "http://[::1]:8080",
	} {
		if got := baseURL("http", addr, bound); got != want {
			t.Errorf("baseURL(%q) = %q, want %q", addr, got, want)
		}
	}
}
