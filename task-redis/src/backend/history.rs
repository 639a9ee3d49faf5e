//! The history the Redis backend keeps: recent tasks and their indices, throughput,
//! events, counts, stopped workers.

use super::tallies::{DAY_MS, INDEXED_STATES, stream_entries};
use super::*;

/// How many index entries one `recent` call looks at, at most: a filter that matches
/// nothing (say, tasks STARTED when none runs) reads this many records, about 60 ms
/// on loopback; the state and name indices make the usual filters far narrower.
const SCAN_LIMIT: isize = 10_000;

impl TaskHistory for RedisBackend {
    fn record_event<'a>(&'a self, event: &'a Event) -> BoxFuture<'a, Result<(), BackendError>> {
        Box::pin(async move {
            let celery = self.celery_worker_event(event).await;
            let mut con = self.con();
            let keys = &self.inner.keys;
            let mut pipe = redis::pipe();
            if let Some((channel, message)) = celery {
                // Celery's own worker event, for Flower and `celery events`.
                pipe.cmd("PUBLISH").arg(channel).arg(message).ignore();
            }
            pipe.cmd("XADD")
                .arg(keys.events())
                .arg("MAXLEN")
                .arg("~")
                .arg(stream_entries(self.inner.events_cap))
                .arg("*")
                .arg("at")
                .arg(event.at_ms)
                .arg("lines")
                .arg(event.to_line())
                .ignore();
            if let (EventKind::WorkerOffline, Some(worker)) = (event.kind, &event.worker) {
                // The workers that stopped in the last day, for the overview.
                let key = keys.workers_offline();
                pipe.cmd("ZADD").arg(&key).arg(event.at_ms).arg(worker).ignore();
                pipe.cmd("ZREMRANGEBYSCORE").arg(&key).arg("-inf").arg(event.at_ms - DAY_MS).ignore();
                pipe.cmd("PEXPIRE").arg(&key).arg(DAY_MS).ignore();
            }
            let _: () = timed_pipe(self.inner.op_timeout, &pipe, &mut con)
                .await
                .map_err(|e| e.backend(&format!("cannot record a {} event", event.kind)))?;
            Ok(())
        })
    }

    fn events(&self, limit: usize) -> BoxFuture<'_, Result<Vec<Event>, BackendError>> {
        Box::pin(async move {
            let mut con = self.con();
            // An entry holds one line per write of a grouped call: `limit` entries are
            // at least `limit` events.
            let entries: Vec<(String, HashMap<String, String>)> = timed(
                self.inner.op_timeout,
                redis::cmd("XREVRANGE")
                    .arg(self.inner.keys.events())
                    .arg("+")
                    .arg("-")
                    .arg("COUNT")
                    .arg(limit)
                    .query_async(&mut con),
            )
            .await
            .map_err(|e| e.backend("cannot read the events"))?;
            let mut events = Vec::with_capacity(limit);
            for (entry, fields) in entries {
                let at = fields.get("at").and_then(|v| v.parse().ok()).unwrap_or(0);
                let lines = fields.get("lines").map(String::as_str).unwrap_or_default();
                // Newest first: the lines of an entry backwards.
                for (i, line) in lines.lines().enumerate().collect::<Vec<_>>().into_iter().rev() {
                    if let Some(event) = Event::from_line(format!("{entry}/{i}"), at, line) {
                        events.push(event);
                    }
                }
                if events.len() >= limit {
                    break;
                }
            }
            events.truncate(limit);
            Ok(events)
        })
    }

    fn workers_offline(&self, since_ms: i64) -> BoxFuture<'_, Result<Vec<(String, i64)>, BackendError>> {
        Box::pin(async move {
            let mut con = self.con();
            timed(
                self.inner.op_timeout,
                redis::cmd("ZREVRANGEBYSCORE")
                    .arg(self.inner.keys.workers_offline())
                    .arg("+inf")
                    .arg(since_ms)
                    .arg("WITHSCORES")
                    .query_async(&mut con),
            )
            .await
            .map_err(|e| e.backend("cannot read the workers that went offline"))
        })
    }

    fn task_stats(&self) -> BoxFuture<'_, Result<TaskStats, BackendError>> {
        Box::pin(async move {
            let keys = &self.inner.keys;
            let mut pipe = redis::pipe();
            pipe.cmd("HGETALL").arg(keys.task_counts()).cmd("HGETALL").arg(keys.runtimes());
            let mut con = self.con();
            let (counts, runtimes): (HashMap<String, u64>, HashMap<String, u64>) =
                timed_pipe(self.inner.op_timeout, &pipe, &mut con)
                    .await
                    .map_err(|e| e.backend("cannot read the task statistics"))?;
            let split = |k: &str| k.rsplit_once('\t').map(|(a, b)| (a.to_owned(), b.to_owned()));
            Ok(TaskStats::from_counters(
                counts.iter().filter_map(|(k, n)| {
                    let (task, state) = split(k)?;
                    Some((task, state.parse().ok()?, *n))
                }),
                runtimes.iter().filter_map(|(k, n)| split(k).map(|(task, bucket)| (task, bucket, *n))),
            ))
        })
    }

    fn recent<'a>(
        &'a self,
        filter: &'a TaskFilter,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<task_core::RecentTask>, BackendError>> {
        Box::pin(async move {
            let keys = &self.inner.keys;
            let mut con = self.con();
            let mut found = Vec::new();
            let mut seen = std::collections::HashSet::new();
            // The narrowest index for the filter; each record is still checked against it
            // (a task in the SUCCESS index may have been retried since, say).
            let source = match (&filter.state, &filter.task) {
                (Some(state), _) if INDEXED_STATES.contains(state) => keys.state_index(*state),
                (_, Some(task)) => keys.task_index(task),
                _ => keys.recent(),
            };
            let page = 500isize;
            let mut start = 0isize;
            while found.len() < limit && start < SCAN_LIMIT {
                let ids: Vec<String> = timed(
                    self.inner.op_timeout,
                    redis::cmd("LRANGE").arg(&source).arg(start).arg(start + page - 1).query_async(&mut con),
                )
                .await
                .map_err(|e| e.backend("cannot read the recent tasks"))?;
                if ids.is_empty() {
                    break;
                }
                let mut pipe = redis::pipe();
                for id in &ids {
                    pipe.cmd("HGETALL").arg(keys.result(&TaskId::from_str(id).unwrap_or_default()));
                }
                let records: Vec<HashMap<String, Vec<u8>>> = timed_pipe(self.inner.op_timeout, &pipe, &mut con)
                    .await
                    .map_err(|e| e.backend("cannot read the recent tasks"))?;
                for (id, record) in ids.into_iter().zip(records) {
                    // Every record says when it last changed (`record::read`).
                    let (Some((meta, at)), Ok(task_id)) = (super::record::read(record), TaskId::from_str(&id)) else {
                        continue;
                    };
                    if !seen.insert(id) {
                        continue;
                    }
                    // The list is in the order tasks entered it; a record can change later,
                    // so the time filter is applied to each, and the scan ends at SCAN_LIMIT.
                    if filter.matches(&meta, at) {
                        found.push((task_id, at, meta));
                        if found.len() == limit {
                            return Ok(found);
                        }
                    }
                }
                start += page;
            }
            Ok(found)
        })
    }

    fn throughput(&self, minutes: usize) -> BoxFuture<'_, Result<Vec<MinuteCount>, BackendError>> {
        Box::pin(async move {
            let now = now_ms();
            let current = now - now.rem_euclid(60_000);
            let starts: Vec<i64> =
                (0..minutes).rev().map(|back| current - i64::try_from(back).unwrap_or(0) * 60_000).collect();
            let mut pipe = redis::pipe();
            for minute in &starts {
                pipe.cmd("HMGET").arg(self.inner.keys.minute(*minute)).arg("succeeded").arg("failed");
            }
            let mut con = self.con();
            let counts: Vec<(Option<u64>, Option<u64>)> = timed_pipe(self.inner.op_timeout, &pipe, &mut con)
                .await
                .map_err(|e| e.backend("cannot read the throughput"))?;
            Ok(starts
                .into_iter()
                .zip(counts)
                .map(|(m, (s, f))| MinuteCount::new(m, s.unwrap_or(0), f.unwrap_or(0)))
                .collect())
        })
    }
}
