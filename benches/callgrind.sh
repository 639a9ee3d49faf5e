#!/usr/bin/env bash
# Redis's instructions per task over each drain of the whole-run harness, counted by
# valgrind's callgrind: timings on this shared 2-core VM are too noisy to decide a
# small change, and instruction counts repeat within a fraction of a percent.
#
#   benches/callgrind.sh                    # 20,000 tasks per drain
#   benches/callgrind.sh --drain 50000 --concurrency 64
#
# Starts a private redis-server under callgrind on a free 127.0.0.1 port, runs
# celerity-bench's drains against it (its other options pass through), zeroes the
# counters once each drain's queue is filled and before its workers start, dumps them
# after the last ack, and prints Redis's instructions per task beside each drain's
# figures. The server goes when it ends; its dumps too, unless CALLGRIND_KEEP names a
# directory to keep them in (one per drain, for callgrind_annotate).
set -euo pipefail

if [ "${1:-}" = "--hook" ]; then
  # Called by celerity-bench around each drain: `--hook start|stop`.
  case "$2" in
    start) callgrind_control -z "$CALLGRIND_PID" >/dev/null 2>&1 ;;
    stop)
      callgrind_control -d "$CALLGRIND_PID" >/dev/null 2>&1
      dump=$(ls -t "$CALLGRIND_DIR"/cg.* | head -1)
      total=$(awk '/^(summary|totals):/ {print $2; exit}' "$dump")
      awk -v t="$total" -v n="$CELERITY_BENCH_TASKS" -v f="$CELERITY_BENCH_FIGURE" \
        'BEGIN { printf "  callgrind: Redis %.1fk instructions per task (%s, %d tasks)\n", t / n / 1000, f, n }'
      ;;
  esac
  exit 0
fi

cd "$(dirname "$0")/.."
for tool in valgrind callgrind_control redis-server redis-cli; do
  command -v "$tool" >/dev/null || { echo "needs $tool (Debian: apt-get install valgrind redis-server)" >&2; exit 2; }
done
dir=$(mktemp -d)
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
valgrind --tool=callgrind --callgrind-out-file="$dir/cg.%p" \
  redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --dir "$dir" >"$dir/valgrind.log" 2>&1 &
vpid=$!
keep=${CALLGRIND_KEEP:-}
trap 'redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || kill "$vpid" 2>/dev/null; wait "$vpid" 2>/dev/null; if [ -n "$keep" ]; then mkdir -p "$keep" && cp "$dir"/cg.* "$keep"/; fi; rm -rf "$dir"' EXIT
until redis-cli -p "$port" ping >/dev/null 2>&1; do
  kill -0 "$vpid" 2>/dev/null || { cat "$dir/valgrind.log" >&2; exit 1; }
  sleep 0.2
done
cargo build -q --release -p celerity-bench
export CALLGRIND_PID="$vpid" CALLGRIND_DIR="$dir"
case " $* " in *" --drain "*) ;; *) set -- --drain 20000 "$@" ;; esac
./target/release/celerity-bench --redis "redis://127.0.0.1:$port/0" --only drain \
  --around-drain "$PWD/benches/callgrind.sh --hook" "$@"
