//! The task-control suite on Redis (revoke, expiry, rate limits and uniqueness held in
//! Redis, shared by every worker) and the workflow suite (chains; chords joined by a hash
//! beside the callback's queue; periodic ticks claimed in Redis).

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

task_core::control_tests!(setup);
task_core::workflow_tests!(setup);
