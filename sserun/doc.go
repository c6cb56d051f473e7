// Package sserun streams runs: an LLM's answer token by token, an agent's
// steps, a build's log, a job's progress. A run starts, gets events in
// order, and ends with a terminal event; in between, people reload the
// page, open a second tab, lose Wi-Fi, or land on another replica. Every
// viewer gets the whole run, each event once, in order, and when it is over
// it stays over.
//
// A complete server:
//
//	runs, err := sserun.New(nil)
//	if err != nil {
//		log.Fatal(err)
//	}
//	http.Handle("GET /runs/{id}/events", runs)
//	http.HandleFunc("POST /runs", func(w http.ResponseWriter, r *http.Request) {
//		id := rand.Text()
//		run, err := runs.Start(r.Context(), id)
//		if err != nil { ... }
//		go func() { // the work happens once, here
//			for tok := range model.Answer(r.FormValue("prompt")) {
//				run.Publish(sse.Event{Type: "token", Data: tok})
//			}
//			run.Finish(sse.Event{Type: "done"})
//		}()
//		http.Redirect(w, r, "/runs/"+id, http.StatusSeeOther)
//	})
//
// and in the page:
//
//	const es = new EventSource("/runs/" + id + "/events");
//	es.addEventListener("token", e => out.append(e.data));
//	es.addEventListener("done", () => es.close());
//
// # What a run is
//
// Runs.Start creates a run under an id the application chooses, on the
// process that does the work. Run.Publish adds events; each gets the id
// "<epoch>-<offset>" (as an ssebroker.Broker gives), so a run's events carry
// no ID of their own. Run.Finish adds the terminal event, which the
// application chooses (done, an error, a cancellation); after it, Publish
// and Finish return ErrFinished. A finished run is kept for
// Options.Retention (10 minutes by default), then forgotten. A run that is
// never finished is kept for as long as the process runs: finish every run,
// with an event that says so when its work fails or is cancelled.
//
// # What a viewer gets
//
// Runs is the http.Handler of the runs' streams. A viewer, whenever it
// comes (before the first event, mid-run, after the end), gets every event
// of the run from its first, then live ones, then the terminal event, in one
// order, each once. A reconnection with a Last-Event-ID gets exactly what
// followed that id. After the terminal event the stream ends, with a retry
// of half a second, and the reconnection, which carries the terminal
// event's id, gets 204 No Content: EventSource then stops for good. An id
// that names no event of the run gets a ResetEvent (type "reset", its Data
// the id) at the run's position: live, followed by live events; finished,
// at the terminal event, so the reconnection gets 204. A page that receives
// one should reload.
//
// A run that does not exist, never existed, or is past its retention gets
// Options.NotFound (404 by default), before any byte of a stream.
//
// Options.QueryCursor names a query parameter (say "lastEventId") that the
// first request may carry instead of the header, for a page that rendered
// part of the run itself and opens its EventSource from there:
// new EventSource(url + "?lastEventId=" + encodeURIComponent(lastId)). It is
// checked exactly as the header is, and the header, which the browser's
// reconnections send, wins over it. It is off unless set.
//
// # Who may view a run
//
// A run id in a URL is not a secret: links are shared, logged and kept in
// histories. Options.Authorize is asked, before anything else, whether a
// request may view a run; an error gets 403 Forbidden and no stream, whether
// the run exists or not. EventSource sends cookies but no Authorization
// header: the usual check is a ticket in the query, signed by the server
// for one run and a short time, which the page that shows the run puts in
// the stream's URL:
//
//	signer, err := sseticket.New(key) // package sseticket; key: 32 bytes or more
//	...
//	runs, err := sserun.New(&sserun.Options{
//		Authorize: func(r *http.Request, runID string) error {
//			return signer.Check(r, runID) // the "ticket" query parameter
//		},
//	})
//
// and the page's URL carries signer.Sign(runID, time.Hour).
//
// # Several processes
//
// With Options.NewLog, each run's events are kept in a Log outside the
// process (redisstream: a topic per run) and a run started on one process
// is viewed from any: a viewer's reload that lands on another process
// continues exactly. The first event of a run's Log is a comment, written
// by Start, so that every process sees the run exist before its first
// event; the terminal event ends with a comment, ": end of run", so that
// every process sees it finished. Viewers ignore both. A process that
// restarts loses nothing the Log holds; only the work of its runs is lost.
//
// With redisstream, set IdleTTL to the retention: Redis then deletes a run
// when its retention is over (counted from its last event, the terminal
// one), for every process, with no sweeper anywhere; and set MaxLen to at
// least the events of the longest run, plus one. (A run that publishes
// nothing for IdleTTL is deleted as well.)
//
// # Memory and goroutines
//
// A run kept in memory costs its encoded events, back to back in one
// buffer, plus four bytes an event. A live run has an ssebroker.Broker,
// whose own history holds its 128 newest events for live delivery; replay
// is read from the run's history. The Broker closes when the run finishes,
// so a finished run costs no goroutine and no timer: finished runs are
// forgotten, in the order they finished, by the calls of Start and
// ServeHTTP that come after their retention. A server that gets neither
// keeps them until it does.
//
// A viewer of a live run is a stream of its Broker (see ssebroker for its
// goroutines). A viewer of a finished run is served on its request's
// goroutine in a few writes: the run read from its Log a megabyte at a
// time, each batch in one write.
//
// # Options
//
// Options follow the rule of every package in this module: 0 means the
// default, and a negative value, which means nothing here, is refused by
// New with an error matching ErrInvalidOptions that names the field.
package sserun
