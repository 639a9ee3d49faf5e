//! The embedded broker and backend end to end: enqueue, and delay → worker → get.
#![allow(missing_docs)] // criterion_group! generates undocumented functions

use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use task_core::{App, TaskResult, task};

#[task]
async fn add(x: i64, y: i64) -> TaskResult<i64> {
    Ok(x + y)
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let app = App::memory();
    let worker = rt.spawn(app.worker().concurrency(64).run_until(std::future::pending::<()>()));

    let mut group = c.benchmark_group("memory");
    group.bench_function("delay -> get (one task, round trip)", |b| {
        b.to_async(&rt).iter(|| async {
            let r = add::delay(&app, 1, 2).await.unwrap();
            r.get(Duration::from_secs(5)).await.unwrap()
        });
    });
    group.throughput(Throughput::Elements(1000));
    group.bench_function("1000 tasks: batch send -> all results", |b| {
        b.to_async(&rt).iter_batched(
            || (0..1000).map(|i| add::signature(i, 1)).collect::<Vec<_>>(),
            |sigs| async {
                let results = app.send_batch(sigs).await.unwrap();
                for r in results {
                    r.get(Duration::from_secs(5)).await.unwrap();
                }
            },
            BatchSize::SmallInput,
        );
    });
    group.finish();

    // Enqueue alone, with no worker competing for the CPU.
    worker.abort();
    let idle = App::memory();
    let mut group = c.benchmark_group("memory enqueue");
    group.throughput(Throughput::Elements(1));
    group.bench_function("delay (no worker)", |b| {
        b.to_async(&rt).iter(|| async { add::delay(&idle, 1, 2).await.unwrap() });
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
