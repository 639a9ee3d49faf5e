//! `worker -c N -Q a,b --loglevel L` for your own binary: the equivalent of
//! `celery -A proj worker -c 4 --loglevel=info` (feature `cli`).
//!
//! Your tasks are linked into your binary, so the worker command lives there too:
//!
//! ```no_run
//! # #[cfg(feature = "cli")]
//! #[tokio::main]
//! async fn main() -> Result<(), task_core::Error> {
//!     let app = task_core::App::from_env().await?;
//!     task_core::cli::run(app).await // `my-bin worker -c 4 -Q default,media`
//! }
//! ```

use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::app::App;
use crate::error::Error;

/// The command line of a Celerity-enabled binary.
#[derive(Debug, Parser)]
#[command(about = "Celerity task queue: run a worker for the tasks linked into this program")]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a worker pool until Ctrl-C or SIGTERM (then drain gracefully).
    Worker(WorkerArgs),
    /// List the registered tasks and exit.
    Tasks,
}

/// Options of `worker`.
#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// How many tasks run at once (default: the number of CPUs).
    #[arg(short = 'c', long)]
    pub concurrency: Option<usize>,
    /// Queues to consume, comma separated, in order of preference.
    #[arg(short = 'Q', long, value_delimiter = ',')]
    pub queues: Vec<String>,
    /// Log level or filter (error, warn, info, debug, trace, or an EnvFilter directive).
    #[arg(short = 'l', long, default_value = "info")]
    pub loglevel: String,
    /// Messages held at once, running or waiting (default: the concurrency).
    #[arg(long)]
    pub prefetch: Option<usize>,
    /// Seconds running tasks may take to finish after a shutdown signal.
    #[arg(long, default_value_t = 30)]
    pub grace_period: u64,
    /// Seconds a heartbeat lives; a worker silent for longer is taken for dead and its
    /// messages are recovered by the others.
    #[arg(long)]
    pub heartbeat_ttl: Option<f64>,
    /// Do not print the start-up banner.
    #[arg(long)]
    pub no_banner: bool,
}

/// Parses the process arguments and runs the command on `app`.
pub async fn run(app: App) -> Result<(), Error> {
    run_with(app, Cli::parse()).await
}

/// Runs an already parsed command line (for tests, or your own `clap` tree).
pub async fn run_with(app: App, cli: Cli) -> Result<(), Error> {
    match cli.command {
        Command::Tasks => {
            for entry in app.registry().entries() {
                println!("{}\t{}", entry.name(), entry.location());
            }
            Ok(())
        }
        Command::Worker(args) => run_worker(app, args).await,
    }
}

async fn run_worker(app: App, args: WorkerArgs) -> Result<(), Error> {
    let filter = tracing_subscriber::EnvFilter::try_new(&args.loglevel)
        .map_err(|e| Error::Config(format!("--loglevel `{}`: {e}", args.loglevel)))?;
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_target(false).try_init();

    let mut worker = app.worker().grace_period(Duration::from_secs(args.grace_period));
    if let Some(n) = args.concurrency {
        worker = worker.concurrency(n);
    }
    if let Some(n) = args.prefetch {
        worker = worker.prefetch(n);
    }
    if let Some(secs) = args.heartbeat_ttl {
        let ttl =
            Duration::try_from_secs_f64(secs).map_err(|e| Error::Config(format!("--heartbeat-ttl `{secs}`: {e}")))?;
        worker = worker.heartbeat_ttl(ttl);
    }
    if !args.queues.is_empty() {
        worker = worker.queues(args.queues);
    }
    app.registry().check()?;
    if !args.no_banner {
        println!("{}", banner(&app, worker.id().as_str(), worker.concurrency_limit(), worker.queue_names()));
    }
    worker.run_until(shutdown_signal()).await?;
    Ok(())
}

/// The start-up banner, as Celery prints it.
pub fn banner(app: &App, worker_id: &str, concurrency: usize, queues: &[String]) -> String {
    let mut out = format!(
        " -------------- celerity@{worker_id} v{version}\n\
         --- ***** -----\n\
         -- ******* ---- [config]\n\
         - *** --- * --- .> broker:      {broker}\n\
         - ** ---------- .> results:     {backend}\n\
         - ** ---------- .> concurrency: {concurrency}\n\
         - ** ---------- .> queues:      {queues}\n\
         --- ***** -----\n\
         \x20-------------- [tasks]\n",
        version = env!("CARGO_PKG_VERSION"),
        broker = crate::redact_url(app.broker_url()),
        backend = crate::redact_url(app.backend_url()),
        queues = queues.join(", "),
    );
    for name in app.registry().names() {
        out.push_str(&format!("  . {name}\n"));
    }
    out
}

/// Completes on Ctrl-C, or SIGTERM on Unix.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut sig) => {
                sig.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
