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

/// The CPU seconds Redis has used (`used_cpu_sys` + `used_cpu_user`), from the text of
/// `INFO cpu`: the whole-run harness divides its change over a drain by the tasks.
pub fn redis_cpu_secs(info: &str) -> Option<f64> {
    let field = |name: &str| {
        info.lines().find_map(|line| line.strip_prefix(name)?.strip_prefix(':')?.trim().parse::<f64>().ok())
    };
    Some(field("used_cpu_sys")? + field("used_cpu_user")?)
}

/// The `host:port` of every live primary in a `CLUSTER NODES` table.
pub fn cluster_primaries(table: &str) -> Vec<String> {
    table
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (addr, flags) = (fields.get(1)?, fields.get(2)?);
            let primary = flags.split(',').any(|f| f == "master") && !flags.contains("fail");
            primary.then(|| addr.split('@').next().unwrap_or(addr).to_owned())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::{cluster_primaries, redis_cpu_secs};

    #[test]
    fn the_live_primaries_of_a_cluster_table() {
        let table = "a1 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-5460\n\
                     b2 127.0.0.1:7001@17001 master - 0 0 2 connected 5461-10922\n\
                     c3 127.0.0.1:7002@17002 master,fail - 0 0 3 disconnected 10923-16383\n\
                     d4 127.0.0.1:7003@17003 slave b2 0 0 2 connected\n";
        assert_eq!(cluster_primaries(table), ["127.0.0.1:7000", "127.0.0.1:7001"]);
        assert!(cluster_primaries("").is_empty());
    }

    #[test]
    fn redis_cpu_reads_the_process_totals_not_the_threads() {
        let info = "# CPU\r\nused_cpu_sys:1.500000\r\nused_cpu_user:2.250000\r\n\
                    used_cpu_sys_children:9.0\r\nused_cpu_sys_main_thread:1.2\r\n";
        assert_eq!(redis_cpu_secs(info), Some(3.75));
        assert_eq!(redis_cpu_secs("# CPU\r\nused_cpu_sys:1\r\n"), None);
        assert_eq!(redis_cpu_secs(""), None);
    }
}
