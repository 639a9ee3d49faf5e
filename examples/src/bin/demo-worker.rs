//! A worker binary for the tasks of `celerity-example-tasks`, with Celery's command line.
//!
//! Run with:
//!   cargo run -p celerity-examples --bin demo-worker -- worker -c 4 -Q default,emails --loglevel info
//!   cargo run -p celerity-examples --bin demo-worker -- tasks
//!   cargo run -p celerity-examples --bin demo-worker -- worker --beat   # plus the periodic entries
//!   cargo run -p celerity-examples --bin demo-worker -- schedule
//!
//! Set `CELERITY_BROKER_URL` to point it at a broker (unset: `memory://`), for example
//! `CELERITY_BROKER_URL=redis://127.0.0.1:6379/0`; start as many as you like, on as many
//! machines as you like.

// Linked for its #[task]s: they register themselves, no list needed.
use celerity_example_tasks::demo_beat;
// Linked for the redis:// driver.
use task_redis as _;

#[tokio::main]
async fn main() {
    let app = match task_core::App::from_env().await {
        Ok(app) => app,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    if let Err(e) = task_core::cli::run_with_beat(app, demo_beat()).await {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
