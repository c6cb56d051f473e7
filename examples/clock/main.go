// Command clock serves a page that shows the server's clock, live: the page
// opens an EventSource on /events, and the server sends it one event of type
// "time" per second.
//
//	go run ./examples/clock              # then open http://localhost:8080
//	go run ./examples/clock -addr :9000  # listen elsewhere
//
// Interrupt it (Ctrl-C) to see the page report that it is reconnecting.
package main

import (
	"context"
	"errors"
	"flag"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/lightsse/sse"
)

func main() {
	addr := flag.String("addr", "localhost:8080", "address to listen on")
	flag.Parse()

	// Shutdown does not cancel the contexts of running requests, so an open
	// stream would hold it until its deadline. Deriving every request's
	// context from one that an interrupt cancels ends the streams first.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	srv := &http.Server{
		Addr:              *addr,
		Handler:           newMux(),
		ReadHeaderTimeout: 10 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}

	failed := make(chan error, 1)
	go func() { failed <- srv.ListenAndServe() }()
	log.Printf("serving http://%s", *addr)
	select {
	case err := <-failed:
		log.Fatal(err)
	case <-ctx.Done():
	}
	done, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(done); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Print(err)
	}
}

// newMux returns the page at / and the event stream at /events.
func newMux() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", servePage)
	mux.HandleFunc("GET /events", serveClock)
	return mux
}

// serveClock streams the time until the client leaves: one event at once, so
// the page need not wait a second, then one per tick.
func serveClock(w http.ResponseWriter, r *http.Request) {
	stream, err := sse.NewWriter(w, r, nil)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	defer stream.Close()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for t := time.Now(); ; {
		if err := stream.Send(sse.Event{Type: "time", Data: t.Format(time.RFC3339)}); err != nil {
			return
		}
		select {
		case <-r.Context().Done():
			return
		case t = <-tick.C:
		}
	}
}

func servePage(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_, _ = io.WriteString(w, page)
}

// page shows the latest "time" event and the state of the connection. The
// browser reconnects by itself when the stream breaks; onerror fires each
// time it tries.
const page = `<!doctype html>
<html lang="en">
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>sse clock</title>
<style>
  body { font-family: system-ui, sans-serif; text-align: center; margin-top: 20vh; }
  #clock { display: block; font: 4rem ui-monospace, monospace; }
  .open { color: #080; }
  .reconnecting, .connecting { color: #a60; }
  .closed { color: #b00; }
</style>
<time id="clock">--:--:--</time>
<p>Stream: <span id="status" class="connecting">connecting</span></p>
<script>
  const clockEl = document.getElementById("clock");
  const statusEl = document.getElementById("status");
  function showStatus(text) {
    statusEl.textContent = text;
    statusEl.className = text;
  }
  const source = new EventSource("/events");
  source.onopen = () => showStatus("open");
  source.onerror = () =>
    showStatus(source.readyState === EventSource.CONNECTING ? "reconnecting" : "closed");
  source.addEventListener("time", (e) => {
    clockEl.dateTime = e.data;
    clockEl.textContent = new Date(e.data).toLocaleTimeString();
  });
</script>
</html>
`
