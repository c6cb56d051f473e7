package sseclient_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"

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
