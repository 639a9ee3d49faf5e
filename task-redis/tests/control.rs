//! The task-control suite on Redis (revoke, expiry, rate limits and uniqueness held in
//! Redis, shared by every worker) and the workflow suite (chains; chords joined by a hash
//! beside the callback's queue; periodic ticks claimed in Redis).

use std::sync::Arc;

use task_redis::RedisConfig;
use task_suites::control::AppHarness;
use test_support::RedisServer;

async fn setup() -> AppHarness {
    let server = RedisServer::start();
    let config = RedisConfig::from_url(server.url()).namespace(test_support::namespace());
    let builder = task_redis::app_builder(config).await.expect("redis");
    AppHarness { builder, keep_alive: Some(Arc::new(server)) }
}

task_suites::control_tests!(setup);
task_suites::workflow_tests!(setup);
task_suites::beat_tests!(setup);

/// Anyone can publish on the control channel: what is not a command is ignored, and the
/// commands after it still arrive (the revoke a worker checks from memory, the terminate
/// it aborts a running task on).
#[tokio::test]
async fn garbage_on_the_control_channel_is_ignored_and_commands_still_arrive() {
    use std::time::{Duration, Instant};
    use task_core::{ResultBackend, TaskId};

    let server = RedisServer::start();
    let namespace = test_support::namespace();
    let config = RedisConfig::from_url(server.url()).namespace(namespace.clone());
    let backend = task_redis::RedisBackend::connect(config).await.expect("backend");
    let (heard, mut terminations) = tokio::sync::mpsc::unbounded_channel();
    let _listening = backend
        .terminations()
        .expect("the Redis backend relays terminations")
        .listen(Box::new(move |id| drop(heard.send(id.clone()))));
    // The revokes held in memory, loaded now: later ones come by the channel only.
    assert_eq!(backend.revoked(&TaskId::new()).await.unwrap(), None);

    let client = redis::Client::open(server.url()).unwrap();
    let mut con = client.get_multiplexed_async_connection().await.unwrap();
    let id = TaskId::new();
    let kill = format!("kill {id}");
    let garbage: [&[u8]; 6] = [b"", b"revoke", b"revoke soon x", b"terminate", b"\xff\xfe\x00", kill.as_bytes()];
    for message in garbage {
        let _: i64 =
            redis::cmd("PUBLISH").arg(format!("{namespace}:control")).arg(message).query_async(&mut con).await.unwrap();
    }
    backend.revoke(&id, "not needed", true, Duration::from_secs(60)).await.unwrap();

    let terminated = tokio::time::timeout(Duration::from_secs(5), terminations.recv()).await;
    assert_eq!(terminated.expect("the terminate arrives"), Some(id.clone()));
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match backend.revoked(&id).await.unwrap() {
            Some(reason) => break assert_eq!(reason, "not needed"),
            None if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(20)).await,
            None => panic!("the revoke after the garbage never reached the in-memory set"),
        }
    }
}
