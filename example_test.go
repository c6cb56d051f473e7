package sse_test

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"time"

	"github.com/lightsse/sse"
)

// An event with an id, a type and two lines of data, and its exact bytes: one
// data line per line, and a blank line that dispatches the event.
func ExampleEvent_AppendText() {
	e := sse.Event{ID: "42", Type: "update", Data: "first line\nsecond line"}
	b, err := e.AppendText(nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	os.Stdout.Write(b)
	fmt.Printf("%q\n", b)
	// Output:
	// id: 42
	// event: update
	// data: first line
	// data: second line
	//
	// "id: 42\nevent: update\ndata: first line\ndata: second line\n\n"
}

// An id with a line break would let the rest of it be read as another field.
// AppendText refuses it and leaves the buffer as it was.
func ExampleEvent_AppendText_invalid() {
	buf := []byte("data: earlier\n\n")
	buf, err := sse.Event{ID: "7\nretry: 1", Data: "x"}.AppendText(buf)
	if errors.Is(err, sse.ErrInvalidID) {
		fmt.Println("refused:", err)
	}
	fmt.Printf("%q\n", buf)
	// Output:
	// refused: sse: invalid id field: byte 1 is '\n'
	// "data: earlier\n\n"
}

// A handler that sends a countdown and ends the stream. The client prints the
// status, the content type and the body as it came off the wire.
func ExampleNewWriter() {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The first field on the stream: reconnect 2 s after it ends.
		stream, err := sse.NewWriter(w, r, &sse.Options{Retry: 2 * time.Second})
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		defer stream.Close()
		for n := 3; n > 0; n-- {
			e := sse.Event{ID: strconv.Itoa(n), Type: "countdown", Data: fmt.Sprint(n, " left")}
			if err := stream.Send(e); err != nil {
				return
			}
		}
	}))
	defer srv.Close()

	resp, err := srv.Client().Get(srv.URL)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body) // until the handler returns
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(resp.Status, resp.Header.Get("Content-Type"))
	fmt.Print(string(body))
	// Output:
	// 200 OK text/event-stream
	// retry: 2000
	//
	// id: 3
	// event: countdown
	// data: 3 left
	//
	// id: 2
	// event: countdown
	// data: 2 left
	//
	// id: 1
	// event: countdown
	// data: 1 left
}
