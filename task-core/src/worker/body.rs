//! A task body in flight, as the runner awaits it.
//!
//! An `async fn` body is polled in place, inside its runner's own tokio task, with its
//! panics caught around each poll: a tokio task of its own (to catch a panic as a
//! `JoinError`) would cost a spawn, a join handle and one more wake-up of the runner per
//! run. A plain `fn` body runs on the blocking pool.
//!
//! Either way, dropping the body stops it where it can be stopped: an async body at its
//! current await (it is simply dropped), a blocking body only if it has not started
//! (a running thread cannot be stopped; its result is then dropped).

use std::any::Any;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::error::TaskResult;
use crate::future::BoxFuture;
use crate::registry::Invocation;

/// A started task body; resolves to its result, or to the text of its panic.
pub(super) enum Body {
    /// Polled in place.
    Async(BoxFuture<'static, TaskResult<Vec<u8>>>),
    /// On the blocking pool.
    Blocking(AbortOnDrop<TaskResult<Vec<u8>>>),
}

impl Body {
    /// Starts `invocation`: a blocking body is handed to the blocking pool now, an
    /// async one runs when the body is first polled.
    pub(super) fn start(invocation: Invocation) -> Self {
        match invocation {
            Invocation::Async(future) => Body::Async(future),
            Invocation::Blocking(body) => Body::Blocking(AbortOnDrop(tokio::task::spawn_blocking(body))),
        }
    }
}

impl Future for Body {
    type Output = Result<TaskResult<Vec<u8>>, String>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            // A panicked body is not polled again: the runner stops at the first Ready.
            Body::Async(future) => match catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(cx))) {
                Ok(polled) => polled.map(Ok),
                Err(payload) => Poll::Ready(Err(panic_text(payload))),
            },
            Body::Blocking(handle) => Pin::new(&mut handle.0).poll(cx).map(|joined| match joined {
                Ok(result) => Ok(result),
                Err(join) if join.is_panic() => Err(panic_text(join.into_panic())),
                Err(join) => Err(format!("task was cancelled: {join}")),
            }),
        }
    }
}

/// Aborts a blocking body that has not started yet when its runner goes away (time
/// limit, or the pool aborting runners at the end of the grace period).
pub(super) struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn panic_text(payload: Box<dyn Any + Send>) -> String {
    match payload.downcast::<String>() {
        Ok(text) => *text,
        Err(payload) => {
            payload.downcast_ref::<&str>().map_or_else(|| "(non-text panic payload)".into(), |s| (*s).to_owned())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panic_text_reads_str_and_string_payloads() {
        assert_eq!(panic_text(Box::new("static")), "static");
        assert_eq!(panic_text(Box::new(String::from("owned"))), "owned");
        assert_eq!(panic_text(Box::new(7u8)), "(non-text panic payload)");
    }

    #[tokio::test]
    async fn an_async_body_runs_in_place_and_its_panic_is_caught() {
        let ok = Body::start(Invocation::Async(Box::pin(async { Ok(vec![1, 2]) })));
        assert_eq!(ok.await.map(|r| r.ok()), Ok(Some(vec![1, 2])));
        let panics = Body::start(Invocation::Async(Box::pin(async {
            tokio::task::yield_now().await;
            panic!("boom at {}", 7)
        })));
        assert_eq!(panics.await.map(|r| r.ok()), Err("boom at 7".to_owned()));
    }

    #[tokio::test]
    async fn a_blocking_body_runs_on_the_pool_and_its_panic_is_caught() {
        let ok = Body::start(Invocation::Blocking(Box::new(|| Ok(vec![3]))));
        assert_eq!(ok.await.map(|r| r.ok()), Ok(Some(vec![3])));
        let panics = Body::start(Invocation::Blocking(Box::new(|| panic!("sync boom"))));
        assert_eq!(panics.await.map(|r| r.ok()), Err("sync boom".to_owned()));
    }
}
