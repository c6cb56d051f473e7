// Command runs serves the run demo of examples/runs with its runs kept in
// Redis, so that several instances serve one run: a run started on one is
// watched from any, and a reload that lands on another continues exactly.
// Instances on the same Redis share everything a viewer needs: the runs, and
// the key that signs the viewers' tickets (kept in Redis, made by the first).
//
// From the repository root, with a redis-server on 127.0.0.1:6379 (Debian:
// apt-get install redis-server), in two terminals:
//
//	go -C redisstream run ./examples/runs -addr localhost:8080
//	go -C redisstream run ./examples/runs -addr localhost:8081
//
// or both at once with redisstream/examples/runs/two.sh. Ask on one, then
// open the run's page on the other (change the port in its URL). -redis
// names another Redis (host:port).
package main

import (
	"context"
	"crypto/rand"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/lightsse/sse/examples/runs/app"
	"github.com/lightsse/sse/redisstream"
	"github.com/lightsse/sse/ssebroker"
	"github.com/lightsse/sse/sserun"
	"github.com/lightsse/sse/sseticket"
	"github.com/redis/go-redis/v9"
)

// retention is how long a finished run is kept, in Redis and here.
const retention = 10 * time.Minute

// keyName is the Redis key of the tickets' signing key.
const keyName = "runs-demo:ticket-key"

func main() {
	addr := flag.String("addr", "localhost:8080", "address to listen on")
	redisAddr := flag.String("redis", "127.0.0.1:6379", "Redis to keep the runs in (host:port)")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	client := redis.NewClient(&redis.Options{Addr: *redisAddr, ContextTimeoutEnabled: true})
	defer client.Close()
	key, err := sharedKey(ctx, client)
	if err != nil {
		log.Fatalf("Redis at %s: %v (start one: redis-server --port 6379 --save '' --appendonly no)", *redisAddr, err)
	}
	// IdleTTL is the retention: Redis deletes a run that long after its
	// last event, the terminal one, for every instance. MaxLen holds the
	// longest answer whole.
	streams, err := redisstream.New(client, &redisstream.Options{Prefix: "runs-demo:", IdleTTL: retention, MaxLen: 10000})
	if err != nil {
		log.Fatal(err)
	}
	defer streams.Close() // after the runs' streams have ended
	a, err := app.New(app.Options{Key: key, Runs: sserun.Options{
		Retention: retention,
		NewLog:    func(id string) (ssebroker.Log, error) { return streams.Topic("run:" + id) },
	}})
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
	log.Printf("runs on Redis %s: http://%s/", *redisAddr, ln.Addr())
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

// sharedKey returns the tickets' key that every instance on this Redis
// uses: the one in Redis, or a new one that the first instance puts there.
func sharedKey(ctx context.Context, client *redis.Client) ([]byte, error) {
	if _, err := client.SetNX(ctx, keyName, rand.Text()+rand.Text(), 0).Result(); err != nil {
		return nil, err
	}
	k, err := client.Get(ctx, keyName).Bytes()
	if err == nil && len(k) < sseticket.MinKeyLen {
		err = fmt.Errorf("%s holds %d bytes, under %d", keyName, len(k), sseticket.MinKeyLen)
	}
	return k, err
}
