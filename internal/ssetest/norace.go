//go:build !race

package ssetest

// Race reports whether the race detector is on. Its instrumentation deepens
// every stack frame, so tests that measure goroutine stacks skip under it.
const Race = false
