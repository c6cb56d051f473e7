// Package pgtest runs a throwaway PostgreSQL cluster for tests: Debian's
// postgresql binaries (or any found on the way Binaries says), a new
// cluster in a temporary folder, on a free port of 127.0.0.1, with fsync
// off. Each test package shares one cluster, started by its first test that
// asks for it and stopped after the last (see Main); each test gets a
// database of its own. It can stop the server as a crash would (what
// pg_ctl stop -m immediate does) and start it again on the same port and
// folder.
//
// Run as root, initdb and postgres refuse to start; they are then run as the
// user postgres, or nobody where there is none.
package pgtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/lightsse/sse/internal/leakcheck"
)

// Main runs the package's tests, then stops the cluster they shared, then
// fails the run if a goroutine outlived the tests (as leakcheck.Main does).
// Call it from TestMain.
func Main(m *testing.M) {
	leakcheck.MainAfter(m, func() {
		shared.mu.Lock()
		defer shared.mu.Unlock()
		if shared.c != nil {
			shared.c.Stop()
		}
	})
}

var shared struct {
	mu  sync.Mutex
	c   *Cluster
	err error // the first start's, if it failed
}

// Start returns the cluster of the test package, starting it if it is the
// first call. Without PostgreSQL's binaries it skips t with a message saying
// how to install them; with CI=true it fails t instead.
func Start(t testing.TB) *Cluster {
	t.Helper()
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.c == nil && shared.err == nil {
		shared.c, shared.err = New()
	}
	var missing *MissingError
	switch {
	case errors.As(shared.err, &missing):
		if os.Getenv("CI") == "true" {
			t.Fatal(shared.err)
		}
		t.Skip(shared.err)
	case shared.err != nil:
		t.Fatal(shared.err)
	}
	return shared.c
}

// A MissingError says that PostgreSQL's binaries were not found.
type MissingError struct{ Err error }

// Error says what is missing, and how to install it.
func (e *MissingError) Error() string {
	return "PostgreSQL not found (install it: apt-get install postgresql, or set SSE_POSTGRES_BIN to the folder of initdb and postgres): " + e.Err.Error()
}

// Unwrap returns what the search for the binaries ran into.
func (e *MissingError) Unwrap() error { return e.Err }

// Binaries returns the folder that holds initdb and postgres: $SSE_POSTGRES_BIN
// if set; else the folder of initdb on PATH; else what pg_config --bindir
// says; else the newest /usr/lib/postgresql/*/bin (Debian's place, off
// PATH). The error is a *MissingError.
func Binaries() (string, error) {
	has := func(dir string) bool {
		for _, b := range []string{"initdb", "postgres"} {
			if fi, err := os.Stat(filepath.Join(dir, b)); err != nil || fi.IsDir() {
				return false
			}
		}
		return true
	}
	if d := os.Getenv("SSE_POSTGRES_BIN"); d != "" {
		if !has(d) {
			return "", &MissingError{fmt.Errorf("SSE_POSTGRES_BIN=%s holds no initdb and postgres", d)}
		}
		return d, nil
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		if real, err := filepath.EvalSymlinks(p); err == nil && has(filepath.Dir(real)) {
			return filepath.Dir(real), nil
		}
		if has(filepath.Dir(p)) {
			return filepath.Dir(p), nil
		}
	}
	if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
		if d := strings.TrimSpace(string(out)); has(d) {
			return d, nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return version(dirs[i]) > version(dirs[j]) })
	for _, d := range dirs {
		if has(d) {
			return d, nil
		}
	}
	return "", &MissingError{errors.New("no initdb on PATH, no pg_config, no /usr/lib/postgresql/*/bin")}
}

// version reads the major version in /usr/lib/postgresql/<version>/bin.
func version(dir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(dir)))
	return n
}

// A Cluster is one PostgreSQL server process and the folder and port it
// keeps across restarts.
type Cluster struct {
	bin      string
	base     string // holds data/ and the server's socket and log
	port     int
	cred     *syscall.Credential // nil unless run as root
	settings []string

	mu  sync.Mutex
	cmd *exec.Cmd // nil when not running
	dbs atomic.Int64
}

// New makes a new cluster in a temporary folder and starts its server. Stop
// ends it and removes the folder. Each of settings, "name=value", is passed
// to the server as -c name=value, after (so in place of) the tests' own:
// "fsync=on", say.
func New(settings ...string) (*Cluster, error) {
	bin, err := Binaries()
	if err != nil {
		return nil, err
	}
	base, err := os.MkdirTemp("", "pgtest-")
	if err != nil {
		return nil, err
	}
	c := &Cluster{bin: bin, base: base, settings: settings}
	if err := c.init(); err != nil {
		os.RemoveAll(base)
		return nil, err
	}
	for try := 0; ; try++ {
		c.port, err = freePort()
		if err == nil {
			err = c.start()
		}
		if err == nil {
			return c, nil
		}
		if try == 4 {
			os.RemoveAll(base)
			return nil, err
		}
	}
}

// init runs initdb, as an unprivileged user when run as root.
func (c *Cluster) init() error {
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			u, err = user.Lookup("nobody")
		}
		if err != nil {
			return fmt.Errorf("pgtest: run as root, and no user postgres or nobody to run PostgreSQL as: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		c.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), NoSetGroups: true}
		if err := os.Chown(c.base, uid, gid); err != nil {
			return err
		}
	}
	cmd := c.command("initdb", "-D", c.data(), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-locale", "-N")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("pgtest: initdb: %v\n%s", err, out)
	}
	return nil
}

func (c *Cluster) data() string { return filepath.Join(c.base, "data") }

// command returns the PostgreSQL binary name with args, run as the
// cluster's user, in its own process group (so that a ^C to the test run
// reaches it only through Stop), and killed should the test process die
// first.
func (c *Cluster) command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(filepath.Join(c.bin, name), args...)
	cmd.Dir = c.base
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL, Credential: c.cred}
	return cmd
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// start runs postgres and waits until it accepts connections.
func (c *Cluster) start() error {
	logf, err := os.OpenFile(filepath.Join(c.base, "postgres.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := c.command("postgres", "-D", c.data(),
		"-p", strconv.Itoa(c.port),
		"-c", "listen_addresses=127.0.0.1",
		"-c", "unix_socket_directories="+c.base,
		"-c", "fsync=off", // a crash of the server loses nothing; of the machine, it might
		"-c", "full_page_writes=off",
		"-c", "max_connections=300",
		"-c", "log_min_messages=warning",
		"-c", "deadlock_timeout=100ms")
	for _, kv := range c.settings {
		cmd.Args = append(cmd.Args, "-c", kv)
	}
	cmd.Stdout, cmd.Stderr = logf, logf // files: os/exec starts no goroutine to copy
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("pgtest: postgres: %w", err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		conn, err := pgx.Connect(ctx, c.URL("postgres"))
		cancel()
		if err == nil {
			conn.Close(context.Background())
			break
		}
		var ws syscall.WaitStatus
		if pid, _ := syscall.Wait4(cmd.Process.Pid, &ws, syscall.WNOHANG, nil); pid == cmd.Process.Pid {
			return fmt.Errorf("pgtest: postgres exited (%v); log: %s", ws, c.Log())
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			return fmt.Errorf("pgtest: postgres does not answer on port %d: %v; log: %s", c.port, err, c.Log())
		}
		time.Sleep(20 * time.Millisecond)
	}
	c.mu.Lock()
	c.cmd = cmd
	c.mu.Unlock()
	return nil
}

// Log returns the end of the server's log.
func (c *Cluster) Log() string {
	b, _ := os.ReadFile(filepath.Join(c.base, "postgres.log"))
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > 10 {
		lines = lines[len(lines)-10:]
	}
	return strings.Join(lines, "\n")
}

// PID returns the process id of the server (the postmaster), or 0 when it
// is not running.
func (c *Cluster) PID() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cmd == nil {
		return 0
	}
	return c.cmd.Process.Pid
}

// Port returns the server's TCP port on 127.0.0.1.
func (c *Cluster) Port() int { return c.port }

// Bin returns the path of one of PostgreSQL's programs (pgbench, say).
func (c *Cluster) Bin(name string) string { return filepath.Join(c.bin, name) }

// URL returns the URL of database db, as the superuser postgres.
func (c *Cluster) URL(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", c.port, db)
}

// CreateDB makes a new, empty database and returns its name.
func (c *Cluster) CreateDB(ctx context.Context) (string, error) {
	name := fmt.Sprintf("db%d_%d", os.Getpid(), c.dbs.Add(1))
	return name, c.Exec(ctx, "CREATE DATABASE "+name)
}

// Exec runs sql in the database postgres, on a connection of its own.
func (c *Cluster) Exec(ctx context.Context, sql string, args ...any) error {
	conn, err := pgx.Connect(ctx, c.URL("postgres"))
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, sql, args...)
	return err
}

// NewDB makes a database for t alone, dropped when t ends, and returns its
// URL.
func (c *Cluster) NewDB(t testing.TB) string {
	t.Helper()
	name, err := c.CreateDB(t.Context())
	if err != nil {
		t.Fatalf("pgtest: %v; log: %s", err, c.Log())
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := c.Exec(ctx, "DROP DATABASE "+name+" WITH (FORCE)"); err != nil {
			t.Logf("pgtest: dropping %s: %v", name, err)
		}
	})
	return c.URL(name)
}

// Crash stops the server at once, as a crash would (pg_ctl stop -m
// immediate sends the same SIGQUIT): every connection breaks, and the next
// start recovers from the write-ahead log. It waits until the server has
// exited, and does nothing when it is not running.
func (c *Cluster) Crash() { c.stop(syscall.SIGQUIT) }

// Stop shuts the server down (fast: connections are ended, what is
// committed is kept), and removes the cluster's folder.
func (c *Cluster) Stop() {
	c.stop(syscall.SIGINT)
	os.RemoveAll(c.base)
}

func (c *Cluster) stop(sig syscall.Signal) {
	c.mu.Lock()
	cmd := c.cmd
	c.cmd = nil
	c.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(sig)
	_ = cmd.Wait()
}

// Restart starts the server again on the same port, after Crash: what had
// been committed is there.
func (c *Cluster) Restart() error {
	c.stop(syscall.SIGQUIT)
	var err error
	for try := 0; try < 50; try++ { // the port may linger a moment
		if err = c.start(); err == nil {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return err
}
