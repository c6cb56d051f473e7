package pgstream_test

import (
	"context"
	"log"
	"net/http"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/lightsse/sse"
	"github.com/lightsse/sse/pgstream"
	"github.com/lightsse/sse/ssebroker"
)

// A process serves a room's stream from a Broker on the room's topic, and
// stores each posted message and publishes it in one transaction: the
// message reaches the room's clients, in every process, if and only if it
// was stored.
func Example() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, "postgres://app@db.internal/app")
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()
	if err := pgstream.Migrate(ctx, pool, nil); err != nil { // or schema.sql, in your migration tool
		log.Fatal(err)
	}
	streams, err := pgstream.New(pool, nil) // one per process
	if err != nil {
		log.Fatal(err)
	}
	defer streams.Close() // after the Brokers
	room, err := streams.Topic("room:42")
	if err != nil {
		log.Fatal(err)
	}
	broker, err := ssebroker.New(&ssebroker.Options{Log: room})
	if err != nil {
		log.Fatal(err)
	}
	defer broker.Close()

	http.Handle("GET /rooms/42/events", broker)
	http.HandleFunc("POST /rooms/42/messages", func(w http.ResponseWriter, r *http.Request) {
		text := r.FormValue("text")
		err := pgx.BeginFunc(r.Context(), pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(r.Context(), "INSERT INTO messages (room, text) VALUES (42, $1)", text); err != nil {
				return err
			}
			// Last in the transaction: from here to the commit, other
			// publishers to the room wait.
			_, err := room.PublishTx(r.Context(), tx, sse.Event{Type: "message", Data: text})
			return err
		})
		if err != nil {
			http.Error(w, "not sent", http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	log.Fatal(http.ListenAndServe(":8080", nil))
}
