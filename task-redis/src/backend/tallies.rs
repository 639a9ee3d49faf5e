//! The events and counts of stored writes, gathered in this process and sent to Redis
//! in one pipeline per interval.

use super::*;

/// A stored write as the event stream and the counters see it.
#[derive(Debug)]
pub(super) struct Tally {
    pub(super) state: TaskState,
    pub(super) id: TaskId,
    pub(super) task: String,
    pub(super) worker: String,
    pub(super) runtime_ms: Option<u64>,
    /// The write starts the task's record (it is listed).
    pub(super) starts: bool,
}

/// Events and counts of stored writes, gathered here and sent to Redis in one pipeline
/// every [`TALLY_EVERY`] (an `XADD` of all their event lines, and one `HINCRBY` per
/// task name and state or run-time bucket): the work stays in this process, not in
/// Redis's single thread. A process that dies loses at most that last interval's events
/// and counts, never a result.
#[derive(Debug, Default)]
pub(super) struct Tallies {
    /// Event lines, newline-separated, at most `LINES_PER_ENTRY` per string: each string
    /// is one stream entry.
    pub(super) chunks: Vec<String>,
    /// Lines in the last chunk.
    pub(super) lines_in_last: usize,
    /// Bytes in all chunks.
    pub(super) bytes: usize,
    pub(super) by_task: HashMap<String, TaskTally>,
    /// Ids for the indices by final state (`NS:idx:state:S`), newest last.
    pub(super) by_state: HashMap<TaskState, Vec<TaskId>>,
}

/// The states with an index of their own: the rare ones a filter must reach deep for.
/// Other filters read the recent-tasks list: SUCCESS (most tasks: found near its head),
/// STARTED (running tasks are the newest), REVOKED (a revoke of a queued task is written
/// by its own script).
pub(super) const INDEXED_STATES: [TaskState; 2] = [TaskState::Failure, TaskState::Retry];

/// One task name's counts and new ids since the last send.
#[derive(Debug, Default)]
pub(super) struct TaskTally {
    /// Ids for the name's index (`NS:idx:task:NAME`).
    pub(super) ids: Vec<TaskId>,
    /// By state, in the order of `TaskState::ALL`.
    pub(super) states: [i64; TaskState::ALL.len()],
    /// By run-time bucket, in the order of `RUNTIME_BUCKETS_MS`, then `+Inf`.
    pub(super) buckets: [i64; task_core::RUNTIME_BUCKETS_MS.len() + 1],
    pub(super) sum_ms: i64,
    pub(super) count: i64,
}

/// How often gathered events and counts are sent.
pub(super) const TALLY_EVERY: Duration = Duration::from_millis(250);
/// The most events one stream entry holds.
const LINES_PER_ENTRY: usize = 100;
/// Event text gathered before it is sent, whatever the interval (about 1,000 events).
const TALLY_MAX_BYTES: usize = 100 * 1024;

/// The stream's cap in entries for a cap of `events`: at most `events` events in all
/// (more entries than that only when they hold fewer events each).
pub(super) fn stream_entries(events: usize) -> usize {
    (events / LINES_PER_ENTRY).max(1)
}
/// How long an index outlives its last new entry (the default result TTL).
pub(super) const INDEX_KEEP_SECS: u64 = 24 * 3600;
/// A day in milliseconds: how long stopped workers are remembered.
pub(super) const DAY_MS: i64 = 24 * 3_600_000;

impl Tallies {
    pub(super) fn add(&mut self, t: &Tally) {
        if task_core::EventKind::of_state(t.state).is_none() {
            return;
        }
        let chunk = match self.chunks.last_mut() {
            Some(chunk) if self.lines_in_last < LINES_PER_ENTRY => {
                chunk.push('\n');
                self.lines_in_last += 1;
                chunk
            }
            _ => {
                self.chunks.push(String::new());
                self.lines_in_last = 1;
                self.chunks.last_mut().expect("just pushed")
            }
        };
        let before = chunk.len();
        // The state name reads back as the event kind.
        Event::push_line(chunk, t.state.as_str(), [t.id.as_str(), &t.task, &t.worker, ""]);
        self.bytes += chunk.len() - before;
        if INDEXED_STATES.contains(&t.state) {
            self.by_state.entry(t.state).or_default().push(t.id.clone());
        }
        if t.task.is_empty() || t.state == TaskState::Progress {
            return;
        }
        // Looked up by &str: no allocation for a name seen before.
        let tally = match self.by_task.get_mut(t.task.as_str()) {
            Some(tally) => tally,
            None => self.by_task.entry(t.task.clone()).or_default(),
        };
        if let Some(i) = TaskState::ALL.iter().position(|s| *s == t.state) {
            tally.states[i] += 1;
        }
        // At its start, or at an end that may come without a start (a task that failed
        // after starting is listed twice: listings skip the second).
        if t.starts || matches!(t.state, TaskState::Failure | TaskState::Revoked) {
            tally.ids.push(t.id.clone());
        }
        if let Some(ms) = t.runtime_ms {
            let bounds = &task_core::RUNTIME_BUCKETS_MS;
            tally.buckets[bounds.iter().position(|b| ms <= *b).unwrap_or(bounds.len())] += 1;
            tally.sum_ms += i64::try_from(ms).unwrap_or(i64::MAX);
            tally.count += 1;
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    /// Gathered enough to send before the interval ends: under load a quarter second
    /// holds thousands of writes, and what is held (and sent at once) stays small.
    pub(super) fn is_full(&self) -> bool {
        self.bytes >= TALLY_MAX_BYTES
    }

    /// Sends what was gathered in one pipeline; on failure it is dropped (logged).
    pub(super) async fn send(&mut self, con: &mut Conn, keys: &Keys, events_cap: usize, op_timeout: Duration) {
        let Tallies { chunks, by_task, by_state, .. } = std::mem::take(self);
        let mut pipe = redis::pipe();
        // The indices: capped like the recent-tasks list, and gone a day after the last
        // write (their records expire too; a listing skips ids whose record is gone).
        let mut index = |key: String, ids: &[TaskId]| {
            if ids.is_empty() {
                return;
            }
            pipe.cmd("LPUSH").arg(&key).arg(ids.iter().map(TaskId::as_str).collect::<Vec<_>>()).ignore();
            pipe.cmd("LTRIM").arg(&key).arg(0).arg(task_core::HISTORY_CAP - 1).ignore();
            pipe.cmd("EXPIRE").arg(&key).arg(INDEX_KEEP_SECS).ignore();
        };
        for (state, ids) in &by_state {
            index(keys.state_index(*state), ids);
        }
        for (task, tally) in &by_task {
            index(keys.task_index(task), &tally.ids);
        }
        if events_cap > 0 {
            // At most LINES_PER_ENTRY events per stream entry, so that the stream's cap in
            // entries bounds its events (and its memory) whatever the load.
            let at = now_ms();
            for chunk in chunks {
                pipe.cmd("XADD")
                    .arg(keys.events())
                    .arg("MAXLEN")
                    .arg("~")
                    .arg(stream_entries(events_cap))
                    .arg("*")
                    .arg("at")
                    .arg(at)
                    .arg("lines")
                    .arg(chunk)
                    .ignore();
            }
        }
        let (counts, runtimes) = (keys.task_counts(), keys.runtimes());
        for (task, tally) in by_task {
            for (state, n) in TaskState::ALL.iter().zip(tally.states).filter(|(_, n)| *n > 0) {
                pipe.cmd("HINCRBY").arg(&counts).arg(format!("{task}\t{state}")).arg(n).ignore();
            }
            if tally.count == 0 {
                continue;
            }
            let labels = task_core::RUNTIME_BUCKETS_MS.iter().map(u64::to_string).chain(["+Inf".to_owned()]);
            for (bucket, n) in labels.zip(tally.buckets).filter(|(_, n)| *n > 0) {
                pipe.cmd("HINCRBY").arg(&runtimes).arg(format!("{task}\t{bucket}")).arg(n).ignore();
            }
            pipe.cmd("HINCRBY").arg(&runtimes).arg(format!("{task}\tsum")).arg(tally.sum_ms).ignore();
            pipe.cmd("HINCRBY").arg(&runtimes).arg(format!("{task}\tcount")).arg(tally.count).ignore();
        }
        let sent: Result<(), _> = timed_pipe(op_timeout, &pipe, con).await;
        if let Err(e) = sent {
            tracing::warn!(error = %e.backend("Redis"), "events and task counts of the last interval are lost");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(state: TaskState, task: &str) -> Tally {
        Tally {
            state,
            id: TaskId::new(),
            task: task.into(),
            worker: "w1".into(),
            runtime_ms: Some(7),
            starts: state == TaskState::Started,
        }
    }

    #[test]
    fn tallied_events_fill_stream_entries_of_at_most_a_hundred_lines() {
        let mut tallies = Tallies::default();
        for _ in 0..250 {
            tallies.add(&stored(TaskState::Success, "t"));
        }
        tallies.add(&stored(TaskState::Pending, "t")); // no event for PENDING
        let lines: Vec<usize> = tallies.chunks.iter().map(|c| c.lines().count()).collect();
        assert_eq!(lines, [100, 100, 50]);
        assert_eq!(
            tallies.bytes,
            tallies.chunks.iter().map(String::len).sum::<usize>() - 247,
            "the 247 newlines are not counted"
        );
        for line in tallies.chunks.iter().flat_map(|c| c.lines()) {
            let event = Event::from_line(String::new(), 0, line).expect("a line the reader understands");
            assert_eq!(
                (event.kind, event.task.as_deref(), event.worker.as_deref()),
                (EventKind::TaskSucceeded, Some("t"), Some("w1"))
            );
        }
        let tally = &tallies.by_task["t"];
        assert_eq!((tally.count, tally.sum_ms), (250, 1750));
        assert_eq!(tally.buckets[1], 250, "7 ms is in the 10 ms bucket");
    }
}
