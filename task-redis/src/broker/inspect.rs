//! Inspection and administration of the Redis queues.

use super::dead_sweep::DeadSweep;
use super::*;

/// Each of one queue as Redis keeps it (a partition, or an unpartitioned queue).
impl RedisBroker {
    fn queue_stats_of<'a>(&'a self, queue: &'a str) -> BoxFuture<'a, Result<QueueStats, BrokerError>> {
        Box::pin(async move {
            let keys = &self.inner.keys;
            let mut con = self.con();
            let workers = self.worker_ids().await.map_err(|e| e.broker("cannot list workers"))?;
            let ready = keys.ready_all(queue);
            let mut pipe = redis::pipe();
            for list in &ready {
                pipe.cmd("LLEN").arg(list);
            }
            pipe.cmd("ZCARD").arg(keys.delayed(queue));
            pipe.cmd("LLEN").arg(keys.dead(queue));
            pipe.cmd("EXISTS").arg(keys.paused(queue));
            for worker in &workers {
                pipe.cmd("LLEN").arg(keys.processing(queue, worker));
            }
            // A Celery queue: kombu's lists are ready too, and its held messages in flight.
            let celery = self.is_celery(queue);
            let kombu = if celery { Keys::celery_lists(queue) } else { Vec::new() };
            for list in &kombu {
                pipe.cmd("LLEN").arg(list);
            }
            if celery {
                for worker in &workers {
                    pipe.cmd("LLEN").arg(keys.celery_processing(queue, worker));
                }
            }
            let counts: Vec<usize> = timed_pipe(self.limit(), &pipe, &mut con)
                .await
                .map_err(|e| e.broker(&format!("cannot read the depths of `{queue}`")))?;
            let mut stats = QueueStats::default();
            let (ready_counts, rest) = counts.split_at(ready.len());
            stats.ready = ready_counts.iter().sum();
            stats.scheduled = rest[0];
            stats.dead = rest[1];
            stats.paused = rest[2] == 1;
            let (own, rest) = rest[3..].split_at(workers.len());
            let (kombu_counts, held) = rest.split_at(kombu.len());
            stats.in_flight = own.iter().sum::<usize>() + held.iter().sum::<usize>();
            stats.ready += kombu_counts.iter().sum::<usize>();
            Ok(stats)
        })
    }

    fn purge_of<'a>(&'a self, queue: &'a str) -> BoxFuture<'a, Result<usize, BrokerError>> {
        Box::pin(async move {
            let keys = &self.inner.keys;
            // The uniqueness locks of the tasks about to go: read first (a purge reads
            // what it deletes anyway), released after, each only if that task holds it.
            let locks = self.unique_locks_in(queue).await?;
            let mut pipe = redis::pipe();
            pipe.atomic();
            for ready in keys.ready_all(queue) {
                pipe.cmd("LLEN").arg(&ready);
                pipe.cmd("DEL").arg(&ready).ignore();
            }
            pipe.cmd("ZCARD").arg(keys.delayed(queue));
            pipe.cmd("DEL").arg(keys.delayed(queue)).ignore();
            let mut con = self.con();
            let counts: Vec<usize> = timed_pipe(self.limit(), &pipe, &mut con)
                .await
                .map_err(|e| e.broker(&format!("cannot purge `{queue}`")))?;
            for (key, id) in locks {
                self.unlock_unique(&key, &id).await?;
            }
            Ok(counts.iter().sum())
        })
    }

    fn peek_of<'a>(
        &'a self,
        queue: &'a str,
        at: PeekAt,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<Peeked>, BrokerError>> {
        Box::pin(async move {
            let keys = &self.inner.keys;
            let mut con = self.con();
            let last = isize::try_from(limit).unwrap_or(isize::MAX) - 1;
            let context = || format!("cannot look into `{queue}`");
            let strip = |raw: &[u8]| entry::decode(raw).2.to_vec();
            match at {
                PeekAt::Scheduled => {
                    let found: Vec<(Vec<u8>, f64)> = timed(
                        self.limit(),
                        redis::cmd("ZRANGE")
                            .arg(keys.delayed(queue))
                            .arg(0)
                            .arg(last)
                            .arg("WITHSCORES")
                            .query_async(&mut con),
                    )
                    .await
                    .map_err(|e| e.broker(&context()))?;
                    #[allow(clippy::cast_possible_truncation)]
                    Ok(found.iter().map(|(raw, due)| Peeked::new(strip(raw), Some(*due as i64), None)).collect())
                }
                PeekAt::InFlight => {
                    let workers = self.worker_ids().await.map_err(|e| e.broker(&context()))?;
                    let mut found = Vec::new();
                    for worker in workers {
                        let held: Vec<Vec<u8>> = timed(
                            self.limit(),
                            redis::cmd("LRANGE")
                                .arg(keys.processing(queue, &worker))
                                .arg(0)
                                .arg(last)
                                .query_async(&mut con),
                        )
                        .await
                        .map_err(|e| e.broker(&context()))?;
                        found.extend(held.iter().map(|raw| Peeked::new(strip(raw), None, Some(worker.clone()))));
                    }
                    found.truncate(limit);
                    Ok(found)
                }
            }
        })
    }

    fn retry_dead_of<'a>(&'a self, queue: &'a str, limit: usize) -> BoxFuture<'a, Result<usize, BrokerError>> {
        // Oldest first, each as `retry_dead_letter` does it (exact, at its priority): a
        // letter is never lost, and one that does not parse (pushed by hand) stays. Only
        // the letters of the start are looked at (`DeadSweep`): one buried again since
        // is not retried twice.
        Box::pin(async move {
            let dead = self.inner.keys.dead(queue);
            let context = || format!("cannot read the dead letters of `{queue}`");
            let mut con = self.con();
            let total: usize = timed(self.limit(), redis::cmd("LLEN").arg(&dead).query_async(&mut con))
                .await
                .map_err(|e| e.broker(&context()))?;
            let mut sweep = DeadSweep::new(total);
            let mut moved = 0;
            while let Some((start, end)) = sweep.next(limit - moved) {
                let records: Vec<Vec<u8>> =
                    timed(self.limit(), redis::cmd("LRANGE").arg(&dead).arg(start).arg(end).query_async(&mut con))
                        .await
                        .map_err(|e| e.broker(&context()))?;
                if records.is_empty() {
                    break;
                }
                for record in records.iter().rev() {
                    let Some((at_ms, reason, payload)) = entry::parse_dead_record(record) else {
                        sweep.saw(true);
                        continue;
                    };
                    let letter = DeadLetter::new(queue.to_owned(), reason, payload, at_ms);
                    sweep.saw(false);
                    if self.retry_dead_letter(&letter).await? {
                        moved += 1;
                        if moved == limit {
                            return Ok(moved);
                        }
                    }
                }
            }
            Ok(moved)
        })
    }

    fn purge_dead_of<'a>(&'a self, queue: &'a str) -> BoxFuture<'a, Result<usize, BrokerError>> {
        Box::pin(async move {
            let key = self.inner.keys.dead(queue);
            let mut pipe = redis::pipe();
            pipe.atomic().cmd("LLEN").arg(&key).cmd("DEL").arg(&key).ignore();
            let mut con = self.con();
            let (removed,): (usize,) = timed_pipe(self.limit(), &pipe, &mut con)
                .await
                .map_err(|e| e.broker(&format!("cannot purge the dead letters of `{queue}`")))?;
            Ok(removed)
        })
    }
}

/// A partitioned queue is inspected as one: the sums and lists of its partitions (and
/// of what its unpartitioned keys still hold).
impl Inspect for RedisBroker {
    fn queue_stats<'a>(&'a self, queue: &'a str) -> BoxFuture<'a, Result<QueueStats, BrokerError>> {
        Box::pin(async move {
            let mut total = QueueStats::default();
            for part in self.partitions().expand(queue, 0) {
                let stats = self.queue_stats_of(&part).await?;
                total.ready += stats.ready;
                total.scheduled += stats.scheduled;
                total.dead += stats.dead;
                total.in_flight += stats.in_flight;
                total.paused |= stats.paused;
            }
            Ok(total)
        })
    }

    fn queues(&self) -> BoxFuture<'_, Result<Vec<String>, BrokerError>> {
        Box::pin(self.all_queues())
    }

    fn dead_letters(&self, limit: usize) -> BoxFuture<'_, Result<Vec<DeadLetter>, BrokerError>> {
        Box::pin(async move {
            let mut all = Vec::new();
            let mut con = self.con();
            for queue in self.partitions().all_of(&self.all_queues().await?) {
                let records: Vec<Vec<u8>> = timed(
                    self.limit(),
                    redis::cmd("LRANGE")
                        .arg(self.inner.keys.dead(&queue))
                        .arg(0)
                        .arg(isize::try_from(limit).unwrap_or(isize::MAX) - 1)
                        .query_async(&mut con),
                )
                .await
                .map_err(|e| e.broker(&format!("cannot read the dead letters of `{queue}`")))?;
                all.extend(
                    records
                        .iter()
                        .filter_map(|r| entry::parse_dead_record(r))
                        .map(|(at, reason, payload)| DeadLetter::new(queue.clone(), reason, payload, at)),
                );
            }
            all.sort_by_key(|d| std::cmp::Reverse(d.at_ms));
            all.truncate(limit);
            Ok(all)
        })
    }

    fn purge<'a>(&'a self, queue: &'a str) -> BoxFuture<'a, Result<usize, BrokerError>> {
        Box::pin(async move {
            let mut purged = 0;
            for part in self.partitions().expand(queue, 0) {
                purged += self.purge_of(&part).await?;
            }
            Ok(purged)
        })
    }

    fn peek<'a>(&'a self, queue: &'a str, at: PeekAt, limit: usize) -> BoxFuture<'a, Result<Vec<Peeked>, BrokerError>> {
        Box::pin(async move {
            let mut found = Vec::new();
            for part in self.partitions().expand(queue, 0) {
                found.extend(self.peek_of(&part, at, limit).await?);
            }
            if at == PeekAt::Scheduled {
                found.sort_by_key(|p| p.due_ms);
            }
            found.truncate(limit);
            Ok(found)
        })
    }

    fn retry_dead<'a>(&'a self, queue: &'a str, limit: usize) -> BoxFuture<'a, Result<usize, BrokerError>> {
        Box::pin(async move {
            let mut moved = 0;
            for part in self.partitions().expand(queue, 0) {
                moved += self.retry_dead_of(&part, limit - moved).await?;
            }
            Ok(moved)
        })
    }

    fn retry_dead_letter<'a>(&'a self, letter: &'a DeadLetter) -> BoxFuture<'a, Result<bool, BrokerError>> {
        Box::pin(async move {
            let keys = &self.inner.keys;
            let queue = &letter.queue;
            let mut con = self.con();
            let mut inv = SCRIPTS.retry_dead_one.prepare_invoke();
            let priority = task_core::Envelope::priority_in(&letter.payload);
            inv.key(keys.dead(queue))
                .key(keys.ready(queue, priority))
                .key(keys.wake(queue))
                .arg(entry::dead_record(letter.at_ms, &letter.reason, &letter.payload))
                .arg(entry::encode(priority, 0, &letter.payload));
            let moved: i64 = timed(self.limit(), inv.invoke_async(&mut con))
                .await
                .map_err(|e| e.broker(&format!("cannot retry a dead letter of `{queue}`")))?;
            Ok(moved == 1)
        })
    }

    fn purge_dead<'a>(&'a self, queue: &'a str) -> BoxFuture<'a, Result<usize, BrokerError>> {
        Box::pin(async move {
            let mut removed = 0;
            for part in self.partitions().expand(queue, 0) {
                removed += self.purge_dead_of(&part).await?;
            }
            Ok(removed)
        })
    }
}

impl RedisBroker {
    /// The uniqueness locks (key, task id) of the ready and delayed messages of `queue`.
    async fn unique_locks_in(&self, queue: &str) -> Result<Vec<(String, TaskId)>, BrokerError> {
        let keys = &self.inner.keys;
        let mut pipe = redis::pipe();
        for ready in keys.ready_all(queue) {
            pipe.cmd("LRANGE").arg(ready).arg(0).arg(-1);
        }
        pipe.cmd("ZRANGE").arg(keys.delayed(queue)).arg(0).arg(-1);
        let mut con = self.con();
        let lists: Vec<Vec<Vec<u8>>> = timed_pipe(self.limit(), &pipe, &mut con)
            .await
            .map_err(|e| e.broker(&format!("cannot read `{queue}` before purging it")))?;
        Ok(lists
            .iter()
            .flatten()
            .filter_map(|raw| {
                let envelope = task_core::Envelope::decode(entry::decode(raw).2).ok()?;
                Some((envelope.unique_key?, envelope.id))
            })
            .collect())
    }
}
