#!/usr/bin/env bash
# The monitoring issue's check: 100,000 tasks through 2 demo-worker processes with
# `celerity dashboard` open (and headless Chromium holding its Events page over SSE, when
# chromium is installed). Every page is fetched with curl about three times a second
# during the run; the dashboard is killed and restarted 4 s in; the counts are read after.
# Runs against a private redis-server on a free 127.0.0.1 port, stopped at the end.
#   scripts/dashboard-check.sh [TASKS]
set -euo pipefail
cd "$(dirname "$0")/.."
tasks=${1:-100000}
cargo build --release -q -p task-cli -p celerity-examples
bin=target/release
work=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
dash_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no > "$work/redis.log" 2>&1 &
pids=($!)
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
for _ in $(seq 100); do redis-cli -p "$port" ping > /dev/null 2>&1 && break; sleep 0.05; done
export CELERITY_BROKER_URL="redis://127.0.0.1:$port/0"
unset CELERITY_RESULT_BACKEND CELERITY_JOURNAL CELERITY_REDIS_NAMESPACE
url="http://127.0.0.1:$dash_port"
pages="/ /workers /tasks /tasks?state=SUCCESS /tasks?state=FAILURE /tasks?state=STARTED /tasks?task=nobody /events /dead /schedule /api/overview /api/tasks?limit=50 /api/events?limit=100 /metrics"

$bin/celerity dashboard --addr "127.0.0.1:$dash_port" > "$work/dash.log" 2>&1 &
dash=$!
for _ in 1 2; do
  $bin/demo-worker worker -c 64 --no-banner --loglevel error > /dev/null 2>&1 &
  pids+=($!)
done
sleep 1
if [ -x /usr/bin/chromium ]; then
  /usr/bin/chromium --headless --no-sandbox --disable-gpu --user-data-dir="$work/chromium" \
    --remote-debugging-port=0 "$url/events" > /dev/null 2>&1 &
  pids+=($!)
fi
( $bin/demo-producer "$tasks" > "$work/producer.log" 2>&1; echo done >> "$work/producer.log" ) &
pids+=($!)
start=$(date +%s)
restarted=no
while ! grep -q '^done' "$work/producer.log" 2>/dev/null; do
  for p in $pages; do
    echo "$p $(curl -s -o /dev/null -w '%{http_code} %{time_total}' "$url$p")" >> "$work/times"
  done
  if [ $restarted = no ] && [ $(($(date +%s) - start)) -ge 4 ]; then
    kill $dash; wait $dash 2>/dev/null || true
    $bin/celerity dashboard --addr "127.0.0.1:$dash_port" >> "$work/dash.log" 2>&1 &
    dash=$!
    restarted=yes
    sleep 0.3
  fi
  sleep 0.3
done
pids+=($dash)
cat "$work/producer.log"
sleep 1.5
echo "== after the run (the dashboard was restarted once, 4 s in: $restarted)"
curl -s "$url/metrics" | grep -E '^celerity_tasks_total|^celerity_task_runtime_seconds_count'
curl -s "$url/api/overview"; echo
echo "== page times during the run, seconds: page, fetches, p50, max, answers other than 200"
sort -k1,1 -k3,3n "$work/times" | awk '
  { k = $1; t[k, ++n[k]] = $3; if ($2 != 200) bad[k]++ }
  END { for (k in n) printf "%-22s %4d  p50 %.3f  max %.3f  non-200 %d\n", k, n[k], t[k, int((n[k] + 1) / 2)], t[k, n[k]], bad[k] + 0 }' | sort
