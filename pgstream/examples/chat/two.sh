#!/usr/bin/env bash
# Starts the PostgreSQL chat demo in one command, from anywhere in the
# repository: a throwaway PostgreSQL cluster (in a temporary folder, on a free
# port of 127.0.0.1, removed at the end) and two chat processes, on
# localhost:8080 and localhost:8081, that share one room through it. Ctrl-C
# stops all three.
#
#   pgstream/examples/chat/two.sh               # then open both addresses
#   pgstream/examples/chat/two.sh 9000 9001     # other ports
#
# Needs PostgreSQL's server binaries (Debian: apt-get install postgresql; found
# on PATH, through pg_config, or in /usr/lib/postgresql/*/bin) and Go. Run as
# root, it runs PostgreSQL as the user postgres (or nobody), since PostgreSQL
# refuses to run as root.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."   # pgstream/
a=${1:-8080} b=${2:-8081}

bin=""
if command -v initdb >/dev/null; then bin=$(dirname "$(readlink -f "$(command -v initdb)")")
elif command -v pg_config >/dev/null && [[ -x $(pg_config --bindir)/initdb ]]; then bin=$(pg_config --bindir)
else bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1); fi
[[ -n $bin && -x $bin/initdb && -x $bin/postgres ]] || { echo "two.sh: needs PostgreSQL (Debian: apt-get install postgresql)" >&2; exit 1; }

as=()
dir=$(mktemp -d)
if [[ $(id -u) == 0 ]]; then
	user=postgres
	id -u "$user" >/dev/null 2>&1 || user=nobody
	chown "$user" "$dir"
	as=(runuser -u "$user" --)
fi
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null || echo 15432)
pids=()
stop() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$dir"; }
trap stop EXIT INT TERM

"${as[@]}" "$bin/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --no-locale -N >"$dir/initdb.log"
"${as[@]}" "$bin/postgres" -D "$dir/data" -p "$port" -c listen_addresses=127.0.0.1 \
	-c unix_socket_directories="$dir" >"$dir/postgres.log" 2>&1 &
pids+=($!)
url="postgres://postgres@127.0.0.1:$port/postgres?sslmode=disable"
for _ in $(seq 100); do "$bin/pg_isready" -q -h 127.0.0.1 -p "$port" && break; sleep 0.1; done

go build -o "$dir/chat" ./examples/chat
"$dir/chat" -postgres "$url" -addr "localhost:$a" &
pids+=($!)
"$dir/chat" -postgres "$url" -addr "localhost:$b" &
pids+=($!)
echo "two chat processes, one room: http://localhost:$a and http://localhost:$b (PostgreSQL on 127.0.0.1:$port); Ctrl-C stops them"
wait
