// Command chat serves the chat room of examples/chat on a Broker whose
// history is kept in PostgreSQL, so that several chat processes serve one
// room: a message posted to any of them appears in every tab, whichever
// process serves it, and a tab that reconnects to another process resumes
// there.
//
// From the repository root, with PostgreSQL at the URL -postgres names (it
// makes pgstream's tables there if they are missing), in two terminals:
//
//	go -C pgstream run ./examples/chat -addr localhost:8080 -postgres postgres://localhost/chat
//	go -C pgstream run ./examples/chat -addr localhost:8081 -postgres postgres://localhost/chat
//
// then open http://localhost:8080 in one tab and http://localhost:8081 in
// another. two.sh, beside this file, starts a throwaway PostgreSQL and both
// processes in one command. -topic names another room.
package main

import (
	"context"
	"flag"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/lightsse/sse/examples/chat/room"
	"github.com/lightsse/sse/pgstream"
	"github.com/lightsse/sse/ssebroker"
)

func main() {
	addr := flag.String("addr", "localhost:8080", "address to listen on")
	url := flag.String("postgres", "postgres://localhost/chat", "PostgreSQL to keep the room's history in (a URL, or libpq's key=value form)")
	topic := flag.String("topic", "chat", "the room's topic")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	pool, err := pgxpool.New(ctx, *url)
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()
	if err := pool.Ping(ctx); err != nil {
		log.Fatalf("PostgreSQL at %s: %v", *url, err)
	}
	if err := pgstream.Migrate(ctx, pool, nil); err != nil {
		log.Fatal(err)
	}
	broker, streams, err := newBroker(pool, *topic)
	if err != nil {
		log.Fatal(err)
	}
	defer streams.Close() // after the Broker's streams have ended
	srv := &http.Server{Handler: room.Handler(broker), ReadHeaderTimeout: 10 * time.Second}
	srv.RegisterOnShutdown(func() { broker.Close() })

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	failed := make(chan error, 1)
	go func() { failed <- srv.Serve(ln) }()
	log.Printf("chat on PostgreSQL, topic %q: http://%s/", *topic, ln.Addr())

	select {
	case err := <-failed:
		log.Print(err)
		return
	case <-ctx.Done():
	}
	stop() // a second interrupt kills at once
	log.Print("shutting down")
	done, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(done); err != nil {
		log.Print(err)
		srv.Close()
	}
}

// newBroker returns a Broker on the PostgreSQL Log of topic, and the
// Streams that serves it, to be closed after the Broker.
func newBroker(pool *pgxpool.Pool, topic string) (*ssebroker.Broker, *pgstream.Streams, error) {
	streams, err := pgstream.New(pool, nil)
	if err != nil {
		return nil, nil, err
	}
	tp, err := streams.Topic(topic)
	if err != nil {
		streams.Close()
		return nil, nil, err
	}
	b, err := ssebroker.New(&ssebroker.Options{Log: tp})
	if err != nil {
		streams.Close()
		return nil, nil, err
	}
	return b, streams, nil
}
