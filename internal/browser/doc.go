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
// The tests wait for what they mean: the page's reports, or a Broker's
// Subscribers (once it counts a stream, every later Publish reaches it),
// never a sleep that load could outlast; a time window is used only to see
// that something does not happen. The one limit is each test's deadline. A
// failing test prints the page's own record of what it saw (the page notes
// each record to its console, which Chromium logs), and only the last few
// lines of Chromium's other output.
//
// The package has no code of its own: the driver (a few dozen lines of
// os/exec) and the tests are all in its _test.go files.
package browser
