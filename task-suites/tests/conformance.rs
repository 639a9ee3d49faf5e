//! The broker/backend conformance suite on the in-memory implementations.

use std::sync::Arc;

use task_core::memory::{InMemoryBackend, InMemoryBroker};
use task_suites::conformance::{Harness, SUITE_MAX_DELIVERIES};

async fn setup() -> Harness {
    Harness::new(Arc::new(InMemoryBroker::with_max_deliveries(SUITE_MAX_DELIVERIES)), Arc::new(InMemoryBackend::new()))
}

task_suites::conformance_tests!(setup);
