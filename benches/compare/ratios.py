#!/usr/bin/env python3
"""Medians of a compare.sh run (JSON lines) and Celerity's ratios to the peers."""
import json
import statistics
import sys

rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip().startswith("{")]


def med(peer, measure, field="rate", **match):
    vals = [r[field] for r in rows if r.get("peer") == peer and r.get("measure") == measure
            and field in r and "error" not in r and all(r.get(k) == v for k, v in match.items())]
    return statistics.median(vals) if vals else None


def fmt(x, unit=""):
    if x is None:
        return "—"
    return f"{x / 1000:.1f}k{unit}" if x >= 1000 else f"{x:.2f}{unit}" if x < 10 else f"{x:.0f}{unit}"


peers = [
    ("Celerity (1 worker process, c=64)", "celerity", {"workers": 1, "track_started": 1, "redis_nodes": 1}),
    ("Celerity (2 worker processes, c=64)", "celerity", {"workers": 2, "track_started": 1, "redis_nodes": 1}),
    ("Celerity, track_started off (1 process)", "celerity", {"workers": 1, "track_started": 0, "redis_nodes": 1}),
    ("Celerity, track_started off (2 processes)", "celerity", {"workers": 2, "track_started": 0, "redis_nodes": 1}),
    ("Celery 5.7 (prefork -c 2)", "celery", {"pool": "prefork"}),
    ("RQ 3.0 (2 SimpleWorkers)", "rq", {"worker_class": "rq.worker.SimpleWorker"}),
    ("BullMQ 6.7 (Node, c=50)", "bullmq", {}),
    ("apalis-redis 1.0 (c=50)", "apalis", {}),
    ("rusty-celery 0.5 (no results)", "rusty-celery", {}),
    ("bullmq-official 1.4 (Rust, c=50)", "bullmq-rs", {}),
]
print("| system | enqueue (one at a time) | enqueue (concurrent) | enqueue (batch) | drain, results stored | round trip p50 / p99 |")
print("|---|---:|---:|---:|---:|---:|")
for label, peer, drain_match in peers:
    if peer == "celerity" and label != peers[0][0]:
        # The other Celerity rows differ only in their drain.
        print(f"| {label} | | | | {fmt(med(peer, 'drain', **drain_match))} | |")
        continue
    conc = med(peer, "enqueue_concurrent")
    bulk = med(peer, "enqueue_bulk") or med(peer, "enqueue_many")
    rtt = (med(peer, "rtt", "p50_ms", **({"pool": "prefork"} if peer == "celery" else {})),
           med(peer, "rtt", "p99_ms", **({"pool": "prefork"} if peer == "celery" else {})))
    print(f"| {label} | {fmt(med(peer, 'enqueue'))} | {fmt(conc)} | {fmt(bulk)} | {fmt(med(peer, 'drain', **drain_match))} | "
          f"{fmt(rtt[0], ' ms')} / {fmt(rtt[1], ' ms')} |")
print(f"| redis-benchmark LPUSH (the limit) | {fmt(med('redis-benchmark', 'LPUSH', cfg='c1'))} (1 client) | "
      f"{fmt(med('redis-benchmark', 'LPUSH', cfg='c50'))} (50 clients) | {fmt(med('redis-benchmark', 'LPUSH', cfg='c50_P64'))} (50 × P64) | | |")

one = {"redis_nodes": 1}
ours = med("celerity", "drain", workers=1, track_started=1, **one)
ours2 = med("celerity", "drain", workers=2, track_started=1, **one)
# Like for like with Celery, which does not store STARTED unless asked (track_started).
lean = med("celerity", "drain", workers=1, track_started=0, **one)
lean2 = med("celerity", "drain", workers=2, track_started=0, **one)
celery = med("celery", "drain", pool="prefork")
best_name, best = max(((p, med(p, "drain")) for p in ["rq", "bullmq", "apalis", "rusty-celery", "bullmq-rs"]
                       if med(p, "drain")), key=lambda x: x[1], default=("—", None))
checks = []


def check(name, value, target, ok):
    checks.append((name, value, target, ok))


# Issue 19's targets: the default mode (STARTED stored) with one and with two processes.
for processes, drain in ((1, ours), (2, ours2)):
    if drain and celery:
        check(f"default mode vs Celery, {processes} process{'es' if processes > 1 else ''}", f"{drain / celery:.0f}×", "≥ 100×",
              drain / celery >= 100)
    if drain and best:
        check(f"default mode vs the best peer ({best_name}), {processes} process{'es' if processes > 1 else ''}",
              f"{drain / best:.1f}×", "≥ 3×", drain / best >= 3)
if lean and celery:
    check("STARTED not stored vs Celery (its default)", f"{lean / celery:.0f}× (2 processes: {(lean2 or 0) / celery:.0f}×)",
          "≥ 100×", max(lean, lean2 or 0) / celery >= 100)
bulk, limit = med("celerity", "enqueue_bulk"), med("redis-benchmark", "LPUSH", cfg="c50_P64")
if lean2 and limit:
    check("STARTED not stored (2 processes) vs a third of pipelined LPUSH / 4", f"{lean2 / (limit / 12):.0%}", "≥ 100%",
          lean2 >= limit / 12)
if bulk and limit:
    check("batch enqueue vs pipelined LPUSH", f"{bulk / limit:.0%}", "≥ 60%", bulk / limit >= 0.6)
conc, limit = med("celerity", "enqueue_concurrent"), med("redis-benchmark", "LPUSH", cfg="c50")
if conc and limit:
    check("64-in-flight enqueue vs LPUSH with 50 clients", f"{conc / limit:.0%}", "≥ 50%", conc / limit >= 0.5)
p50, p99 = med("celerity", "rtt", "p50_ms"), med("celerity", "rtt", "p99_ms")
if p50 is not None:
    check("round trip p50 / p99", f"{p50:.2f} / {p99:.2f} ms", "≤ 0.4 / ≤ 1 ms", p50 <= 0.4 and p99 <= 1)
mine, theirs = med("celerity", "memory", "bytes_per_task"), med("celery", "memory", "bytes_per_task")
if mine and theirs:
    check("memory per queued task vs Celery", f"{mine:.0f} B vs {theirs:.0f} B ({mine / theirs:.0%})", "≤ 25%", mine / theirs <= 0.25)
idle = med("celerity", "idle_cpu", "cpu_percent")
if idle is not None:
    check("idle worker CPU", f"{idle:.2f} %", "≈ 0", idle < 0.5)
shallow, deep = med("celerity", "depth", "shallow_rate"), med("celerity", "depth", "deep_rate")
if shallow and deep:
    check("drain rate, 1M queued vs 20k queued", f"{deep / shallow:.2f}", "flat", 0.8 <= deep / shallow <= 1.25)
early, late = med("celerity", "rss", "early_kib"), med("celerity", "rss", "late_kib")
if early and late:
    check("worker RSS, 100k vs 1M tasks processed", f"{early / 1024:.1f} → {late / 1024:.1f} MiB ({late / early - 1:+.0%})", "flat (±10%)", abs(late / early - 1) <= 0.10)
print()
print("| target | measured | wanted | met |")
print("|---|---|---|---|")
for name, value, target, ok in checks:
    print(f"| {name} | {value} | {target} | {'yes' if ok else 'NO'} |")

# What bounds each drain: Redis's CPU per task (INFO cpu over the drain), on one Redis and
# on the cluster (all primaries, and the busiest, whose one thread bounds the drain).
print()
print("| Celerity drain | tasks/s | Redis CPU per task | busiest node | bound of the busiest node |")
print("|---|---:|---:|---:|---:|")
for nodes in sorted({r.get("redis_nodes") for r in rows if r.get("peer") == "celerity" and r.get("measure") == "drain"} - {None}):
    for track in (1, 0):
        for workers in (1, 2):
            match = {"workers": workers, "track_started": track, "redis_nodes": nodes}
            rate = med("celerity", "drain", **match)
            if rate is None:
                continue
            cpu = med("celerity", "drain", "redis_cpu_us_per_task", **match)
            busiest = med("celerity", "drain", "busiest_node_cpu_us_per_task", **match)
            where = "one Redis" if nodes == 1 else f"cluster of {nodes:.0f}"
            print(f"| {where}, {'STARTED stored' if track else 'STARTED not stored'}, {workers} process{'es' if workers > 1 else ''} | "
                  f"{fmt(rate)} | {cpu:.2f} µs | {busiest:.2f} µs | {fmt(1e6 / busiest)} |")
