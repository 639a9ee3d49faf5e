#!/usr/bin/env bash
# Celerity side by side with the peer task queues, in one run, against one private Redis
# (127.0.0.1:6390, started and stopped here), printing the figures and the ratios.
#
#   benches/compare/compare.sh            # REPS=1 by default; REPS=3 for medians of 3
#
# The peers (Celery, RQ, BullMQ, apalis, rusty-celery, the BullMQ Rust port) and their
# measuring scripts come from ../shared/peers, copied to $PEERS_DIR (default
# /tmp/celerity-peers) and set up there by their own setup.sh: they never enter this
# repository. Takes about 10 minutes with REPS=1.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
src=${PEERS_SRC:-$root/../shared/peers}
work=${PEERS_DIR:-/tmp/celerity-peers}
reps=${REPS:-1}

if [ ! -d "$work" ]; then
  cp -r "$src" "$work"
  chmod -R u+w "$work"
fi
(cd "$work" && ./setup.sh >/dev/null)
cargo build --release -q -p celerity-bench --manifest-path "$root/Cargo.toml"
bench="$root/target/release/celerity-bench"

cd "$work"
./start_redis.sh >/dev/null
trap './stop_redis.sh >/dev/null 2>&1 || true' EXIT
raw="$work/results/raw.jsonl"
[ -f "$raw" ] && mv "$raw" "$raw.$(date +%s).previous"

echo "== redis-benchmark (the limit)"; REPS=$reps ./run_baseline.sh >/dev/null
echo "== Celery";  REPS=$reps ./run_celery.sh >/dev/null 2>&1
echo "== RQ";      REPS=$reps ./run_rq.sh >/dev/null 2>&1
echo "== BullMQ";  REPS=$reps ./run_bullmq.sh >/dev/null 2>&1
echo "== Rust peers"; REPS=$reps PEERS="apalis rusty-celery bullmq-rs" ./run_rust.sh >/dev/null 2>&1

echo "== Celery's memory per queued task"
redis-cli -p 6390 flushall >/dev/null
(cd py && ../venv/bin/python bench_celery.py enqueue 2000 ../run/celery_mem_ids.txt >/dev/null 2>&1)
usage=$(redis-cli -p 6390 memory usage celery samples 0)
len=$(redis-cli -p 6390 llen celery)
echo "{\"peer\":\"celery\",\"measure\":\"memory\",\"bytes_per_task\":$((usage / len))}" >> "$raw"
redis-cli -p 6390 flushall >/dev/null

echo "== Celerity"
for _ in $(seq "$reps"); do
  "$bench" --redis redis://127.0.0.1:6390/0 --jsonl "$raw" --deep "${DEEP:-1000000}"
done

python3 "$root/benches/compare/ratios.py" "$raw"
