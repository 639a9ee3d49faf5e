//! [`Group`]: many task calls sent at once and run in parallel; [`GroupResult`] collects
//! their results in order (Celery's `group`).

use std::time::Duration;

use serde::de::DeserializeOwned;

use crate::app::App;
use crate::client::AsyncResult;
use crate::client::Signature;
use crate::error::Error;
use crate::id::TaskId;
use crate::state::TaskState;

/// Calls of one task, sent together (one broker round trip) and run in parallel.
///
/// ```
/// use std::time::Duration;
/// use task_core::{group, task, App, TaskResult};
///
/// #[task]
/// async fn square(x: i64) -> TaskResult<i64> { Ok(x * x) }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), task_core::Error> {
/// let app = App::memory();
/// let worker = app.worker().spawn();
/// let squares = group((1..=4).map(square::signature)).apply_async(&app).await?;
/// assert_eq!(squares.get(Duration::from_secs(5)).await?, [1, 4, 9, 16]);
/// assert_eq!(squares.completed_count().await?, 4);
/// # worker.shutdown().await?;
/// # Ok(()) }
/// ```
#[must_use = "a group does nothing until `apply_async`"]
#[derive(Debug)]
pub struct Group<T> {
    members: Vec<Signature<T>>,
}

/// A group of these signatures.
pub fn group<T>(members: impl IntoIterator<Item = Signature<T>>) -> Group<T> {
    Group { members: members.into_iter().collect() }
}

impl<T> Group<T> {
    /// How many calls.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// True for a group of no call.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    pub(crate) fn into_members(self) -> Vec<Signature<T>> {
        self.members
    }

    /// Sends every member in one batch; returns their handles, in order.
    pub async fn apply_async(self, app: &App) -> Result<GroupResult<T>, Error> {
        Ok(GroupResult { members: app.send_batch(self.members).await? })
    }
}

/// The results of a [`Group`], in the order of its members.
#[derive(Debug, Clone)]
pub struct GroupResult<T> {
    members: Vec<AsyncResult<T>>,
}

impl<T> GroupResult<T> {
    /// The members' handles, in order.
    pub fn results(&self) -> &[AsyncResult<T>] {
        &self.members
    }

    /// The members' task ids, in order.
    pub fn ids(&self) -> impl Iterator<Item = &TaskId> {
        self.members.iter().map(AsyncResult::id)
    }

    /// How many members ended `SUCCESS` so far.
    pub async fn completed_count(&self) -> Result<usize, Error> {
        let mut done = 0;
        for member in &self.members {
            if member.state().await? == TaskState::Success {
                done += 1;
            }
        }
        Ok(done)
    }

    /// True once every member has ended (succeeded, failed or revoked).
    pub async fn ready(&self) -> Result<bool, Error> {
        for member in &self.members {
            if !member.ready().await? {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

impl<T: DeserializeOwned> GroupResult<T> {
    /// Waits up to `timeout` in all and returns every result, in the members' order; the
    /// first member (in that order) that failed or was revoked gives its error instead.
    pub async fn get(&self, timeout: Duration) -> Result<Vec<T>, Error> {
        let deadline = crate::time::deadline(timeout);
        let mut values = Vec::with_capacity(self.members.len());
        for member in &self.members {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            values.push(member.get(left).await?);
        }
        Ok(values)
    }
}
