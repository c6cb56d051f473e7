package ssebroker_test

import (
	"bufio"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"time"

	"github.com/lightsse/sse"
	"github.com/lightsse/sse/ssebroker"
)

// A Broker served over HTTP, with one client. Once the client is subscribed,
// two events are published, one of them named, and the client prints what
// came off the wire until both have arrived. Ids are the Broker's random
// epoch, a dash and an offset, printed here as <epoch>-offset; the first, on
// a line of its own, is the position the Broker gives a new client, from
// which it resumes should the stream end before its first event.
func ExampleBroker() {
	b := ssebroker.New(nil)
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
// user's first stream opens and dropped, by Options.OnIdle, when their
// last one ends, so that idle users cost nothing. Each Broker keeps a short
// history: there may be many.
type userBrokers struct {
	mu sync.Mutex
	m  map[string]*ssebroker.Broker
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

func (u *userBrokers) broker(user string) *ssebroker.Broker {
	u.mu.Lock()
	defer u.mu.Unlock()
	b := u.m[user]
	if b == nil {
		b = ssebroker.New(&ssebroker.Options{HistoryLen: 64, OnIdle: func() { u.drop(user) }})
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
func ExampleOptions_onIdle() {
	users := &userBrokers{m: map[string]*ssebroker.Broker{}}
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
