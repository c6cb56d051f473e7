// Package room is the chat room of examples/chat: its page, and the handlers
// that publish posted messages on a Broker and stream them back. The plain
// demo serves it on a Broker of its own; redisstream/examples/chat serves it
// on Brokers that share a Redis Log, in several processes.
package room

import (
	_ "embed"
	"encoding/json"
	"errors"
	"html/template"
	"io"
	"log"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/lightsse/sse/ssebroker"

	"github.com/lightsse/sse"
)

// Handler returns the chat page at /, the connection demo at /many, the form
// handler at /send, the event stream of broker at /events, and the broker's
// counters (ssebroker.Stats, as JSON) at /stats.
func Handler(broker *ssebroker.Broker) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", serveChat)
	mux.HandleFunc("GET /many", serveMany)
	mux.Handle("POST /send", sendHandler(broker))
	mux.Handle("/events", broker) // the Broker answers GET and HEAD, and 405 to the rest
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(broker.Stats())
	})
	return mux
}

// Bounds on a message, in characters (runes), and on the form that carries
// it, in bytes.
const (
	MaxName = 32
	MaxText = 500
	MaxForm = 16 << 10
)

// A Message is the JSON data of each "chat" event.
type Message struct {
	Name string    `json:"name"`
	Text string    `json:"text"`
	Time time.Time `json:"time"`
}

// sendHandler publishes the message in a posted form (fields name and text)
// as a "chat" event, and answers 204. A form that is too large or holds an
// invalid message gets 400 and publishes nothing.
func sendHandler(broker *ssebroker.Broker) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, MaxForm)
		if err := r.ParseForm(); err != nil {
			http.Error(w, "bad form: "+err.Error(), http.StatusBadRequest)
			return
		}
		m := Message{
			Name: strings.TrimSpace(r.PostForm.Get("name")),
			Text: strings.TrimSpace(r.PostForm.Get("text")),
			Time: time.Now().UTC().Truncate(time.Millisecond),
		}
		if err := check("name", m.Name, MaxName); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if err := check("text", m.Text, MaxText); err != nil {
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
