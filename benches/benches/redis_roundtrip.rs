//! Redis end to end, on a private redis-server this bench starts (127.0.0.1, free port):
//! enqueue (single, 64 concurrent, batch of 1,000), drain (N queued no-op tasks through
//! one worker at concurrency 64, results stored), and delay -> get latency.
#![allow(missing_docs)] // criterion_group! generates undocumented functions

use std::time::{Duration, Instant};

use celerity_bench::{add, noop};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use task_core::App;
use task_redis::RedisConfig;
use test_support::RedisServer;

async fn app(server: &RedisServer, ns: &str) -> App {
    let config = RedisConfig::from_url(server.url()).namespace(ns);
    task_redis::app_builder(config).await.unwrap().build().await.unwrap()
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let server = RedisServer::start();
    let producer = rt.block_on(app(&server, "enqueue"));

    let mut group = c.benchmark_group("redis enqueue");
    group.throughput(Throughput::Elements(1));
    group.bench_function("delay (one at a time)", |b| {
        b.to_async(&rt).iter(|| async { noop::delay(&producer).await.unwrap() });
    });
    group.throughput(Throughput::Elements(64));
    group.bench_function("64 concurrent delays", |b| {
        b.to_async(&rt).iter(|| async {
            // Futures are lazy: each send is its own tokio task so that all 64 are in flight.
            let mut sends = tokio::task::JoinSet::new();
            for _ in 0..64 {
                let app = producer.clone();
                sends.spawn(async move { noop::delay(&app).await.map(drop) });
            }
            while let Some(sent) = sends.join_next().await {
                sent.unwrap().unwrap();
            }
        });
    });
    group.throughput(Throughput::Elements(1000));
    group.bench_function("send_batch of 1000", |b| {
        b.to_async(&rt).iter_batched(
            || (0..1000).map(|_| noop::signature()).collect::<Vec<_>>(),
            |batch| async { producer.send_batch(batch).await.unwrap() },
            BatchSize::SmallInput,
        );
    });
    group.finish();
    let _ = rt.block_on(producer.broker().inspect().unwrap().purge("default"));

    let mut group = c.benchmark_group("redis drain");
    group.sample_size(10);
    let n = 5_000;
    group.throughput(Throughput::Elements(n as u64));
    let mut round = 0;
    group.bench_function("5000 queued no-op tasks, 1 worker at concurrency 64, results stored", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            round += 1;
            let ns = format!("drain-{round}");
            let server = &server;
            async move {
                let app = app(server, &ns).await;
                let inspect = app.broker().inspect().unwrap();
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    for _ in 0..n / 1000 {
                        app.send_batch((0..1000).map(|_| noop::signature())).await.unwrap();
                    }
                    let worker = app.worker().concurrency(64).spawn();
                    let mut first = None;
                    loop {
                        let s = inspect.queue_stats("default").await.unwrap();
                        if first.is_none() && s.ready < n {
                            first = Some(Instant::now());
                        }
                        if s.ready + s.in_flight == 0 {
                            break;
                        }
                        tokio::time::sleep(Duration::from_micros(500)).await;
                    }
                    total += first.map_or(Duration::ZERO, |f| f.elapsed());
                    worker.shutdown().await.unwrap();
                }
                total
            }
        });
    });
    group.finish();

    let app = rt.block_on(app(&server, "rtt"));
    let worker = rt.block_on(async { app.worker().concurrency(64).spawn() });
    let mut group = c.benchmark_group("redis latency");
    group.bench_function("delay -> get of add(1, 2)", |b| {
        b.to_async(&rt)
            .iter(|| async { add::delay(&app, 1, 2).await.unwrap().get(Duration::from_secs(5)).await.unwrap() });
    });
    group.finish();
    rt.block_on(worker.shutdown()).unwrap();
}

criterion_group!(benches, bench);
criterion_main!(benches);
