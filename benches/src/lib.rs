//! Celerity's benchmarks.
//!
//! - `benches/`: criterion micro- and round-trip benchmarks, `cargo bench -p celerity-bench`
//!   (add `-- --quick` for a short run). The Redis ones start their own private server.
//! - `src/main.rs`: the whole-run harness, `cargo run --release -p celerity-bench -- --redis URL`,
//!   printing one line per figure with its conditions.

use task_core::{TaskResult, task};

/// The no-op task every figure is measured with.
#[task(name = "bench.noop")]
pub async fn noop() -> TaskResult<()> {
    Ok(())
}

/// `add(1, 2)`, for round trips.
#[task(name = "bench.add")]
pub async fn add(x: i64, y: i64) -> TaskResult<i64> {
    Ok(x + y)
}
