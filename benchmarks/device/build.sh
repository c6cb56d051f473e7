#!/bin/sh
# Builds what device/run.sh and device/many.sh run, as static binaries (no cgo, so they run on
# a bare x86-64 Linux machine with no Go), into benchmarks/device/bin/, which
# benchmarks/.gitignore ignores:
#
#	ssebench   the harness (this module; many.sh needs only this)
#	sse.test   the root package's tests and benchmarks (go test -c)
#	ssebroker.test   package ssebroker's (run.sh: Publish; many.sh's last step: BenchmarkManyStreams)
#	commit     the commit they were built from
#
# Run it from anywhere in the checkout that the device tool sends (the one
# the session was started in), then name benchmarks/device/bin in the run's
# carry; see run.sh and many.sh.
set -eu
cd "$(dirname "$0")/.." # benchmarks/
mkdir -p device/bin
export CGO_ENABLED=0 GOOS=linux GOARCH=amd64
go build -trimpath -ldflags="-s -w" -o device/bin/ssebench .
(cd .. && go test -c -trimpath -ldflags="-s -w" -o benchmarks/device/bin/sse.test .)
(cd .. && go test -c -trimpath -ldflags="-s -w" -o benchmarks/device/bin/ssebroker.test ./ssebroker)
commit=$(git rev-parse --short HEAD)
if [ -n "$(git status --porcelain -- .. 2>/dev/null)" ]; then
	commit="$commit (with uncommitted changes)"
fi
echo "$commit" >device/bin/commit
ls -l device/bin
