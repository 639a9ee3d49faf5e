//! The worker's side of remote control: what it answers to `celerity inspect` and does
//! for `celerity control`, asked over the backend's control channel.

use std::sync::{Arc, Weak};

use serde::Serialize;
use tokio::sync::Notify;
use tracing::{info, warn};

use crate::capability::{OnRequest, Request};

use super::execute::Runner;
use super::inbox::Inbox;

/// What a worker says about itself, to any command.
#[derive(Debug, Clone)]
pub(super) struct Me {
    pub(super) id: String,
    pub(super) name: String,
}

/// An answer: who answers, and what was asked.
#[derive(Debug, Default, Serialize)]
struct Answer {
    worker: String,
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    ok: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    active: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reserved: Option<Vec<Reserved>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tasks: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    concurrency: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    succeeded: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    failed: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    retried: Option<u64>,
}

/// A message the worker fetched and has not started (`reserved`, Celery's
/// `inspect reserved`).
#[derive(Debug, Serialize)]
struct Reserved {
    queue: String,
    /// `None` when the payload does not decode (the slot that takes it buries it).
    id: Option<String>,
    task: Option<String>,
}

/// The listener a worker registers: each request is answered on a task of its own.
pub(super) fn on_request(runner: Weak<Runner>, inbox: Weak<Inbox>, me: Me, stop: Arc<Notify>) -> OnRequest {
    Box::new(move |request| {
        let (Some(runner), Some(inbox)) = (runner.upgrade(), inbox.upgrade()) else { return };
        let (me, stop, request) = (me.clone(), stop.clone(), request.clone());
        tokio::spawn(async move { answer(&runner, &inbox, &me, &stop, &request).await });
    })
}

async fn answer(runner: &Runner, inbox: &Inbox, me: &Me, stop: &Notify, request: &Request) {
    let mut answer = Answer { worker: me.id.clone(), name: me.name.clone(), ..Answer::default() };
    let mut words = request.command.split_whitespace();
    match words.next().unwrap_or("") {
        "ping" => answer.ok = Some("pong".into()),
        "active" => answer.active = Some(runner.running_ids()),
        "reserved" => {
            let reserved = inbox.waiting().into_iter().map(|(queue, payload)| {
                let envelope = crate::envelope::Envelope::decode(&payload).ok();
                let (id, task) = envelope.map(|e| (e.id.to_string(), e.task)).unzip();
                Reserved { queue, id, task }
            });
            answer.reserved = Some(reserved.collect());
        }
        "registered" => answer.tasks = Some(runner.app.registry().names().map(str::to_owned).collect()),
        "stats" => {
            let report = runner.counters.report();
            answer.concurrency = Some(runner.counters.concurrency.load(std::sync::atomic::Ordering::Relaxed));
            (answer.succeeded, answer.failed, answer.retried) =
                (Some(report.succeeded), Some(report.failed), Some(report.retried));
        }
        "pool-grow" | "pool-shrink" if runner.link.is_some() => {
            answer.error =
                Some("this worker is a child of a process pool (one task at a time); its size is the pool's -c".into());
        }
        "pool-grow" | "pool-shrink" => match words.next().and_then(|n| n.parse::<isize>().ok()).filter(|n| *n > 0) {
            Some(n) => {
                let delta = if request.command.starts_with("pool-grow") { n } else { -n };
                runner.counters.resize.fetch_add(delta, std::sync::atomic::Ordering::AcqRel);
                runner.reconfigured.notify_one();
                answer.ok = Some(format!("pool resized by {delta}"));
            }
            None => answer.error = Some("pool-grow and pool-shrink take a positive number".into()),
        },
        "add-consumer" | "cancel-consumer" => match words.next().filter(|q| !q.is_empty()) {
            Some(queue) => {
                let mut queues = runner.queues.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                let adding = request.command.starts_with("add-consumer");
                if adding && !queues.iter().any(|q| q == queue) {
                    queues.push(queue.to_owned());
                } else if !adding {
                    queues.retain(|q| q != queue);
                }
                drop(queues);
                runner.reconfigured.notify_one();
                answer.ok = Some(format!("{} `{queue}`", if adding { "consuming" } else { "no longer consuming" }));
            }
            None => answer.error = Some("add-consumer and cancel-consumer take a queue".into()),
        },
        command @ ("rate-limit" | "time-limit") => {
            let parsed = if command == "rate-limit" {
                super::tuning::parse_rate_limit(words)
            } else {
                super::tuning::parse_time_limit(words)
            };
            match parsed {
                Ok((task, change)) => match runner.app.registry().get(task) {
                    Some(entry) => {
                        runner.tunings.change(entry.name(), entry.options(), change);
                        info!(task, ?change, "task options changed by remote control");
                        answer.ok = Some(format!("{command} of `{task}` changed"));
                    }
                    None => answer.error = Some(format!("unknown task `{task}`: it is not registered here")),
                },
                Err(e) => answer.error = Some(e),
            }
        }
        "shutdown" => {
            info!(request = %request.id, "shutting down: asked by remote control");
            answer.ok = Some("shutting down".into());
            stop.notify_one();
        }
        other => answer.error = Some(format!("unknown command `{other}`")),
    }
    let Some(control) = runner.app.backend().remote_control() else { return };
    match crate::codec::encode(&answer, "a remote-control answer") {
        Ok(bytes) => {
            if let Err(e) = control.reply(request, bytes).await {
                warn!(error = %e, "cannot answer a remote-control request");
            }
        }
        Err(e) => warn!(error = %e, "cannot encode a remote-control answer"),
    }
}
