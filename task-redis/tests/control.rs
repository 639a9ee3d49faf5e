//! The task-control suite on Redis: revoke, expiry, rate limits and uniqueness held in
//! Redis, shared by every worker.

use std::sync::Arc;

use task_core::App;
use task_core::testing::control::AppHarness;
use task_redis::{RedisBackend, RedisBroker, RedisConfig};
use test_support::RedisServer;

async fn setup() -> AppHarness {
    let server = RedisServer::start();
    let config = RedisConfig::from_url(server.url()).namespace(test_support::namespace());
    let broker = RedisBroker::connect(config.clone()).await.expect("broker");
    let backend = RedisBackend::connect(config).await.expect("backend");
    let builder = App::builder().broker(Arc::new(broker)).backend(Arc::new(backend));
    AppHarness { builder, keep_alive: Some(Arc::new(server)) }
}

task_core::control_tests!(setup);
