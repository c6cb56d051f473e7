package pgstream

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// The listener holds the one connection of a Streams that is not the
// pool's: a session on which it LISTENs to the Streams' channel. It tells
// the loop when it is up (LISTENing, on a new connection: the loop then
// reads what it may have missed) and when it is down (the loop then polls),
// and hands it every notification.

// listenerName is the application_name of the listening connection, when
// the pool's configuration sets none: it shows in pg_stat_activity.
const listenerName = "pgstream listener"

// maxReconnectWait bounds how long the listener waits before it tries to
// connect again after a failed try (PollInterval, if shorter).
const maxReconnectWait = time.Second

// listen keeps a LISTENing connection until the Streams closes, trying to
// connect again every PollInterval, or second, while it cannot.
func (fs *feeds) listen() {
	defer fs.s.wg.Done()
	for {
		conn, err := fs.connect()
		if err == nil {
			fs.connects.Add(1)
			fs.listener.Store(int32(conn.PgConn().PID()))
			if fs.send(item{kind: up}) {
				fs.receive(conn)
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			_ = conn.Close(ctx)
			cancel()
		}
		if !fs.send(item{kind: down}) {
			return
		}
		if err == nil {
			continue // a connection that worked: try again at once
		}
		select {
		case <-fs.quit:
			return
		case <-time.After(min(fs.s.o.PollInterval, maxReconnectWait)):
		}
	}
}

// connect opens a connection with the pool's configuration (and its
// BeforeConnect and AfterConnect, if set), and LISTENs on it.
func (fs *feeds) connect() (*pgx.Conn, error) {
	ctx, cancel := fs.s.callContext(context.Background())
	defer cancel()
	pc := fs.s.pool.Config()
	cfg := pc.ConnConfig
	if _, ok := cfg.RuntimeParams["application_name"]; !ok {
		cfg.RuntimeParams["application_name"] = listenerName
	}
	if pc.BeforeConnect != nil {
		if err := pc.BeforeConnect(ctx, cfg); err != nil {
			return nil, err
		}
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if pc.AfterConnect != nil {
		err = pc.AfterConnect(ctx, conn)
	}
	if err == nil {
		_, err = conn.Exec(ctx, "LISTEN "+pgx.Identifier{fs.s.n.channel}.Sanitize())
	}
	if err != nil {
		_ = conn.Close(ctx)
		return nil, err
	}
	return conn, nil
}

// receive hands the loop the notifications that come on conn, until the
// connection fails or the Streams closes. After pingAfter with nothing, it
// checks the connection with a query: a peer lost without a reset (a dead
// host, a dropped route) would otherwise leave it silent for good.
func (fs *feeds) receive(conn *pgx.Conn) {
	for {
		ctx, cancel := context.WithTimeout(fs.s.ctx, pingAfter)
		n, err := conn.WaitForNotification(ctx)
		cancel()
		switch {
		case fs.s.ctx.Err() != nil:
			return
		case err == nil:
			if it, ok := parseNote(n.Payload); ok && !fs.send(it) {
				return
			}
		case pgconn.Timeout(err):
			ctx, cancel := context.WithTimeout(fs.s.ctx, fs.s.o.Timeout)
			err := conn.Ping(ctx)
			cancel()
			if err != nil {
				return
			}
		default:
			return
		}
	}
}

// send hands the loop it, and reports false if the Streams closed first.
func (fs *feeds) send(it item) bool {
	select {
	case fs.inbox <- it:
		return true
	case <-fs.quit:
		return false
	}
}
