//! What each command does, on the broker and backend of `--broker`.

use std::error::Error;
use std::time::Duration;

use serde_json::{Value, json};
use task_core::broker::Message;
use task_core::capability::{Inspect, PeekAt, WorkerDirectory, WorkerInfo};
use task_core::{App, Envelope, TaskId, TaskMeta, TaskState};

use crate::output::{age, table, time};
use crate::{Cli, Command, Dead, Inspect as InspectCmd};

type Outcome = Result<i32, Box<dyn Error>>;

/// Runs one command; the exit code on success.
pub(crate) async fn run(cli: Cli) -> Outcome {
    let url = cli.broker.clone().ok_or("no broker: pass --broker URL or set CELERITY_BROKER_URL")?;
    let mut builder = App::builder().broker_url(&url);
    if let Ok(backend) = std::env::var(task_core::ENV_RESULT_BACKEND) {
        builder = builder.result_backend(backend);
    }
    let app = builder.build().await?;
    let json = cli.json;
    match cli.command {
        Command::Status => status(&app, json).await,
        Command::Inspect { what } => inspect(&app, what, json).await,
        Command::Control { what } => {
            let (command, timeout) = match what {
                crate::Control::Shutdown { timeout } => ("shutdown".to_owned(), timeout),
                crate::Control::PoolGrow { n, timeout } => (format!("pool-grow {n}"), timeout),
                crate::Control::PoolShrink { n, timeout } => (format!("pool-shrink {n}"), timeout),
                crate::Control::AddConsumer { queue, timeout } => (format!("add-consumer {queue}"), timeout),
                crate::Control::CancelConsumer { queue, timeout } => (format!("cancel-consumer {queue}"), timeout),
                crate::Control::RateLimit { task, limit, timeout } => (format!("rate-limit {task} {limit}"), timeout),
                crate::Control::TimeLimit { task, soft, hard, timeout } => {
                    (format!("time-limit {task} {soft} {}", hard.as_deref().unwrap_or("none")), timeout)
                }
            };
            remote(&app, &command, timeout, json).await
        }
        Command::Queues => queues(&app, json).await,
        Command::Schedule => schedule(&app, json).await,
        Command::Purge { queue, yes } => purge(&app, &queue, yes, json).await,
        Command::Pause { queue } => pause(&app, &queue, true, json).await,
        Command::Resume { queue } => pause(&app, &queue, false, json).await,
        Command::Call { task, args, countdown, queue, priority } => {
            call(&app, &task, &args, countdown, queue, priority, json).await
        }
        Command::Result { id, wait } => result(&app, &id, wait, json).await,
        Command::Revoke { id, terminate } => revoke(&app, &id, terminate, json).await,
        Command::Dead { action } => dead(&app, action, json).await,
        Command::Dashboard { addr, token, basic, read_only } => dashboard(app, addr, token, basic, read_only).await,
    }
}

async fn dashboard(
    app: App,
    addr: std::net::SocketAddr,
    token: Option<String>,
    basic: Option<String>,
    read_only: bool,
) -> Outcome {
    let mut config = task_dashboard::DashboardConfig::default();
    if let Some(token) = token {
        config = config.token(token);
    }
    if let Some(basic) = basic {
        let (user, password) = basic.split_once(':').ok_or("--basic takes USER:PASSWORD")?;
        config = config.basic(user, password);
    }
    if read_only {
        config = config.read_only();
    }
    let open = !addr.ip().is_loopback();
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    println!("dashboard on http://{} (broker {})", listener.local_addr()?, task_core::redact_url(app.broker_url()));
    if open && !config.is_protected() {
        eprintln!(
            "warning: the dashboard listens beyond this machine without --token or --basic: anyone can purge and revoke"
        );
    }
    axum::serve(listener, task_dashboard::router(app, config))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(0)
}

fn inspector(app: &App) -> Result<&dyn Inspect, Box<dyn Error>> {
    app.broker().inspect().ok_or_else(|| format!("the broker {} cannot be inspected", app.broker_url()).into())
}

fn directory(app: &App) -> Result<&dyn WorkerDirectory, Box<dyn Error>> {
    app.broker().directory().ok_or_else(|| format!("the broker {} keeps no worker directory", app.broker_url()).into())
}

fn worker_json(w: &WorkerInfo) -> Value {
    json!({
        "id": w.id, "name": w.name, "hostname": w.hostname, "pid": w.pid, "concurrency": w.concurrency, "queues": w.queues,
        "tasks": w.tasks, "started": time(w.started_ms), "heartbeat": time(w.heartbeat_ms),
        "succeeded": w.succeeded, "failed": w.failed, "active": w.active, "saturated": w.saturated,
        "last_fetch": time(w.last_fetch_ms),
    })
}

async fn status(app: &App, json: bool) -> Outcome {
    let workers = directory(app)?.workers().await?;
    if json {
        crate::output::json(&Value::Array(workers.iter().map(worker_json).collect()));
    } else if workers.is_empty() {
        println!("no live workers");
    } else {
        let rows: Vec<Vec<String>> = workers
            .iter()
            .map(|w| {
                vec![
                    w.id.clone(),
                    w.name.clone(),
                    w.hostname.clone(),
                    w.pid.to_string(),
                    w.concurrency.to_string(),
                    w.queues.join(","),
                    age(w.heartbeat_ms),
                    w.active.to_string(),
                    w.succeeded.to_string(),
                    w.failed.to_string(),
                ]
            })
            .collect();
        table(
            &["WORKER", "NAME", "HOST", "PID", "CONC", "QUEUES", "HEARTBEAT", "ACTIVE", "SUCCEEDED", "FAILED"],
            &rows,
        );
    }
    Ok(0)
}

/// What a payload says: (task, id, retries), or None when it does not decode.
fn describe(payload: &[u8]) -> Option<(String, String, u32)> {
    Envelope::decode(payload).ok().map(|e| (e.task, e.id.to_string(), e.retries))
}

/// Sends `command` to the live workers and prints their answers, one per worker; exit 1
/// when a live worker did not answer in time.
async fn remote(app: &App, command: &str, timeout: f64, json: bool) -> Outcome {
    let control = app
        .backend()
        .remote_control()
        .ok_or_else(|| format!("the result backend {} takes no remote commands", app.backend_url()))?;
    let expected = directory(app)?.workers().await?.len();
    let wait = Duration::try_from_secs_f64(timeout).map_err(|e| format!("--timeout: {e}"))?;
    let answers: Vec<Value> = control
        .ask(command, expected, wait)
        .await?
        .iter()
        .filter_map(|bytes| task_core::codec::decode::<Value>(bytes, "a worker's answer").ok())
        .collect();
    if json {
        crate::output::json(&Value::Array(answers.clone()));
    } else if answers.is_empty() {
        println!("no answer ({expected} live workers)");
    } else {
        for a in &answers {
            let what = match (a["ok"].as_str().or(a["error"].as_str()), a["reserved"].as_array()) {
                (Some(said), _) => said.to_owned(),
                (None, Some(held)) => {
                    let ids: Vec<&str> = held.iter().map(|r| r["id"].as_str().unwrap_or("(undecodable)")).collect();
                    format!("{} reserved {}", held.len(), ids.join(" "))
                }
                (None, None) => String::new(),
            };
            println!("{} ({}): {what}", a["name"].as_str().unwrap_or(""), a["worker"].as_str().unwrap_or(""));
        }
    }
    if answers.len() < expected {
        eprintln!("{} of {expected} live workers answered within {timeout} s", answers.len());
        return Ok(1);
    }
    let refused = answers.iter().filter(|a| a["error"].is_string()).count();
    if refused > 0 {
        eprintln!("{refused} of {} workers refused `{command}`", answers.len());
        return Ok(1);
    }
    Ok(0)
}

async fn inspect(app: &App, what: InspectCmd, json: bool) -> Outcome {
    match what {
        InspectCmd::Active | InspectCmd::Scheduled => {
            let at = if matches!(what, InspectCmd::Active) { PeekAt::InFlight } else { PeekAt::Scheduled };
            let inspect = inspector(app)?;
            let mut found = Vec::new();
            for queue in inspect.queues().await? {
                for seen in inspect.peek(&queue, at, 1000).await? {
                    let (task, id, retries) =
                        describe(&seen.payload).unwrap_or(("(undecodable)".into(), String::new(), 0));
                    found.push(json!({
                        "queue": queue, "task": task, "id": id, "retries": retries,
                        "worker": seen.worker, "due": seen.due_ms.map(time),
                    }));
                }
            }
            if json {
                crate::output::json(&Value::Array(found));
            } else if found.is_empty() {
                println!("{}", if at == PeekAt::InFlight { "no task held by a worker" } else { "no scheduled task" });
            } else {
                let last = if at == PeekAt::InFlight { "WORKER" } else { "DUE" };
                let key = if at == PeekAt::InFlight { "worker" } else { "due" };
                let rows: Vec<Vec<String>> = found
                    .iter()
                    .map(|f| {
                        ["queue", "task", "id", key].iter().map(|k| f[*k].as_str().unwrap_or("").to_owned()).collect()
                    })
                    .collect();
                table(&["QUEUE", "TASK", "ID", last], &rows);
            }
        }
        InspectCmd::Registered => {
            let workers = directory(app)?.workers().await?;
            let mut tasks: std::collections::BTreeMap<String, Vec<String>> = Default::default();
            for w in &workers {
                for t in &w.tasks {
                    tasks.entry(t.clone()).or_default().push(w.id.clone());
                }
            }
            if json {
                crate::output::json(&json!(tasks));
            } else {
                let rows: Vec<Vec<String>> =
                    tasks.iter().map(|(t, ws)| vec![t.clone(), ws.len().to_string()]).collect();
                table(&["TASK", "WORKERS"], &rows);
            }
        }
        InspectCmd::Revoked { limit } => {
            let history = app.backend().history().ok_or_else(|| {
                format!("the result backend {} keeps no task history to list revokes from", app.backend_url())
            })?;
            let filter = task_core::capability::TaskFilter::new().state(TaskState::Revoked);
            let found: Vec<Value> = history
                .recent(&filter, limit)
                .await?
                .into_iter()
                .map(|(id, at_ms, meta)| {
                    json!({"id": id.as_str(), "task": meta.task, "reason": meta.error, "at": time(at_ms)})
                })
                .collect();
            if json {
                crate::output::json(&Value::Array(found));
            } else if found.is_empty() {
                println!("no task revoked lately");
            } else {
                let cell = |v: &Value| v.as_str().unwrap_or("").to_owned();
                let rows: Vec<Vec<String>> =
                    found.iter().map(|f| vec![cell(&f["task"]), cell(&f["id"]), cell(&f["reason"])]).collect();
                table(&["TASK", "ID", "REASON"], &rows);
            }
        }
        InspectCmd::Ping { timeout } => return remote(app, "ping", timeout, json).await,
        InspectCmd::Reserved { timeout } => return remote(app, "reserved", timeout, json).await,
        InspectCmd::Stats => {
            let workers = directory(app)?.workers().await?;
            let (succeeded, failed): (u64, u64) =
                workers.iter().fold((0, 0), |(s, f), w| (s + w.succeeded, f + w.failed));
            let value = json!({
                "workers": workers.len(),
                "concurrency": workers.iter().map(|w| w.concurrency).sum::<usize>(),
                "succeeded": succeeded,
                "failed": failed,
                "per_worker": workers.iter().map(worker_json).collect::<Vec<_>>(),
            });
            if json {
                crate::output::json(&value);
            } else {
                println!(
                    "workers: {}  concurrency: {}  succeeded: {succeeded}  failed: {failed}",
                    workers.len(),
                    value["concurrency"]
                );
            }
        }
    }
    Ok(0)
}

async fn queues(app: &App, json: bool) -> Outcome {
    let inspect = inspector(app)?;
    let mut rows = Vec::new();
    let mut values = Vec::new();
    for queue in inspect.queues().await? {
        let s = inspect.queue_stats(&queue).await?;
        values.push(json!({
            "queue": queue, "ready": s.ready, "scheduled": s.scheduled, "in_flight": s.in_flight, "dead": s.dead,
            "paused": s.paused,
        }));
        rows.push(vec![
            queue,
            s.ready.to_string(),
            s.scheduled.to_string(),
            s.in_flight.to_string(),
            s.dead.to_string(),
            if s.paused { "paused" } else { "" }.to_owned(),
        ]);
    }
    if json {
        crate::output::json(&Value::Array(values));
    } else {
        table(&["QUEUE", "READY", "SCHEDULED", "IN FLIGHT", "DEAD", "PAUSED"], &rows);
    }
    Ok(0)
}

async fn pause(app: &App, queue: &str, paused: bool, json: bool) -> Outcome {
    let pausing =
        app.broker().pausing().ok_or_else(|| format!("the broker {} cannot pause queues", app.broker_url()))?;
    if paused {
        pausing.pause(queue).await?;
    } else {
        pausing.resume(queue).await?;
    }
    if json {
        crate::output::json(&json!({"queue": queue, "paused": paused}));
    } else if paused {
        println!("paused `{queue}`: producers may still send, no worker takes from it until `celerity resume {queue}`");
    } else {
        println!("resumed `{queue}`");
    }
    Ok(0)
}

async fn schedule(app: &App, json: bool) -> Outcome {
    let ticks =
        app.broker().tick_store().ok_or_else(|| format!("the broker {} keeps no schedules", app.broker_url()))?;
    let entries = ticks.schedules().await?;
    let when = |ms: Option<i64>| ms.map_or_else(|| "-".to_owned(), time);
    if json {
        let values = entries
            .iter()
            .map(|e| {
                json!({"name": e.name, "task": e.task, "schedule": e.schedule, "next": e.next_ms.map(time),
                       "last": e.last_ms.map(time), "scheduler": e.scheduler})
            })
            .collect();
        crate::output::json(&Value::Array(values));
    } else if entries.is_empty() {
        println!("no periodic entries: no scheduler is running (`worker --beat` or `beat`)");
    } else {
        let rows: Vec<Vec<String>> = entries
            .iter()
            .map(|e| {
                vec![
                    e.name.clone(),
                    e.task.clone(),
                    e.schedule.clone(),
                    when(e.next_ms),
                    when(e.last_ms),
                    e.scheduler.clone(),
                ]
            })
            .collect();
        table(&["ENTRY", "TASK", "SCHEDULE", "NEXT", "LAST", "SCHEDULER"], &rows);
    }
    Ok(0)
}

async fn purge(app: &App, queue: &str, yes: bool, json: bool) -> Outcome {
    let inspect = inspector(app)?;
    if !yes {
        let s = inspect.queue_stats(queue).await?;
        eprintln!(
            "this would delete {} ready and {} scheduled messages of `{queue}`: add --yes to do it",
            s.ready, s.scheduled
        );
        return Ok(2);
    }
    let purged = inspect.purge(queue).await?;
    if json {
        crate::output::json(&json!({"queue": queue, "purged": purged}));
    } else {
        println!("purged {purged} messages of `{queue}`");
    }
    Ok(0)
}

/// Where `call` sends `task` when `--queue` names none: the queue the live workers
/// that run it send it to (the task's own, else their routes), else this app's route,
/// else the default queue, as a program that links the task would.
async fn queue_of(app: &App, task: &str) -> String {
    let advertised = match app.broker().directory() {
        Some(directory) => directory.workers().await.unwrap_or_default(),
        None => Vec::new(),
    };
    let mut queues: Vec<String> = advertised.into_iter().filter_map(|w| w.task_queues.get(task).cloned()).collect();
    queues.sort();
    queues.dedup();
    if queues.len() > 1 {
        eprintln!(
            "warning: the live workers send `{task}` to different queues ({}); using `{}`",
            queues.join(", "),
            queues[0]
        );
    }
    queues.into_iter().next().unwrap_or_else(|| app.queue_of(task, None).to_owned())
}

async fn call(
    app: &App,
    task: &str,
    args: &str,
    countdown: Option<f64>,
    queue: Option<String>,
    priority: u8,
    json: bool,
) -> Outcome {
    let value: Value = serde_json::from_str(args).map_err(|e| format!("--args is not JSON: {e}"))?;
    if !value.is_object() {
        return Err("--args must be a JSON object keyed by parameter name, like '{\"x\": 1}'".into());
    }
    if priority > 9 {
        return Err(format!("--priority must be 0 to 9, not {priority}").into());
    }
    let queue = match queue {
        Some(queue) => queue,
        None => queue_of(app, task).await,
    };
    let mut envelope = Envelope::new(task, task_core::codec::encode(&value, "the arguments")?, queue.clone());
    envelope.priority = priority;
    let eta = match countdown {
        Some(secs) => {
            Some(task_core::time::after(Duration::try_from_secs_f64(secs).map_err(|e| format!("--countdown: {e}"))?))
        }
        None => None,
    };
    envelope.eta_ms = eta.map(task_core::time::to_ms);
    let id = envelope.id.clone();
    let message = Message::new(id.clone(), queue.clone(), envelope.encode()?).with_priority(priority).with_eta(eta);
    app.broker().enqueue(message).await?;
    if let Some(directory) = app.broker().directory() {
        let workers = directory.workers().await.unwrap_or_default();
        if !workers.is_empty()
            && !workers.iter().any(|w| w.tasks.iter().any(|t| t == task) && w.queues.contains(&queue))
        {
            eprintln!(
                "warning: no live worker runs `{task}` from queue `{queue}`: it waits (or goes to the dead letters if unknown)"
            );
        }
    }
    if json {
        crate::output::json(&json!({"id": id, "task": task, "queue": queue}));
    } else {
        println!("{id}");
    }
    Ok(0)
}

fn meta_json(id: &TaskId, meta: &TaskMeta) -> Value {
    let decode = |bytes: &Option<Vec<u8>>| {
        bytes.as_deref().and_then(|b| task_core::codec::decode::<Value>(b, "a stored value").ok())
    };
    json!({
        "id": id, "state": meta.state, "task": meta.task, "worker": meta.worker, "retries": meta.retries,
        "result": decode(&meta.result), "progress": decode(&meta.progress), "error": meta.error,
        "started": meta.started_ms.map(time), "finished": meta.finished_ms.map(time),
    })
}

async fn result(app: &App, id: &str, wait: Option<f64>, json: bool) -> Outcome {
    let id: TaskId = id.parse()?;
    let meta = match wait {
        Some(secs) => {
            app.backend().wait(&id, Duration::try_from_secs_f64(secs).map_err(|e| format!("--wait: {e}"))?).await?
        }
        None => app.backend().get(&id).await?,
    };
    let Some(meta) = meta else {
        eprintln!("no task with id {id} (unknown, expired, or queued without a record)");
        return Ok(4);
    };
    let value = meta_json(&id, &meta);
    if json {
        crate::output::json(&value);
    } else {
        println!("state:  {}", meta.state);
        for key in ["task", "worker", "retries", "started", "finished", "progress", "result", "error"] {
            if !value[key].is_null() {
                println!("{key}:{}{}", " ".repeat(7 - key.len().min(7)), value[key]);
            }
        }
    }
    Ok(match meta.state {
        TaskState::Success => 0,
        TaskState::Failure | TaskState::Revoked => 1,
        _ => 3,
    })
}

async fn revoke(app: &App, id: &str, terminate: bool, json: bool) -> Outcome {
    let id: TaskId = id.parse()?;
    app.revoke(&id, terminate).await?;
    if json {
        crate::output::json(&json!({"id": id, "revoked": true, "terminate": terminate}));
    } else {
        println!("revoked {id}{}", if terminate { " (terminate)" } else { "" });
    }
    Ok(0)
}

async fn dead(app: &App, action: Dead, json: bool) -> Outcome {
    let inspect = inspector(app)?;
    let queues = |only: Option<String>| async move {
        match only {
            Some(q) => Ok::<_, Box<dyn Error>>(vec![q]),
            None => Ok(inspect.queues().await?),
        }
    };
    match action {
        Dead::List { limit } => {
            let dead = inspect.dead_letters(limit).await?;
            let values: Vec<Value> = dead
                .iter()
                .map(|d| {
                    let (task, id, _) = describe(&d.payload).unwrap_or(("(undecodable)".into(), String::new(), 0));
                    json!({"at": time(d.at_ms), "queue": d.queue, "task": task, "id": id, "reason": d.reason})
                })
                .collect();
            if json {
                crate::output::json(&Value::Array(values));
            } else if values.is_empty() {
                println!("no dead letters");
            } else {
                let rows: Vec<Vec<String>> = values
                    .iter()
                    .map(|v| {
                        ["at", "queue", "task", "id", "reason"]
                            .iter()
                            .map(|k| v[*k].as_str().unwrap_or("").to_owned())
                            .collect()
                    })
                    .collect();
                table(&["AT", "QUEUE", "TASK", "ID", "REASON"], &rows);
            }
        }
        Dead::Retry { id: Some(id), .. } => {
            let id: task_core::TaskId = id.parse().map_err(|e| format!("`{id}` is not a task id: {e}"))?;
            if !inspect.retry_dead_task(&id).await? {
                eprintln!("no dead letter of task {id}");
                return Ok(4);
            }
            if json {
                crate::output::json(&json!({"retried": 1, "id": id.as_str()}));
            } else {
                println!("put the dead letter of task {id} back in its queue");
            }
        }
        Dead::Retry { queue, limit, id: None } => {
            let mut moved = 0;
            for q in queues(queue).await? {
                moved += inspect.retry_dead(&q, limit).await?;
            }
            if json {
                crate::output::json(&json!({"retried": moved}));
            } else {
                println!("put {moved} dead letters back in their queues");
            }
        }
        Dead::Purge { queue, yes } => {
            let targets = queues(queue).await?;
            if !yes {
                let mut count = 0;
                for q in &targets {
                    count += inspect.queue_stats(q).await?.dead;
                }
                eprintln!("this would delete {count} dead letters: add --yes to do it");
                return Ok(2);
            }
            let mut removed = 0;
            for q in &targets {
                removed += inspect.purge_dead(q).await?;
            }
            if json {
                crate::output::json(&json!({"purged": removed}));
            } else {
                println!("deleted {removed} dead letters");
            }
        }
    }
    Ok(0)
}
