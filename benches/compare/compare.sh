#!/usr/bin/env bash
# Celerity side by side with the peer task queues, in one run, against one private Redis
# (127.0.0.1:6390, started and stopped here), printing the figures and the ratios.
#
#   benches/compare/compare.sh            # REPS=1 by default; REPS=3 for medians of 3
#
# The peers (Celery, RQ, BullMQ, apalis, rusty-celery, the BullMQ Rust port) and their
# measuring scripts come from ../shared/peers, copied to $PEERS_DIR (default
# /tmp/celerity-peers) and set up there by their own setup.sh: they never enter this
# repository. Takes about 10 minutes with REPS=1. Celerity's drains also run on a private
# Redis Cluster of 3 primaries (free loopback ports, torn down at the end).
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

# A private Redis Cluster of 3 primaries on free loopback ports, for the cluster drain.
cluster_dir=$(mktemp -d)
cluster_ports=()
stop_cluster() {
  for port in "${cluster_ports[@]}"; do redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true; done
  rm -rf "$cluster_dir"
}
# One node on a free port; a port taken meanwhile (by a client's ephemeral port, say)
# is given up after 5 s for another, so a node that cannot start never hangs the run.
start_node() {
  local port
  for _ in 1 2 3 4 5; do
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    [[ " ${cluster_ports[*]} " == *" $port "* ]] && continue
    mkdir -p "$cluster_dir/$port"
    redis-server --port "$port" --bind 127.0.0.1 --cluster-enabled yes --cluster-config-file nodes.conf \
      --dir "$cluster_dir/$port" --save '' --appendonly no --daemonize yes >/dev/null || continue
    for _ in $(seq 50); do
      if redis-cli -p "$port" ping >/dev/null 2>&1; then
        cluster_ports+=("$port")
        return 0
      fi
      sleep 0.1
    done
    echo "a cluster node did not start on port $port: trying another" >&2
    redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true
  done
  echo "cannot start a Redis Cluster node" >&2
  return 1
}
start_cluster() {
  for _ in 1 2 3; do start_node; done
  redis-cli --cluster create "${cluster_ports[@]/#/127.0.0.1:}" --cluster-replicas 0 --cluster-yes >/dev/null
  until redis-cli -p "${cluster_ports[0]}" cluster info | grep -q cluster_state:ok; do sleep 0.2; done
}

cd "$work"
./start_redis.sh >/dev/null
trap './stop_redis.sh >/dev/null 2>&1 || true; stop_cluster' EXIT
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

echo "== Celerity on a Redis Cluster of 3 primaries"
start_cluster
for _ in $(seq "$reps"); do
  "$bench" --redis redis://127.0.0.1:6390/0 --jsonl "$raw" --only cluster --drain 50000 \
    --cluster "redis+cluster://127.0.0.1:${cluster_ports[0]}"
done

python3 "$root/benches/compare/ratios.py" "$raw"
