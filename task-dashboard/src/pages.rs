//! The pages: server-rendered HTML over the same data as the API.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::response::{Html, IntoResponse, Redirect, Response};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::Value;

use crate::Dashboard;
use crate::api::{
    ApiError, dead_data, events_data, overview_data, schedule_data, task_data, tasks_data, throughput_data,
    workers_data,
};

/// Escapes text for HTML (text and quoted attribute values alike).
fn esc(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&#39;")
}

/// What a URL path segment or query value may hold as it is; everything else is
/// percent-encoded, `.` too (so that `..` stays a name, not a step up).
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_');

/// `text` as one URL path segment (or query value): a queue named `a/../b?x` stays one
/// name. The result still goes through [`esc`] when it lands in an attribute.
pub(crate) fn seg(text: &str) -> String {
    utf8_percent_encode(text, SEGMENT).to_string()
}

/// A button that posts to `url` (after `confirm`, if any): its data as attributes, read
/// by `dashboard.js`, never as inline code.
fn action(label: &str, url: &str, confirm: Option<&str>, class: &str) -> String {
    let confirm = confirm.map(|c| format!(" data-confirm=\"{}\"", esc(c))).unwrap_or_default();
    let class = if class.is_empty() { String::new() } else { format!(" class=\"{class}\"") };
    format!("<button{class} data-post=\"{}\"{confirm}>{}</button>", esc(url), esc(label))
}

/// A link to a task's page.
fn task_link(base: &str, id: &str) -> String {
    format!("<a href=\"{}/tasks/{}\"><code>{}</code></a>", esc(base), esc(&seg(id)), esc(id))
}

/// A JSON value as text for a cell.
fn cell(v: &Value) -> String {
    match v {
        Value::String(s) => esc(s),
        Value::Null => String::new(),
        Value::Array(a) => esc(&a
            .iter()
            .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_owned))
            .collect::<Vec<_>>()
            .join(", ")),
        other => esc(&other.to_string()),
    }
}

fn page(base: &str, title: &str, body: &str) -> Html<String> {
    Html(format!(
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{title} — Celerity</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body {{ font: 15px/1.45 system-ui, sans-serif; margin: 0; color: #1d232a; background: #f6f8fa; }}
header {{ background: #1f2937; color: white; padding: .7rem 1.5rem; display: flex; gap: 1.5rem; align-items: center; }}
header a {{ color: #d1d5db; text-decoration: none; }} header a:hover {{ color: white; }} header b {{ color: white; }}
main {{ padding: 1rem 1.5rem; max-width: 72rem; }}
table {{ border-collapse: collapse; width: 100%; background: white; margin: .5rem 0 1.5rem; }}
th, td {{ text-align: left; padding: .35rem .6rem; border-bottom: 1px solid #e5e7eb; font-size: .9rem; vertical-align: top; }}
th {{ background: #f3f4f6; font-weight: 600; }}
.cards {{ display: flex; gap: 1rem; flex-wrap: wrap; }}
.card {{ background: white; border: 1px solid #e5e7eb; border-radius: 8px; padding: .8rem 1.2rem; min-width: 9rem; }}
.card b {{ display: block; font-size: 1.6rem; }}
button {{ font: inherit; font-size: .8rem; padding: .2rem .6rem; border: 1px solid #9ca3af; border-radius: 5px; background: white; cursor: pointer; }}
button.danger {{ border-color: #dc2626; color: #dc2626; }}
code, pre {{ font-family: ui-monospace, monospace; font-size: .85rem; }}
pre {{ background: white; border: 1px solid #e5e7eb; padding: .6rem; overflow: auto; }}
.live {{ color: #6b7280; font-size: .8rem; }}
.state-SUCCESS {{ color: #047857; }} .state-FAILURE, .state-REVOKED {{ color: #b91c1c; }}
</style></head><body data-base="{base}">
<header><b>Celerity</b><a href="{base}/">Overview</a><a href="{base}/tasks">Tasks</a><a href="{base}/workers">Workers</a><a href="{base}/events">Events</a><a href="{base}/schedule">Periodic</a><a href="{base}/dead">Dead letters</a>
<form action="{base}/tasks" method="get" style="margin-left:auto"><input name="id" placeholder="task id" size="36"> <button>Find</button></form></header>
<main><h1>{title}</h1>{body}</main>
<script src="{base}/assets/dashboard.js" defer></script></body></html>"#,
        title = esc(title),
        base = esc(base)
    ))
}

fn error_page(base: &str, e: &ApiError) -> Response {
    (e.0, page(base, "Error", &format!("<p>{}</p>", esc(&e.1)))).into_response()
}

fn table(headers: &[&str], rows: &[String]) -> String {
    let head: String = headers.iter().map(|h| format!("<th>{}</th>", esc(h))).collect();
    if rows.is_empty() {
        return format!("<table><tr>{head}</tr><tr><td colspan=\"{}\">none</td></tr></table>", headers.len());
    }
    format!("<table><tr>{head}</tr>{}</table>", rows.join(""))
}

/// The script every page loads (see `dashboard.js`).
pub(crate) async fn script() -> Response {
    ([(axum::http::header::CONTENT_TYPE, "text/javascript; charset=utf-8")], include_str!("dashboard.js"))
        .into_response()
}

pub(crate) async fn overview(State(dash): State<Dashboard>) -> Response {
    let data = match overview_data(&dash).await {
        Ok(d) => d,
        Err(e) => return error_page(&dash.config.base, &e),
    };
    let card = |label: &str, key: &str| {
        format!("<div class=\"card\">{label}<b id=\"{key}\" data-key=\"{key}\">{}</b></div>", cell(&data[key]))
    };
    let cards = ["workers online", "offline (last hour)", "concurrency", "succeeded", "failed"]
        .iter()
        .zip(["workers_online", "workers_offline", "concurrency", "succeeded", "failed"])
        .map(|(l, k)| card(l, k))
        .collect::<String>();
    let actions = !dash.config.read_only;
    let rows: Vec<String> = data["queues"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|q| {
            let name = q["queue"].as_str().unwrap_or("");
            let paused = q["paused"] == true;
            let buttons = if actions {
                let base = &dash.config.base;
                let url = format!("{base}/api/queues/{}/purge?confirm={}", seg(name), seg(name));
                let ask = format!("Delete every ready and scheduled message of {name}?");
                let toggle = if paused {
                    action("resume", &format!("{base}/api/queues/{}/resume", seg(name)), None, "")
                } else {
                    let ask = format!("Pause {name}? Producers may still send; no worker takes from it.");
                    action("pause", &format!("{base}/api/queues/{}/pause", seg(name)), Some(&ask), "")
                };
                format!("{toggle} {}", action("purge", &url, Some(&ask), "danger"))
            } else {
                String::new()
            };
            let name_cell = if paused { format!("{} <b>paused</b>", esc(name)) } else { esc(name) };
            let at = |state: &str| format!("data-queue=\"{}\" data-state=\"{state}\"", esc(name));
            format!(
                "<tr><td>{name_cell}</td><td {}>{}</td><td {}>{}</td><td {}>{}</td><td {}>{}</td><td>{buttons}</td></tr>",
                at("ready"),
                cell(&q["ready"]),
                at("scheduled"),
                cell(&q["scheduled"]),
                at("in_flight"),
                cell(&q["in_flight"]),
                at("dead"),
                cell(&q["dead"])
            )
        })
        .collect();
    let live = live(&dash.config.base);
    let chart = match throughput_data(&dash, 60).await {
        Ok(data) => chart(&data),
        Err(_) => String::new(), // a backend without history: no chart
    };
    let body = format!(
        "<div class=\"cards\">{cards}</div><h2>Queues</h2>{}{chart}{live}",
        table(&["queue", "ready", "scheduled", "in flight", "dead", ""], &rows)
    );
    page(&dash.config.base, "Overview", &body).into_response()
}

pub(crate) async fn workers(State(dash): State<Dashboard>) -> Response {
    let data = match workers_data(&dash).await {
        Ok(d) => d,
        Err(e) => return error_page(&dash.config.base, &e),
    };
    let rows: Vec<String> = data
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|w| {
            let age = w["heartbeat_age_ms"].as_i64().unwrap_or(0) as f64 / 1000.0;
            let fetched = w["last_fetch_age_ms"].as_i64().unwrap_or(0) as f64 / 1000.0;
            // A busy worker does not fetch: its last fetch ages without anything wrong.
            let fetched = if w["saturated"] == true {
                format!("busy: every slot taken ({fetched:.1} s ago)")
            } else {
                format!("{fetched:.1} s ago")
            };
            format!(
                "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{age:.1} s ago</td><td>{fetched}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                cell(&w["id"]),
                cell(&w["name"]),
                cell(&w["hostname"]),
                cell(&w["pid"]),
                cell(&w["concurrency"]),
                cell(&w["queues"]),
                cell(&w["active"]),
                cell(&w["succeeded"]),
                cell(&w["failed"]),
                cell(&w["tasks"])
            )
        })
        .collect();
    let body = table(
        &[
            "worker",
            "name",
            "host",
            "pid",
            "concurrency",
            "queues",
            "heartbeat",
            "last fetch",
            "in flight",
            "succeeded",
            "failed",
            "tasks",
        ],
        &rows,
    );
    // Remote control of every live worker (behind the same auth; none in read-only mode).
    let actions = if dash.config.read_only || rows.is_empty() {
        String::new()
    } else {
        let url = |command: &str| format!("{}/api/workers/control?command={}", dash.config.base, seg(command));
        format!(
            "<p>Every worker: {} {} {}</p>",
            action("grow the pools by 1", &url("pool-grow 1"), None, ""),
            action("shrink the pools by 1", &url("pool-shrink 1"), None, ""),
            action("shut down", &url("shutdown"), Some("Stop every live worker (gracefully)?"), "danger")
        )
    };
    page(&dash.config.base, "Workers", &format!("{body}{actions}")).into_response()
}

/// The newest events, updated live from the server-sent `events`.
pub(crate) async fn events(State(dash): State<Dashboard>) -> Response {
    let data = match events_data(&dash, 200).await {
        Ok(d) => d,
        Err(e) => return error_page(&dash.config.base, &e),
    };
    let base = &dash.config.base;
    let rows: Vec<String> = data.as_array().cloned().unwrap_or_default().iter().map(|e| event_row(base, e)).collect();
    let live = live(&dash.config.base);
    let body =
        format!("<div id=\"events\">{}</div>{live}", table(&["at", "event", "task", "id", "worker", "detail"], &rows));
    page(&dash.config.base, "Events", &body).into_response()
}

/// The "live" line; `dashboard.js` subscribes to the stream it names.
fn live(base: &str) -> String {
    format!("<p class=\"live\" id=\"live\" data-stream=\"{}/api/stream\">live</p>", esc(base))
}

fn event_row(base: &str, e: &Value) -> String {
    let id = e["task_id"].as_str().unwrap_or("");
    let link = if id.is_empty() { String::new() } else { task_link(base, id) };
    format!(
        "<tr><td>{}</td><td>{}</td><td>{}</td><td>{link}</td><td>{}</td><td>{}</td></tr>",
        cell(&e["at"]),
        cell(&e["kind"]),
        cell(&e["task"]),
        cell(&e["worker"]),
        cell(&e["detail"])
    )
}

pub(crate) async fn schedule(State(dash): State<Dashboard>) -> Response {
    let data = match schedule_data(&dash).await {
        Ok(d) => d,
        Err(e) => return error_page(&dash.config.base, &e),
    };
    let entries = data.as_array().cloned().unwrap_or_default();
    let body = if entries.is_empty() {
        "<p>No periodic entries: no scheduler is running (<code>worker --beat</code> or <code>beat</code>).</p>".into()
    } else {
        let rows: Vec<String> = entries
            .iter()
            .map(|e| {
                format!(
                    "<tr><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
                    cell(&e["name"]),
                    cell(&e["task"]),
                    cell(&e["schedule"]),
                    cell(&e["next"]),
                    cell(&e["last"]),
                    cell(&e["scheduler"])
                )
            })
            .collect();
        table(&["entry", "task", "schedule", "next run", "last run", "scheduler"], &rows)
    };
    page(&dash.config.base, "Periodic tasks", &body).into_response()
}

pub(crate) async fn dead(State(dash): State<Dashboard>) -> Response {
    let data = match dead_data(&dash, 200).await {
        Ok(d) => d,
        Err(e) => return error_page(&dash.config.base, &e),
    };
    let list = data.as_array().cloned().unwrap_or_default();
    let mut queues: Vec<&str> = list.iter().filter_map(|d| d["queue"].as_str()).collect();
    queues.sort_unstable();
    queues.dedup();
    let actions = if dash.config.read_only {
        String::new()
    } else {
        queues
            .iter()
            .map(|q| {
                let base = &dash.config.base;
                let retry = action("retry all", &format!("{base}/api/queues/{}/dead/retry", seg(q)), None, "");
                let purge_url = format!("{base}/api/queues/{}/dead/purge?confirm={}", seg(q), seg(q));
                let purge = action("purge", &purge_url, Some(&format!("Delete the dead letters of {q}?")), "danger");
                format!("<p>{}: {retry} {purge}</p>", esc(q))
            })
            .collect()
    };
    let rows: Vec<String> = list
        .iter()
        .map(|d| {
            let id = d["id"].as_str().unwrap_or("");
            let base = &dash.config.base;
            let link = if id.is_empty() {
                String::new()
            } else if dash.config.read_only {
                task_link(base, id)
            } else {
                let retry = action("retry", &format!("{base}/api/dead/{}/retry", seg(id)), None, "");
                format!("{} {retry}", task_link(base, id))
            };
            format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{link}</td><td>{}</td></tr>",
                cell(&d["at"]),
                cell(&d["queue"]),
                cell(&d["task"]),
                cell(&d["reason"])
            )
        })
        .collect();
    page(
        &dash.config.base,
        "Dead letters",
        &format!(
            "{actions}{}<p class=\"live\">Each queue keeps its newest dead letters up to a cap (10,000 by \
             default): past it the oldest is dropped, and the worker logs a warning.</p>",
            table(&["at", "queue", "task", "id", "reason"], &rows)
        ),
    )
    .into_response()
}

/// `/tasks?id=…` finds one task; otherwise the recent tasks, filtered.
pub(crate) async fn find_task(State(dash): State<Dashboard>, Query(q): Query<HashMap<String, String>>) -> Response {
    let base = &dash.config.base;
    if let Some(id) = q.get("id").map(|s| s.trim()).filter(|s| !s.is_empty()) {
        return Redirect::to(&format!("{base}/tasks/{}", seg(id))).into_response();
    }
    let data = match tasks_data(&dash, &q).await {
        Ok(d) => d,
        Err(e) => return error_page(base, &e),
    };
    let value = |k: &str| esc(q.get(k).map(String::as_str).unwrap_or(""));
    let states: String = ["", "PENDING", "STARTED", "PROGRESS", "RETRY", "SUCCESS", "FAILURE", "REVOKED"]
        .iter()
        .map(|s| {
            let selected = if q.get("state").map(String::as_str) == Some(*s) { " selected" } else { "" };
            format!("<option{selected}>{s}</option>")
        })
        .collect();
    let form = format!(
        "<form action=\"{base}/tasks\" method=\"get\">state <select name=\"state\">{states}</select> \
         task <input name=\"task\" value=\"{}\"> argument <input name=\"args\" value=\"{}\"> changed in the last <input name=\"since_minutes\" size=\"4\" value=\"{}\"> minutes \
         <input name=\"limit\" type=\"hidden\" value=\"{}\"><button>Filter</button></form>",
        value("task"),
        value("args"),
        value("since_minutes"),
        q.get("limit").map_or_else(|| "50".into(), |l| esc(l)),
        base = esc(base)
    );
    let rows: Vec<String> = data
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|t| {
            let id = t["id"].as_str().unwrap_or("");
            let state = t["state"].as_str().unwrap_or("");
            format!(
                "<tr><td>{0}</td><td>{1}</td><td class=\"state-{2}\">{2}</td><td>{3}</td><td>{4}</td><td>{5}</td></tr>",
                task_link(base, id),
                cell(&t["task"]),
                esc(state),
                cell(&t["changed"]),
                cell(&t["runtime_ms"]),
                cell(&t["error"])
            )
        })
        .collect();
    // Newer / older pages, keeping the filters.
    let limit = q.get("limit").and_then(|l| l.parse::<usize>().ok()).unwrap_or(50).clamp(1, 1000);
    let current = q.get("page").and_then(|p| p.parse::<usize>().ok()).unwrap_or(0);
    let link = |n: usize, text: &str| {
        let mut query: Vec<(&str, String)> =
            q.iter().filter(|(k, _)| k.as_str() != "page").map(|(k, v)| (k.as_str(), v.clone())).collect();
        query.sort();
        query.push(("page", n.to_string()));
        let query = serde_urlencoded::to_string(&query).unwrap_or_default();
        format!("<a href=\"{}/tasks?{}\">{text}</a>", esc(base), esc(&query))
    };
    let mut pager = Vec::new();
    if current > 0 {
        pager.push(link(current - 1, "← newer"));
    }
    if rows.len() == limit {
        pager.push(link(current + 1, "older →"));
    }
    let pager = format!("<p>page {} {}</p>", current + 1, pager.join(" "));
    let body = format!("{form}{}{pager}", table(&["id", "task", "state", "changed", "run time (ms)", "error"], &rows));
    page(base, "Tasks", &body).into_response()
}

/// Finished tasks per minute over the last hour, as SVG bars (green succeeded, red failed).
fn chart(data: &Value) -> String {
    let minutes = data.as_array().cloned().unwrap_or_default();
    let total = |m: &Value| m["succeeded"].as_u64().unwrap_or(0) + m["failed"].as_u64().unwrap_or(0);
    let top = minutes.iter().map(total).max().unwrap_or(0).max(1) as f64;
    let (w, h) = (12.0, 90.0);
    let bars: String = minutes
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let x = i as f64 * w;
            let ok = m["succeeded"].as_u64().unwrap_or(0) as f64 / top * h;
            let bad = m["failed"].as_u64().unwrap_or(0) as f64 / top * h;
            format!(
                "<g><title>{}: {} succeeded, {} failed</title><rect x=\"{x}\" y=\"{}\" width=\"{}\" height=\"{ok}\" fill=\"#10b981\"/>\
                 <rect x=\"{x}\" y=\"{}\" width=\"{}\" height=\"{bad}\" fill=\"#ef4444\"/></g>",
                cell(&m["minute"]),
                cell(&m["succeeded"]),
                cell(&m["failed"]),
                h - ok,
                w - 2.0,
                h - ok - bad,
                w - 2.0
            )
        })
        .collect();
    format!(
        "<h2>Finished per minute, last hour</h2><svg id=\"throughput\" width=\"{}\" height=\"{h}\" style=\"background:white;border:1px solid #e5e7eb\">{bars}</svg>\
         <p class=\"live\">peak {top:.0} per minute</p>",
        minutes.len() as f64 * w
    )
}

pub(crate) async fn task(State(dash): State<Dashboard>, Path(id): Path<String>) -> Response {
    let data = match task_data(&dash, &id).await {
        Ok(d) => d,
        // No record: queued and not started yet (or unknown, or expired). It can still be revoked.
        Err(e) if e.0 == axum::http::StatusCode::NOT_FOUND && id.parse::<task_core::TaskId>().is_ok() => {
            serde_json::json!({"state": "PENDING", "error": "no record yet: queued and not started, or unknown, or expired"})
        }
        Err(e) => return error_page(&dash.config.base, &e),
    };
    let state = data["state"].as_str().unwrap_or("");
    let mut rows = String::new();
    for key in ["task", "queue", "worker", "retries", "started", "finished", "runtime_ms", "error"] {
        if !data[key].is_null() {
            rows.push_str(&format!("<tr><th>{key}</th><td>{}</td></tr>", cell(&data[key])));
        }
    }
    let pretty = |v: &Value| esc(&serde_json::to_string_pretty(v).unwrap_or_default());
    let revoke = if dash.config.read_only || matches!(state, "SUCCESS" | "FAILURE" | "REVOKED") {
        String::new()
    } else {
        let url = format!("{}/api/tasks/{}/revoke", dash.config.base, seg(&id));
        let revoke = action("revoke", &url, None, "");
        let terminate =
            action("terminate", &format!("{url}?terminate=true"), Some("Abort the running task?"), "danger");
        format!("<p>{revoke} {terminate}</p>")
    };
    let retry = if dash.config.read_only || data["args"].is_null() {
        String::new()
    } else {
        let url = format!("{}/api/tasks/{}/retry", dash.config.base, seg(&id));
        format!("<p>{}</p>", action("run again", &url, None, "").replacen("<button", "<button data-then=\"task\"", 1))
    };
    let body = format!(
        "<p>State: <b class=\"state-{state}\" id=\"state\">{state}</b></p>{revoke}{retry}<table>{rows}</table>\
         <h2>Arguments</h2><pre id=\"args\">{}</pre><h2>Result</h2><pre>{}</pre><h2>Progress</h2><pre>{}</pre>",
        pretty(&data["args"]),
        pretty(&data["result"]),
        pretty(&data["progress"]),
        state = esc(state)
    );
    page(&dash.config.base, &format!("Task {id}"), &body).into_response()
}

/// Where a login goes on to: a path of this dashboard only (never another site).
fn next_of(base: &str, next: Option<&String>) -> String {
    match next {
        Some(next) if next.starts_with('/') && !next.starts_with("//") && !next.contains('\\') => next.clone(),
        _ => format!("{base}/"),
    }
}

/// The login form: for a browser, which cannot send a bearer token itself.
pub(crate) async fn login_form(State(dash): State<Dashboard>, Query(q): Query<HashMap<String, String>>) -> Response {
    login_page(&dash, &next_of(&dash.config.base, q.get("next")), None, axum::http::StatusCode::OK)
}

fn login_page(dash: &Dashboard, next: &str, error: Option<&str>, status: axum::http::StatusCode) -> Response {
    let base = &dash.config.base;
    let user = if dash.config.basic.is_some() {
        "<p><label>user <input name=\"user\" autocomplete=\"username\"></label></p>"
    } else {
        ""
    };
    let error = error.map(|e| format!("<p class=\"state-FAILURE\">{}</p>", esc(e))).unwrap_or_default();
    let body = format!(
        "{error}<form action=\"{}/login\" method=\"post\">{user}<p><label>{} <input name=\"password\" type=\"password\" \
         autocomplete=\"current-password\" autofocus></label></p><input type=\"hidden\" name=\"next\" value=\"{}\">\
         <p><button>Log in</button></p></form>",
        esc(base),
        if dash.config.token.is_some() { "token or password" } else { "password" },
        esc(next)
    );
    (status, page(base, "Log in", &body)).into_response()
}

/// Checks a login (in constant time, five failures a minute at most) and opens a
/// session: an `HttpOnly; SameSite=Strict` cookie, so that no script and no other site
/// can use it.
pub(crate) async fn login(
    State(dash): State<Dashboard>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    use axum::http::StatusCode;
    if let Some(why) = crate::auth::cross_site(&headers) {
        return (StatusCode::FORBIDDEN, why).into_response();
    }
    let form: HashMap<String, String> = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    let next = next_of(&dash.config.base, form.get("next"));
    if !dash.config.is_protected() {
        return Redirect::to(&next).into_response();
    }
    if !dash.sessions.may_try() {
        let text = "too many failed logins: wait a minute and try again";
        return login_page(&dash, &next, Some(text), StatusCode::TOO_MANY_REQUESTS);
    }
    let (user, password) =
        (form.get("user").map_or("", String::as_str), form.get("password").map_or("", String::as_str));
    if !crate::auth::credentials_match(&dash.config, user, password) {
        dash.sessions.failed();
        return login_page(&dash, &next, Some("wrong credentials"), StatusCode::UNAUTHORIZED);
    }
    let id = dash.sessions.open();
    let path = if dash.config.base.is_empty() { "/" } else { dash.config.base.as_str() };
    let cookie = format!(
        "{}={id}; HttpOnly; SameSite=Strict; Path={path}; Max-Age={}",
        crate::auth::SESSION_COOKIE,
        crate::auth::SESSION_TTL.as_secs()
    );
    let mut response = Redirect::to(&next).into_response();
    if let Ok(value) = axum::http::HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(axum::http::header::SET_COOKIE, value);
    }
    response
}

/// Closes the session of the request's cookie.
pub(crate) async fn logout(State(dash): State<Dashboard>, headers: axum::http::HeaderMap) -> Response {
    if let Some(why) = crate::auth::cross_site(&headers) {
        return (axum::http::StatusCode::FORBIDDEN, why).into_response();
    }
    if let Some(id) = crate::auth::session_of(&headers) {
        dash.sessions.close(&id);
    }
    let expired = format!("{}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0", crate::auth::SESSION_COOKIE);
    let mut response = axum::Json(serde_json::json!({"logged_out": true})).into_response();
    if let Ok(value) = axum::http::HeaderValue::from_str(&expired) {
        response.headers_mut().insert(axum::http::header::SET_COOKIE, value);
    }
    response
}
