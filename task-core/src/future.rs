//! The boxed future the dyn-compatible driver traits return: [`App`](crate::App) picks a
//! driver from a URL at run time, so the traits are used as `dyn Broker` and
//! `dyn ResultBackend`, and one allocation per call is noise next to a round trip.

use std::future::Future;
use std::pin::Pin;

/// A boxed, `Send` future.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;
