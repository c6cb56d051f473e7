// Command chat serves a chat room that any number of browser tabs can watch at
// once: a message posted from one tab goes through one sse.Broker to the
// EventSource of every tab.
//
//	go run ./examples/chat         # then open http://localhost:8080 in two tabs
//	go run ./examples/chat -tls    # the same over HTTPS and HTTP/2
//
// -addr changes the listening address; with -tls, -cert and -key name a
// certificate and key to use instead of a throwaway self-signed one.
//
// The page at /many?n=20 opens n EventSources at once. Over HTTP/1.1 a browser
// keeps at most six connections to one host, so six open and the rest wait,
// connecting; over HTTP/2 (-tls) all share one connection and all open.
package main

import (
	"context"
	"crypto/tls"
	_ "embed"
	"encoding/json"
	"errors"
	"flag"
	"html/template"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/lightsse/sse"
)

func main() {
	addr := flag.String("addr", "localhost:8080", "address to listen on")
	useTLS := flag.Bool("tls", false, "serve HTTPS, with HTTP/2")
	certFile := flag.String("cert", "", "with -tls: certificate file (PEM); none: a throwaway self-signed one")
	keyFile := flag.String("key", "", "with -tls: private key file (PEM) of -cert")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	broker := sse.NewBroker(nil)
	srv := &http.Server{Handler: newMux(broker), ReadHeaderTimeout: 10 * time.Second}
	// Shutdown waits for open responses but does not end them, and a stream
	// never ends by itself. Closing the Broker ends every stream, each after
	// telling its browser to come back a few seconds later.
	srv.RegisterOnShutdown(func() { broker.Close() })

	scheme, many := "http", "over HTTP/1.1 six open and the rest wait; with -tls, all open"
	if !*useTLS && (*certFile != "" || *keyFile != "") {
		log.Fatal("-cert and -key go with -tls")
	}
	if *useTLS {
		cert, generated, err := certificate(*certFile, *keyFile)
		if err != nil {
			log.Fatal(err)
		}
		if generated {
			log.Print("using a throwaway self-signed certificate for localhost and 127.0.0.1, valid 24 h: the browser will warn about it; accept it to go on")
		}
		srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		scheme, many = "https", "over HTTP/2 all open"
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	failed := make(chan error, 1)
	go func() {
		if *useTLS {
			failed <- srv.ServeTLS(ln, "", "") // speaks HTTP/2 by itself
		} else {
			failed <- srv.Serve(ln)
		}
	}()
	base := baseURL(scheme, *addr, ln.Addr())
	log.Printf("chat: %s/ (open it in two tabs)", base)
	log.Printf("six connections: %s/many?n=20 (%s)", base, many)

	select {
	case err := <-failed:
		log.Fatal(err)
	case <-ctx.Done():
	}
	stop() // a second interrupt kills at once
	log.Print("shutting down")
	done, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(done); err != nil {
		log.Print(err)
		srv.Close()
	}
}

// baseURL returns scheme://host:port for the address the server listens on,
// with the host given in -addr, or localhost when it names none.
func baseURL(scheme, addr string, bound net.Addr) string {
	host, _, _ := net.SplitHostPort(addr)
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "localhost"
	}
	_, port, _ := net.SplitHostPort(bound.String())
	return scheme + "://" + net.JoinHostPort(host, port)
}

// newMux returns the chat page at /, the connection demo at /many, the form
// handler at /send and the event stream of broker at /events.
func newMux(broker *sse.Broker) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", serveChat)
	mux.HandleFunc("GET /many", serveMany)
	mux.Handle("POST /send", sendHandler(broker))
	mux.Handle("GET /events", broker)
	return mux
}

// Bounds on a message, in characters (runes), and on the form that carries
// it, in bytes.
const (
	maxName = 32
	maxText = 500
	maxForm = 16 << 10
)

// A message is the JSON data of each "chat" event.
type message struct {
	Name string    `json:"name"`
	Text string    `json:"text"`
	Time time.Time `json:"time"`
}

// sendHandler publishes the message in a posted form (fields name and text)
// as a "chat" event, and answers 204. A form that is too large or holds an
// invalid message gets 400 and publishes nothing.
func sendHandler(broker *sse.Broker) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, maxForm)
		if err := r.ParseForm(); err != nil {
			http.Error(w, "bad form: "+err.Error(), http.StatusBadRequest)
			return
		}
		m := message{
			Name: strings.TrimSpace(r.PostForm.Get("name")),
			Text: strings.TrimSpace(r.PostForm.Get("text")),
			Time: time.Now().UTC().Truncate(time.Millisecond),
		}
		if err := check("name", m.Name, maxName); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if err := check("text", m.Text, maxText); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		data, err := json.Marshal(m)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		// Publish gives the event an id, which lets a reconnecting tab resume.
		if err := broker.Publish(sse.Event{Type: "chat", Data: string(data)}); err != nil {
			if errors.Is(err, sse.ErrClosed) {
				http.Error(w, "the server is shutting down", http.StatusServiceUnavailable)
				return
			}
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}
}

// check says what is wrong with the value of a field, if anything: it must be
// valid UTF-8, 1 to max characters long, and free of control characters.
func check(field, value string, max int) error {
	switch {
	case !utf8.ValidString(value):
		return errors.New(field + " is not valid UTF-8")
	case value == "":
		return errors.New(field + " is empty")
	case utf8.RuneCountInString(value) > max:
		return errors.New(field + " is longer than " + strconv.Itoa(max) + " characters")
	case strings.IndexFunc(value, unicode.IsControl) >= 0:
		return errors.New(field + " holds a control character")
	}
	return nil
}

//go:embed index.html
var chatPage string

func serveChat(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_, _ = io.WriteString(w, chatPage)
}

//go:embed many.html
var manyHTML string

var manyPage = template.Must(template.New("many").Parse(manyHTML))

// serveMany serves the page that opens n EventSources, n from 1 to 50 (20 by
// default).
func serveMany(w http.ResponseWriter, r *http.Request) {
	n := 20
	if s := r.URL.Query().Get("n"); s != "" {
		var err error
		if n, err = strconv.Atoi(s); err != nil || n < 1 || n > 50 {
			http.Error(w, "n must be a whole number from 1 to 50", http.StatusBadRequest)
			return
		}
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	data := struct {
		N     int
		Proto string // HTTP/1.1 or HTTP/2.0
	}{n, r.Proto}
	if err := manyPage.Execute(w, data); err != nil {
		log.Print(err)
	}
}
