//! The conformance suite every [`Broker`] and [`ResultBackend`] must pass, written
//! once and run against `memory://` and against Redis (apalis's
//! `generic_storage_test!` habit).
//!
//! ```ignore
//! async fn setup() -> task_suites::conformance::Harness { /* a fresh broker + backend */ }
//! task_suites::conformance_tests!(setup);
//! ```
//!
//! The broker must send a message to the dead letters after
//! [`SUITE_MAX_DELIVERIES`] deliveries. Every test uses queue names of its own, so
//! the tests may share one server and run in parallel.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

mod capability;
mod queue;
mod results;

pub use capability::*;
pub use queue::*;
pub use results::*;

use task_core::TaskId;
use task_core::backend::ResultBackend;
use task_core::broker::{Broker, ConsumerId, Delivery, Message};
use task_core::{TaskMeta, TaskState};

/// The delivery limit the suite expects the broker to be configured with.
pub const SUITE_MAX_DELIVERIES: u32 = 2;

/// A fresh broker and backend for one test.
#[derive(Debug, Clone)]
pub struct Harness {
    /// The broker under test (dead-lettering after [`SUITE_MAX_DELIVERIES`]).
    pub broker: Arc<dyn Broker>,
    /// The backend under test.
    pub backend: Arc<dyn ResultBackend>,
    /// Anything that must live as long as the test (a private server, say).
    pub keep_alive: Option<Arc<dyn std::any::Any + Send + Sync>>,
}

impl Harness {
    /// A harness of a broker and a backend.
    pub fn new(broker: Arc<dyn Broker>, backend: Arc<dyn ResultBackend>) -> Self {
        Self { broker, backend, keep_alive: None }
    }

    /// Keeps `guard` alive until the test ends.
    pub fn keep_alive(mut self, guard: impl std::any::Any + Send + Sync) -> Self {
        self.keep_alive = Some(Arc::new(guard));
        self
    }
}

/// Expands to one `#[tokio::test]` per property of the suite; `$setup` is a path to
/// an `async fn() -> Harness`. The calling crate needs `tokio` (macros, rt-multi-thread).
#[macro_export]
macro_rules! conformance_tests {
    ($setup:path) => {
        $crate::conformance_tests!(@each $setup;
            push_fetch_ack, fetch_waits_then_returns_empty, blocked_fetch_wakes_on_enqueue,
            delayed_message_waits_for_its_eta, retry_is_delivered_after_its_delay,
            redelivery_after_a_consumer_dies, a_dead_consumer_is_recovered_at_once, dead_letter_after_max_deliveries,
            release_returns_without_counting, explicit_dead_letter_keeps_reason,
            ack_after_recovery_is_fenced, store_and_ack_settles_and_is_fenced, priorities_highest_first, batch_enqueue_keeps_order,
            fetch_respects_max_and_queue_order, result_store_merges_fields, result_store_keeps_every_field, result_ttl_expires,
            wait_wakes_on_ready_state, wait_times_out_with_current_state, forget_deletes,
            a_stale_worker_cannot_overwrite_a_result, a_mixed_batch_keeps_priorities_and_delays,
            workers_announce_themselves_until_they_expire, inspection_peeks_and_handles_dead_letters,
            a_retry_of_the_dead_letters_retries_each_once_as_they_are_buried_again,
            history_lists_recent_tasks_and_counts_them_per_minute, events_and_task_stats_follow_the_writes,
            a_lone_write_is_counted, a_fresh_store_answers_every_question, a_retried_dead_letter_keeps_its_priority,
            a_paused_queue_keeps_its_messages_until_resumed);
    };
    (@each $setup:path; $($name:ident),* $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                $crate::conformance::$name($setup().await).await;
            }
        )*
    };
}

pub(super) fn queue(tag: &str) -> String {
    format!("conf-{tag}-{}", &TaskId::new().as_str()[..8])
}

pub(super) fn msg(queue: &str, body: &str) -> Message {
    Message::new(TaskId::new(), queue, body.as_bytes().to_vec())
}

pub(super) fn body(d: &Delivery) -> String {
    String::from_utf8_lossy(&d.payload).into_owned()
}

pub(super) async fn fetch(h: &Harness, c: &ConsumerId, queues: &[String], max: usize, wait: Duration) -> Vec<Delivery> {
    h.broker.fetch(c, queues, max, wait).await.expect("fetch")
}

/// Recovers until something moves or 10 s pass, heartbeating `live` meanwhile.
pub(super) async fn recover_soon(h: &Harness, live: &ConsumerId) -> task_core::broker::Recovery {
    let start = Instant::now();
    loop {
        h.broker.heartbeat(live, Duration::from_secs(30)).await.expect("heartbeat");
        let recovery = h.broker.recover().await.expect("recover");
        if recovery.moved > 0 || start.elapsed() > Duration::from_secs(10) {
            return recovery;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
