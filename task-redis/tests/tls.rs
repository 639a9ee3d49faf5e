//! `rediss://`: the broker and backend over TLS, against a redis-server that speaks
//! only TLS, with a certificate signed by a CA of the test's own.

use std::time::Duration;

use task_core::{TaskResult, task};
use task_redis::{RedisBroker, RedisConfig};
use test_support::RedisServer;

#[task]
async fn square(x: i64) -> TaskResult<i64> {
    Ok(x * x)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_run_over_tls_with_a_private_ca() {
    let server = RedisServer::start_tls();
    assert!(server.url().starts_with("rediss://"));
    let config = RedisConfig::from_url(server.url()).namespace(test_support::namespace()).ca_cert(server.ca_cert());
    let app = task_redis::app_builder(config).await.unwrap().build().await.unwrap();
    let worker = app.worker().spawn();
    assert_eq!(square::delay(&app, 12).await.unwrap().get(Duration::from_secs(10)).await.unwrap(), 144);
    worker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_certificate_is_refused_clearly() {
    let server = RedisServer::start_tls();
    // Without the CA, the server's certificate is not trusted.
    let config = RedisConfig::from_url(server.url()).op_timeout(Duration::from_secs(2));
    let err = RedisBroker::connect(config).await.unwrap_err();
    assert!(err.to_string().contains("cannot connect the broker to rediss://127.0.0.1"), "{err}");
}
