//! The broker/backend conformance suite, on a private redis-server per test.

use std::sync::Arc;

use task_redis::{RedisBackend, RedisBroker, RedisConfig};
use task_suites::conformance::{Harness, SUITE_MAX_DELIVERIES};
use test_support::RedisServer;

async fn setup() -> Harness {
    let server = RedisServer::start();
    let config =
        RedisConfig::from_url(server.url()).namespace(test_support::namespace()).max_deliveries(SUITE_MAX_DELIVERIES);
    let broker = RedisBroker::connect(config.clone()).await.expect("broker");
    let backend = RedisBackend::connect(config).await.expect("backend");
    Harness::new(Arc::new(broker), Arc::new(backend)).keep_alive(server)
}

task_suites::conformance_tests!(setup);
