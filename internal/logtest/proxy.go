package logtest

import (
	"net"
	"sync"
	"testing"
)

// A Proxy forwards TCP connections to a server until frozen: then the
// connections it has stop carrying bytes, without closing, as if the peer
// had vanished; new ones work. A Log's tests put it between the Log and
// its store to lose a connection without a reset.
type Proxy struct {
	ln    net.Listener
	close func()
	mu    sync.Mutex
	up    chan struct{} // closed to stop what clients send, on the connections of before
	down  chan struct{} // closed to stop what the server sends, likewise
	conns []net.Conn
}

// NewProxy starts a Proxy to target, on a free port of 127.0.0.1; the
// test's end closes it.
func NewProxy(t testing.TB, target string) *Proxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{ln: ln, up: make(chan struct{}), down: make(chan struct{})}
	var wg sync.WaitGroup
	p.close = sync.OnceFunc(func() {
		ln.Close()
		p.mu.Lock()
		for _, c := range p.conns {
			c.Close()
		}
		p.mu.Unlock()
		wg.Wait()
	})
	t.Cleanup(p.close)
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, s)
			up, down := p.up, p.down
			p.mu.Unlock()
			wg.Go(func() { p.pipe(s, c, up) })
			wg.Go(func() { p.pipe(c, s, down) })
		}
	})
	return p
}

// Addr returns the Proxy's address, host:port.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Close closes the Proxy's listener and every connection it forwards, and
// waits for its goroutines. A second Close does nothing.
func (p *Proxy) Close() { p.close() }

// pipe copies from src to dst until either closes, or frozen: then it
// reads on and drops what it reads, so that the sender sees nothing wrong.
func (p *Proxy) pipe(dst, src net.Conn, frozen chan struct{}) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if err != nil {
			dst.Close()
			return
		}
		select {
		case <-frozen:
			continue
		default:
		}
		if _, err := dst.Write(buf[:n]); err != nil {
			src.Close()
			return
		}
	}
}

// Freeze stops every connection made so far, both ways.
func (p *Proxy) Freeze() {
	p.mu.Lock()
	defer p.mu.Unlock()
	close(p.up)
	close(p.down)
	p.up, p.down = make(chan struct{}), make(chan struct{})
}

// DropReplies stops what the server sends on every connection made so far:
// what clients send still arrives, and the server's replies are lost.
func (p *Proxy) DropReplies() {
	p.mu.Lock()
	defer p.mu.Unlock()
	close(p.down)
	p.down = make(chan struct{})
}
