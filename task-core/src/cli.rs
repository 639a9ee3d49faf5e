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
//!
//! With periodic tasks, give the program's [`Beat`] to [`run_with_beat`]: then
//! `my-bin worker --beat` runs a scheduler beside the worker (in every worker process if
//! you like: each tick is sent once), `my-bin beat` runs the scheduler alone, and
//! `my-bin schedule` lists the entries.

use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::app::App;
use crate::beat::Beat;
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
    /// Run only the periodic scheduler until Ctrl-C or SIGTERM.
    Beat {
        /// Log level or filter.
        #[arg(short = 'l', long, default_value = "info")]
        loglevel: String,
    },
    /// List the periodic entries of this program and exit.
    Schedule,
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
    /// Grow the pool with the backlog up to MAX, shrink it when idle down to MIN
    /// (`--autoscale 10,3`); the default is a fixed `-c`.
    #[arg(long, value_name = "MAX,MIN", value_delimiter = ',', num_args = 1..=2)]
    pub autoscale: Vec<usize>,
    /// With `--autoscale`: seconds the pool stays idle before it gives a slot (or a
    /// child) back (default 30).
    #[arg(long, value_name = "SECS")]
    pub autoscale_keepalive: Option<f64>,
    /// This worker's name for people (`%h` host, `%n` its first label, `%d` the domain).
    #[arg(short = 'n', long, default_value = crate::worker::DEFAULT_NODE_NAME)]
    pub name: String,
    /// Do not print the start-up banner.
    #[arg(long)]
    pub no_banner: bool,
    /// Also run the periodic scheduler in this process (any number of processes may).
    #[arg(long)]
    pub beat: bool,
    /// How tasks run: `threads` (the default) or `process` (alias `prefork`): `-c`
    /// child processes of this program, so that a hard time limit stops any task.
    #[arg(short = 'P', long, default_value = "threads")]
    pub pool: crate::worker::Pool,
    /// With `--pool process`: a child is replaced by a fresh one after this many tasks.
    #[arg(long, value_name = "N")]
    pub max_tasks_per_child: Option<u64>,
    /// With `--pool process`: a child whose resident memory is over this many KiB after
    /// a task is replaced by a fresh one.
    #[arg(long, value_name = "KIB")]
    pub max_memory_per_child: Option<u64>,
}

/// Parses the process arguments and runs the command on `app`.
pub async fn run(app: App) -> Result<(), Error> {
    run_with(app, Cli::parse()).await
}

/// Parses the process arguments and runs the command on `app`, with the program's
/// periodic entries for `worker --beat`, `beat` and `schedule`.
pub async fn run_with_beat(app: App, beat: Beat) -> Result<(), Error> {
    dispatch(app, Cli::parse(), Some(beat)).await
}

/// Runs an already parsed command line (for tests, or your own `clap` tree).
pub async fn run_with(app: App, cli: Cli) -> Result<(), Error> {
    dispatch(app, cli, None).await
}

async fn dispatch(app: App, cli: Cli, beat: Option<Beat>) -> Result<(), Error> {
    let no_beat =
        || Error::Config("this program has no periodic entries: pass its Beat to task_core::cli::run_with_beat".into());
    match cli.command {
        Command::Tasks => {
            for entry in app.registry().entries() {
                println!("{}\t{}", entry.name(), entry.location());
            }
            Ok(())
        }
        Command::Schedule => {
            for (name, task, schedule) in beat.ok_or_else(no_beat)?.entries() {
                println!("{name}\t{task}\t{schedule}");
            }
            Ok(())
        }
        Command::Beat { loglevel } => {
            init_logs(&loglevel)?;
            beat.ok_or_else(no_beat)?.run_until(&app, shutdown_signal()).await
        }
        Command::Worker(args) => {
            let beat = if args.beat { Some(beat.ok_or_else(no_beat)?) } else { None };
            run_worker(app, args, beat).await
        }
    }
}

fn init_logs(loglevel: &str) -> Result<(), Error> {
    let filter = tracing_subscriber::EnvFilter::try_new(loglevel)
        .map_err(|e| Error::Config(format!("--loglevel `{loglevel}`: {e}")))?;
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_target(false).try_init();
    Ok(())
}

async fn run_worker(app: App, args: WorkerArgs, beat: Option<Beat>) -> Result<(), Error> {
    init_logs(&args.loglevel)?;

    let mut worker = app.worker().grace_period(Duration::from_secs(args.grace_period));
    if let Some(n) = args.concurrency {
        worker = worker.concurrency(n);
    }
    if let Some(n) = args.prefetch {
        worker = worker.prefetch(n);
    }
    worker = worker.name(&args.name);
    match args.autoscale.as_slice() {
        [] => {}
        [max] => worker = worker.autoscale(*max, 1),
        [max, min, ..] => worker = worker.autoscale(*max, *min),
    }
    if let Some(secs) = args.autoscale_keepalive {
        let keepalive = Duration::try_from_secs_f64(secs)
            .map_err(|e| Error::Config(format!("--autoscale-keepalive `{secs}`: {e}")))?;
        worker = worker.autoscale_keepalive(keepalive);
    }
    if let Some(secs) = args.heartbeat_ttl {
        let ttl =
            Duration::try_from_secs_f64(secs).map_err(|e| Error::Config(format!("--heartbeat-ttl `{secs}`: {e}")))?;
        worker = worker.heartbeat_ttl(ttl);
    }
    if !args.queues.is_empty() {
        worker = worker.queues(args.queues);
    }
    worker = worker.pool(args.pool);
    if let Some(n) = args.max_tasks_per_child {
        worker = worker.max_tasks_per_child(n);
    }
    if let Some(kib) = args.max_memory_per_child {
        worker = worker.max_memory_per_child(kib);
    }
    app.registry().check()?;
    // A pool's children are this program again: the banner and the scheduler are the
    // supervisor's alone.
    let child = crate::worker::is_pool_child();
    if !args.no_banner && !child {
        println!("{}", banner(&app, worker.id().as_str(), worker.concurrency_limit(), worker.queue_names()));
    }
    let scheduler = beat.filter(|_| !child).map(|beat| beat.spawn(&app));
    worker.run_until(shutdown_signal()).await?;
    if let Some(scheduler) = scheduler {
        scheduler.shutdown().await?;
    }
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
