// Package brokertest holds what the tests of packages that serve an
// ssebroker.Broker share.
package brokertest

import (
	"testing"

	"github.com/lightsse/sse/ssebroker"
)

// New returns ssebroker.New(opts), and fails tb if New refuses opts.
func New(tb testing.TB, opts *ssebroker.Options) *ssebroker.Broker {
	tb.Helper()
	b, err := ssebroker.New(opts)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}
