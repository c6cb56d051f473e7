#!/usr/bin/env bash
# Starts the Redis run demo in one command, from anywhere in the repository:
# a redis-server without persistence on a free port (or the one -redis names),
# and two run demo instances, on localhost:8080 and localhost:8081, that share their
# runs through it. Ctrl-C stops all three.
#
#   redisstream/examples/runs/two.sh               # then open both addresses
#   redisstream/examples/runs/two.sh 9000 9001     # other ports
#
# Needs redis-server (Debian: apt-get install redis-server) and Go.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."   # redisstream/
a=${1:-8080} b=${2:-8081}

command -v redis-server >/dev/null || { echo "two.sh: needs redis-server (Debian: apt-get install redis-server)" >&2; exit 1; }
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null || echo 16379)
dir=$(mktemp -d)
pids=()
stop() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$dir"; }
trap stop EXIT INT TERM

redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$dir" >"$dir/redis.log" &
pids+=($!)
for _ in $(seq 50); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done

go build -o "$dir/runs" ./examples/runs
"$dir/runs" -redis "127.0.0.1:$port" -addr "localhost:$a" &
pids+=($!)
"$dir/runs" -redis "127.0.0.1:$port" -addr "localhost:$b" &
pids+=($!)
echo "two run demo instances, one set of runs: http://localhost:$a and http://localhost:$b (Redis on 127.0.0.1:$port); Ctrl-C stops them"
wait
