// Command runs serves the run demo: a page with a prompt box, and a fake
// model (no network) that answers at about 30 tokens a second, streamed
// with sserun. Reload the answer's page mid-answer: it continues with no gap
// and no duplicate. Open it in a second tab: the whole answer so far, then
// the rest. Reload after the end: the whole answer, and the stream stays
// closed.
//
//	go run ./examples/runs -addr localhost:8080
//
// This one keeps its runs in memory; redisstream/examples/runs keeps them
// in Redis (-redis), so that several instances serve one run.
package main

import (
	"context"
	"crypto/rand"
	"flag"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/lightsse/sse/examples/runs/app"
)

func main() {
	addr := flag.String("addr", "localhost:8080", "address to listen on")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	a, err := app.New(app.Options{Key: []byte(rand.Text() + rand.Text())})
	if err != nil {
		log.Fatal(err)
	}
	srv := &http.Server{Handler: a.Handler(), ReadHeaderTimeout: 10 * time.Second}
	srv.RegisterOnShutdown(a.Close)
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	failed := make(chan error, 1)
	go func() { failed <- srv.Serve(ln) }()
	log.Printf("runs: http://%s/", ln.Addr())
	select {
	case err := <-failed:
		log.Print(err)
		return
	case <-ctx.Done():
	}
	stop()
	log.Print("shutting down")
	done, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(done); err != nil {
		log.Print(err)
		srv.Close()
	}
}
