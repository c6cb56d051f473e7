package ssebroker_test

import (
	"bufio"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
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
	b, err := ssebroker.New(nil)
	if err != nil {
		fmt.Println(err)
		return
	}
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
// user's first stream opens and dropped once the user has had no stream for
// a grace period, so that idle users cost nothing. Each Broker keeps a short
// history: there may be many.
//
// The grace is what lets a user's client resume. Dropped the moment the last
// stream ends, the Broker would take its history with it, and every
// reconnection (a network blip, a deploy, the Broker ending a stream that fell
// behind) would find a new Broker: a reset, and whatever was published in
// between lost. Kept for a grace period (30 s fixed it, measured), a
// reconnecting client gets what it missed.
type userBrokers struct {
	grace time.Duration // how long a Broker with no stream is kept

	mu sync.Mutex
	m  map[string]*userBroker
}

// userBroker is one user's Broker, with the timer that drops it.
type userBroker struct {
	b     *ssebroker.Broker
	drop  *time.Timer // runs expire; armed while the Broker may be idle
	touch time.Time   // when a request last got this Broker, or its last stream ended
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
	b, err := u.broker(user)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	b.ServeHTTP(w, r)
}

// broker returns the user's Broker, made if need be. A new one's timer is
// armed at once, so that a Broker whose request never opens a stream (a HEAD,
// say) is dropped too.
func (u *userBrokers) broker(user string) (*ssebroker.Broker, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	e := u.m[user]
	if e == nil {
		e = &userBroker{}
		b, err := ssebroker.New(&ssebroker.Options{HistoryLen: 64, OnIdle: func() { u.idle(user, e) }})
		if err != nil {
			return nil, err
		}
		e.b = b
		e.drop = time.AfterFunc(u.grace, func() { u.expire(user, e) })
		u.m[user] = e
	}
	e.touch = time.Now()
	return e.b, nil
}

// idle runs, as OnIdle, when the user's last stream ends: it (re)arms the
// timer for a grace period. One timer per idle user, rearmed, never a new one.
func (u *userBrokers) idle(user string, e *userBroker) {
	u.mu.Lock()
	defer u.mu.Unlock()
	e.touch = time.Now()
	e.drop.Reset(u.grace)
}

// expire runs when e's timer fires. A stream may be open, or a request may
// have got the Broker since the timer was armed: then the Broker stays (the
// stream's end rearms the timer; a recent request's grace is waited out).
func (u *userBrokers) expire(user string, e *userBroker) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.m[user] != e || e.b.Subscribers() > 0 {
		return
	}
	if left := u.grace - time.Since(e.touch); left > 0 {
		e.drop.Reset(left)
		return
	}
	delete(u.m, user)
	e.b.Close() // a request that got it just now comes back, after its retry, to a new one
}

// publish sends e to the user's Broker, if there is one: to the open streams,
// and into the history that a client reconnecting within the grace resumes
// from.
func (u *userBrokers) publish(user string, e sse.Event) error {
	u.mu.Lock()
	ub := u.m[user]
	u.mu.Unlock()
	if ub == nil {
		return nil // not listening: nothing to keep
	}
	if err := ub.b.Publish(e); !errors.Is(err, sse.ErrClosed) {
		return err
	}
	return nil // dropped as we published: not listening any more
}

// close drops every Broker, ending their streams: at shutdown.
func (u *userBrokers) close() {
	u.mu.Lock()
	defer u.mu.Unlock()
	for user, e := range u.m {
		e.drop.Stop()
		e.b.Close()
		delete(u.m, user)
	}
}

func (u *userBrokers) count() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.m)
}

func (u *userBrokers) streams(user string) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	if e := u.m[user]; e != nil {
		return e.b.Subscribers()
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

// One Broker per user: an event published for ann reaches ann's stream
// alone, and a request without a session gets 401. When ann's stream breaks,
// her Broker is kept for the grace period: what is published meanwhile
// reaches her when her client reconnects with its Last-Event-ID, as a browser
// does by itself.
func ExampleOptions_onIdle() {
	users := &userBrokers{grace: 30 * time.Second, m: map[string]*userBroker{}}
	srv := httptest.NewServer(users)
	defer srv.Close()
	defer users.close() // ends the streams first, so that srv.Close need not wait

	resp, err := srv.Client().Get(srv.URL)
	if err != nil {
		fmt.Println(err)
		return
	}
	resp.Body.Close()
	fmt.Println("without a session:", resp.Status)

	// subscribe opens a stream as ann, resuming after lastID unless it is "".
	subscribe := func(lastID string) (*http.Response, error) {
		req, _ := http.NewRequest("GET", srv.URL, nil)
		req.AddCookie(&http.Cookie{Name: "session", Value: "ann-secret"})
		if lastID != "" {
			req.Header.Set("Last-Event-ID", lastID)
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			return nil, err
		}
		for users.streams("ann") == 0 { // once counted, every later Publish reaches it
			time.Sleep(time.Millisecond)
		}
		return resp, nil
	}
	// next returns the data of the next event on the stream, and the stream's
	// last event ID after it.
	next := func(stream *bufio.Scanner, lastID string) (data, id string) {
		for stream.Scan() {
			line := stream.Text()
			if v, ok := strings.CutPrefix(line, "id: "); ok {
				lastID = v
			}
			if v, ok := strings.CutPrefix(line, "data: "); ok {
				data = v
			}
			if line == "" && data != "" {
				break
			}
		}
		return data, lastID
	}

	resp, err = subscribe("")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("brokers:", users.count())
	_ = users.publish("ann", sse.Event{Type: "mail", Data: "1 new"})
	_ = users.publish("bob", sse.Event{Type: "mail", Data: "for bob"}) // not listening
	data, lastID := next(bufio.NewScanner(resp.Body), "")
	fmt.Println("ann got:", data)

	resp.Body.Close() // ann's connection breaks
	for users.streams("ann") != 0 {
		time.Sleep(time.Millisecond)
	}
	fmt.Println("brokers while ann is away:", users.count())
	_ = users.publish("ann", sse.Event{Type: "mail", Data: "2 new"})

	resp, err = subscribe(lastID) // ann's client comes back within the grace
	if err != nil {
		fmt.Println(err)
		return
	}
	data, _ = next(bufio.NewScanner(resp.Body), lastID)
	resp.Body.Close()
	fmt.Println("ann got, on her return:", data)
	// Output:
	// without a session: 401 Unauthorized
	// brokers: 1
	// ann got: 1 new
	// brokers while ann is away: 1
	// ann got, on her return: 2 new
}

// A user's Broker goes once the grace has passed with no stream: after the
// last stream ends, and when a request never opened one (a HEAD). While a
// stream is open it stays, however long the grace is outlived.
func TestUserBrokersGrace(t *testing.T) {
	// Long enough for a request to reach its Broker's count, under load too:
	// a Broker found with no stream and no request within the grace goes.
	const grace = 500 * time.Millisecond
	users := &userBrokers{grace: grace, m: map[string]*userBroker{}}
	srv := httptest.NewServer(users)
	defer srv.Close()
	defer users.close()
	request := func(method string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(method, srv.URL, nil)
		req.AddCookie(&http.Cookie{Name: "session", Value: "ann-secret"})
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(time.Minute); !cond(); time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("waited a minute for %s", what)
			}
		}
	}

	resp := request("GET")
	waitFor("ann's stream", func() bool { return users.streams("ann") == 1 })
	time.Sleep(2 * grace) // the timer armed when the Broker was made has fired
	if n := users.count(); n != 1 {
		t.Fatalf("%d Brokers with ann's stream open, want 1", n)
	}
	if err := users.publish("ann", sse.Event{Data: "still here"}); err != nil {
		t.Fatal(err)
	}
	lines := bufio.NewScanner(resp.Body)
	for lines.Scan() && lines.Text() != "data: still here" {
	}
	if lines.Text() != "data: still here" {
		t.Fatalf("the stream ended before its event: %v", lines.Err())
	}
	resp.Body.Close()
	waitFor("ann's Broker to go after her stream", func() bool { return users.count() == 0 })

	request("HEAD").Body.Close()
	waitFor("the HEAD's Broker to go", func() bool { return users.count() == 0 })
}
