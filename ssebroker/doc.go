// Package ssebroker sends Server-Sent Events to many clients at once. A
// Broker is an http.Handler: every client that opens its stream gets every
// event given to Publish, a client that reconnects with a Last-Event-ID
// header gets what it missed, and a slow client delays no one.
//
// A complete server that pushes prices to every browser on /prices:
//
//	func main() {
//		broker, err := ssebroker.New(nil)
//		if err != nil {
//			log.Fatal(err)
//		}
//		srv := &http.Server{Addr: ":8080", ReadHeaderTimeout: 10 * time.Second}
//		http.Handle("/prices", broker)
//		srv.RegisterOnShutdown(func() { broker.Close() }) // ends the streams
//		go func() {
//			for range time.Tick(time.Second) {
//				_ = broker.Publish(sse.Event{Type: "price", Data: `{"ACME":1234.5}`})
//			}
//		}()
//		log.Fatal(srv.ListenAndServe())
//	}
//
// and in the page:
//
//	new EventSource("/prices").addEventListener("price", e => show(e.data));
//
// A Broker numbers events "<epoch>-<offset>" and keeps the most recent ones
// (Options.HistoryLen, HistoryBytes), so that replay after a reconnection
// has no gap and no duplicate; an id it cannot resume from gets a first
// event of type ResetEvent instead of a silent gap. With Options.Log, a log
// outside the process (redisstream for Redis, pgstream for PostgreSQL)
// numbers the events, and Brokers in several processes serve one stream.
// Broker.Stats counts what a Broker does.
//
// # Options
//
// Every option follows one rule, as in package sse: 0 means the default; a
// negative value means off where off exists (CloseRetry, and the Stream's
// WriteTimeout and Heartbeat), and New refuses it, with an error matching
// ErrInvalidOptions that names the field, where it does not.
//
// # Many idle streams
//
// A stream served through net/http costs about 22 KiB while it waits: most
// of it net/http's per-connection buffers and the handler goroutine's
// stack. With Options.Detach, an HTTP/1.1 stream (most of them, behind a
// load balancer that ends TLS) leaves net/http once it starts and costs a
// few KiB; Options.Detach says what that changes for middleware and
// http.Server's Shutdown. One Broker per user costs about 0.8 KB while it
// has no stream (no goroutine, no timer), and with one about 0.85 KiB more
// than the stream would on a shared Broker, besides the events it keeps.
//
// # Testing a handler
//
// Serve the Broker with httptest.NewServer and read its stream with
// sseclient.Reader. Wait for Subscribers to count the stream before you
// publish: once it does, every later event reaches it.
package ssebroker
