//! `App::from_env` (its own test binary: it sets process environment variables).

use std::time::Duration;

use task_core::{App, ENV_BROKER_URL, ENV_RESULT_BACKEND, ENV_RESULT_TTL};

#[tokio::test]
async fn from_env_defaults_to_memory() {
    // The variables themselves are exercised through the examples' processes
    // (edition 2024 makes `set_var` unsafe, and this workspace forbids unsafe code).
    let app = App::from_env().await.unwrap();
    assert_eq!(app.broker_url(), "memory://");
    assert_eq!(app.backend_url(), "memory://");
    assert_eq!(app.result_ttl(), Duration::from_secs(86_400));
    assert_eq!(app.default_queue(), "default");
    assert_eq!(app.started_after(), task_core::DEFAULT_STARTED_AFTER);
    for var in [ENV_BROKER_URL, ENV_RESULT_BACKEND, ENV_RESULT_TTL] {
        assert!(std::env::var(var).is_err(), "run this test without {var} set");
    }
}

/// Each bad value is an error that names its variable. The variables are set for a
/// child process (this test binary again, running `from_env_child` alone): setting them
/// here would need `unsafe` (edition 2024), which the workspace forbids.
#[test]
fn from_env_reports_bad_values() {
    for (var, value, says) in [
        (ENV_RESULT_TTL, "soon", "CELERITY_RESULT_TTL=`soon` is not a whole number of seconds"),
        ("CELERITY_TRACK_STARTED", "maybe", "CELERITY_TRACK_STARTED=`maybe` is not 1 or 0"),
        (
            task_core::ENV_STARTED_AFTER_MS,
            "50ms",
            "CELERITY_STARTED_AFTER_MS=`50ms` is not a whole number of milliseconds",
        ),
        (ENV_BROKER_URL, "ftp://nowhere", "ftp"),
        (ENV_RESULT_BACKEND, "nosuch://x", "nosuch"),
    ] {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "from_env_child", "--nocapture", "--include-ignored"])
            .env(var, value)
            .env("CELERITY_FROM_ENV_CHILD", "1")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{var}={value}: {text}");
        assert!(text.contains("from_env refused: ") && text.contains(says), "{var}={value}: {text}");
    }
}

/// The child of `from_env_reports_bad_values`: prints why `from_env` refused.
#[tokio::test]
#[ignore = "run by from_env_reports_bad_values, with the variables set"]
async fn from_env_child() {
    if std::env::var("CELERITY_FROM_ENV_CHILD").is_err() {
        return;
    }
    match App::from_env().await {
        Ok(app) => panic!("from_env took the bad value: {app:?}"),
        Err(e) => println!("from_env refused: {e}"),
    }
}
