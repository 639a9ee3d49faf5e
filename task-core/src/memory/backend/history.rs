//! The history of the in-memory backend: recent tasks, throughput, events and counts.

use super::*;
use crate::capability::RecentTask;

impl TaskHistory for InMemoryBackend {
    fn recent<'a>(
        &'a self,
        filter: &'a TaskFilter,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<RecentTask>, BackendError>> {
        let state = self.lock();
        let mut seen = std::collections::HashSet::new();
        let found = state
            .recent
            .iter()
            .rev()
            .filter(|(id, _)| seen.insert(id.clone()))
            .filter_map(|(id, entered)| {
                let at = state.changed.get(id).copied().unwrap_or(*entered);
                state.live(id).map(|meta| (id.clone(), at, meta.clone()))
            })
            .filter(|(_, at, meta)| filter.matches(meta, *at))
            .take(limit)
            .collect();
        Box::pin(async move { Ok(found) })
    }

    fn record_event<'a>(&'a self, event: &'a Event) -> BoxFuture<'a, Result<(), BackendError>> {
        self.lock().push_event(event.clone());
        Box::pin(async { Ok(()) })
    }

    fn events(&self, limit: usize) -> BoxFuture<'_, Result<Vec<Event>, BackendError>> {
        let events = self.lock().events.iter().rev().take(limit).cloned().collect();
        Box::pin(async move { Ok(events) })
    }

    fn workers_offline(&self, since_ms: i64) -> BoxFuture<'_, Result<Vec<(String, i64)>, BackendError>> {
        let gone = self.lock().offline.iter().rev().filter(|(_, at)| *at >= since_ms).cloned().collect();
        Box::pin(async move { Ok(gone) })
    }

    fn task_stats(&self) -> BoxFuture<'_, Result<TaskStats, BackendError>> {
        let state = self.lock();
        let stats = TaskStats::from_counters(
            state.counts.iter().map(|((task, s), n)| (task.clone(), *s, *n)),
            state.runtime.iter().map(|((task, bucket), n)| (task.clone(), bucket.clone(), *n)),
        );
        Box::pin(async move { Ok(stats) })
    }

    fn throughput(&self, minutes: usize) -> BoxFuture<'_, Result<Vec<MinuteCount>, BackendError>> {
        let now = crate::time::now_ms();
        let current = now - now.rem_euclid(60_000);
        let state = self.lock();
        let counts = (0..minutes)
            .rev()
            .map(|back| {
                let minute = current - i64::try_from(back).unwrap_or(0) * 60_000;
                let (s, f) = state.minutes.get(&minute).copied().unwrap_or_default();
                MinuteCount::new(minute, s, f)
            })
            .collect();
        Box::pin(async move { Ok(counts) })
    }
}
