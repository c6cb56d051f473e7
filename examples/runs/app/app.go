// Package app is the run demo of examples/runs: a page with a prompt box,
// a fake model that writes its answer at about 30 tokens a second, and the
// run's page, which streams the answer. The in-memory demo (examples/runs)
// and the Redis one (redisstream/examples/runs) serve it.
package app

import (
	"context"
	"crypto/rand"
	_ "embed"
	"html/template"
	"log"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/lightsse/sse"
	"github.com/lightsse/sse/sserun"
	"github.com/lightsse/sse/sseticket"
)

// Options configure an App. Zero fields mean the defaults.
type Options struct {
	// Key signs the viewers' tickets (with sseticket); instances that serve
	// the same runs share it. At least sseticket.MinKeyLen bytes.
	Key []byte
	// Runs configures the runs (NewLog, for several instances); the App
	// sets its Authorize, which checks the viewer's ticket.
	Runs sserun.Options
	// TokenDelay is the time between two tokens of an answer (33 ms, about
	// 30 a second).
	TokenDelay time.Duration
	// Tokens is the length of an answer in tokens (300).
	Tokens int
}

// An App serves the demo. Close it at shutdown.
type App struct {
	Runs    *sserun.Runs
	tickets *sseticket.Signer
	delay   time.Duration
	tokens  int

	ctx    context.Context // ends at Close: stops the models
	cancel context.CancelFunc
	work   sync.WaitGroup
}

// ticketTTL is how long a viewer's ticket opens its run.
const ticketTTL = time.Hour

// New returns an App. It returns sseticket.New's error for a Key under
// sseticket.MinKeyLen bytes, and sserun.New's for Runs it refuses.
func New(o Options) (*App, error) {
	signer, err := sseticket.New(o.Key)
	if err != nil {
		return nil, err
	}
	if o.TokenDelay <= 0 {
		o.TokenDelay = 33 * time.Millisecond
	}
	if o.Tokens <= 0 {
		o.Tokens = 300
	}
	a := &App{tickets: signer, delay: o.TokenDelay, tokens: o.Tokens}
	ro := o.Runs
	ro.Authorize = func(r *http.Request, runID string) error {
		return a.tickets.Check(r, runID) // the "ticket" query parameter
	}
	ro.Stream.Retry = time.Second
	if a.Runs, err = sserun.New(&ro); err != nil {
		return nil, err
	}
	a.ctx, a.cancel = context.WithCancel(context.Background())
	return a, nil
}

// Close stops the models, whose runs end with an event of type failed, and
// ends the streams of live runs (their viewers come back, to this instance
// or another).
func (a *App) Close() {
	a.cancel()
	a.work.Wait()
	a.Runs.Close()
}

// Handler returns the demo's routes:
//
//	GET  /                   the prompt box
//	POST /runs               starts a run (form field prompt); 303 to its page
//	GET  /runs/{id}          the run's page; its URL carries the ticket
//	GET  /runs/{id}/events   the run's stream, for the ticket's holder
func (a *App) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write([]byte(indexHTML))
	})
	mux.HandleFunc("POST /runs", a.start)
	mux.HandleFunc("GET /runs/{id}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		_ = runPage.Execute(w, r.PathValue("id"))
	})
	mux.Handle("GET /runs/{id}/events", a.Runs)
	return mux
}

// start starts a run for the prompt, and sends the browser to its page with
// a ticket to view it.
func (a *App) start(w http.ResponseWriter, r *http.Request) {
	prompt := r.FormValue("prompt")
	if len(prompt) > 2000 {
		http.Error(w, "the prompt is too long", http.StatusRequestEntityTooLarge)
		return
	}
	id := rand.Text()[:16]
	run, err := a.Runs.Start(r.Context(), id)
	if err != nil {
		log.Printf("start: %v", err)
		http.Error(w, "could not start the run", http.StatusServiceUnavailable)
		return
	}
	a.work.Add(1)
	go func() {
		defer a.work.Done()
		a.model(run, prompt)
	}()
	u := "/runs/" + id + "?ticket=" + url.QueryEscape(a.tickets.Sign(id, ticketTTL))
	http.Redirect(w, r, u, http.StatusSeeOther)
}

// model is the fake model: it answers the prompt a token at a time, then
// finishes the run with done, or with failed if the App closes first.
func (a *App) model(run *sserun.Run, prompt string) {
	t := time.NewTicker(a.delay)
	defer t.Stop()
	for i, tok := range answer(prompt, a.tokens) {
		if i > 0 {
			select {
			case <-t.C:
			case <-a.ctx.Done():
				_ = run.Finish(sse.Event{Type: "failed", Data: "the server stopped"})
				return
			}
		}
		if err := run.Publish(sse.Event{Type: "token", Data: tok}); err != nil {
			log.Printf("run %s: %v", run.ID(), err)
			return
		}
	}
	if err := run.Finish(sse.Event{Type: "done"}); err != nil {
		log.Printf("run %s: %v", run.ID(), err)
	}
}

//go:embed index.html
var indexHTML string

//go:embed run.html
var runHTML string

var runPage = template.Must(template.New("run").Parse(runHTML))
