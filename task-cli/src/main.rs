//! `celerity`: look at and drive a Celerity deployment from a shell, like
//! `celery inspect/purge/status`.
//!
//! ```text
//! celerity --broker redis://127.0.0.1:6379/0 status
//! celerity queues --json
//! celerity call emails.send --args '{"to": "a@b.c", "subject": "hi"}' --queue emails
//! celerity result 6f1e… --wait 10
//! ```
//!
//! Exit codes: 0 done; 1 the task failed or was revoked (`result`); 2 bad usage or the
//! broker cannot be reached; 3 still pending after `--wait`; 4 no such task.

mod commands;
mod output;

use clap::{Parser, Subcommand};
// The redis:// and rediss:// drivers register themselves when linked.
use task_redis as _;

/// The admin command line of Celerity.
#[derive(Debug, Parser)]
#[command(name = "celerity", version, about)]
pub(crate) struct Cli {
    /// Broker URL (the result backend is the same unless CELERITY_RESULT_BACKEND says).
    #[arg(long, global = true, env = "CELERITY_BROKER_URL")]
    pub(crate) broker: Option<String>,
    /// Print JSON instead of tables, for scripts.
    #[arg(long, global = true)]
    pub(crate) json: bool,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// The live workers: host, pid, concurrency, queues, heartbeat age, counts.
    Status,
    /// What the workers are doing.
    Inspect {
        #[command(subcommand)]
        what: Inspect,
    },
    /// Every queue with its ready, scheduled, in-flight and dead messages.
    Queues,
    /// The periodic entries the running schedulers (`worker --beat`, `beat`) announced.
    Schedule,
    /// Commands carried out by the live workers (remote control).
    Control {
        #[command(subcommand)]
        what: Control,
    },
    /// Pause a queue: producers may still send, no worker takes from it until `resume`.
    Pause {
        /// The queue.
        queue: String,
    },
    /// Resume a paused queue.
    Resume {
        /// The queue.
        queue: String,
    },
    /// Delete every ready and scheduled message of a queue.
    Purge {
        /// The queue.
        queue: String,
        /// Do it: without this flag nothing is deleted.
        #[arg(long)]
        yes: bool,
    },
    /// Send a task by name, with JSON arguments (an object keyed by parameter name).
    Call {
        /// The registered task name.
        task: String,
        /// The arguments, as a JSON object.
        #[arg(long, default_value = "{}")]
        args: String,
        /// Run no sooner than this many seconds from now.
        #[arg(long)]
        countdown: Option<f64>,
        /// The queue (default: the default queue; the task's own default is not known here).
        #[arg(long)]
        queue: Option<String>,
        /// Priority 0-9.
        #[arg(long, default_value_t = 0)]
        priority: u8,
    },
    /// The state and result (or error) of a task.
    Result {
        /// The task id.
        id: String,
        /// Wait up to this many seconds for it to finish.
        #[arg(long)]
        wait: Option<f64>,
    },
    /// Revoke a task: it will not run; with --terminate, a running one is aborted.
    Revoke {
        /// The task id.
        id: String,
        /// Abort it if it is running.
        #[arg(long)]
        terminate: bool,
    },
    /// The dead letters: messages that could not run, with the reason.
    Dead {
        #[command(subcommand)]
        action: Dead,
    },
    /// Serve the web dashboard (do not expose it without --token or --basic).
    Dashboard {
        /// Where to listen.
        #[arg(long, default_value = "127.0.0.1:5555")]
        addr: std::net::SocketAddr,
        /// Require `Authorization: Bearer TOKEN`.
        #[arg(long, env = "CELERITY_DASHBOARD_TOKEN")]
        token: Option<String>,
        /// Require basic auth, given as USER:PASSWORD.
        #[arg(long, env = "CELERITY_DASHBOARD_BASIC")]
        basic: Option<String>,
        /// Forbid every action (purge, retry, revoke).
        #[arg(long)]
        read_only: bool,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum Inspect {
    /// Tasks held by workers right now.
    Active,
    /// Tasks waiting for their countdown, ETA or retry.
    Scheduled,
    /// The tasks each worker can run.
    Registered,
    /// Counts per worker and in all.
    Stats,
    /// What each live worker fetched and has not started yet (remote control).
    Reserved {
        /// Seconds to wait for the answers.
        #[arg(long, default_value_t = 1.0)]
        timeout: f64,
    },
    /// Tasks revoked lately (newest first), with the reason.
    Revoked {
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Ask every live worker to answer (remote control): one answer per worker.
    Ping {
        /// Seconds to wait for the answers.
        #[arg(long, default_value_t = 1.0)]
        timeout: f64,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum Control {
    /// Ask every live worker to stop, as its own shutdown signal would (graceful).
    Shutdown {
        /// Seconds to wait for the answers.
        #[arg(long, default_value_t = 1.0)]
        timeout: f64,
    },
    /// Run N more tasks at once on every live worker.
    PoolGrow {
        /// How many more.
        n: usize,
        /// Seconds to wait for the answers.
        #[arg(long, default_value_t = 1.0)]
        timeout: f64,
    },
    /// Run N fewer tasks at once on every live worker (never fewer than one).
    PoolShrink {
        /// How many fewer.
        n: usize,
        /// Seconds to wait for the answers.
        #[arg(long, default_value_t = 1.0)]
        timeout: f64,
    },
    /// Make every live worker take from QUEUE too.
    AddConsumer {
        /// The queue.
        queue: String,
        /// Seconds to wait for the answers.
        #[arg(long, default_value_t = 1.0)]
        timeout: f64,
    },
    /// Make every live worker stop taking from QUEUE.
    CancelConsumer {
        /// The queue.
        queue: String,
        /// Seconds to wait for the answers.
        #[arg(long, default_value_t = 1.0)]
        timeout: f64,
    },
    /// Change a task's rate limit on every live worker, until it stops.
    RateLimit {
        /// The registered task name.
        task: String,
        /// N/s, N/m or N/h; `none` lifts the limit.
        limit: String,
        /// Seconds to wait for the answers.
        #[arg(long, default_value_t = 1.0)]
        timeout: f64,
    },
    /// Change a task's soft and hard time limits on every live worker, until it stops.
    TimeLimit {
        /// The registered task name.
        task: String,
        /// The soft limit in seconds (`none`: no soft limit).
        soft: String,
        /// The hard limit in seconds (`none`, or left out: no hard limit).
        hard: Option<String>,
        /// Seconds to wait for the answers.
        #[arg(long, default_value_t = 1.0)]
        timeout: f64,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum Dead {
    /// List the newest dead letters.
    List {
        /// How many at most.
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Put dead letters back in their queue (oldest first), or only the one of --id.
    Retry {
        /// Only the dead letter of this task id.
        #[arg(long, conflicts_with_all = ["queue", "limit"])]
        id: Option<String>,
        /// Only this queue (default: every queue).
        #[arg(long)]
        queue: Option<String>,
        /// How many at most, per queue.
        #[arg(long, default_value_t = usize::MAX)]
        limit: usize,
    },
    /// Delete dead letters.
    Purge {
        /// Only this queue (default: every queue).
        #[arg(long)]
        queue: Option<String>,
        /// Do it: without this flag nothing is deleted.
        #[arg(long)]
        yes: bool,
    },
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    let code = match commands::run(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            2
        }
    };
    std::process::exit(code);
}
