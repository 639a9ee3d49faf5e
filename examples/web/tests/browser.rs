//! A person in a real browser (Debian's headless Chromium, driven by playwright-core):
//! clicks "Build report", sees the progress bar fill and the result appear.
//! Needs `chromium` and `npm ci --prefix examples/web/browser`; `scripts/test.sh`
//! installs both.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn a_person_starts_a_report_and_sees_it_done() {
    let browser_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("browser");
    assert!(
        browser_dir.join("node_modules/playwright-core").exists() && Path::new("/usr/bin/chromium").exists(),
        "the browser test needs chromium and playwright-core: run scripts/test.sh (it installs both)"
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut server = Command::new(env!("CARGO_BIN_EXE_web"))
        .args(["serve", "--addr", &format!("127.0.0.1:{port}")])
        .env_remove("CELERITY_BROKER_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(server.stdout.take().unwrap()).lines();
    let start = Instant::now();
    loop {
        let line = lines.next().expect("the server prints where it listens").unwrap();
        if line.starts_with("listening on") {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(30));
    }

    let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("web-example.png");
    let out = Command::new("node")
        .arg(browser_dir.join("click.mjs"))
        .arg(format!("http://127.0.0.1:{port}/"))
        .arg(&shot)
        .output()
        .expect("node runs");
    let _ = Command::new("kill").args(["-TERM", &server.id().to_string()]).status();
    let _ = server.wait();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let seen: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(seen["state"], "SUCCESS", "{seen}");
    assert_eq!(seen["bar"], 100, "{seen}");
    assert!(seen["midway"].as_f64().is_some_and(|v| v > 0.0 && v < 100.0), "the bar moved: {seen}");
    assert!(seen["result"].as_str().unwrap().contains("“Browser report”: 6 pages"), "{seen}");
    assert_eq!(seen["error"], false);
    assert!(std::fs::metadata(&shot).map(|m| m.len() > 1000).unwrap_or(false), "a screenshot at {}", shot.display());
}
