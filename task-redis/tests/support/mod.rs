//! What the failover tests of task-redis share.

use std::time::{Duration, Instant};

/// `op`'s value once it succeeds, trying again every 100 ms while the connections find
/// the new primary (a Sentinel's, or a cluster's promoted replica); fails with `what`
/// and the last error after `limit`.
pub(crate) async fn until_ok<T, E, F>(what: &str, limit: Duration, mut op: impl FnMut() -> F) -> T
where
    E: std::fmt::Display,
    F: std::future::Future<Output = Result<T, E>>,
{
    let start = Instant::now();
    loop {
        match op().await {
            Ok(value) => return value,
            Err(e) => {
                assert!(start.elapsed() < limit, "{what}: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}
