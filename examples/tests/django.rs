//! The Django example end to end: Django's test client drives the project's views
//! (`examples/django`, stock Django and Celery from the pinned venv), the view's
//! `build_job.delay()` answers 202 at once, and the Rust worker process
//! (`django-worker`) runs the job; the status view shows PROGRESS, then the Rust
//! worker's result, and a refused job's error.

use std::process::{Child, Command, Stdio};

use test_support::{RedisServer, celery_python};

/// The Rust worker process, killed when dropped.
struct Worker(Child);

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

const CLIENT: &str = r#"
import json, os, time
import django
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "proj.settings")
django.setup()
from django.test import Client

c = Client()
index = c.get("/")
print(index.status_code, b"csrfmiddlewaretoken" in index.content)

def wait(job):
    seen, deadline = set(), time.time() + 60
    while True:
        status = c.get(job["status"]).json()
        seen.add(status["state"])
        if status["state"] in ("SUCCESS", "FAILURE"):
            return status, seen
        assert time.time() < deadline, status
        time.sleep(0.01)

answer = c.post("/jobs", {"job_id": 7, "pages": 50})
job = answer.json()
# Answered before the job (a second of work) is done.
print(answer.status_code, c.get(job["status"]).json()["state"] != "SUCCESS")
status, seen = wait(job)
print(status["state"], json.dumps(status["result"], sort_keys=True))
print("PROGRESS" in seen)
print(c.get(job["page"]).status_code)
refused, _ = wait(c.post("/jobs", {"job_id": 8, "pages": 0}).json())
print(refused["state"], refused["error"])
print(c.post("/jobs", {"job_id": "seven"}).status_code)
"#;

#[test]
fn a_django_view_hands_the_job_to_the_rust_worker_and_the_page_shows_its_result() {
    let server = RedisServer::start();
    let url = server.url();
    let _worker = Worker(
        Command::new(env!("CARGO_BIN_EXE_django-worker"))
            .args(["worker", "-c", "2", "-n", "rusty@%h"])
            .env("CELERITY_BROKER_URL", &url)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the Rust worker starts"),
    );
    let out = Command::new(celery_python())
        .args(["-c", CLIENT])
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/django"))
        .env("CELERY_BROKER_URL", &url)
        .output()
        .expect("python runs");
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{printed}\n{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<&str> = printed.lines().collect();
    assert_eq!(
        lines,
        [
            "200 True",
            "202 True",
            r#"SUCCESS {"built_by": "rust", "job_id": 7, "pages": 50, "words": 13980}"#,
            "True",
            "200",
            "FAILURE a job has 1 to 500 pages, not 0",
            "400",
        ],
        "{printed}"
    );
}

/// A process group (run.sh and what it started), stopped as a whole when dropped.
struct Group(Child);

impl Drop for Group {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", "--", &format!("-{}", self.0.id())]).status();
        let _ = self.0.wait();
    }
}

const BROWSER: &str = r#"
import http.cookiejar, json, os, sys, time, urllib.parse, urllib.request
django, flower = sys.argv[1], sys.argv[2]
jar = http.cookiejar.CookieJar()
web = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))

def until(what, f, limit=120):
    deadline = time.time() + limit
    while True:
        try:
            got = f()
            if got:
                return got
        except OSError:
            pass
        assert time.time() < deadline, what
        time.sleep(0.2)

until("runserver", lambda: web.open(django + "/").status == 200)
token = next(c.value for c in jar if c.name == "csrftoken")
form = urllib.parse.urlencode({"job_id": 3, "pages": 5}).encode()
asked = urllib.request.Request(django + "/jobs", data=form, headers={"X-CSRFToken": token, "Referer": django + "/"})
answer = web.open(asked)
job = json.load(answer)
print(answer.status)
status = until("the job", lambda: (lambda s: s if s["state"] == "SUCCESS" else None)(json.load(web.open(django + job["status"]))))
print(status["result"]["built_by"], status["result"]["pages"])
def rusty():
    workers = json.load(urllib.request.urlopen(flower + "/workers?json=1"))["data"]
    return [w["hostname"] for w in workers if w["hostname"].startswith("rusty@") and w["status"]]
print(bool(until("Flower", rusty)))
"#;

/// The README's second way: `examples/django/run.sh` starts runserver, the Rust worker
/// and Flower together; a browser-like client (a CSRF cookie and token, as the page
/// sends them) starts a job over HTTP, reads its result, and Flower lists the Rust
/// worker.
#[test]
fn run_sh_starts_django_the_rust_worker_and_flower_together() {
    use std::os::unix::process::CommandExt as _;
    let server = RedisServer::start();
    let url = server.url();
    let (django, flower) = (test_support::free_port(), test_support::free_port());
    let group = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/django/run.sh"))
        .env("CELERY_BROKER_URL", &url)
        .env("PYTHON", celery_python())
        .env("DJANGO_WORKER", env!("CARGO_BIN_EXE_django-worker"))
        .env("DJANGO_PORT", django.to_string())
        .env("FLOWER_PORT", flower.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("run.sh starts");
    let _stop = Group(group);
    let out = Command::new(celery_python())
        .args(["-c", BROWSER, &format!("http://127.0.0.1:{django}"), &format!("http://127.0.0.1:{flower}")])
        .output()
        .expect("python runs");
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{printed}\n{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(printed.lines().collect::<Vec<_>>(), ["202", "rust 5", "True"], "{printed}");
}
