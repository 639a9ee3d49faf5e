//! The task registry: every `#[task]` in every linked crate, collected at link time.
//!
//! `#[task]` submits a `const` [`TaskEntry`] through `inventory` (the macro's
//! `submit_task!`), so no list is written by hand and tasks from other crates are
//! found as soon as the crate is linked (Django's autodiscovery, done by the linker).
//! [`Registry::global`] builds the name → entry map once, on first use, and keeps
//! duplicates aside so the worker can refuse to start and name both places.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, OnceLock};

use crate::context::TaskContext;
use crate::error::{CodecError, Error, TaskResult};
use crate::future::BoxFuture;
use crate::task::TaskOptions;

/// A task run ready to go: the arguments are decoded, the body not yet run.
#[allow(missing_debug_implementations)]
pub enum Invocation {
    /// An `async fn` task: polled on the worker's runtime.
    Async(BoxFuture<'static, TaskResult<Vec<u8>>>),
    /// A plain `fn` task: run on the blocking pool.
    Blocking(Box<dyn FnOnce() -> TaskResult<Vec<u8>> + Send + 'static>),
}

/// Decodes the arguments and prepares a run; the output comes back encoded.
pub type TaskFn = fn(TaskContext, &[u8]) -> Result<Invocation, CodecError>;

/// One registered task. Made by `#[task]`, read by the worker, the CLI and the dashboard.
pub struct TaskEntry {
    name: &'static str,
    options: TaskOptions,
    blocking: bool,
    call: TaskFn,
    module: &'static str,
    file: &'static str,
    line: u32,
    params: &'static [&'static str],
}

impl TaskEntry {
    /// Used by `#[task]`; not a stable API.
    #[doc(hidden)]
    pub const fn __new(
        name: &'static str,
        options: TaskOptions,
        blocking: bool,
        call: TaskFn,
        module: &'static str,
        file: &'static str,
        line: u32,
    ) -> Self {
        Self { name, options, blocking, call, module, file, line, params: &[] }
    }

    /// Used by `#[task]`; not a stable API.
    #[doc(hidden)]
    pub const fn __with_params(mut self, params: &'static [&'static str]) -> Self {
        self.params = params;
        self
    }

    /// The names of the task's parameters, in order (its `TaskContext` left out): how a
    /// caller that sends arguments by position (Celery's `args`) maps them onto the
    /// task's arguments, which travel by name.
    ///
    /// ```
    /// use task_core::{task, Registry, TaskContext, TaskResult};
    ///
    /// #[task(name = "docs.resize")]
    /// async fn resize(ctx: TaskContext, path: String, width: u32) -> TaskResult<u32> { Ok(width) }
    ///
    /// fn main() {
    ///     assert_eq!(Registry::global().get("docs.resize").unwrap().params(), ["path", "width"]);
    /// }
    /// ```
    pub fn params(&self) -> &'static [&'static str] {
        self.params
    }

    /// The registered name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The defaults from `#[task(..)]`.
    pub fn options(&self) -> &TaskOptions {
        &self.options
    }

    /// True for a plain `fn` (runs on the blocking pool).
    pub fn is_blocking(&self) -> bool {
        self.blocking
    }

    /// Where the task is defined: `file:line (module)`.
    pub fn location(&self) -> String {
        format!("{}:{} ({})", self.file, self.line, self.module)
    }

    /// Decodes `args` (a MessagePack map keyed by parameter name) into the task's own
    /// arguments and prepares a run; the worker runs what it returns.
    pub fn invoke(&self, ctx: TaskContext, args: &[u8]) -> Result<Invocation, CodecError> {
        (self.call)(ctx, args)
    }
}

impl fmt::Debug for TaskEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskEntry")
            .field("name", &self.name)
            .field("options", &self.options)
            .field("blocking", &self.blocking)
            .field("params", &self.params)
            .field("location", &self.location())
            .finish()
    }
}

inventory::collect!(TaskEntry);

/// The tasks a worker can run, by name.
///
/// ```
/// use task_core::{task, Registry, TaskResult};
///
/// #[task(name = "docs.double")]
/// async fn double(x: i64) -> TaskResult<i64> { Ok(2 * x) }
///
/// fn main() {
///     let registry = Registry::global();
///     assert!(registry.get("docs.double").is_some());
///     assert!(registry.names().any(|n| n == "docs.double"));
/// }
/// ```
#[derive(Debug, Default)]
pub struct Registry {
    tasks: BTreeMap<&'static str, &'static TaskEntry>,
    duplicates: Vec<(&'static TaskEntry, &'static TaskEntry)>,
}

impl Registry {
    /// Every task linked into this program (built once, on first use).
    pub fn global() -> Arc<Registry> {
        static GLOBAL: OnceLock<Arc<Registry>> = OnceLock::new();
        GLOBAL.get_or_init(|| Arc::new(Self::from_entries(inventory::iter::<TaskEntry>))).clone()
    }

    /// A registry of just these entries (for tests, or a worker that runs a subset).
    pub fn from_entries(entries: impl IntoIterator<Item = &'static TaskEntry>) -> Self {
        let mut registry = Self::default();
        for entry in entries {
            match registry.tasks.get(entry.name) {
                Some(first) => registry.duplicates.push((first, entry)),
                None => {
                    registry.tasks.insert(entry.name, entry);
                }
            }
        }
        registry
    }

    /// The task registered under `name`.
    pub fn get(&self, name: &str) -> Option<&'static TaskEntry> {
        self.tasks.get(name).copied()
    }

    /// The registered names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.tasks.keys().copied()
    }

    /// The registered entries, sorted by name.
    pub fn entries(&self) -> impl Iterator<Item = &'static TaskEntry> + '_ {
        self.tasks.values().copied()
    }

    /// How many distinct names are registered.
    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    /// True when no task is registered.
    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    /// `Err` naming both definitions of every name registered twice.
    pub fn check(&self) -> Result<(), Error> {
        if self.duplicates.is_empty() {
            return Ok(());
        }
        let lines: Vec<String> = self
            .duplicates
            .iter()
            .map(|(a, b)| {
                format!("task name `{}` is registered twice: at {} and at {}", a.name, a.location(), b.location())
            })
            .collect();
        Err(Error::DuplicateTasks(format!(
            "{}; give one of them another name with #[task(name = \"..\")]",
            lines.join("; ")
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn never(_: TaskContext, _: &[u8]) -> Result<Invocation, CodecError> {
        Ok(Invocation::Blocking(Box::new(|| Ok(Vec::new()))))
    }

    static A: TaskEntry = TaskEntry::__new("same", TaskOptions::new(), true, never, "m1", "src/a.rs", 3);
    static B: TaskEntry = TaskEntry::__new("same", TaskOptions::new(), true, never, "m2", "src/b.rs", 7);
    static C: TaskEntry = TaskEntry::__new("other", TaskOptions::new(), false, never, "m3", "src/c.rs", 1);

    #[test]
    fn duplicates_are_reported_with_both_locations() {
        let registry = Registry::from_entries([&A, &C, &B]);
        assert_eq!(registry.len(), 2);
        let err = registry.check().unwrap_err().to_string();
        assert!(err.contains("`same` is registered twice"), "{err}");
        assert!(err.contains("src/a.rs:3 (m1)") && err.contains("src/b.rs:7 (m2)"), "{err}");
    }

    #[test]
    fn names_are_sorted() {
        let registry = Registry::from_entries([&A, &C]);
        assert_eq!(registry.names().collect::<Vec<_>>(), ["other", "same"]);
        registry.check().unwrap();
    }
}
