//! Eager mode (Celery's `task_always_eager`), for a user's unit tests: a send runs the
//! task in place, through the real worker path (the same serialization round trip, the
//! same records, the workflow's links), and returns when everything it caused has run.
//! Countdowns and retry delays are not waited for; rate limits do not apply.

use std::sync::Arc;
use std::time::Duration;

use crate::app::{App, AppBuilder, RunInPlace};
use crate::future::BoxFuture;
use crate::id::ConsumerId;

use super::execute::Runner;

/// How many queued messages one round of the drain takes.
const BATCH: usize = 64;

impl AppBuilder {
    /// Eager mode: `delay` / `apply_async` run the task in place (with its chain, chord
    /// and callbacks) and return when it has ended, so that `get` answers at once, with
    /// no worker. Results go to the configured backend (the memory one by default); the
    /// broker is a private in-memory one. For tests: the work runs in the caller's task.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), task_core::Error> {
    /// let app = task_core::App::builder().eager(true).build().await?;
    /// assert!(app.is_eager());
    /// # Ok(()) }
    /// ```
    pub fn eager(mut self, yes: bool) -> Self {
        self.eager = yes.then(|| Arc::new(Drain) as Arc<dyn RunInPlace>);
        self
    }
}

/// Runs every queued message of the app's (private) broker until none is left.
struct Drain;

impl RunInPlace for Drain {
    fn run<'a>(&'a self, app: &'a App) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let runner = Runner::new(app.clone(), ConsumerId::new());
            let Some(inspect) = app.broker().inspect() else { return };
            loop {
                let queues = inspect.queues().await.unwrap_or_default();
                let batch =
                    app.broker().fetch(&runner.consumer, &queues, BATCH, Duration::ZERO).await.unwrap_or_default();
                if batch.is_empty() {
                    return;
                }
                for delivery in batch {
                    runner.handle(delivery).await;
                }
            }
        })
    }
}
