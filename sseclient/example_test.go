package sseclient_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"time"

	"github.com/lightsse/sse"
	"github.com/lightsse/sse/sseclient"
)

// A server streams two events and ends its response; the client reads them,
// and would reconnect with Last-Event-ID: 2 to read on.
func ExampleClient_Events() {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		stream, err := sse.NewWriter(w, r, nil)
		if err != nil {
			return
		}
		defer stream.Close()
		stream.Send(sse.Event{ID: "1", Type: "greeting", Data: "hello"})
		stream.Send(sse.Event{ID: "2", Data: "world"})
	}))
	defer srv.Close()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", srv.URL, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	var client sseclient.Client
	n := 0
	for ev, err := range client.Events(req) {
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Printf("id %q, type %q, data %q\n", ev.ID, ev.Type, ev.Data)
		if n++; n == 2 {
			break
		}
	}
	// Output:
	// id "1", type "greeting", data "hello"
	// id "2", type "", data "world"
}

// A stream's last event ID, kept to resume the stream in a later process.
// This server opens the stream with an id line alone, as a Broker does for a
// new client, and ends the response; then it answers 204 No Content, which
// ends the stream for good. No event arrived, but the stream has a position
// all the same, which the second request sent too.
func ExampleClient_Stream() {
	var requests atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if requests.Add(1) > 1 {
			fmt.Printf("request with Last-Event-ID %q\n", r.Header.Get("Last-Event-ID"))
			w.WriteHeader(http.StatusNoContent)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "id: 42\n\n")
	}))
	defer srv.Close()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", srv.URL, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	client := sseclient.Client{Retry: time.Millisecond}
	stream := client.Stream(req)
	for ev, err := range stream.Events() {
		if err != nil {
			fmt.Println(err)
			break
		}
		fmt.Println(ev.Data)
	}
	fmt.Printf("resume from %q\n", stream.LastEventID())
	// Output:
	// request with Last-Event-ID "42"
	// sseclient: 204 No Content: the server asks not to reconnect
	// resume from "42"
}

// An LLM API streams its answer to a POST and ends it with data: [DONE]:
// Done ends the stream there, without an error, where the Client would
// otherwise end it with ErrStreamCut (it does not send a POST again, and
// so ask for a new completion, unless the server sent ids to resume from).
// A status error carries what the API said.
func ExampleClient_post() {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer key" {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			io.WriteString(w, `{"error":{"message":"invalid key"}}`)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream; charset=utf-8")
		io.WriteString(w, "data: {\"text\":\"Hel\"}\n\ndata: {\"text\":\"lo\"}\n\ndata: [DONE]\n\n")
	}))
	defer srv.Close()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	client := sseclient.Client{Done: func(ev sse.Event) bool { return ev.Data == "[DONE]" }}
	complete := func(key string) (string, error) {
		req, err := http.NewRequestWithContext(ctx, "POST", srv.URL, strings.NewReader(`{"prompt":"hi"}`))
		if err != nil {
			return "", err
		}
		req.Header.Set("Authorization", "Bearer "+key)
		var answer strings.Builder
		for ev, err := range client.Events(req) {
			if err != nil {
				return answer.String(), err
			}
			if ev.Data == "[DONE]" {
				continue // the loop ends after it
			}
			var chunk struct{ Text string }
			if err := json.Unmarshal([]byte(ev.Data), &chunk); err != nil {
				return answer.String(), err
			}
			answer.WriteString(chunk.Text)
		}
		return answer.String(), nil
	}

	fmt.Println(complete("key"))
	_, err := complete("wrong")
	var se *sseclient.StatusError
	if errors.As(err, &se) {
		fmt.Println(se.StatusCode, string(se.Body))
	}
	// Output:
	// Hello <nil>
	// 401 {"error":{"message":"invalid key"}}
}
