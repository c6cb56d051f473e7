// Package redistest runs real redis-server processes for tests: on free
// loopback ports, with persistence off, stopped when the test ends. It can
// kill, restart, pause and resume a server, and save a snapshot that the next
// restart loads, which is how the tests make Redis fail; and it starts the
// topologies of production, a Redis Cluster with replicas (StartCluster) and
// a master with a replica watched by three Sentinels (StartSentinel), and a
// server that takes TLS only (StartTLS).
//
// Every server it starts has the user User, with exactly the rules ACL: the
// least privilege that redisstream documents. Tests log in as that user, so
// that they show the documented ACL is enough.
package redistest

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Binary is the redis-server the tests run: $SSE_REDIS_SERVER, or
// redis-server on PATH.
func Binary() (string, error) {
	if p := os.Getenv("SSE_REDIS_SERVER"); p != "" {
		return p, nil
	}
	return exec.LookPath("redis-server")
}

// User and Password are the user that the tests' Streams log in as, which
// every Server has, with the rules ACL.
const (
	User     = "sse"
	Password = "sse-test-password"
)

// ACL is the least privilege redisstream needs with the default Prefix,
// "sse:", as the rules of ACL SETUSER; its package doc shows the same rules,
// and says what each is for. Without any one of them but +ping, some test
// fails (without +ping, the Pub/Sub connection's liveness check gets its
// answer as a refusal, which does as well); HELLO and AUTH, with which
// go-redis logs in, need no rule.
const ACL = "resetkeys ~sse:* resetchannels &sse:* -@all" +
	" +evalsha +eval +info +hmget +hset +del +xadd +xtrim +xrange +xdel +xsetid +pexpire +persist +publish +wait" +
	" +subscribe +unsubscribe +ping +cluster|slots"

// A Server is one redis-server process and the port it keeps across
// restarts.
type Server struct {
	t    testing.TB
	bin  string
	dir  string
	port int
	args []string    // redis-server's own, after the port and the rest
	conf string      // a Sentinel's configuration file; "" for a plain server
	tls  *tls.Config // a TLS server's, for the commands of the tests

	mu     sync.Mutex
	cmd    *exec.Cmd     // nil when not running
	exited chan struct{} // closed when cmd has exited
}

// Start starts a redis-server on a free port of 127.0.0.1, with no RDB
// snapshots and no AOF, and the user User, and stops it when t ends; args are
// more of redis-server's options ("--proto-max-bulk-len", "1mb"). Without a
// redis-server it skips t with a message saying how to install one; with
// CI=true it fails t instead.
func Start(t testing.TB, args ...string) *Server {
	t.Helper()
	return newServer(t, args, func(*Server) {})
}

func binary(t testing.TB) string {
	t.Helper()
	bin, err := Binary()
	if err != nil {
		msg := "redis-server not found (install it: apt-get install redis-server, or set SSE_REDIS_SERVER)"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return bin
}

// newServer starts a server on a free port; prepare runs once the port is
// chosen, before each try to start.
func newServer(t testing.TB, args []string, prepare func(*Server)) *Server {
	t.Helper()
	s := &Server{t: t, bin: binary(t), dir: t.TempDir(), args: args}
	for try := 0; ; try++ {
		s.port = freePort(t)
		prepare(s)
		err := s.start()
		if err == nil {
			break
		}
		if try == 5 {
			t.Fatalf("redis-server: %v", err)
		}
	}
	t.Cleanup(s.Kill)
	return s
}

// Addr returns the server's host:port.
func (s *Server) Addr() string { return "127.0.0.1:" + strconv.Itoa(s.port) }

// Port returns the server's port.
func (s *Server) Port() int { return s.port }

// Do sends the server one command as its default user (every command
// allowed), and returns its reply; see the function Do. It gives up after
// 5 s.
func (s *Server) Do(args ...string) (any, error) { return do(s.Addr(), s.tls, 5*time.Second, args...) }

// Must is Do for a command that must succeed: it fails the test otherwise.
func (s *Server) Must(args ...string) any {
	s.t.Helper()
	r, err := s.Do(args...)
	if err != nil {
		s.t.Fatalf("%s: %v: %v", s.Addr(), args, err)
	}
	return r
}

// Info returns the value of field in the server's INFO reply (its section
// section), or "" if the server does not answer.
func (s *Server) Info(section, field string) string {
	r, err := do(s.Addr(), s.tls, time.Second, "INFO", section)
	info, ok := r.(string)
	if err != nil || !ok {
		return ""
	}
	return infoField(info, field)
}

// freePort returns a loopback port that was free a moment ago.
func freePort(t testing.TB) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// start runs redis-server and waits until it answers PING; then it gives a
// plain server the user User.
func (s *Server) start() error {
	var args []string
	if s.conf != "" {
		args = append(args, s.conf, "--sentinel")
	}
	args = append(args,
		"--port", strconv.Itoa(s.port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no",
		"--dir", s.dir, "--logfile", filepath.Join(s.dir, "redis.log"),
		"--daemonize", "no")
	cmd := exec.Command(s.bin, append(args, s.args...)...)
	// Its own process group, so that a ^C to the test run reaches it only
	// through the cleanup; and killed should the test process die first.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := command(s.Addr(), s.tls, "PING", "+PONG", time.Second)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			<-exited
			return fmt.Errorf("no answer on %s: %v (log: %s)", s.Addr(), err, s.log())
		}
		select {
		case <-exited:
			return fmt.Errorf("exited (log: %s)", s.log())
		case <-time.After(10 * time.Millisecond):
		}
	}
	if s.conf == "" {
		if _, err := s.Do(append([]string{"ACL", "SETUSER", User, "reset", "on", ">" + Password}, strings.Fields(ACL)...)...); err != nil {
			_ = cmd.Process.Kill()
			<-exited
			return fmt.Errorf("ACL SETUSER: %v", err)
		}
	}
	s.mu.Lock()
	s.cmd, s.exited = cmd, exited
	s.mu.Unlock()
	return nil
}

func (s *Server) log() string {
	b, _ := os.ReadFile(filepath.Join(s.dir, "redis.log"))
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > 5 {
		lines = lines[len(lines)-5:]
	}
	return strings.Join(lines, " | ")
}

// Running reports whether the server's process is running (paused or not).
func (s *Server) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cmd != nil
}

// command sends cmd, an inline command, and waits up to timeout for the
// reply want.
func command(addr string, conf *tls.Config, cmd, want string, timeout time.Duration) error {
	c, err := dial(addr, conf, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	if _, err := c.Write([]byte(cmd + "\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if line != want+"\r\n" {
		return errors.New(cmd + " answered " + strconv.Quote(line))
	}
	return nil
}

// Save writes a snapshot of the server's data (SAVE), which the next
// Restart loads: the server then goes back to this moment, as one
// restarted from an RDB file does.
func (s *Server) Save() {
	s.t.Helper()
	if err := command(s.Addr(), s.tls, "SAVE", "+OK", 10*time.Second); err != nil {
		s.t.Fatalf("redis-server: %v", err)
	}
}

// Kill ends the server with SIGKILL, as a crash would, and waits until it
// has exited. It does nothing when the server is not running.
func (s *Server) Kill() {
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	<-exited
}

// Restart starts the server again on the same port, after Kill: empty, or
// with the data of the last Save.
func (s *Server) Restart() {
	s.t.Helper()
	s.Kill()
	var err error
	for try := 0; try < 50; try++ { // the port may linger a moment
		if err = s.start(); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	s.t.Fatalf("redis-server restart: %v", err)
}

// Pause stops the server with SIGSTOP: connections stay open, and nothing
// answers.
func (s *Server) Pause() { s.signal(syscall.SIGSTOP) }

// Resume continues a paused server with SIGCONT.
func (s *Server) Resume() { s.signal(syscall.SIGCONT) }

func (s *Server) signal(sig syscall.Signal) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		_ = s.cmd.Process.Signal(sig)
	}
}
