//! The workflow suite on Redis: chains, and chords joined by a hash beside the
//! callback's queue.

use std::sync::Arc;

use task_core::testing::control::AppHarness;
use task_redis::RedisConfig;
use test_support::RedisServer;

async fn setup() -> AppHarness {
    let server = RedisServer::start();
    let config = RedisConfig::from_url(server.url()).namespace(test_support::namespace());
    let builder = task_redis::app_builder(config).await.expect("redis");
    AppHarness { builder, keep_alive: Some(Arc::new(server)) }
}

task_core::workflow_tests!(setup);
