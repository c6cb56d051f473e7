package sseticket_test

import (
	"crypto/rand"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"time"

	"github.com/lightsse/sse"
	"github.com/lightsse/sse/sseticket"
)

// A per-user stream behind a ticket. The user's own server, where the
// session is, hands out a ticket for the user's scope; the page opens its
// EventSource with the ticket in the query; the stream answers only a
// ticket for that very user. A user's id in a URL is no secret: without the
// ticket, or with another user's, the answer is 403 and nothing of the
// stream.
func ExampleSigner_Require() {
	key := make([]byte, 32) // in production: from your secrets, the same on every server
	rand.Read(key)
	signer, err := sseticket.New(key)
	if err != nil {
		fmt.Println(err)
		return
	}

	userScope := func(r *http.Request) string { return "user:" + r.PathValue("id") }
	mux := http.NewServeMux()
	mux.HandleFunc("GET /users/{id}/ticket", func(w http.ResponseWriter, r *http.Request) {
		// Check the session first: only user 42 may have a ticket for user 42.
		io.WriteString(w, signer.Sign(userScope(r), time.Minute))
	})
	mux.Handle("GET /users/{id}/events", signer.Require(userScope,
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			stream, err := sse.NewWriter(w, r, nil)
			if err != nil {
				return
			}
			defer stream.Close()
			stream.Send(sse.Event{Data: "hello, user " + r.PathValue("id")})
		})))
	srv := httptest.NewServer(mux)
	defer srv.Close()

	get := func(path string) {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			fmt.Println(err)
			return
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		fmt.Printf("%s %s: %q\n", resp.Status, resp.Header.Get("Content-Type"), body)
	}
	resp, err := http.Get(srv.URL + "/users/42/ticket")
	if err != nil {
		fmt.Println(err)
		return
	}
	ticket, _ := io.ReadAll(resp.Body)
	resp.Body.Close()

	// The page: new EventSource("/users/42/events?ticket=" + encodeURIComponent(ticket))
	get("/users/42/events?ticket=" + url.QueryEscape(string(ticket)))
	get("/users/43/events?ticket=" + url.QueryEscape(string(ticket)))
	get("/users/42/events")
	// Output:
	// 200 OK text/event-stream: "data: hello, user 42\n\n"
	// 403 Forbidden text/plain; charset=utf-8: "Forbidden\n"
	// 403 Forbidden text/plain; charset=utf-8: "Forbidden\n"
}
