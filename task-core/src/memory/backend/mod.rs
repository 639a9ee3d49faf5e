//! The in-memory result backend: records, waits and revokes here; the history it keeps
//! beside them (recent tasks, counts, events) in `history`.

mod history;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::backend::{Claim, ResultBackend};
use crate::capability::{HISTORY_CAP, Listeners, MinuteCount, TaskFilter, TaskHistory, Terminations};
use crate::error::{BackendError, ErrorKind};
use crate::events::{EVENTS_CAP, Event, EventKind, TaskStats};
use crate::future::BoxFuture;
use crate::id::TaskId;
use crate::state::{TaskMeta, TaskState};

/// How often expired records are swept out (they are also hidden as soon as they expire).
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// The embedded result backend: one record per task in this process's memory,
/// expired after its TTL; waiters sleep on a per-task [`Notify`], never poll.
///
/// ```
/// use std::time::Duration;
/// use task_core::{memory::InMemoryBackend, ResultBackend, TaskId, TaskMeta, TaskState};
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let backend = InMemoryBackend::new();
/// let id = TaskId::new();
/// backend.store(&id, TaskMeta::state(TaskState::Success), Duration::from_secs(60)).await?;
/// let meta = backend.wait(&id, Duration::from_secs(1)).await?.unwrap();
/// assert_eq!(meta.state, TaskState::Success);
/// # Ok::<_, task_core::BackendError>(()) }).unwrap();
/// ```
#[derive(Debug, Clone, Default)]
pub struct InMemoryBackend {
    shared: Arc<Mutex<State>>,
    terminate: Listeners,
    requests: Listeners<crate::capability::Request>,
    /// The answers of the requests being asked, by request id.
    answers: Arc<Mutex<HashMap<String, tokio::sync::mpsc::UnboundedSender<Vec<u8>>>>>,
}

#[derive(Debug)]
struct State {
    records: HashMap<TaskId, (TaskMeta, Instant)>,
    waiters: HashMap<TaskId, Arc<Notify>>,
    last_sweep: Instant,
    /// Task ids in the order they entered the history, newest at the back.
    recent: std::collections::VecDeque<(TaskId, i64)>,
    /// When each record last changed (Unix ms).
    changed: HashMap<TaskId, i64>,
    /// Finished tasks per minute (minute start, Unix ms): (succeeded, failed).
    minutes: std::collections::BTreeMap<i64, (u64, u64)>,
    /// The event stream, newest at the back, capped at `EVENTS_CAP`.
    events: std::collections::VecDeque<Event>,
    next_event: u64,
    /// Workers that went offline, oldest first, kept a day.
    offline: std::collections::VecDeque<(String, i64)>,
    /// (task name, state) -> count.
    counts: HashMap<(String, TaskState), u64>,
    /// (task name, bucket) -> count; buckets are bounds in ms, `+Inf`, `sum`, `count`.
    runtime: HashMap<(String, String), u64>,
}

impl Default for State {
    fn default() -> Self {
        Self {
            records: HashMap::new(),
            waiters: HashMap::new(),
            last_sweep: Instant::now(),
            recent: std::collections::VecDeque::new(),
            changed: HashMap::new(),
            minutes: std::collections::BTreeMap::new(),
            events: std::collections::VecDeque::new(),
            next_event: 0,
            offline: std::collections::VecDeque::new(),
            counts: HashMap::new(),
            runtime: HashMap::new(),
        }
    }
}

impl State {
    fn live(&self, id: &TaskId) -> Option<&TaskMeta> {
        self.records.get(id).filter(|(_, expires)| *expires > Instant::now()).map(|(meta, _)| meta)
    }

    fn push_event(&mut self, mut event: Event) {
        if let (EventKind::WorkerOffline, Some(worker)) = (event.kind, &event.worker) {
            self.offline.push_back((worker.clone(), event.at_ms));
            let day_ago = event.at_ms - 24 * 3_600_000;
            self.offline.retain(|(_, at)| *at >= day_ago);
        }
        self.next_event += 1;
        event.id = self.next_event.to_string();
        self.events.push_back(event);
        if self.events.len() > EVENTS_CAP {
            self.events.pop_front();
        }
    }

    /// The event, count and run time a stored write adds (the Redis store script's rule).
    fn account(&mut self, id: &TaskId, update: &TaskMeta) {
        let Some(kind) = EventKind::of_state(update.state) else { return };
        let name = self.live(id).and_then(|m| m.task.clone()).unwrap_or_default();
        let mut event = Event::new(kind);
        event.task_id = Some(id.clone());
        event.task = Some(name.clone()).filter(|n| !n.is_empty());
        event.worker = update.worker.clone();
        self.push_event(event);
        if name.is_empty() || kind == EventKind::TaskProgress {
            return;
        }
        *self.counts.entry((name.clone(), update.state)).or_default() += 1;
        if let Some(ms) = update.runtime_ms {
            for bucket in [TaskStats::bucket_of(ms), "count".to_owned()] {
                *self.runtime.entry((name.clone(), bucket)).or_default() += 1;
            }
            *self.runtime.entry((name, "sum".to_owned())).or_default() += ms;
        }
    }
}

impl InMemoryBackend {
    /// A new, empty backend.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.shared.lock().unwrap_or_else(|poison| poison.into_inner())
    }

    /// How many records are stored and not expired.
    pub fn len(&self) -> usize {
        let now = Instant::now();
        self.lock().records.values().filter(|(_, expires)| *expires > now).count()
    }

    /// True when no record is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Merges `update` (fenced: see [`TaskMeta::fenced_against`]) and wakes waiters on a ready state.
    fn store_now(&self, id: &TaskId, update: TaskMeta, ttl: Duration) -> Result<(), BackendError> {
        let ready = update.state.is_ready();
        let update_state = update.state;
        // A write with the task's arguments is its start (STARTED, or the first write of
        // a run whose start is not tracked).
        let starts = update.args.is_some();
        let update_for_stats =
            TaskMeta { worker: update.worker.clone(), runtime_ms: update.runtime_ms, ..TaskMeta::state(update.state) };
        let mut state = self.lock();
        let now = Instant::now();
        if now.duration_since(state.last_sweep) >= SWEEP_EVERY {
            state.records.retain(|_, (_, expires)| *expires > now);
            let State { records, changed, .. } = &mut *state;
            changed.retain(|id, _| records.contains_key(id));
            state.last_sweep = now;
        }
        let expires = now + ttl;
        match state.records.get_mut(id) {
            Some((meta, _)) if meta.fenced_against(&update) => {
                let owner = meta.worker.clone().unwrap_or_default();
                let error = BackendError::new(
                    ErrorKind::Fenced,
                    format!("state {} of task {id} refused: worker {owner} has taken the task over", update.state),
                );
                return Err(error);
            }
            Some((meta, at)) if *at > now && !meta.state.admits(update.state) => {
                return Err(refused_as_final(id, meta.state, update.state));
            }
            Some((meta, at)) if *at > now => {
                meta.merge(update);
                *at = expires;
            }
            _ => {
                state.records.insert(id.clone(), (update, expires));
            }
        }
        // A task enters the history when it starts (a write with its arguments), or, if
        // it never starts, when it ends (revoked, dead-lettered): the same rule as the
        // Redis backend.
        let now_ms = crate::time::now_ms();
        state.changed.insert(id.clone(), now_ms);
        let started = state.records.get(id).is_some_and(|(meta, _)| meta.started_ms.is_some());
        let unstarted_end = matches!(update_state, TaskState::Revoked | TaskState::Failure) && !started;
        if update_state == TaskState::Started || starts || unstarted_end {
            state.recent.push_back((id.clone(), now_ms));
            if state.recent.len() > HISTORY_CAP {
                state.recent.pop_front();
            }
        }
        if matches!(update_state, TaskState::Success | TaskState::Failure) {
            let minute = now_ms - now_ms.rem_euclid(60_000);
            let counts = state.minutes.entry(minute).or_default();
            if update_state == TaskState::Success {
                counts.0 += 1;
            } else {
                counts.1 += 1;
            }
            let old = minute - 2 * 3_600_000;
            state.minutes.retain(|m, _| *m >= old);
        }
        state.account(id, &update_for_stats);
        if ready && let Some(notify) = state.waiters.remove(id) {
            notify.notify_waiters();
        }
        Ok(())
    }

    /// How many callers are waiting in [`ResultBackend::wait`] (for tests).
    pub fn waiting(&self) -> usize {
        self.lock().waiters.values().map(|n| Arc::strong_count(n) - 1).sum()
    }
}

impl ResultBackend for InMemoryBackend {
    fn store<'a>(&'a self, id: &'a TaskId, update: TaskMeta, ttl: Duration) -> BoxFuture<'a, Result<(), BackendError>> {
        let result = self.store_now(id, update, ttl);
        Box::pin(async move { result })
    }

    fn get<'a>(&'a self, id: &'a TaskId) -> BoxFuture<'a, Result<Option<TaskMeta>, BackendError>> {
        let meta = self.lock().live(id).cloned();
        Box::pin(async move { Ok(meta) })
    }

    fn wait<'a>(&'a self, id: &'a TaskId, timeout: Duration) -> BoxFuture<'a, Result<Option<TaskMeta>, BackendError>> {
        Box::pin(async move {
            let deadline = crate::time::deadline(timeout);
            loop {
                let notify = {
                    let mut state = self.lock();
                    match state.live(id) {
                        Some(meta) if meta.state.is_ready() => return Ok(Some(meta.clone())),
                        _ => state.waiters.entry(id.clone()).or_default().clone(),
                    }
                };
                let notified = notify.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                // A store between the check above and `enable` would be missed: look again.
                let current = self.lock().live(id).cloned();
                if let Some(meta) = current.as_ref().filter(|m| m.state.is_ready()) {
                    return Ok(Some(meta.clone()));
                }
                if tokio::time::timeout_at(deadline, notified).await.is_err() {
                    let mut state = self.lock();
                    if state.waiters.get(id).is_some_and(|n| Arc::strong_count(n) == 2) {
                        state.waiters.remove(id);
                    }
                    return Ok(state.live(id).cloned());
                }
            }
        })
    }

    fn forget<'a>(&'a self, id: &'a TaskId) -> BoxFuture<'a, Result<(), BackendError>> {
        self.lock().records.remove(id);
        Box::pin(async { Ok(()) })
    }

    fn claim<'a>(
        &'a self,
        id: &'a TaskId,
        update: TaskMeta,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Claim, BackendError>> {
        let revoked =
            self.lock().live(id).filter(|m| m.state == TaskState::Revoked).map(|m| m.error.clone().unwrap_or_default());
        let result = match revoked {
            Some(reason) => Ok(Claim::Revoked(reason)),
            None => self.store_now(id, update, ttl).map(|()| Claim::Claimed),
        };
        Box::pin(async move { result })
    }

    fn revoke<'a>(
        &'a self,
        id: &'a TaskId,
        reason: &'a str,
        terminate: bool,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<(), BackendError>> {
        let done = self.lock().live(id).is_some_and(|m| m.state.is_ready());
        let result = if done {
            Ok(())
        } else {
            self.store_now(id, TaskMeta { error: Some(reason.to_owned()), ..TaskMeta::state(TaskState::Revoked) }, ttl)
        };
        if terminate {
            self.terminate.notify(id);
        }
        Box::pin(async move { result })
    }

    fn terminations(&self) -> Option<&dyn Terminations> {
        Some(self)
    }

    fn remote_control(&self) -> Option<&dyn crate::capability::RemoteControl> {
        Some(self)
    }

    fn history(&self) -> Option<&dyn TaskHistory> {
        Some(self)
    }
}

impl crate::capability::RemoteControl for InMemoryBackend {
    fn ask<'a>(
        &'a self,
        command: &'a str,
        expected: usize,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Vec<Vec<u8>>, BackendError>> {
        Box::pin(async move {
            let id = TaskId::new().to_string();
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
            self.answers.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(id.clone(), tx);
            self.requests.notify(&crate::capability::Request::new(id.clone(), command));
            let deadline = crate::time::deadline(timeout);
            let mut answers = Vec::new();
            while answers.len() < expected {
                match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Ok(Some(answer)) => answers.push(answer),
                    _ => break,
                }
            }
            self.answers.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&id);
            Ok(answers)
        })
    }

    fn listen(&self, on_request: crate::capability::OnRequest) -> crate::capability::Listening {
        self.requests.add(on_request)
    }

    fn reply<'a>(
        &'a self,
        request: &'a crate::capability::Request,
        answer: Vec<u8>,
    ) -> BoxFuture<'a, Result<(), BackendError>> {
        if let Some(tx) = self.answers.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(&request.id) {
            let _ = tx.send(answer);
        }
        Box::pin(async { Ok(()) })
    }
}

/// The error of a write refused because the record is final (see [`TaskState::admits`]):
/// like a fenced write, it is not tried again.
pub(crate) fn refused_as_final(id: &TaskId, current: TaskState, update: TaskState) -> BackendError {
    BackendError::new(
        ErrorKind::Fenced,
        format!("state {update} of task {id} refused: it is {current} already, and that is final"),
    )
}

impl Terminations for InMemoryBackend {
    fn listen(&self, on_request: crate::capability::OnTerminate) -> crate::capability::Listening {
        self.terminate.add(on_request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::TaskState;

    #[tokio::test]
    async fn a_waiter_wakes_on_a_ready_state_only() {
        let b = InMemoryBackend::new();
        let id = TaskId::new();
        let (b2, id2) = (b.clone(), id.clone());
        let waiter = tokio::spawn(async move { b2.wait(&id2, Duration::from_secs(30)).await });
        while b.waiting() == 0 {
            tokio::task::yield_now().await;
        }
        b.store(&id, TaskMeta::state(TaskState::Started), Duration::from_secs(60)).await.unwrap();
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        b.store(&id, TaskMeta::state(TaskState::Success), Duration::from_secs(60)).await.unwrap();
        let meta = tokio::time::timeout(Duration::from_secs(5), waiter).await.unwrap().unwrap().unwrap();
        assert_eq!(meta.unwrap().state, TaskState::Success);
        assert_eq!(b.waiting(), 0);
    }

    #[tokio::test]
    async fn a_timed_out_waiter_gets_the_current_record_and_leaves_no_trace() {
        let b = InMemoryBackend::new();
        let id = TaskId::new();
        b.store(&id, TaskMeta::state(TaskState::Started), Duration::from_secs(60)).await.unwrap();
        let meta = b.wait(&id, Duration::from_millis(20)).await.unwrap();
        assert_eq!(meta.unwrap().state, TaskState::Started);
        assert_eq!(b.waiting(), 0);
    }
}
