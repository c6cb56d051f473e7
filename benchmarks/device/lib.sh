# Sourced by run.sh and many.sh: what both do around their steps. They set
# OUT, BIN, log (the log file) and t0 (the start, date +%s) first, and may set
# budget (seconds from t0 after which a step is skipped; unset: none).

# step FILE LIMIT COMMAND...: runs COMMAND under its own limit, appending its
# stdout to $OUT/FILE and its stderr to the log; skipped past the budget.
step() {
	local file=$1 limit=$2 start rc
	shift 2
	start=$(date +%s)
	if [ $((start - t0)) -gt "${budget:-999999}" ]; then
		echo "== $file: skipped at +$((start - t0))s (over the ${budget}s budget): $*" | tee -a "$log" >&2
		return
	fi
	echo "== $file (limit ${limit}s, at +$((start - t0))s): $*" >>"$log"
	timeout -k 10 "$limit" "$@" >>"$OUT/$file" 2>>"$log"
	rc=$?
	echo "== $file: exit $rc after $(($(date +%s) - start))s$([ $rc = 124 ] && echo ' (timed out)')" >>"$log"
	echo "$file: exit $rc after $(($(date +%s) - start))s" >&2
}

# describe_machine SETTINGS SYSCTL...: writes $OUT/machine.txt: what the
# binaries were built from, the kernel, CPUs, memory, load, cgroup and file
# limits, the sysctls named, SETTINGS, and the busiest processes.
describe_machine() {
	local settings=$1 k
	shift
	{
		echo "built from: $(cat "$BIN/commit" 2>/dev/null)"
		echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
		echo "kernel: $(uname -srm)"
		echo "CPUs online: $(cat /sys/devices/system/cpu/online); this process may use: $(taskset -cp $$ 2>/dev/null | sed 's/.*: //')"
		grep -m1 'model name' /proc/cpuinfo
		echo "cores (thread siblings): $(cat /sys/devices/system/cpu/cpu*/topology/thread_siblings_list 2>/dev/null | sort -un | tr '\n' ' ')"
		grep -E 'MemTotal|MemAvailable' /proc/meminfo
		echo "load average: $(cat /proc/loadavg)"
		echo "cgroup cpu.max: $(cat /sys/fs/cgroup/cpu.max 2>/dev/null || echo none); memory.max: $(cat /sys/fs/cgroup/memory.max 2>/dev/null || echo none)"
		echo "nofile soft/hard: $(ulimit -n)/$(ulimit -Hn)"
		for k in "$@"; do
			echo "$k: $(sysctl -n "$k" 2>/dev/null | tr '\t' ' ' || echo none)"
		done
		echo "settings: $settings"
		echo "busiest processes:"
		ps -eo pcpu,comm --sort=-pcpu 2>/dev/null | head -6
	} >"$OUT/machine.txt" 2>&1
}
