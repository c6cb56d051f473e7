// Command chat serves the chat room of examples/chat on a Broker whose
// history is kept in Redis, so that several chat processes serve one room: a
// message posted to any of them appears in every tab, whichever process
// serves it, and a tab that reconnects to another process resumes there.
//
// From the repository root, with a redis-server on 127.0.0.1:6379 (Debian:
// apt-get install redis-server), in two terminals:
//
//	go -C redisstream run ./examples/chat -addr localhost:8080
//	go -C redisstream run ./examples/chat -addr localhost:8081
//
// then open http://localhost:8080 in one tab and http://localhost:8081 in
// another. -redis names another Redis (host:port); -topic another room.
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

	"github.com/lightsse/sse/ssebroker"

	"github.com/lightsse/sse/examples/chat/room"
	"github.com/lightsse/sse/redisstream"
	"github.com/redis/go-redis/v9"
)

func main() {
	addr := flag.String("addr", "localhost:8080", "address to listen on")
	redisAddr := flag.String("redis", "127.0.0.1:6379", "Redis to keep the room's history in (host:port)")
	topic := flag.String("topic", "chat", "the room's topic in Redis")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	client := redis.NewClient(&redis.Options{Addr: *redisAddr, ContextTimeoutEnabled: true})
	defer client.Close()
	if err := client.Ping(ctx).Err(); err != nil {
		log.Fatalf("Redis at %s: %v (start one: redis-server --port 6379 --save '' --appendonly no)", *redisAddr, err)
	}
	broker, streams, err := newBroker(client, *topic)
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
	log.Printf("chat on Redis %s, topic %q: http://%s/", *redisAddr, *topic, ln.Addr())

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

// newBroker returns a Broker on the Redis Log of topic, and the Streams
// that serves it, to be closed after the Broker.
func newBroker(client redis.UniversalClient, topic string) (*ssebroker.Broker, *redisstream.Streams, error) {
	streams, err := redisstream.New(client, nil)
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
