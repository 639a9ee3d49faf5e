//! The process pool (Celery's prefork): a supervisor and `concurrency` child processes
//! of the same program, each a worker of one slot with its own id and heartbeat.
//!
//! Why processes: a thread cannot be stopped, a process can. A plain `fn` past its
//! hard time limit, or an `async fn` that never yields, keeps its thread forever; in a
//! child, the supervisor kills it (SIGKILL), ends the run FAILURE "time limit
//! exceeded" in the child's name, and starts another child. A child that dies for any
//! reason is replaced at once, and what it held goes back to its queue at once
//! ([`Broker::recover_consumer`](crate::broker::Broker::recover_consumer)), not after
//! its heartbeat expires.
//!
//! - `supervisor`: starts, watches, kills and replaces the children.
//! - `child`: the child's side: one slot, and what it tells the supervisor.
//! - `wire`: the frames between them, over a Unix socket per pool.
//!
//! A child is the program started again with the same arguments and two environment
//! variables: its `Worker::run_until` sees them and runs as a child. Code before the
//! worker in `main` therefore runs in every child too; [`is_pool_child`] tells.

// Off Unix there is no pool: its decisions stay, unused.
#![cfg_attr(not(unix), allow(dead_code))]

#[cfg(unix)]
pub(super) mod child;
#[cfg(unix)]
pub(super) mod supervisor;
pub(crate) mod wire;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

#[cfg(unix)]
pub(crate) use child::Link;

/// A child's link to its supervisor; off Unix there is none.
#[cfg(not(unix))]
#[derive(Debug)]
pub(crate) enum Link {}

#[cfg(not(unix))]
impl Link {
    pub(crate) fn started(&self, _: &crate::id::TaskId, _: Duration, _: &crate::message::Delivery) {
        match *self {}
    }
    pub(crate) fn ran(&self, _: &crate::id::TaskId, _: bool) {
        match *self {}
    }
    pub(crate) fn settled(&self, _: &crate::id::TaskId, _: bool) {
        match *self {}
    }
}

use wire::Why;

/// The socket a child reports to (set by the supervisor).
const SOCKET_ENV: &str = "CELERITY_POOL_SOCKET";
/// The child's consumer id and its place in the pool, `ID/INDEX` (set by the supervisor).
const CHILD_ENV: &str = "CELERITY_POOL_CHILD";

/// How a worker runs its tasks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Pool {
    /// Slots on the worker's own tokio runtime, plain `fn` tasks on its blocking
    /// threads (the default).
    #[default]
    Threads,
    /// `concurrency` child processes of this program under a supervisor, one task at
    /// a time each: hard time limits stop any task, a crash takes one child (Unix).
    Process,
}

impl std::str::FromStr for Pool {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "threads" | "thread" => Ok(Pool::Threads),
            "process" | "processes" | "prefork" => Ok(Pool::Process),
            other => Err(format!("unknown pool `{other}`: `threads` (the default) or `process` (alias `prefork`)")),
        }
    }
}

/// True in a child process of a process pool: code before the worker in `main` (a
/// banner, a periodic scheduler, a web server) can run in the supervisor alone.
pub fn is_pool_child() -> bool {
    std::env::var_os(CHILD_ENV).is_some()
}

/// What the supervisor told this child, when it is one: its consumer id, its index
/// and its socket. Only the first worker of the process to ask becomes the child (a second worker
/// in `main`, or one a task spawns, is a worker of its own).
pub(super) fn child_env() -> Option<(String, usize, std::path::PathBuf)> {
    static TAKEN: AtomicBool = AtomicBool::new(false);
    if !is_pool_child() || TAKEN.swap(true, Ordering::AcqRel) {
        return None;
    }
    let child = std::env::var(CHILD_ENV).ok()?;
    let socket = std::env::var_os(SOCKET_ENV)?;
    let (id, index) = parse_child(&child)?;
    Some((id, index, socket.into()))
}

/// `ID/INDEX` as the supervisor writes it.
fn parse_child(value: &str) -> Option<(String, usize)> {
    let (id, index) = value.rsplit_once('/')?;
    (!id.is_empty()).then(|| Some((id.to_owned(), index.parse().ok()?)))?
}

/// A child's name: the worker's, with its place in the pool.
pub(super) fn child_name(name: &str, index: usize) -> String {
    format!("{name}:{index}")
}

/// What the supervisor does once a child exited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum AfterExit {
    /// Start another in its place.
    Replace,
    /// Stop the whole pool (remote control said shutdown).
    StopPool,
    /// Nothing: the pool is stopping.
    Gone,
}

/// The supervisor's decision when a child exited having said `why` (nothing: it died).
pub(super) fn after_exit(stopping: bool, why: Option<Why>) -> AfterExit {
    match (stopping, why) {
        (true, _) => AfterExit::Gone,
        (false, Some(Why::Remote)) => AfterExit::StopPool,
        (false, _) => AfterExit::Replace,
    }
}

/// The first of `places` places that no child in `used` holds.
pub(super) fn free_place(used: &[usize], places: usize) -> Option<usize> {
    (0..places).find(|place| !used.contains(place))
}

/// How long to wait before starting a child again, after `early` children in a row at
/// this place died before they reported in (a program that cannot start must not be
/// restarted in a tight loop): at once the first time, then doubling up to 10 s.
pub(super) fn restart_delay(early: u32) -> Duration {
    match early {
        0 => Duration::ZERO,
        n => Duration::from_millis(100u64.saturating_mul(1 << (n - 1).min(7))).min(Duration::from_secs(10)),
    }
}

/// Why a child should give its place to a fresh one after a run, if it should
/// (Celery's `--max-tasks-per-child` and `--max-memory-per-child`, in KiB).
pub(super) fn recycle(done: u64, max_tasks: Option<u64>, rss_kib: Option<u64>, max_kib: Option<u64>) -> Option<Why> {
    if max_tasks.is_some_and(|max| done >= max) {
        return Some(Why::MaxTasks);
    }
    match (rss_kib, max_kib) {
        (Some(rss), Some(max)) if rss > max => Some(Why::MaxMemory),
        _ => None,
    }
}

/// The resident memory in KiB from the text of `/proc/self/status` (`VmRSS:  1234 kB`).
pub(super) fn vm_rss_kib(status: &str) -> Option<u64> {
    let line = status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?;
    line.trim().strip_suffix("kB")?.trim().parse().ok()
}

/// This process's resident memory in KiB (Linux; `None` elsewhere).
pub(super) fn resident_kib() -> Option<u64> {
    vm_rss_kib(&std::fs::read_to_string("/proc/self/status").ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pools_parse_with_celerys_names() {
        assert_eq!("process".parse(), Ok(Pool::Process));
        assert_eq!("prefork".parse(), Ok(Pool::Process));
        assert_eq!("threads".parse(), Ok(Pool::Threads));
        assert!("gevent".parse::<Pool>().unwrap_err().contains("`process`"));
    }

    #[test]
    fn the_child_variable_names_id_and_index() {
        assert_eq!(parse_child("a-b-c/3"), Some(("a-b-c".into(), 3)));
        assert_eq!(parse_child("a/b/12"), Some(("a/b".into(), 12)));
        assert_eq!(parse_child("/3"), None);
        assert_eq!(parse_child("abc"), None);
        assert_eq!(parse_child("abc/x"), None);
        assert_eq!(child_name("celery@box", 2), "celery@box:2");
    }

    #[test]
    fn a_child_is_replaced_unless_the_pool_stops() {
        assert_eq!(after_exit(false, None), AfterExit::Replace, "died");
        assert_eq!(after_exit(false, Some(Why::MaxTasks)), AfterExit::Replace);
        assert_eq!(after_exit(false, Some(Why::Stranded)), AfterExit::Replace);
        assert_eq!(after_exit(false, Some(Why::Signal)), AfterExit::Replace, "a child stopped alone is replaced");
        assert_eq!(after_exit(false, Some(Why::Remote)), AfterExit::StopPool);
        assert_eq!(after_exit(true, None), AfterExit::Gone);
        assert_eq!(after_exit(true, Some(Why::Remote)), AfterExit::Gone);
    }

    #[test]
    fn a_grown_pool_takes_the_first_free_place() {
        assert_eq!(free_place(&[], 3), Some(0));
        assert_eq!(free_place(&[0, 2], 3), Some(1));
        assert_eq!(free_place(&[1, 0, 2], 3), None);
    }

    #[test]
    fn restarts_back_off_only_after_early_deaths() {
        assert_eq!(restart_delay(0), Duration::ZERO);
        assert_eq!(restart_delay(1), Duration::from_millis(100));
        assert_eq!(restart_delay(2), Duration::from_millis(200));
        assert_eq!(restart_delay(8), Duration::from_secs(10));
        assert_eq!(restart_delay(u32::MAX), Duration::from_secs(10));
    }

    #[test]
    fn children_recycle_after_their_tasks_or_over_their_memory() {
        assert_eq!(recycle(9, Some(10), None, None), None);
        assert_eq!(recycle(10, Some(10), None, None), Some(Why::MaxTasks));
        assert_eq!(recycle(1, None, Some(2048), Some(1024)), Some(Why::MaxMemory));
        assert_eq!(recycle(1, None, Some(1024), Some(1024)), None);
        assert_eq!(recycle(1, None, None, Some(1024)), None, "unknown memory never recycles");
        assert_eq!(recycle(1, None, Some(1 << 30), None), None);
    }

    #[test]
    fn resident_memory_reads_from_proc_status() {
        let status = "Name:\tdemo\nVmPeak:\t  9000 kB\nVmRSS:\t    4321 kB\nThreads:\t3\n";
        assert_eq!(vm_rss_kib(status), Some(4321));
        assert_eq!(vm_rss_kib("Name: x\n"), None);
        assert_eq!(vm_rss_kib("VmRSS: lots"), None);
        if cfg!(target_os = "linux") {
            assert!(resident_kib().is_some_and(|kib| kib > 0));
        }
    }
}
