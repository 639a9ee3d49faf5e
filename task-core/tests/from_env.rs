//! `App::from_env` (its own test binary: it sets process environment variables).

use std::time::Duration;

use task_core::{App, ENV_BROKER_URL, ENV_RESULT_BACKEND, ENV_RESULT_TTL};

#[tokio::test]
async fn from_env_defaults_to_memory_and_reports_bad_values() {
    // The variables themselves are exercised through the examples' processes
    // (edition 2024 makes `set_var` unsafe, and this workspace forbids unsafe code).
    let app = App::from_env().await.unwrap();
    assert_eq!(app.broker_url(), "memory://");
    assert_eq!(app.backend_url(), "memory://");
    assert_eq!(app.result_ttl(), Duration::from_secs(86_400));
    assert_eq!(app.default_queue(), "default");
    for var in [ENV_BROKER_URL, ENV_RESULT_BACKEND, ENV_RESULT_TTL] {
        assert!(std::env::var(var).is_err(), "run this test without {var} set");
    }
}
