//! Registry lookup and dispatch: name → entry → decoded arguments → a ready run.
#![allow(missing_docs)] // criterion_group! generates undocumented functions

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use task_core::{Invocation, Registry, TaskContext, TaskResult, task};

#[task]
async fn add(x: i64, y: i64) -> TaskResult<i64> {
    Ok(x + y)
}

#[task]
fn noop() {}

fn bench(c: &mut Criterion) {
    let registry = Registry::global();
    let args = task_core::__private::encode_args(add::NAME, &add::Args { x: 1, y: 2 }).unwrap();
    let ctx = TaskContext::detached(add::NAME);
    let mut group = c.benchmark_group("registry");
    group.bench_function("lookup", |b| {
        b.iter(|| registry.get(black_box(add::NAME)).unwrap());
    });
    group.bench_function("lookup+decode+prepare (async)", |b| {
        b.iter(|| {
            let entry = registry.get(black_box(add::NAME)).unwrap();
            match entry.invoke(ctx.clone(), black_box(&args)).unwrap() {
                Invocation::Async(fut) => fut,
                Invocation::Blocking(_) => unreachable!("add is async"),
            }
        });
    });
    let unit = task_core::__private::encode_args(noop::NAME, &noop::Args {}).unwrap();
    group.bench_function("lookup+decode+run (sync noop)", |b| {
        b.iter(|| {
            let entry = registry.get(black_box(noop::NAME)).unwrap();
            match entry.invoke(ctx.clone(), black_box(&unit)).unwrap() {
                Invocation::Blocking(run) => run().unwrap(),
                Invocation::Async(_) => unreachable!("noop is sync"),
            }
        });
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
