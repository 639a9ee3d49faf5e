//! The real Celery, from the pinned venv `scripts/test.sh` makes: Python snippets run
//! against a test's Redis, and stock `celery worker` and Flower processes.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

/// The Python with the real Celery installed: `CELERITY_PYTHON`, else the venv that
/// `scripts/test.sh` makes (`target/celery-venv`).
pub fn celery_python() -> String {
    std::env::var("CELERITY_PYTHON").ok().filter(|p| !p.is_empty()).unwrap_or_else(|| {
        let venv = concat!(env!("CARGO_MANIFEST_DIR"), "/../target/celery-venv/bin/python");
        assert!(
            std::path::Path::new(venv).exists(),
            "no Python with Celery: run scripts/test.sh (it makes target/celery-venv), or set CELERITY_PYTHON"
        );
        venv.to_owned()
    })
}

/// Runs `code` in that Python after `app = Celery('proj', broker=url, backend=url)`;
/// what it printed. Fails the test, with Python's output, when the script fails.
pub fn run_celery(url: &str, code: &str) -> String {
    let script = format!("from celery import Celery\napp = Celery('proj', broker='{url}', backend='{url}')\n{code}\n");
    let out = Command::new(celery_python()).arg("-c").arg(script).stderr(Stdio::piped()).output().expect("python runs");
    assert!(
        out.status.success(),
        "python failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `celery -A pyproj ARGS` (the tests' app, `scripts/celery/pyproj.py`) on `url`.
fn pyproj(url: &str, args: &[&str]) -> Command {
    let mut command = Command::new(celery_python());
    command
        .args(["-m", "celery", "-A", "pyproj"])
        .args(args)
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/celery"))
        .env("CELERY_BROKER_URL", url);
    command
}

/// Runs Celery's command line (`celery -A pyproj ARGS`, the tests' app of
/// `scripts/celery/pyproj.py`) on `url`; what it printed, and whether it succeeded.
pub fn celery_command(url: &str, args: &[&str]) -> (bool, String) {
    let out = pyproj(url, args).output().expect("celery runs");
    let printed = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), printed)
}

/// A process of the tests' Celery app, its stderr in a log file; killed (and the log
/// removed) when dropped.
#[derive(Debug)]
struct Logged {
    child: Child,
    log: PathBuf,
}

impl Logged {
    /// Spawns `command`, logging to `<tmp>/<name>.log`.
    fn spawn(mut command: Command, name: &str) -> Self {
        let log = std::env::temp_dir().join(format!("{name}.log"));
        let file = std::fs::File::create(&log).expect("a log file");
        let child = command.stdout(Stdio::null()).stderr(file).spawn().unwrap_or_else(|e| panic!("{name} starts: {e}"));
        Self { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Logged {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

/// A stock `celery worker` (the solo pool, one task at a time) of the tests' Celery app
/// (`scripts/celery/pyproj.py`: `proj.tasks.add`, `shout`, `fail`, `whoami`, …) on
/// `url`, serving `queues`; killed when dropped. Its log is in [`CeleryWorker::log`].
#[derive(Debug)]
pub struct CeleryWorker {
    process: Logged,
    name: String,
}

impl CeleryWorker {
    /// Starts it; it takes tasks once Celery has started (a second or two), those sent
    /// before wait in their lists.
    pub fn start(url: &str, queues: &[&str]) -> Self {
        let name = format!("py-{}@127.0.0.1", crate::namespace());
        let queues = queues.join(",");
        let args = ["worker", "-P", "solo", "--without-mingle", "--without-gossip", "-Q", &queues, "-n", &name];
        let process = Logged::spawn(pyproj(url, &[&args[..], &["--loglevel=INFO"]].concat()), &name.replace('@', "-"));
        Self { process, name }
    }

    /// Its Celery node name (`py-…@127.0.0.1`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// What it logged so far.
    pub fn log(&self) -> String {
        self.process.log()
    }
}

/// A stock Flower (`celery -A pyproj flower`) on `url`, on a free loopback port; killed
/// when dropped.
#[derive(Debug)]
pub struct Flower {
    process: Logged,
    port: u16,
}

impl Flower {
    /// Starts it and waits (up to 60 s) for its `/healthcheck` and its event consumer.
    pub fn start(url: &str) -> Self {
        let port = crate::free_port();
        let mut command = pyproj(url, &["flower", "--address=127.0.0.1", &format!("--port={port}")]);
        // Its HTTP API without a login (no auth is configured here).
        command.env("FLOWER_UNAUTHENTICATED_API", "true");
        let flower = Self { process: Logged::spawn(command, &format!("flower-{}", crate::namespace())), port };
        let until = std::time::Instant::now() + std::time::Duration::from_secs(60);
        // Up, and its event consumer subscribed (an event published before is not seen:
        // pub/sub keeps nothing): kombu PSUBSCRIBEs to the events' pattern.
        let subscribed = || {
            let out = Command::new("redis-cli").args(["-u", url, "PUBSUB", "NUMPAT"]).output().ok();
            out.and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse::<u32>().ok()).is_some_and(|n| n >= 1)
        };
        while flower.get("/healthcheck").is_none() || !subscribed() {
            assert!(std::time::Instant::now() < until, "Flower did not start: {}", flower.log());
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        flower
    }

    /// The body of `GET path`, when it answers 200.
    pub fn get(&self, path: &str) -> Option<String> {
        use std::io::{Read as _, Write as _};
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        stream.set_read_timeout(Some(std::time::Duration::from_secs(30))).ok()?;
        write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).ok()?;
        let (head, body) = response.split_once("\r\n\r\n")?;
        (head.starts_with("HTTP/1.1 200") || head.starts_with("HTTP/1.0 200")).then(|| body.to_owned())
    }

    /// What it logged so far.
    pub fn log(&self) -> String {
        self.process.log()
    }
}
