#!/bin/bash
# The device check of issue #22: many mostly idle streams on one server, on
# a machine with more cores (the device machine has 16) and an fd limit high
# enough for them. With the server and its lean clients on disjoint CPUs
# (-pin), it runs the many workload (see benchmarks/README.md) at
#
#	100,000 streams    ours, ours-detach, ours-users, ours-users-detach, hub
#	1,000,000 streams  ours, ours-detach, ours-users, ours-users-detach
#
# one variant per step, each under its own timeout, so that a step cut
# short loses that variant only; each step appends its tables to
# $OUT/many-N.md and logs every phase's figures as it goes (in
# $OUT/log.txt, also for a step cut short). Four files come back:
# machine.txt, log.txt, many-100000.md, many-1000000.md. The steps' limits
# add up to 440 s (5 x 40 s, 4 x 60 s; under 8 minutes unless a step needs
# its kill grace of 10 s; a step that would start past 430 s is skipped
# and logged).
#
# A million streams take a descriptor each in the server (and one each in
# the clients): the server needs RLIMIT_NOFILE over 1,000,100, and
# fs.nr_open at least as much; the binary raises its soft limit to the hard
# one and, where that is too low, runs fewer streams and says why in the
# table. machine.txt records the limits, the port range and conntrack's
# table size (a conntrack table smaller than the streams drops connections).
#
# Prepare here (Go needed), in the checkout the device tool sends:
#	sh benchmarks/device/build.sh
# then call the device tool's run with
#	command: bash benchmarks/device/many.sh
#	carry:   ["benchmarks/device/bin"]
#	timeout_s: 540
# and copy the figures into benchmarks/RESULTS.md with machine.txt.
#
# A dry run here, at tiny sizes (about a minute on 2 cores):
#	DRY=1 OUT=/tmp/many-out bash benchmarks/device/many.sh
#
# Settings (environment): OUT (default ./device-out), BIN (default the bin
# folder beside this script), NS ("100000 1000000"), PIN ("-pin"; or, say,
# "-server-cpus 0-7 -client-cpus 8-15"), PER_PROC (streams per client
# process, 50000), DRY (1: tiny sizes, to try the script).
set -u
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
BIN=${BIN:-$here/bin}
OUT=${OUT:-$PWD/device-out}
NS=${NS:-100000 1000000}
PIN=${PIN:--pin}
PER_PROC=${PER_PROC:-50000}
budget=430
# settings N: the flags and step limit for N streams. 100,000: heartbeat
# 15 s (the default) over a 16 s window, 6 s of 10 events/s; 1,000,000:
# heartbeat 5 s over 6 s, 10 s of 1 event/s (a million deliveries a second).
settings() {
	case $1 in
	1000000) echo "-many-heartbeat 5s -many-window 6s -many-steady 10s -many-rate 1|60" ;;
	*) echo "-many-heartbeat 15s -many-window 16s -many-steady 6s -many-rate 10|40" ;;
	esac
}
variants() {
	case $1 in
	1000000) echo "ours ours-detach ours-users ours-users-detach" ;;
	*) echo "ours ours-detach ours-users ours-users-detach hub" ;;
	esac
}
if [ "${DRY:-}" = 1 ]; then
	NS=${DRY_NS:-300 1000}
	PER_PROC=${DRY_PER_PROC:-600}
	budget=300
	settings() { echo "-many-heartbeat 1s -many-window 2s -many-steady 2s -many-rate 10|20"; }
fi
mkdir -p "$OUT" || exit 1
log=$OUT/log.txt
: >"$log"
if [ ! -x "$BIN/ssebench" ]; then
	echo "no $BIN/ssebench: run benchmarks/device/build.sh first, and carry benchmarks/device/bin" | tee -a "$log" >&2
	exit 1
fi
t0=$(date +%s)
ulimit -n "$(ulimit -Hn)" 2>/dev/null

describe_machine "NS=$NS PIN=$PIN PER_PROC=$PER_PROC DRY=${DRY:-}" \
	fs.nr_open fs.file-max net.ipv4.ip_local_port_range net.ipv4.tcp_tw_reuse net.ipv4.tcp_max_tw_buckets \
	net.core.somaxconn net.ipv4.tcp_mem net.netfilter.nf_conntrack_max net.netfilter.nf_conntrack_count

for n in $NS; do
	s=$(settings "$n")
	flags=${s%|*}
	limit=${s#*|}
	for v in $(variants "$n"); do
		# shellcheck disable=SC2086 # flags and PIN are word lists
		step "many-$n.md" "$limit" "$BIN/ssebench" -workload many -contenders "$v" -many-n "$n" -many-per-proc "$PER_PROC" $flags $PIN -quiet-wait 2s
	done
done
# Last, if the budget allows: the Broker's own part of a million detached
# streams in one process, over memory-only connections (no descriptors).
if [ -x "$BIN/ssebroker.test" ]; then
	streams=1000000
	[ "${DRY:-}" = 1 ] && streams=10000
	step "manystreams.txt" 120 "$BIN/ssebroker.test" -test.run '^$' -test.bench ManyStreams -test.benchtime 5x -streams "$streams"
fi
echo "all steps: $(($(date +%s) - t0))s" | tee -a "$log" >&2
