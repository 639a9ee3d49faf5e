//! The `worker` command a user binary gets from `task_core::cli`, run as a real process.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_demo-worker");

fn output(args: &[&str]) -> (bool, String) {
    let out = Command::new(BIN).args(args).env_remove("CELERITY_BROKER_URL").output().unwrap();
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

#[test]
fn help_lists_the_options() {
    let (ok, text) = output(&["worker", "--help"]);
    assert!(ok, "{text}");
    for flag in ["--concurrency", "-c", "--queues", "-Q", "--loglevel", "--grace-period"] {
        assert!(text.contains(flag), "`{flag}` missing from:\n{text}");
    }
    let (ok, text) = output(&["--help"]);
    assert!(ok && text.contains("worker") && text.contains("tasks"), "{text}");
}

#[test]
fn tasks_lists_the_registered_tasks_of_the_linked_library() {
    let (ok, text) = output(&["tasks"]);
    assert!(ok, "{text}");
    assert!(text.contains("celerity_example_tasks::reverse") && text.contains("emails.send"), "{text}");
}

#[test]
fn bad_arguments_and_bad_urls_are_clear_errors() {
    let (ok, text) = output(&["worker", "-c", "many"]);
    assert!(!ok && text.contains("invalid value 'many'"), "{text}");
    let out = Command::new(BIN).args(["worker"]).env("CELERITY_BROKER_URL", "amqp://x").output().unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(text.contains("unsupported broker URL `amqp://x`"), "{text}");
    let (ok, text) = output(&["worker", "--autoscale", "3,1", "--autoscale-keepalive=-1", "--no-banner"]);
    assert!(!ok && text.contains("--autoscale-keepalive `-1`") && text.contains("negative"), "{text}");
}

#[test]
fn the_worker_prints_its_banner_and_stops_on_sigterm() {
    let mut child = Command::new(BIN)
        .args(["worker", "-c", "3", "-Q", "default,emails", "--loglevel", "warn"])
        .env_remove("CELERITY_BROKER_URL")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut banner = String::new();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let start = Instant::now();
    while !banner.contains("emails.send") {
        assert!(start.elapsed() < Duration::from_secs(30), "no banner:\n{banner}");
        banner.push_str(&lines.next().expect("stdout open").unwrap());
        banner.push('\n');
    }
    assert!(banner.contains(".> concurrency: 3"), "{banner}");
    assert!(banner.contains(".> queues:      default, emails"), "{banner}");
    assert!(banner.contains(".> broker:      memory://"), "{banner}");
    assert!(banner.contains("  . celerity_example_tasks::reverse"), "{banner}");
    std::thread::sleep(Duration::from_millis(300));
    let killed = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(killed.success());
    let status = child.wait().unwrap();
    assert!(status.success(), "graceful stop exits 0, got {status}");
}

#[test]
fn the_process_pool_refuses_a_broker_its_processes_cannot_share() {
    let (ok, text) = output(&["worker", "--pool", "process", "-c", "2", "--no-banner"]);
    assert!(!ok, "{text}");
    assert!(text.contains("memory://") && text.contains("redis://"), "{text}");
    let (ok, text) = output(&["worker", "--pool", "gevent"]);
    assert!(!ok && text.contains("`process`"), "{text}");
}
