//! Remote control (Celery's `celery inspect` and `celery control`): a command sent to
//! every live worker over the control channel, each answering with a MessagePack map
//! (its id, its name, and what was asked). The asker waits for the answers of the
//! workers it expects, or for the time-out.

use std::time::Duration;

use crate::capability::Listening;
use crate::error::BackendError;
use crate::future::BoxFuture;

/// A command asked of the workers.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Request {
    /// Names the request: the answers go to it.
    pub id: String,
    /// The command line: a name and its arguments, separated by spaces.
    pub command: String,
}

impl Request {
    /// For driver authors.
    pub fn new(id: impl Into<String>, command: impl Into<String>) -> Self {
        Self { id: id.into(), command: command.into() }
    }
}

/// What a worker is called with for each request.
pub type OnRequest = Box<dyn Fn(&Request) + Send + Sync>;

/// Result-backend capability: commands to the live workers, and their answers.
pub trait RemoteControl: Send + Sync {
    /// Sends `command` to every live worker; returns the answers that arrived within
    /// `timeout`, at most `expected` (fewer when some workers did not answer in time).
    fn ask<'a>(
        &'a self,
        command: &'a str,
        expected: usize,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Vec<Vec<u8>>, BackendError>>;

    /// Calls `on_request` for every command asked from now on, until the guard drops.
    fn listen(&self, on_request: OnRequest) -> Listening;

    /// Answers `request` (an encoded map).
    fn reply<'a>(&'a self, request: &'a Request, answer: Vec<u8>) -> BoxFuture<'a, Result<(), BackendError>>;
}
