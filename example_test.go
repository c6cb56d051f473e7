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
	"sync"
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

// userBrokers gives each signed-in user a Broker of their own, made when the
// user's first stream opens and dropped, by BrokerOptions.OnIdle, when their
// last one ends, so that idle users cost nothing. Each Broker keeps a short
// history: there may be many.
type userBrokers struct {
	mu sync.Mutex
	m  map[string]*sse.Broker
}

// ServeHTTP checks who is asking before it opens a stream: EventSource sends
// cookies but no Authorization header. Any status but 200 makes a browser
// give up for good, which suits "log in first".
func (u *userBrokers) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	user, ok := signedIn(r)
	if !ok {
		http.Error(w, "log in first", http.StatusUnauthorized)
		return
	}
	u.broker(user).ServeHTTP(w, r)
}

func (u *userBrokers) broker(user string) *sse.Broker {
	u.mu.Lock()
	defer u.mu.Unlock()
	b := u.m[user]
	if b == nil {
		b = sse.NewBroker(&sse.BrokerOptions{HistoryLen: 64, OnIdle: func() { u.drop(user) }})
		u.m[user] = b
	}
	return b
}

// drop runs when a user's last stream ends. A stream may have opened since:
// it keeps its Broker. (One that opens as drop runs finds the Broker closed,
// and its client comes back, after its retry, to a new one.)
func (u *userBrokers) drop(user string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if b := u.m[user]; b != nil && b.Subscribers() == 0 {
		delete(u.m, user)
		b.Close()
	}
}

// publish sends e to the user's open streams, if there are any.
func (u *userBrokers) publish(user string, e sse.Event) error {
	u.mu.Lock()
	b := u.m[user]
	u.mu.Unlock()
	if b == nil {
		return nil // not listening: nothing to keep
	}
	if err := b.Publish(e); !errors.Is(err, sse.ErrClosed) {
		return err
	}
	return nil // dropped as we published: not listening any more
}

func (u *userBrokers) count() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.m)
}

func (u *userBrokers) streams(user string) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	if b := u.m[user]; b != nil {
		return b.Subscribers()
	}
	return 0
}

// signedIn stands for an application's session check.
func signedIn(r *http.Request) (string, bool) {
	c, err := r.Cookie("session")
	if err != nil || c.Value != "ann-secret" {
		return "", false
	}
	return "ann", true
}

// One Broker per user: an event published for ann reaches ann's stream alone,
// a request without a session gets 401, and ann's Broker is dropped when her
// stream ends.
func ExampleBrokerOptions_onIdle() {
	users := &userBrokers{m: map[string]*sse.Broker{}}
	srv := httptest.NewServer(users)
	defer srv.Close()

	resp, err := srv.Client().Get(srv.URL)
	if err != nil {
		fmt.Println(err)
		return
	}
	resp.Body.Close()
	fmt.Println("without a session:", resp.Status)

	req, _ := http.NewRequest("GET", srv.URL, nil)
	req.AddCookie(&http.Cookie{Name: "session", Value: "ann-secret"})
	resp, err = srv.Client().Do(req)
	if err != nil {
		fmt.Println(err)
		return
	}
	for users.streams("ann") == 0 {
		time.Sleep(time.Millisecond)
	}
	fmt.Println("brokers:", users.count())
	_ = users.publish("ann", sse.Event{Type: "mail", Data: "1 new"})
	_ = users.publish("bob", sse.Event{Type: "mail", Data: "for bob"}) // not listening
	lines := bufio.NewScanner(resp.Body)
	for lines.Scan() {
		if data, ok := strings.CutPrefix(lines.Text(), "data: "); ok {
			fmt.Println("ann got:", data)
			break
		}
	}
	resp.Body.Close() // ann leaves
	for users.count() != 0 {
		time.Sleep(time.Millisecond)
	}
	fmt.Println("brokers after ann left:", users.count())
	// Output:
	// without a session: 401 Unauthorized
	// brokers: 1
	// ann got: 1 new
	// brokers after ann left: 0
}
