//! [`Chord`]: a group whose results, all of them and in order, go to one callback task
//! (Celery's `chord`), joined without polling.
//!
//! Sending a chord opens a join in the broker (for Redis, one hash beside the
//! callback's queue) holding the prepared callback, then sends the members as one
//! batch. Each member, when it succeeds, records its result in the join under its
//! index: a redelivered member (its worker died after the task ran) records nothing new,
//! so nothing is counted twice. The member that completes the join gets every result
//! back, splices them into the callback's first argument and sends it in the same
//! atomic step that closes the join, so the callback is sent once. A member that fails
//! for good closes the join as failed: the callback is never sent and its result
//! becomes `FAILURE`, naming the member.

use std::marker::PhantomData;

use crate::app::App;
use crate::client::AsyncResult;
use crate::client::Signature;
use crate::codec;
use crate::error::Error;
use crate::link::{Callback, CallbackOn, ChordMember};
use crate::workflow::Group;
use crate::workflow::Partial;

/// A group plus a callback that receives the members' results as a `Vec<T>`, in member
/// order, once every member has succeeded.
///
/// ```
/// use std::time::Duration;
/// use task_core::{chord, task, App, TaskResult};
///
/// #[task]
/// async fn square(x: i64) -> TaskResult<i64> { Ok(x * x) }
/// #[task]
/// async fn total(values: Vec<i64>, label: String) -> TaskResult<String> {
///     Ok(format!("{label}: {}", values.iter().sum::<i64>()))
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), task_core::Error> {
/// let app = App::memory();
/// let worker = app.worker().spawn();
/// let res = chord((1..=4).map(square::signature), total::partial("sum of squares".into())).apply_async(&app).await?;
/// assert_eq!(res.get(Duration::from_secs(5)).await?, "sum of squares: 30");
/// # worker.shutdown().await?;
/// # Ok(()) }
/// ```
#[must_use = "a chord does nothing until `apply_async`"]
pub struct Chord<T, U> {
    members: Vec<Signature<T>>,
    callback: Partial<Vec<T>, U>,
    _output: PhantomData<fn() -> U>,
}

/// A chord of these members and this callback.
pub fn chord<T, U>(members: impl IntoIterator<Item = Signature<T>>, callback: Partial<Vec<T>, U>) -> Chord<T, U> {
    Chord { members: members.into_iter().collect(), callback, _output: PhantomData }
}

impl<T> Group<T> {
    /// A chord: this group, then `callback` with all the members' results.
    pub fn then<U>(self, callback: Partial<Vec<T>, U>) -> Chord<T, U> {
        chord(self.into_members(), callback)
    }
}

impl<T, U> Chord<T, U> {
    /// How many members.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// True for a chord without members (its callback runs at once with no results).
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Opens the join, sends the members in one batch; returns the handle to the
    /// callback's result. Needs a broker that keeps chord joins (memory and Redis do).
    pub async fn apply_async(self, app: &App) -> Result<AsyncResult<U>, Error> {
        let Self { members, callback, .. } = self;
        let (mut sig, arg) = callback.into_parts();
        let id = sig.fix_id();
        let message = sig.prepare(app)?.message;
        let queue = message.queue.clone();
        let callback = Callback::from_message(CallbackOn::Success, Some(arg.to_owned()), message);
        if members.is_empty() {
            let none = codec::array_of(&[])?;
            app.broker().enqueue(callback.message_with(&none)?).await?;
            return Ok(AsyncResult::new(id, app.clone()));
        }
        let size = u32::try_from(members.len()).map_err(|_| Error::Config("a chord of over 2^32 members".into()))?;
        let join = app.broker().chord_store().ok_or_else(|| {
            Error::Config(format!("a chord needs a broker that keeps chord joins; {} does not", app.broker_url()))
        })?;
        join.chord_open(&id, &queue, size, &codec::encode(&callback, "the chord's callback")?, app.result_ttl())
            .await?;
        let members = members.into_iter().zip(0..).map(|(mut member, index)| {
            member.chord = Some(ChordMember::new(id.clone(), queue.clone(), index, size));
            member
        });
        app.send_batch(members).await?;
        Ok(AsyncResult::new(id, app.clone()))
    }
}

impl<T, U> std::fmt::Debug for Chord<T, U> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chord")
            .field("members", &self.members.len())
            .field("callback", &self.callback.task_name())
            .finish()
    }
}
