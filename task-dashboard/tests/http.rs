//! The dashboard over HTTP, on memory:// with a live worker: pages, API, actions, auth.

use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use task_core::broker::Message;
use task_core::{App, Envelope, TaskResult, task};
use task_dashboard::{DashboardConfig, router};
use tower::ServiceExt;

#[task(name = "dash.add")]
async fn add(x: i64, y: i64) -> TaskResult<i64> {
    Ok(x + y)
}

async fn call(r: &Router, method: &str, uri: &str, auth: Option<&str>) -> (StatusCode, String) {
    let mut request = Request::builder().method(method).uri(uri);
    if let Some(auth) = auth {
        request = request.header("authorization", auth);
    }
    let response = r.clone().oneshot(request.body(Body::empty()).unwrap()).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

/// Waits until the dashboard lists a dead letter (the worker buries what it cannot run).
async fn until_dead_letters(dash: &Router) {
    let start = std::time::Instant::now();
    while api(dash, "/api/dead").await.as_array().is_none_or(Vec::is_empty) {
        assert!(start.elapsed() < Duration::from_secs(10), "no dead letter");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn api(r: &Router, uri: &str) -> Value {
    let (status, body) = call(r, "GET", uri, None).await;
    assert_eq!(status, StatusCode::OK, "{uri}: {body}");
    serde_json::from_str(&body).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_and_api_show_workers_queues_tasks_and_dead_letters() {
    let app = App::memory();
    let worker = app.worker().concurrency(3).spawn();
    let dash = router(app.clone(), DashboardConfig::default());

    let start = Instant::now();
    while api(&dash, "/api/workers").await.as_array().is_none_or(Vec::is_empty) {
        assert!(start.elapsed() < Duration::from_secs(10), "the worker never showed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let workers = api(&dash, "/api/workers").await;
    assert_eq!(workers[0]["concurrency"], 3);
    assert!(workers[0]["tasks"].as_array().unwrap().iter().any(|t| t == "dash.add"));

    let done = add::delay(&app, 20, 22).await.unwrap();
    done.get(Duration::from_secs(10)).await.unwrap();
    let task = api(&dash, &format!("/api/tasks/{}", done.id())).await;
    assert_eq!(
        (task["state"].as_str(), task["result"].as_i64(), task["task"].as_str()),
        (Some("SUCCESS"), Some(42), Some("dash.add"))
    );
    let (status, page) = call(&dash, "GET", &format!("/tasks/{}", done.id()), None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("SUCCESS") && page.contains("42"), "{page}");
    let (status, _) = call(&dash, "GET", "/api/tasks/00000000-0000-4000-8000-000000000000", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Its arguments are kept: shown, searched, and sent again by "run again".
    assert_eq!(task["args"], serde_json::json!({"x": 20, "y": 22}), "{task}");
    assert_eq!(task["queue"], "default");
    let (_, page) = call(&dash, "GET", &format!("/tasks/{}", done.id()), None).await;
    assert!(page.contains("id=\"args\"") && page.contains("run again"), "{page}");
    let found = api(&dash, "/api/tasks?args=%22y%22%3A22").await;
    assert!(found.as_array().unwrap().iter().any(|t| t["id"] == done.id().as_str()), "search by argument: {found}");
    let none = api(&dash, "/api/tasks?args=%22y%22%3A23").await;
    assert!(none.as_array().unwrap().iter().all(|t| t["id"] != done.id().as_str()), "{none}");
    let (status, body) = call(&dash, "POST", &format!("/api/tasks/{}/retry", done.id()), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let again: Value = serde_json::from_str(&body).unwrap();
    let new_id: task_core::TaskId = again["id"].as_str().unwrap().parse().unwrap();
    assert_ne!(&new_id, done.id());
    assert_eq!(app.result::<i64>(new_id).get(Duration::from_secs(10)).await.unwrap(), 42, "the same task, run again");

    // The task list, filtered, and the per-minute counts.
    let listed = api(&dash, "/api/tasks?state=SUCCESS&task=dash.add&since_minutes=5").await;
    assert!(listed.as_array().unwrap().iter().any(|t| t["id"] == done.id().as_str()), "{listed}");
    let none = api(&dash, "/api/tasks?state=FAILURE&task=dash.add").await;
    assert_eq!(none.as_array().map(Vec::len), Some(0), "{none}");
    let (status, body) = call(&dash, "GET", "/api/tasks?state=FINISHED", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    // Pages: one task per page here, newest first; the list page links the next one.
    let first = api(&dash, "/api/tasks?task=dash.add&limit=1").await;
    let second = api(&dash, "/api/tasks?task=dash.add&limit=1&page=1").await;
    assert_eq!((first.as_array().map(Vec::len), second.as_array().map(Vec::len)), (Some(1), Some(1)));
    assert_ne!(first[0]["id"], second[0]["id"], "page 2 is the next task: {first} {second}");
    let (_, page) = call(&dash, "GET", "/tasks?task=dash.add&limit=1", None).await;
    assert!(page.contains("page=1") && page.contains("older"), "a link to the older page: {page}");
    let minutes = api(&dash, "/api/throughput?minutes=5").await;
    assert_eq!(minutes.as_array().map(Vec::len), Some(5));
    assert!(minutes[4]["succeeded"].as_u64() >= Some(1) || minutes[3]["succeeded"].as_u64() >= Some(1), "{minutes}");
    let (_, page) = call(&dash, "GET", "/tasks?state=SUCCESS", None).await;
    assert!(page.contains(done.id().as_str()) && page.contains("<option selected>SUCCESS</option>"), "{page}");
    let (_, page) = call(&dash, "GET", &format!("/tasks?id={}", done.id()), None).await;
    assert!(page.is_empty(), "a search by id redirects");

    // A task nobody runs goes to the dead letters; the dashboard lists it and retries it.
    let unknown = Envelope::new("dash.unknown", vec![0x80], "default");
    app.broker().enqueue(Message::new(unknown.id.clone(), "default", unknown.encode().unwrap())).await.unwrap();
    until_dead_letters(&dash).await;
    let dead = api(&dash, "/api/dead").await;
    assert!(dead[0]["reason"].as_str().unwrap().starts_with("unknown task `dash.unknown`"), "{dead}");
    let (_, page) = call(&dash, "GET", "/dead", None).await;
    assert!(page.contains("dash.unknown") && page.contains("retry all"), "{page}");
    let dead_id = dead[0]["id"].as_str().unwrap().to_owned();
    assert!(page.contains(&format!("/api/dead/{dead_id}/retry")), "a retry button per dead letter: {page}");
    let (status, body) = call(&dash, "POST", &format!("/api/dead/{dead_id}/retry"), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _) = call(&dash, "POST", "/api/dead/00000000-0000-4000-8000-000000000000/retry", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "no such dead letter");
    until_dead_letters(&dash).await;
    let (status, body) = call(&dash, "POST", "/api/queues/default/dead/retry", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains("\"retried\":1"), "{body}");
    // The worker buries it again; until then it is a ready message the purge below would count.
    until_dead_letters(&dash).await;

    // Overview and queues; purge needs ?confirm=<queue>.
    add::signature(1, 1).countdown(Duration::from_secs(600)).apply_async(&app).await.unwrap();
    let overview = api(&dash, "/api/overview").await;
    assert_eq!(overview["workers_online"], 1);
    let default = overview["queues"].as_array().unwrap().iter().find(|q| q["queue"] == "default").unwrap().clone();
    assert_eq!(default["scheduled"], 1);
    let (_, page) = call(&dash, "GET", "/", None).await;
    assert!(page.contains("workers online") && page.contains("default"), "{page}");
    assert!(page.contains("<svg id=\"throughput\""), "the throughput chart: {page}");
    let (status, _) = call(&dash, "POST", "/api/queues/default/purge", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "no purge without confirm");
    let (status, body) = call(&dash, "POST", "/api/queues/default/purge?confirm=default", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains("\"purged\":1"), "{body}");

    // Revoke from the dashboard.
    let pending = add::signature(2, 2).countdown(Duration::from_secs(600)).apply_async(&app).await.unwrap();
    let (status, _) = call(&dash, "POST", &format!("/api/tasks/{}/revoke", pending.id()), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(pending.state().await.unwrap(), task_core::TaskState::Revoked);
    let (status, body) = call(&dash, "POST", &format!("/api/tasks/{}/retry", pending.id()), None).await;
    assert_eq!(status, StatusCode::CONFLICT, "a task that never started has no kept arguments: {body}");

    // Periodic entries, as the running schedulers announce them.
    let (_, page) = call(&dash, "GET", "/schedule", None).await;
    assert!(page.contains("no scheduler is running"), "{page}");
    let beat = task_core::Beat::new().entry(
        "dash.nightly",
        task_core::Schedule::cron("0 30 2 * * *").unwrap().in_time_zone("Europe/Paris").unwrap(),
        || add::signature(1, 2),
    );
    let scheduler = beat.spawn(&app);
    let start = std::time::Instant::now();
    while api(&dash, "/api/schedule").await.as_array().is_none_or(Vec::is_empty) {
        assert!(start.elapsed() < Duration::from_secs(10), "the entry is never listed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let entries = api(&dash, "/api/schedule").await;
    assert_eq!(entries[0]["name"], "dash.nightly");
    assert_eq!(entries[0]["schedule"], "cron `0 30 2 * * *` (Europe/Paris)");
    assert!(entries[0]["next"].as_str().unwrap().contains(":30:00"), "{entries}");
    let (_, page) = call(&dash, "GET", "/schedule", None).await;
    assert!(page.contains("dash.nightly") && page.contains("Europe/Paris"), "{page}");
    scheduler.shutdown().await.unwrap();
    worker.shutdown().await.unwrap();
}

#[tokio::test]
async fn auth_and_read_only_mode() {
    let app = App::memory();
    let guarded = router(app.clone(), DashboardConfig::default().token("s3cret").basic("admin", "pw"));
    assert_eq!(call(&guarded, "GET", "/api/queues", None).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(call(&guarded, "GET", "/api/queues", Some("Bearer wrong")).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(call(&guarded, "GET", "/api/queues", Some("Bearer s3cret")).await.0, StatusCode::OK);
    assert_eq!(call(&guarded, "GET", "/", Some("Basic YWRtaW46cHc=")).await.0, StatusCode::OK, "admin:pw");
    assert_eq!(call(&guarded, "GET", "/healthz", None).await.0, StatusCode::OK, "health needs no auth");

    let read_only = router(app, DashboardConfig::default().read_only());
    let (status, body) = call(&read_only, "POST", "/api/queues/default/purge?confirm=default", None).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (_, page) = call(&read_only, "GET", "/", None).await;
    assert!(!page.contains(">purge<"), "no action buttons in read-only mode");
}

#[tokio::test]
async fn links_follow_the_mount_point() {
    let dash =
        Router::new().nest("/admin/tasks", router(App::memory(), DashboardConfig::default().base_path("/admin/tasks")));
    let (status, page) = call(&dash, "GET", "/admin/tasks/workers", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("href=\"/admin/tasks/dead\""), "{page}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_live_updates() {
    let app = App::memory();
    let worker = app.worker().concurrency(5).spawn();
    let dash = router(app.clone(), DashboardConfig::default());
    add::signature(1, 1).countdown(Duration::from_secs(600)).apply_async(&app).await.unwrap();
    let start = Instant::now();
    loop {
        let (status, text) = call(&dash, "GET", "/metrics", None).await;
        assert_eq!(status, StatusCode::OK);
        if text.contains("celerity_workers_online 1") {
            assert!(text.contains("# TYPE celerity_queue_messages gauge"), "{text}");
            assert!(text.contains(r#"celerity_queue_messages{queue="default",state="scheduled"} 1"#), "{text}");
            let id = worker.id().as_str();
            assert!(text.contains(&format!("celerity_worker_concurrency{{worker=\"{id}\"}} 5")), "{text}");
            assert!(
                text.contains(&format!("celerity_worker_saturated{{worker=\"{id}\"}} 0")),
                "an idle worker: {text}"
            );
            let fetch_age = format!("celerity_worker_last_fetch_age_seconds{{worker=\"{id}\"}} ");
            let age: f64 = text
                .lines()
                .find_map(|l| l.strip_prefix(fetch_age.as_str()))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or_else(|| panic!("no last-fetch age of the worker: {text}"));
            assert!((0.0..10.0).contains(&age), "a worker that fetches now is seconds from its last fetch: {age}");
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "{text}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The event stream sends the overview at once, then every second.
    let response =
        dash.clone().oneshot(Request::builder().uri("/api/stream").body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut body = response.into_body();
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    let text = String::from_utf8_lossy(&first);
    assert!(text.starts_with("event: overview") && text.contains("\"workers_online\":1"), "{text}");
    let second = body.frame().await.unwrap().unwrap().into_data().unwrap();
    let text = String::from_utf8_lossy(&second);
    assert!(text.starts_with("event: events"), "then the newest events: {text}");
    let (_, page) = call(&dash, "GET", "/", None).await;
    assert!(
        page.contains("data-stream=\"/api/stream\"")
            && page.contains("data-queue=\"default\" data-state=\"scheduled\""),
        "{page}"
    );

    // Tasks by name and state, run times, and the events they made.
    add::delay(&app, 2, 3).await.unwrap().get(Duration::from_secs(5)).await.unwrap();
    let (_, text) = call(&dash, "GET", "/metrics", None).await;
    assert!(text.contains(r#"celerity_tasks_total{state="SUCCESS",task="dash.add"} 1"#), "{text}");
    assert!(text.contains("# TYPE celerity_task_runtime_seconds histogram"), "{text}");
    assert!(text.contains(r#"celerity_task_runtime_seconds_bucket{task="dash.add",le="0.005"} 1"#), "{text}");
    assert!(text.contains(r#"celerity_task_runtime_seconds_count{task="dash.add"} 1"#), "{text}");
    let events = api(&dash, "/api/events?limit=10").await;
    let kinds: Vec<&str> = events.as_array().unwrap().iter().filter_map(|e| e["kind"].as_str()).collect();
    assert!(kinds.starts_with(&["task-succeeded", "task-started"]), "{events}");
    assert!(kinds.contains(&"worker-online"), "{events}");
    let (_, page) = call(&dash, "GET", "/events", None).await;
    assert!(page.contains("task-succeeded") && page.contains("data-stream=\"/api/stream\""), "{page}");
    let (_, script) = call(&dash, "GET", "/assets/dashboard.js", None).await;
    assert!(script.contains("addEventListener(\"events\""), "the events page is updated live: {script}");
    assert_eq!(api(&dash, "/api/overview").await["workers_offline"], 0);
    worker.shutdown().await.unwrap();
    let overview = api(&dash, "/api/overview").await;
    assert_eq!((overview["workers_online"].as_u64(), overview["workers_offline"].as_u64()), (Some(0), Some(1)));
    let (_, page) = call(&dash, "GET", "/", None).await;
    assert!(page.contains("offline (last hour)"), "{page}");
}

/// The data of a hostile user (a queue named with quotes and a script tag, a task id
/// that closes a JavaScript string) is text on every page, never code; the actions
/// still reach exactly that queue and task.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_names_and_ids_are_data_never_script() {
    use std::str::FromStr;
    let app = App::memory();
    let dash = router(app.clone(), DashboardConfig::default());
    let queue = "q'\"><script>alert(1)</script>/../x?y#z";
    let id = "x',alert(1),'<img src=x onerror=alert(2)>";
    let mut envelope = Envelope::new("nobody.home", vec![0x80], queue);
    envelope.id = task_core::TaskId::from_str(id).unwrap();
    let message = Message::new(envelope.id.clone(), queue, envelope.encode().unwrap());
    app.broker().enqueue(message).await.unwrap();
    let worker = app.worker().queues([queue]).spawn();
    until_dead_letters(&dash).await;
    let encoded = |s: &str| s.bytes().map(|b| format!("%{b:02X}")).collect::<String>();
    let task_page = format!("/tasks/{}", encoded(id));
    for uri in ["/", "/dead", "/events", "/tasks", "/workers", task_page.as_str()] {
        let (status, body) = call(&dash, "GET", uri, None).await;
        assert_eq!(status, StatusCode::OK, "{uri}: {body}");
        assert!(!body.contains(queue) && !body.contains(id), "{uri} holds the data unescaped: {body}");
        assert!(!body.contains("<script>alert") && !body.contains("<img src=x"), "{uri} runs the data: {body}");
        assert!(!body.contains("onclick"), "{uri} has an inline handler: {body}");
        assert_eq!(body.matches("<script").count(), 1, "{uri}: the asset is the only script");
    }
    // The purge button names exactly this queue, and posting it purges that queue.
    let (_, dead) = call(&dash, "GET", "/dead", None).await;
    let purge = dead
        .split("data-post=\"")
        .skip(1)
        .map(|rest| rest.split('"').next().unwrap().replace("&amp;", "&"))
        .find(|url| url.contains("/dead/purge"))
        .expect("a purge button");
    let (status, body) = call(&dash, "POST", &purge, None).await;
    assert_eq!(status, StatusCode::OK, "{purge}: {body}");
    assert!(body.contains("\"purged\":1"), "{body}");
    worker.shutdown().await.unwrap();
}

/// Every response says scripts come from the dashboard only; an action posted from
/// another site is refused; oversized and malformed ids and names are 4xx, never 500.
#[tokio::test]
async fn cross_site_posts_are_refused_and_bad_input_is_a_client_error() {
    let dash = router(App::memory(), DashboardConfig::default());
    let response = dash.clone().oneshot(Request::builder().uri("/").body(Body::empty()).unwrap()).await.unwrap();
    let csp = response.headers()["content-security-policy"].to_str().unwrap().to_owned();
    let scripts = csp.split(';').find(|d| d.trim().starts_with("script-src")).unwrap();
    assert_eq!(scripts.trim(), "script-src 'self'", "{csp}");
    for (name, value) in [("origin", "https://evil.example"), ("sec-fetch-site", "cross-site")] {
        let request = Request::builder()
            .method("POST")
            .uri("/api/queues/default/purge?confirm=default")
            .header("host", "127.0.0.1:5555")
            .header(name, value)
            .body(Body::empty())
            .unwrap();
        let response = dash.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{name}: {value}");
    }
    let same = Request::builder()
        .method("POST")
        .uri("/api/queues/default/purge?confirm=default")
        .header("host", "127.0.0.1:5555")
        .header("origin", "http://127.0.0.1:5555")
        .header("sec-fetch-site", "same-origin")
        .body(Body::empty())
        .unwrap();
    assert_eq!(dash.clone().oneshot(same).await.unwrap().status(), StatusCode::OK);

    // As long as a URI may be (the http crate's limit is 64 KiB; servers answer 414 past it).
    let huge = "a".repeat(60 * 1024);
    for (method, uri) in [
        ("GET", format!("/api/tasks/{huge}")),
        ("GET", format!("/tasks/{huge}")),
        ("GET", "/api/tasks/%FF%FE".to_owned()),
        ("GET", "/tasks/%FF".to_owned()),
        ("POST", "/api/queues/%FF/purge?confirm=x".to_owned()),
        ("POST", format!("/api/dead/{huge}/retry")),
        ("GET", format!("/api/tasks?task={huge}&state=NOPE")),
    ] {
        let (status, body) = call(&dash, method, &uri, None).await;
        assert!(
            status.is_client_error() || status.is_success(),
            "{method} {}: {status} {body}",
            &uri[..40.min(uri.len())]
        );
    }
    let (_, page) = call(&dash, "GET", "/assets/dashboard.js", None).await;
    assert!(page.contains("data-post"), "the script is served");
}

/// A browser logs in with the token through a form (it cannot send a bearer header
/// itself): a session cookie no script can read; five wrong tries a minute at most.
#[tokio::test]
async fn a_browser_logs_in_with_a_form_and_a_session_cookie() {
    let dash = router(App::memory(), DashboardConfig::default().token("s3cret"));
    let send = |method: &str, uri: &str, cookie: Option<&str>, form: Option<&str>| {
        let mut request = Request::builder().method(method).uri(uri).header("host", "127.0.0.1:5555");
        if let Some(cookie) = cookie {
            request = request.header("cookie", cookie);
        }
        let body = match form {
            Some(form) => {
                request = request.header("content-type", "application/x-www-form-urlencoded");
                Body::from(form.to_owned())
            }
            None => Body::empty(),
        };
        dash.clone().oneshot(request.body(body).unwrap())
    };
    // A page without a session goes to the login form; the API answers 401.
    let response = send("GET", "/dead?x=1", None, None).await.unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(response.headers()["location"], "/login?next=%2Fdead%3Fx%3D1");
    assert_eq!(send("GET", "/api/queues", None, None).await.unwrap().status(), StatusCode::UNAUTHORIZED);
    let (status, form) = call(&dash, "GET", "/login?next=%2Fdead", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(form.contains("type=\"password\"") && form.contains("value=\"/dead\""), "{form}");

    // A right login: a cookie, and the way back (only ever to a path of the dashboard).
    let response = send("POST", "/login", None, Some("password=s3cret&next=%2Fdead")).await.unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(response.headers()["location"], "/dead");
    let cookie = response.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"), "{cookie}");
    let session = cookie.split(';').next().unwrap().to_owned();
    assert_eq!(send("GET", "/dead", Some(&session), None).await.unwrap().status(), StatusCode::OK);
    assert_eq!(send("GET", "/api/queues", Some(&session), None).await.unwrap().status(), StatusCode::OK);
    let elsewhere =
        send("POST", "/login", None, Some("password=s3cret&next=https%3A%2F%2Fevil.example")).await.unwrap();
    assert_eq!(elsewhere.headers()["location"], "/", "no redirect to another site");
    assert_eq!(send("GET", "/", Some("celerity_session=forged"), None).await.unwrap().status(), StatusCode::SEE_OTHER);

    // Logging out closes the session.
    assert_eq!(send("POST", "/logout", Some(&session), None).await.unwrap().status(), StatusCode::OK);
    assert_eq!(send("GET", "/api/queues", Some(&session), None).await.unwrap().status(), StatusCode::UNAUTHORIZED);

    // Wrong tries: refused, and the sixth in a minute is refused even with the token.
    for _ in 0..5 {
        let wrong = send("POST", "/login", None, Some("password=guess")).await.unwrap();
        assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    }
    let limited = send("POST", "/login", None, Some("password=s3cret")).await.unwrap();
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(limited.headers().get("set-cookie").is_none());
    // A login posted from another site is refused.
    let request = Request::builder()
        .method("POST")
        .uri("/login")
        .header("origin", "https://evil.example")
        .header("host", "127.0.0.1:5555")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from("password=s3cret"))
        .unwrap();
    assert_eq!(dash.clone().oneshot(request).await.unwrap().status(), StatusCode::FORBIDDEN);
}

/// Pause and resume from the dashboard: the overview shows the queue paused, with a
/// resume button; nothing is taken meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_is_paused_and_resumed_from_the_dashboard() {
    let app = App::memory();
    let worker = app.worker().spawn();
    let dash = router(app.clone(), DashboardConfig::default());
    let (status, body) = call(&dash, "POST", "/api/queues/default/pause", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let res = add::delay(&app, 1, 2).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(res.state().await.unwrap(), task_core::TaskState::Pending, "a paused queue is not taken from");
    let queues = api(&dash, "/api/queues").await;
    assert_eq!(queues[0]["paused"], true, "{queues}");
    let (_, page) = call(&dash, "GET", "/", None).await;
    assert!(page.contains("<b>paused</b>") && page.contains("/api/queues/default/resume"), "{page}");
    assert_eq!(call(&dash, "POST", "/api/queues/default/resume", None).await.0, StatusCode::OK);
    assert_eq!(res.get(Duration::from_secs(5)).await.unwrap(), 3);
    worker.shutdown().await.unwrap();
    let read_only = router(app, DashboardConfig::default().read_only());
    assert_eq!(call(&read_only, "POST", "/api/queues/default/pause", None).await.0, StatusCode::FORBIDDEN);
}

/// The workers page acts on every live worker through remote control: the pool grows,
/// an unknown command is refused, and nothing is sent in read-only mode.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_workers_page_controls_the_live_workers() {
    let app = App::memory();
    let worker = app.worker().concurrency(2).heartbeat_ttl(Duration::from_millis(150)).spawn();
    let dash = router(app.clone(), DashboardConfig::default());
    let start = Instant::now();
    while api(&dash, "/api/workers").await.as_array().is_none_or(Vec::is_empty) {
        assert!(start.elapsed() < Duration::from_secs(10), "the worker never showed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (_, page) = call(&dash, "GET", "/workers", None).await;
    assert!(page.contains("/api/workers/control?command=pool-grow%201"), "{page}");
    let (status, body) = call(&dash, "POST", "/api/workers/control?command=pool-grow%203", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let answered: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answered["answers"].as_array().map(Vec::len), Some(1), "{answered}");
    let start = Instant::now();
    while api(&dash, "/api/workers").await[0]["concurrency"] != 5 {
        assert!(start.elapsed() < Duration::from_secs(10), "the pool never grew");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (status, _) = call(&dash, "POST", "/api/workers/control?command=rm%20-rf", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, body) = call(&dash, "POST", "/api/workers/control?command=rate-limit%20no.such%201%2Fs", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains("unknown task `no.such`"), "the worker's refusal is shown: {body}");
    let read_only = router(app.clone(), DashboardConfig::default().read_only());
    let (status, _) = call(&read_only, "POST", "/api/workers/control?command=shutdown", None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (_, page) = call(&read_only, "GET", "/workers", None).await;
    assert!(!page.contains("/api/workers/control"), "no actions in read-only mode");
    worker.shutdown().await.unwrap();
}
