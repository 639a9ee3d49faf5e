//! The web service of the seed's story.
//!
//! All in one process, nothing to install (memory:// and an embedded worker pool):
//!   cargo run -p celerity-web-example --bin web -- serve
//!   open http://127.0.0.1:8000
//!
//! Web process + separate worker processes on Redis (as on several machines):
//!   export CELERITY_BROKER_URL=redis://127.0.0.1:6379/0
//!   cargo run -p celerity-web-example --bin web -- worker -c 8      # one or more
//!   cargo run -p celerity-web-example --bin web -- serve             # no embedded worker

use std::net::SocketAddr;

use clap::Parser;
// The redis:// driver registers itself when linked.
use task_redis as _;

#[derive(Debug, Parser)]
#[command(about = "Celerity web example: `serve` the site, or run a `worker` (see `worker --help`)")]
struct Serve {
    /// Must be `serve`.
    #[arg(value_parser = ["serve"])]
    command: String,
    /// Where to listen.
    #[arg(long, default_value = "127.0.0.1:8000")]
    addr: SocketAddr,
    /// Run a worker pool in this process (always on for memory://, which is per process).
    #[arg(long)]
    embedded_worker: bool,
    /// Concurrency of the embedded worker pool.
    #[arg(short = 'c', long, default_value_t = 4)]
    concurrency: usize,
}

#[tokio::main]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let app = task_core::App::from_env().await?;
    // `worker …` and `tasks` are task_core's command line; the rest is ours.
    if matches!(std::env::args().nth(1).as_deref(), Some("worker" | "tasks")) {
        return Ok(task_core::cli::run(app).await?);
    }
    let args = Serve::parse();
    let _ = tracing_subscriber::fmt().with_env_filter("info").with_target(false).try_init();
    let embedded = args.embedded_worker || app.broker_url().starts_with("memory://");
    let worker = embedded.then(|| app.worker().concurrency(args.concurrency).spawn());

    let listener = tokio::net::TcpListener::bind(args.addr).await?;
    println!(
        "listening on http://{} (broker {}, {})",
        listener.local_addr()?,
        task_core::redact_url(app.broker_url()),
        if embedded { "embedded worker" } else { "workers run elsewhere" }
    );
    axum::serve(listener, celerity_web_example::router(app))
        .with_graceful_shutdown(task_core::cli::shutdown_signal())
        .await?;
    if let Some(worker) = worker {
        worker.shutdown().await?;
    }
    Ok(())
}
