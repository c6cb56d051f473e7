// Command relay fronts an event stream: an sseclient.Client reads the
// upstream stream, resuming it with Last-Event-ID whenever it breaks, and
// publishes each of its events to an ssebroker.Broker that browsers subscribe to.
// It is the pattern of putting one connection to an API's stream in front of
// many clients, which get the replay and the heartbeats of a Broker.
//
//	go run ./examples/relay                                  # relays its own clock, served at /upstream
//	go run ./examples/relay -upstream https://host/events    # relays another stream
//
// Then open http://localhost:8080: the page shows the events as they are
// relayed, whatever their types, and the state of its connection. The relay logs each time it
// reconnects to the upstream, and, when it stops, the upstream's last event
// ID: -resume with that ID makes the next run go on from there, so that the
// upstream replays what the relay missed while it was down (the clock this
// command serves starts afresh with it, and answers a reset). -addr changes
// the listening address.
package main

import (
	"cmp"
	"context"
	"encoding/json"
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

	"github.com/lightsse/sse/ssebroker"
	"github.com/lightsse/sse/sseclient"

	"github.com/lightsse/sse"
)

func main() {
	addr := flag.String("addr", "localhost:8080", "address to listen on")
	upstreamURL := flag.String("upstream", "", "URL of the stream to relay (default: a clock this command serves at /upstream)")
	resume := flag.String("resume", "", "Last-Event-ID to resume the upstream from: what the relay logged when it last stopped")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}

	var upstream *ssebroker.Broker
	if *upstreamURL == "" {
		if upstream, err = ssebroker.New(nil); err != nil {
			log.Fatal(err)
		}
		defer upstream.Close()
		go clock(ctx, upstream, time.Second)
		*upstreamURL = "http://" + ln.Addr().String() + "/upstream"
	}
	downstream, err := ssebroker.New(nil)
	if err != nil {
		log.Fatal(err)
	}
	srv := &http.Server{
		Handler:           newMux(downstream, upstream),
		ReadHeaderTimeout: 10 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	srv.RegisterOnShutdown(func() { downstream.Close() })
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	client := &sseclient.Client{
		IdleTimeout: 45 * time.Second, // three of a Broker's heartbeats
		OnRetry: func(err error, wait time.Duration) {
			log.Printf("upstream: %v; reconnecting in %v", err, wait.Round(time.Millisecond))
		},
	}
	stream, err := openUpstream(ctx, client, *upstreamURL, *resume)
	if err != nil {
		log.Fatal(err)
	}
	relayed := make(chan struct{})
	var relayErr error
	go func() {
		defer close(relayed)
		relayErr = relay(stream, downstream)
	}()
	log.Printf("relaying %s at http://%s", *upstreamURL, ln.Addr())

	select {
	case err := <-served:
		log.Print(err)
	case <-relayed:
		log.Print(relayErr)
	case <-ctx.Done():
	}
	stop()
	done, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(done); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Print(err)
	}
	<-relayed // the stream has ended: its last event ID is final
	log.Printf("upstream stopped at Last-Event-ID %q: -resume %q goes on from there", stream.LastEventID(), stream.LastEventID())
}

// openUpstream returns the stream at url, for c to read; unless resume is
// "", its first request asks to resume it after the event with that id.
func openUpstream(ctx context.Context, c *sseclient.Client, url, resume string) (*sseclient.Stream, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		return nil, err
	}
	if resume != "" {
		req.Header.Set("Last-Event-ID", resume)
	}
	return c.Stream(req), nil
}

// relay reads the upstream stream s and publishes each of its events to b,
// until s ends for good (its request's context is done, say); it returns
// why. s's LastEventID then says where to resume the upstream from.
//
// An event is relayed as a message (an event of the default type) whose data
// is a relayed value: its type and its data. An EventSource hears only the
// types it names, and the relay cannot know the upstream's in advance (the
// chat's are "chat"), so the page listens to messages alone and reads the type
// from the data. Its id is left for b to give, so that a browser resumes from
// b's history, while s resumes the upstream from the upstream's own ids. A
// reset from the upstream (it could not resume from the id s sent) is relayed
// like any other event: the browsers have missed what the relay missed.
func relay(s *sseclient.Stream, b *ssebroker.Broker) error {
	for ev, err := range s.Events() {
		if err != nil {
			return err
		}
		data, err := json.Marshal(relayed{Type: cmp.Or(ev.Type, "message"), Data: ev.Data})
		if err != nil {
			return err
		}
		if err := b.Publish(sse.Event{Data: string(data)}); err != nil {
			return err
		}
	}
	return nil
}

// relayed is the data of a relayed event, in JSON: the upstream event's type
// ("message" for the default) and data.
type relayed struct {
	Type string `json:"type"`
	Data string `json:"data"`
}

// clock publishes the time to b as a "time" event every period, until ctx
// is done: the upstream when none is given.
func clock(ctx context.Context, b *ssebroker.Broker, period time.Duration) {
	tick := time.NewTicker(period)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case t := <-tick.C:
			_ = b.Publish(sse.Event{Type: "time", Data: t.Format(time.RFC3339)})
		}
	}
}

// newMux returns the page at /, the relayed stream at /events, and, if
// upstream is not nil, its stream at /upstream.
func newMux(downstream, upstream *ssebroker.Broker) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = io.WriteString(w, page)
	})
	mux.Handle("GET /events", downstream)
	if upstream != nil {
		mux.Handle("GET /upstream", upstream)
	}
	return mux
}

// page lists the relayed events, newest first, with their upstream types:
// every relayed event is a message whose data carries its type. A "reset" is
// the relay's own Broker telling a browser it could not resume it.
const page = `<!doctype html>
<html lang="en">
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>sse relay</title>
<style>
  body { font-family: system-ui, sans-serif; margin: 2rem; }
  li { font-family: ui-monospace, monospace; }
  .open { color: #080; }
  .reconnecting, .connecting { color: #a60; }
  .closed { color: #b00; }
</style>
<h1>Relayed events</h1>
<p>Stream: <span id="status" class="connecting">connecting</span></p>
<ol id="events" reversed></ol>
<script>
  const statusEl = document.getElementById("status");
  const list = document.getElementById("events");
  function showStatus(text) {
    statusEl.textContent = text;
    statusEl.className = text;
  }
  function show(type, id, data) {
    const li = document.createElement("li");
    li.textContent = type + " " + id + ": " + data;
    list.prepend(li);
    while (list.children.length > 20) list.lastChild.remove();
  }
  const source = new EventSource("/events");
  source.onopen = () => showStatus("open");
  source.onerror = () =>
    showStatus(source.readyState === EventSource.CONNECTING ? "reconnecting" : "closed");
  // Every relayed event, whatever its upstream type, is a message.
  source.addEventListener("message", (e) => {
    const r = JSON.parse(e.data);
    show(r.type, e.lastEventId, r.data);
  });
  source.addEventListener("reset", (e) => show("reset (from the relay)", e.lastEventId, e.data));
</script>
</html>
`
