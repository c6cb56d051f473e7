// Package browser holds end-to-end tests of package sse in a real browser:
// headless Chromium opens pages served by the tests on 127.0.0.1, the pages'
// EventSource objects receive what the sse package writes, and each page
// POSTs what it saw back to the test, which asserts the exact sequence.
//
// The tests need a Chromium or Chrome binary: chromium, chromium-browser or
// google-chrome on PATH, or the path in SSE_CHROMIUM. Without one they skip
// (install it with `apt-get install chromium`), except when CI=true, where a
// missing browser fails the run.
//
// The package has no code of its own: the driver (a few dozen lines of
// os/exec) and the tests are all in its _test.go files.
package browser
