//! The Rust worker of the Django example (`examples/django`): the Django project's
//! Celery tasks, implemented in Rust, served from Celery's own queue.
//!
//! The Django side is unchanged Celery code: `build_job.delay(job_id, pages)` puts a
//! Celery message on Redis; this worker runs it and stores the result where Celery's
//! `AsyncResult` reads it. Run with:
//!   CELERITY_BROKER_URL=redis://127.0.0.1:6379/0 \
//!     cargo run -p celerity-examples --bin django-worker -- worker -c 4 -n rusty@%h

use std::time::Duration;

use serde::{Deserialize, Serialize};
use task_core::{TaskContext, TaskResult, task};
use task_redis::RedisConfig;

/// What a built job reports back to the Django page.
#[derive(Debug, Serialize, Deserialize)]
struct Report {
    job_id: u64,
    pages: u32,
    words: u64,
    built_by: String,
}

/// How far a job is: Celery's PROGRESS state, which the page shows.
#[derive(Debug, Serialize)]
struct Progress {
    page: u32,
    pages: u32,
}

/// `proj.tasks.build_job(job_id, pages=1)` of the Django project: the slow work a view
/// must not wait for (here: 20 ms a page, with its progress stored as it goes).
#[task(name = "proj.tasks.build_job")]
async fn build_job(ctx: TaskContext, job_id: u64, pages: Option<u32>) -> TaskResult<Report> {
    let pages = pages.unwrap_or(1);
    if pages == 0 || pages > 500 {
        return Err(task_core::TaskError::fatal(format!("a job has 1 to 500 pages, not {pages}")));
    }
    let mut words = 0;
    for page in 1..=pages {
        tokio::time::sleep(Duration::from_millis(20)).await;
        words += 250 + u64::from(page % 7) * 10;
        ctx.set_progress(&Progress { page, pages }).await.ok();
    }
    Ok(Report { job_id, pages, words, built_by: "rust".into() })
}

#[tokio::main]
async fn main() {
    let url = std::env::var("CELERITY_BROKER_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into());
    // Celery's default queue, served in Celery's layout as well as Celerity's.
    let config = RedisConfig::from_url(url).celery_queues(["celery"]);
    let app = match task_redis::app_builder(config).await {
        Ok(builder) => builder.default_queue("celery").build().await,
        Err(e) => Err(e),
    };
    let app = match app {
        Ok(app) => app,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    if let Err(e) = task_core::cli::run(app).await {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
