//! Rate limits, uniqueness locks, send-once, chord joins and tick claims, kept in Redis
//! so they hold across every worker; and the store this broker shares with a result
//! backend of the same Redis and namespace.

use super::*;

impl RateLimits for RedisBroker {
    fn reserve_rate<'a>(
        &'a self,
        key: &'a str,
        limit: RateLimit,
    ) -> BoxFuture<'a, Result<Option<SystemTime>, BrokerError>> {
        Box::pin(async move {
            let mut con = self.con();
            let interval_ms = limit.interval().as_secs_f64() * 1000.0;
            let slot: i64 = timed(
                self.limit(),
                SCRIPTS.rate.key(self.inner.keys.rate(key)).arg(interval_ms).invoke_async(&mut con),
            )
            .await
            .map_err(|e| e.broker(&format!("cannot reserve a start under the rate limit of `{key}`")))?;
            Ok((slot > 0).then(|| UNIX_EPOCH + Duration::from_millis(u64::try_from(slot).unwrap_or(0))))
        })
    }
}

impl UniqueLocks for RedisBroker {
    fn lock_unique<'a>(
        &'a self,
        key: &'a str,
        id: &'a TaskId,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Option<TaskId>, BrokerError>> {
        Box::pin(async move {
            let mut con = self.con();
            let lock = self.inner.keys.unique(key);
            let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
            let context = || format!("cannot take the uniqueness lock `{key}`");
            // The holder may release between our SET and GET: then try again.
            for _ in 0..3 {
                let taken: Option<String> = timed(
                    self.limit(),
                    redis::cmd("SET").arg(&lock).arg(id.as_str()).arg("NX").arg("PX").arg(ttl_ms).query_async(&mut con),
                )
                .await
                .map_err(|e| e.broker(&context()))?;
                if taken.is_some() {
                    return Ok(None);
                }
                let holder: Option<String> = timed(self.limit(), redis::cmd("GET").arg(&lock).query_async(&mut con))
                    .await
                    .map_err(|e| e.broker(&context()))?;
                if let Some(holder) = holder.and_then(|h| h.parse::<TaskId>().ok()) {
                    return Ok(Some(holder));
                }
            }
            Err(BrokerError::new(
                ErrorKind::Other,
                format!("the uniqueness lock `{key}` changes hands too fast to take"),
            ))
        })
    }

    fn unlock_unique<'a>(&'a self, key: &'a str, id: &'a TaskId) -> BoxFuture<'a, Result<(), BrokerError>> {
        Box::pin(async move {
            let mut con = self.con();
            let _: i64 = timed(
                self.limit(),
                SCRIPTS.unlock.key(self.inner.keys.unique(key)).arg(id.as_str()).invoke_async(&mut con),
            )
            .await
            .map_err(|e| e.broker(&format!("cannot release the uniqueness lock `{key}`")))?;
            Ok(())
        })
    }
}

impl SendOnce for RedisBroker {
    fn enqueue_once(&self, message: Message, ttl: Duration) -> BoxFuture<'_, Result<bool, BrokerError>> {
        Box::pin(self.send_once(message, ttl))
    }
}

impl ChordStore for RedisBroker {
    fn chord_open<'a>(
        &'a self,
        chord: &'a TaskId,
        queue: &'a str,
        size: u32,
        callback: &'a [u8],
        ttl: Duration,
    ) -> BoxFuture<'a, Result<(), BrokerError>> {
        Box::pin(self.open_chord(chord, queue, size, callback, ttl))
    }

    fn chord_join<'a>(
        &'a self,
        member: &'a ChordMember,
        result: &'a [u8],
    ) -> BoxFuture<'a, Result<ChordJoin, BrokerError>> {
        Box::pin(self.join_chord(member, result))
    }

    fn chord_fire<'a>(&'a self, member: &'a ChordMember, message: Message) -> BoxFuture<'a, Result<bool, BrokerError>> {
        Box::pin(self.fire_chord(member, message))
    }

    fn chord_fail<'a>(&'a self, member: &'a ChordMember) -> BoxFuture<'a, Result<bool, BrokerError>> {
        Box::pin(self.fail_chord(member))
    }
}

impl TickStore for RedisBroker {
    fn claim_tick<'a>(&'a self, entry: &'a str, tick_ms: i64) -> BoxFuture<'a, Result<bool, BrokerError>> {
        Box::pin(self.claim(entry, tick_ms))
    }

    fn last_tick<'a>(&'a self, entry: &'a str) -> BoxFuture<'a, Result<Option<i64>, BrokerError>> {
        Box::pin(self.last_claimed(entry))
    }

    fn announce_schedule<'a>(&'a self, entries: &'a [ScheduledEntry]) -> BoxFuture<'a, Result<(), BrokerError>> {
        Box::pin(self.announce_entries(entries))
    }

    fn schedules(&self) -> BoxFuture<'_, Result<Vec<ScheduledEntry>, BrokerError>> {
        Box::pin(self.announced_entries())
    }
}

impl SharedStore for RedisBroker {
    fn store_id(&self) -> &str {
        &self.inner.store_id
    }

    fn settled(&self, consumer: &ConsumerId, delivery: &Delivery) {
        if let Some(h) = self.handed_out().get_mut(consumer) {
            h.receipts.remove(&receipt_hash(delivery.receipt.as_bytes()));
        }
    }
}

impl QueuePause for RedisBroker {
    /// A partitioned queue pauses and resumes as one: every partition.
    fn pause<'a>(&'a self, queue: &'a str) -> BoxFuture<'a, Result<(), BrokerError>> {
        Box::pin(async move {
            self.remember_queue(queue).await?;
            let mut pipe = redis::pipe();
            for part in self.partitions().expand(queue, 0) {
                pipe.cmd("SET").arg(self.inner.keys.paused(&part)).arg(1).ignore();
            }
            let mut con = self.con();
            let _: () = timed_pipe(self.limit(), &pipe, &mut con)
                .await
                .map_err(|e| e.broker(&format!("cannot pause `{queue}`")))?;
            Ok(())
        })
    }

    fn resume<'a>(&'a self, queue: &'a str) -> BoxFuture<'a, Result<(), BrokerError>> {
        Box::pin(async move {
            let keys = &self.inner.keys;
            let mut pipe = redis::pipe();
            // Resumed: wake a worker, as a new message would.
            for part in self.partitions().expand(queue, 0) {
                pipe.cmd("DEL").arg(keys.paused(&part)).ignore().cmd("RPUSH").arg(keys.wake(&part)).arg(1).ignore();
            }
            let mut con = self.con();
            let _: () = timed_pipe(self.limit(), &pipe, &mut con)
                .await
                .map_err(|e| e.broker(&format!("cannot resume `{queue}`")))?;
            Ok(())
        })
    }
}
