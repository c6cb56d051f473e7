#!/bin/bash
# The device check of issue #13: on a machine with more cores (the device
# machine has 16), with the server and its clients on disjoint CPUs (-pin:
# the first half of the physical cores to the server, the rest to the
# clients and the orchestrator), it runs, each step under its own timeout:
#
#	encode         the harness's encode table; the package's Encode and
#	               Publish benchmarks (allocs, ratio to a raw append)
#	fanout-N       for N in $NS: ours, the hub and $PEER, $RUNS interleaved
#	               runs each, with a table of medians
#	slow           the slow consumer for ours and the hub, in A/B pairs
#
# and writes one file per step, a log and the machine's description to
# $OUT: seven files, which the device tool brings back (at most 8). The
# steps' limits add up to 490 s (under 8 minutes, with the kill grace of 10 s
# a step unlikely to be needed); expect about 5 minutes on 16 cores.
#
# Prepare here (Go needed), in the checkout the device tool sends:
#	sh benchmarks/device/build.sh
# then call the device tool's run with
#	command: bash benchmarks/device/run.sh
#	carry:   ["benchmarks/device/bin"]
#	timeout_s: 540
# and copy the figures into benchmarks/RESULTS.md with machine.txt.
#
# A dry run here, at tiny sizes (about a minute on 2 cores):
#	DRY=1 OUT=/tmp/device-out bash benchmarks/device/run.sh
#
# Settings (environment): OUT (default ./device-out), BIN (default the bin
# folder beside this script), NS ("1000 5000 20000"), RUNS (3), PEER
# (launchdarkly), PIN ("-pin"; or, say, "-server-cpus 0-3 -client-cpus
# 4-15"), SLOW_PAIRS (5), DRY (1: tiny sizes, to try the script).
set -u
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
BIN=${BIN:-$here/bin}
OUT=${OUT:-$PWD/device-out}
NS=${NS:-1000 5000 20000}
RUNS=${RUNS:-3}
PEER=${PEER:-launchdarkly}
PIN=${PIN:--pin}
SLOW_PAIRS=${SLOW_PAIRS:-5}
benchtime=500ms
testbench=(-test.benchtime 300ms -test.count 3)
slow=(-slow-pairs "$SLOW_PAIRS")
fanout_limit() { case $1 in 1000) echo 60 ;; 5000) echo 90 ;; *) echo 180 ;; esac; }
if [ "${DRY:-}" = 1 ]; then
	NS=${DRY_NS:-50 200 400}
	RUNS=2
	benchtime=50ms
	testbench=(-test.benchtime 20ms -test.count 1)
	slow=(-slow-pairs 2 -slow-events 300 -slow-write-timeout 1s)
fi
mkdir -p "$OUT" || exit 1
log=$OUT/log.txt
: >"$log"
for f in ssebench sse.test ssebroker.test; do
	if [ ! -x "$BIN/$f" ]; then
		echo "no $BIN/$f: run benchmarks/device/build.sh first, and carry benchmarks/device/bin" | tee -a "$log" >&2
		exit 1
	fi
done
t0=$(date +%s)

describe_machine "NS=$NS RUNS=$RUNS PEER=$PEER PIN=$PIN DRY=${DRY:-}" \
	net.ipv4.ip_local_port_range net.ipv4.tcp_tw_reuse net.core.somaxconn

common=($PIN -quiet-wait 2s)
step encode.md 20 "$BIN/ssebench" -workload encode -benchtime "$benchtime" "${common[@]}"
echo -e "\n### The packages' own Encode and Publish benchmarks\n\n\`\`\`" >>"$OUT/encode.md"
step encode.md 30 "$BIN/sse.test" -test.run '^$' -test.bench 'Encode$' -test.benchmem "${testbench[@]}"
step encode.md 30 "$BIN/ssebroker.test" -test.run '^$' -test.bench 'Publish' -test.benchmem "${testbench[@]}"
echo '```' >>"$OUT/encode.md"
for n in $NS; do
	step "fanout-$n.md" "$(fanout_limit "$n")" "$BIN/ssebench" -workload fanout -n "$n" -runs "$RUNS" -contenders "ours,hub,$PEER" "${common[@]}"
	# The slow consumer after the first fan-out, well before the longest
	# step (the largest N), which its limit may cut short.
	[ -e "$OUT/slow.md" ] || step slow.md 80 "$BIN/ssebench" -workload slow -contenders ours,hub "${slow[@]}" "${common[@]}"
done
echo "all steps: $(($(date +%s) - t0))s" | tee -a "$log" >&2
