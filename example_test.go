package sse_test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
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

// A Broker served over HTTP, with one client. Once the client is subscribed,
// two events are published, one of them named, and the client prints what
// came off the wire until both have arrived. Ids are the Broker's random
// epoch, a dash and an offset, printed here as <epoch>-offset; the first, on
// a line of its own, is the position the Broker gives a new client, from
// which it resumes should the stream end before its first event.
func ExampleBroker() {
	b := sse.NewBroker(nil)
	srv := httptest.NewServer(b)
	defer srv.Close()
	defer b.Close() // ends the stream first, so that srv.Close need not wait

	resp, err := srv.Client().Get(srv.URL)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer resp.Body.Close()
	for b.Subscribers() < 1 { // a client without Last-Event-ID gets live events only
		time.Sleep(time.Millisecond)
	}

	if err := b.Publish(sse.Event{Data: "hello"}); err != nil {
		fmt.Println(err)
		return
	}
	if err := b.Publish(sse.Event{Type: "greeting", Data: "hello again"}); err != nil {
		fmt.Println(err)
		return
	}

	lines := bufio.NewScanner(resp.Body)
	for events, data := 0, false; events < 2 && lines.Scan(); {
		line := lines.Text()
		if id, ok := strings.CutPrefix(line, "id: "); ok {
			_, offset, _ := strings.Cut(id, "-")
			line = "id: <epoch>-" + offset
		}
		switch {
		case strings.HasPrefix(line, "data:"):
			data = true
		case line == "" && data: // a blank line dispatches an event
			events++
			data = false
		}
		fmt.Println(line)
	}
	// Output:
	// id: <epoch>-0
	//
	// id: <epoch>-1
	// data: hello
	//
	// id: <epoch>-2
	// event: greeting
	// data: hello again
}
