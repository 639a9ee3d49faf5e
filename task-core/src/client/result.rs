//! [`AsyncResult`]: the caller's handle on a sent task.

use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use serde::de::DeserializeOwned;

use crate::app::App;
use crate::codec;
use crate::error::Error;
use crate::id::TaskId;
use crate::state::{TaskMeta, TaskState};

/// The result of a sent task, typed by what the task returns.
///
/// Waiting ([`get`](AsyncResult::get)) wakes when the task finishes; it never sleeps
/// in a loop. The handle holds only the id and the app, so it can be dropped and made
/// again later with [`App::result`].
pub struct AsyncResult<T> {
    id: TaskId,
    app: App,
    _output: PhantomData<fn() -> T>,
}

impl App {
    /// The result handle of an earlier task, by id (from a web request, say).
    pub fn result<T>(&self, id: TaskId) -> AsyncResult<T> {
        AsyncResult::new(id, self.clone())
    }
}

impl<T> Clone for AsyncResult<T> {
    fn clone(&self) -> Self {
        Self::new(self.id.clone(), self.app.clone())
    }
}

impl<T> fmt::Debug for AsyncResult<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncResult").field("id", &self.id).finish()
    }
}

impl<T> AsyncResult<T> {
    pub(crate) fn new(id: TaskId, app: App) -> Self {
        Self { id, app, _output: PhantomData }
    }

    /// The task id.
    pub fn id(&self) -> &TaskId {
        &self.id
    }

    /// The stored record, `None` while pending (or once expired or forgotten).
    pub async fn info(&self) -> Result<Option<TaskMeta>, Error> {
        Ok(self.app.backend().get(&self.id).await?)
    }

    /// The current state (`PENDING` when nothing is stored yet).
    pub async fn state(&self) -> Result<TaskState, Error> {
        Ok(self.info().await?.map_or(TaskState::Pending, |m| m.state))
    }

    /// True once the task succeeded, failed or was revoked.
    pub async fn ready(&self) -> Result<bool, Error> {
        Ok(self.state().await?.is_ready())
    }

    /// The last progress meta the task stored with `ctx.set_progress`, typed.
    pub async fn progress<M: DeserializeOwned>(&self) -> Result<Option<M>, Error> {
        match self.info().await?.and_then(|m| m.progress) {
            Some(bytes) => Ok(Some(codec::decode(&bytes, "the progress meta")?)),
            None => Ok(None),
        }
    }

    /// Deletes the stored result.
    pub async fn forget(&self) -> Result<(), Error> {
        Ok(self.app.backend().forget(&self.id).await?)
    }

    /// Revokes the task (see [`App::revoke`]): not run if not started; with
    /// `terminate`, a running async task is aborted.
    pub async fn revoke(&self, terminate: bool) -> Result<(), Error> {
        self.app.revoke(&self.id, terminate).await
    }
}

impl<T: DeserializeOwned> AsyncResult<T> {
    /// Waits up to `timeout` for the task to finish and returns its value; a failed
    /// task gives [`Error::TaskFailed`] with the task's error text, a revoked one
    /// [`Error::TaskRevoked`], and no result in time [`Error::Timeout`].
    pub async fn get(&self, timeout: Duration) -> Result<T, Error> {
        let meta = self.app.backend().wait(&self.id, timeout).await?;
        self.outcome(meta, timeout)
    }

    fn outcome(&self, meta: Option<TaskMeta>, waited: Duration) -> Result<T, Error> {
        let Some(meta) = meta else {
            return Err(Error::Timeout { id: self.id.clone(), waited, state: TaskState::Pending });
        };
        let task = || meta.task.clone().unwrap_or_default();
        match meta.state {
            TaskState::Success => {
                let bytes = meta.result.as_deref().unwrap_or(&[0xc0]); // nil: a unit result
                Ok(codec::decode_named(bytes, || format!("the result of task `{}`", task()))?)
            }
            TaskState::Failure => Err(Error::TaskFailed {
                id: self.id.clone(),
                task: task(),
                error: meta.error.clone().unwrap_or_else(|| "unknown error".into()),
            }),
            TaskState::Revoked => Err(Error::TaskRevoked {
                id: self.id.clone(),
                reason: meta.error.clone().unwrap_or_else(|| "revoked".into()),
            }),
            state => Err(Error::Timeout { id: self.id.clone(), waited, state }),
        }
    }
}
