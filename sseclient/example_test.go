package sseclient_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
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
