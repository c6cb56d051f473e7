package redistest

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"
)

// An Error is an error reply from Redis.
type Error string

func (e Error) Error() string { return string(e) }

// Do sends one command to the Redis at addr on a connection of its own and
// returns its reply: a string (simple or bulk), an int64, a []any, nil (a
// null), or an Error. It gives up after timeout. The tests' own commands go
// through it, so that a paused server holds up no connection pool.
func Do(addr string, timeout time.Duration, args ...string) (any, error) {
	return do(addr, nil, timeout, args...)
}

// dial connects to addr, over TLS if conf is not nil.
func dial(addr string, conf *tls.Config, timeout time.Duration) (net.Conn, error) {
	if conf != nil {
		return tls.DialWithDialer(&net.Dialer{Timeout: timeout}, "tcp", addr, conf)
	}
	return net.DialTimeout("tcp", addr, timeout)
}

func do(addr string, conf *tls.Config, timeout time.Duration, args ...string) (any, error) {
	c, err := dial(addr, conf, timeout)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := io.WriteString(c, b.String()); err != nil {
		return nil, err
	}
	reply, err := readReply(bufio.NewReader(c))
	if err != nil {
		return nil, err
	}
	if e, ok := reply.(Error); ok {
		return nil, e
	}
	return reply, nil
}

// Str is Do for a command whose reply is a string.
func Str(addr string, timeout time.Duration, args ...string) (string, error) {
	r, err := Do(addr, timeout, args...)
	if err != nil {
		return "", err
	}
	switch r := r.(type) {
	case string:
		return r, nil
	case int64:
		return strconv.FormatInt(r, 10), nil
	}
	return "", fmt.Errorf("%s: reply %v is not a string", args[0], r)
}

func readReply(r *bufio.Reader) (any, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return nil, err
	}
	if len(line) < 3 || !strings.HasSuffix(line, "\r\n") {
		return nil, fmt.Errorf("bad reply line %q", line)
	}
	kind, rest := line[0], line[1:len(line)-2]
	switch kind {
	case '+':
		return rest, nil
	case '-':
		return Error(rest), nil
	case ':':
		return strconv.ParseInt(rest, 10, 64)
	case '$':
		n, err := strconv.Atoi(rest)
		if err != nil || n < 0 {
			return nil, err
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			return nil, err
		}
		return string(buf[:n]), nil
	case '*':
		n, err := strconv.Atoi(rest)
		if err != nil || n < 0 {
			return nil, err
		}
		out := make([]any, n)
		for i := range out {
			if out[i], err = readReply(r); err != nil {
				return nil, err
			}
		}
		return out, nil
	}
	return nil, errors.New("unknown reply type " + strconv.Quote(line))
}

// infoField returns the value of field in the text of an INFO reply.
func infoField(info, field string) string {
	for _, line := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			return v
		}
	}
	return ""
}
