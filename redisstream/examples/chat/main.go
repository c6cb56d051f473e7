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
// another. -topic names another room; -redis another Redis, in any form
// go-redis parses:
//
//	-redis 10.0.0.5:6379                                   one node, host:port
//	-redis redis://sse:secret@10.0.0.5:6379/0              a URL: user, password, database
//	-redis rediss://sse:secret@redis.example.com:6380      TLS
//	-redis 'redis://10.0.0.7:26379?master_name=mymaster&addr=10.0.0.8:26379&addr=10.0.0.9:26379&username=sse&password=secret'
//	                                                       Sentinel: the Sentinels' addresses, the master's name,
//	                                                       and the master's user and password as parameters (a
//	                                                       user and password before the host are the Sentinels')
//	-redis 'redis://sse:secret@10.0.0.5:7000?addr=10.0.0.6:7000&addr=10.0.0.7:7000'
//	                                                       Cluster: any of its nodes (or -cluster with one)
//
// The URLs are go-redis's own (redis.ParseURL, ParseFailoverURL,
// ParseClusterURL), with their query parameters for timeouts and pools.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/lightsse/sse/ssebroker"

	"github.com/lightsse/sse/examples/chat/room"
	"github.com/lightsse/sse/redisstream"
	"github.com/redis/go-redis/v9"
)

func main() {
	addr := flag.String("addr", "localhost:8080", "address to listen on")
	redisAddr := flag.String("redis", "127.0.0.1:6379", "Redis to keep the room's history in: host:port, or a redis:// or rediss:// URL (with master_name=: Sentinel; with addr=: Cluster)")
	cluster := flag.Bool("cluster", false, "-redis is a node of a Redis Cluster")
	topic := flag.String("topic", "chat", "the room's topic in Redis")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	client, where, err := newClient(*redisAddr, *cluster)
	if err != nil {
		log.Fatalf("-redis %q: %v", *redisAddr, err)
	}
	defer client.Close()
	if err := client.Ping(ctx).Err(); err != nil {
		log.Fatalf("Redis at %s: %v (start one: redis-server --port 6379 --save '' --appendonly no)", where, err)
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
	log.Printf("chat on %s, topic %q: http://%s/", where, *topic, ln.Addr())

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

// newClient returns a go-redis client for spec: a host:port, or a redis://,
// rediss:// or unix:// URL as go-redis parses it; a URL with master_name is
// a Sentinel deployment (ParseFailoverURL), and one with addr, or any spec
// with cluster set, a Cluster (ParseClusterURL). It also returns what it
// reaches, for the log, without the password.
func newClient(spec string, cluster bool) (redis.UniversalClient, string, error) {
	if !strings.Contains(spec, "://") {
		if cluster {
			return redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{spec}, ContextTimeoutEnabled: true}),
				"the Redis Cluster at " + spec, nil
		}
		return redis.NewClient(&redis.Options{Addr: spec, ContextTimeoutEnabled: true}), "Redis at " + spec, nil
	}
	u, err := url.Parse(spec)
	if err != nil {
		return nil, "", err
	}
	q := u.Query()
	switch {
	case q.Has("master_name"):
		o, err := redis.ParseFailoverURL(spec)
		if err != nil {
			return nil, "", err
		}
		o.ContextTimeoutEnabled = true
		return redis.NewFailoverClient(o), fmt.Sprintf("the Redis master %q of the Sentinels at %s", o.MasterName, strings.Join(o.SentinelAddrs, ", ")), nil
	case q.Has("addr") || cluster:
		o, err := redis.ParseClusterURL(spec)
		if err != nil {
			return nil, "", err
		}
		o.ContextTimeoutEnabled = true
		return redis.NewClusterClient(o), "the Redis Cluster at " + strings.Join(o.Addrs, ", "), nil
	}
	o, err := redis.ParseURL(spec)
	if err != nil {
		return nil, "", err
	}
	o.ContextTimeoutEnabled = true
	return redis.NewClient(o), "Redis at " + u.Redacted(), nil
}
