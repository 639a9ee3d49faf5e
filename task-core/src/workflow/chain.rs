//! [`Chain`]: tasks run one after another, each result handed to the next task as its
//! first argument (Celery's `chain`, typed); [`Partial`]: a task call missing that
//! argument.
//!
//! A chain is sent as its first task only. Every step's id is chosen up front; each
//! step carries the next one, prepared, as a success callback that names the parameter
//! the result goes to, and the worker splices the encoded result into that callback's
//! arguments (no decoding into a type on the way). The chain's [`AsyncResult`] is the
//! last step's. A step that fails for good (after its retries), is revoked, or cannot
//! run marks every later step `FAILURE` with a reason that names it, so whoever waits
//! on the chain learns which step broke.

use std::marker::PhantomData;

use serde::Serialize;

use crate::app::App;
use crate::client::AsyncResult;
use crate::client::Signature;
use crate::error::Error;
use crate::id::TaskId;
use crate::link::{CallbackOn, ChainLink};
use crate::task::TaskOptions;

/// A call of a task whose first argument (of type `A`) is still missing: it will be the
/// result of the step before it in a chain, or the results of a chord's members.
/// `#[task]` generates `name::partial(other args..)` for every task with an argument.
#[must_use = "a partial call is sent as part of a chain or chord"]
pub struct Partial<A, T> {
    sig: Signature<T>,
    arg: &'static str,
    _first: PhantomData<fn(A)>,
}

impl<A, T> Partial<A, T> {
    /// A call of `task` without its first parameter `arg`; `rest` holds the others by
    /// name. `#[task]` generates `name::partial(..)`, which calls this.
    pub fn new<R: Serialize>(task: &'static str, arg: &'static str, rest: &R, defaults: TaskOptions) -> Self {
        Self { sig: Signature::new(task, rest, defaults), arg, _first: PhantomData }
    }

    /// Sets options of the call as on a [`Signature`]: `.with(|s| s.queue("math").max_retries(1))`.
    pub fn with(mut self, options: impl FnOnce(Signature<T>) -> Signature<T>) -> Self {
        self.sig = options(self.sig);
        self
    }

    /// Sends it to this queue.
    pub fn queue(self, queue: impl Into<String>) -> Self {
        self.with(|s| s.queue(queue))
    }

    /// The task name.
    pub fn task_name(&self) -> &'static str {
        self.sig.task_name()
    }

    /// The parameter that receives the missing value.
    pub fn arg_name(&self) -> &'static str {
        self.arg
    }

    pub(crate) fn into_parts(self) -> (Signature<T>, &'static str) {
        (self.sig, self.arg)
    }
}

impl<A, T> std::fmt::Debug for Partial<A, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Partial").field("sig", &self.sig).field("arg", &self.arg).finish()
    }
}

/// Tasks run one after another, each result the next task's first argument.
///
/// The compiler checks that each result fits the next task's first parameter.
///
/// ```
/// use std::time::Duration;
/// use task_core::{task, App, TaskResult};
///
/// #[task]
/// async fn add(x: i64, y: i64) -> TaskResult<i64> { Ok(x + y) }
/// #[task]
/// async fn mul(x: i64, y: i64) -> TaskResult<i64> { Ok(x * y) }
/// #[task]
/// async fn describe(n: i64) -> TaskResult<String> { Ok(format!("n = {n}")) }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), task_core::Error> {
/// let app = App::memory();
/// let worker = app.worker().spawn();
/// // (1 + 2) * 10, then described
/// let res = add::signature(1, 2).then(mul::partial(10)).then(describe::partial()).apply_async(&app).await?;
/// assert_eq!(res.get(Duration::from_secs(5)).await?, "n = 30");
/// # worker.shutdown().await?;
/// # Ok(()) }
/// ```
#[must_use = "a chain does nothing until `apply_async`"]
pub struct Chain<T> {
    first: Signature<()>,
    steps: Vec<(Signature<()>, &'static str)>,
    _output: PhantomData<fn() -> T>,
}

impl<T> Signature<T> {
    /// A chain: this task, then `next` with this task's result as its first argument.
    pub fn then<U>(self, next: Partial<T, U>) -> Chain<U> {
        Chain::<T> { first: self.cast(), steps: Vec::new(), _output: PhantomData }.push(next)
    }
}

impl<T> Chain<T> {
    fn push<A, U>(mut self, next: Partial<A, U>) -> Chain<U> {
        let (sig, arg) = next.into_parts();
        self.steps.push((sig.cast(), arg));
        Chain { first: self.first, steps: self.steps, _output: PhantomData }
    }

    /// Adds `next`, which receives the current last step's result as its first argument.
    pub fn then<U>(self, next: Partial<T, U>) -> Chain<U> {
        self.push(next)
    }

    /// How many steps.
    pub fn len(&self) -> usize {
        self.steps.len() + 1
    }

    /// Never true: a chain has its first step at least.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Sends the first step (which carries the others); returns the handle to the last
    /// step's result.
    pub async fn apply_async(self, app: &App) -> Result<AsyncResult<T>, Error> {
        let Self { mut first, mut steps, .. } = self;
        let mut ids = vec![first.fix_id()];
        ids.extend(steps.iter_mut().map(|(sig, _)| sig.fix_id()));
        let steps_total = u32::try_from(ids.len()).map_err(|_| Error::Config("a chain of over 2^32 steps".into()))?;
        let link = |index: usize| ChainLink {
            step: u32::try_from(index + 1).unwrap_or(u32::MAX),
            steps: steps_total,
            rest: ids[index + 1..].to_vec(),
        };
        // Built from the end: each step carries the one after it.
        let mut next: Option<(Signature<()>, &'static str)> = None;
        for (index, (mut sig, arg)) in steps.into_iter().enumerate().rev() {
            sig.chain = Some(link(index + 1));
            if let Some((after, after_arg)) = next.take() {
                sig = sig.link(CallbackOn::Success, Some(after_arg), after);
            }
            next = Some((sig, arg));
        }
        first.chain = Some(link(0));
        if let Some((after, after_arg)) = next {
            first = first.link(CallbackOn::Success, Some(after_arg), after);
        }
        first.apply_async(app).await?;
        let last: TaskId = ids.pop().expect("a chain has a step");
        Ok(AsyncResult::new(last, app.clone()))
    }
}

impl<T> std::fmt::Debug for Chain<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> =
            std::iter::once(&self.first).chain(self.steps.iter().map(|(s, _)| s)).map(Signature::task_name).collect();
        f.debug_struct("Chain").field("steps", &names).finish()
    }
}
