// Command chat serves a chat room that any number of browser tabs can watch at
// once: a message posted from one tab goes through one ssebroker.Broker to the
// EventSource of every tab.
//
//	go run ./examples/chat         # then open http://localhost:8080 in two tabs
//	go run ./examples/chat -tls    # the same over HTTPS and HTTP/2
//
// -addr changes the listening address; with -tls, -cert and -key name a
// certificate and key to use instead of a throwaway self-signed one.
//
// The page at /many?n=20 opens n EventSources at once. Over HTTP/1.1 a browser
// keeps at most six connections to one host, so six open and the rest wait,
// connecting; over HTTP/2 (-tls) all share one connection and all open.
package main

import (
	"context"
	"crypto/tls"
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
)

func main() {
	addr := flag.String("addr", "localhost:8080", "address to listen on")
	useTLS := flag.Bool("tls", false, "serve HTTPS, with HTTP/2")
	certFile := flag.String("cert", "", "with -tls: certificate file (PEM); none: a throwaway self-signed one")
	keyFile := flag.String("key", "", "with -tls: private key file (PEM) of -cert")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	broker, err := ssebroker.New(nil)
	if err != nil {
		log.Fatal(err)
	}
	srv := &http.Server{Handler: room.Handler(broker), ReadHeaderTimeout: 10 * time.Second}
	// Shutdown waits for open responses but does not end them, and a stream
	// never ends by itself. Closing the Broker ends every stream, each after
	// telling its browser to come back a few seconds later.
	srv.RegisterOnShutdown(func() { broker.Close() })

	scheme, many := "http", "over HTTP/1.1 six open and the rest wait; with -tls, all open"
	if !*useTLS && (*certFile != "" || *keyFile != "") {
		log.Fatal("-cert and -key go with -tls")
	}
	if *useTLS {
		cert, generated, err := certificate(*certFile, *keyFile)
		if err != nil {
			log.Fatal(err)
		}
		if generated {
			log.Print("using a throwaway self-signed certificate for localhost and 127.0.0.1, valid 24 h: the browser will warn about it; accept it to go on")
		}
		srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		scheme, many = "https", "over HTTP/2 all open"
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	failed := make(chan error, 1)
	go func() {
		if *useTLS {
			failed <- srv.ServeTLS(ln, "", "") // speaks HTTP/2 by itself
		} else {
			failed <- srv.Serve(ln)
		}
	}()
	base := baseURL(scheme, *addr, ln.Addr())
	log.Printf("chat: %s/ (open it in two tabs)", base)
	log.Printf("six connections: %s/many?n=20 (%s)", base, many)

	select {
	case err := <-failed:
		log.Fatal(err)
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

// baseURL returns scheme://host:port for the address the server listens on,
// with the host given in -addr, or localhost when it names none.
func baseURL(scheme, addr string, bound net.Addr) string {
	host, _, _ := net.SplitHostPort(addr)
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "localhost"
	}
	_, port, _ := net.SplitHostPort(bound.String())
	return scheme + "://" + net.JoinHostPort(host, port)
}
