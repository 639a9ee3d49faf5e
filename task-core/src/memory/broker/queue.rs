//! The queues: [`Broker`] for the in-memory broker.

use super::*;

impl Broker for InMemoryBroker {
    fn enqueue(&self, message: Message) -> BoxFuture<'_, Result<(), BrokerError>> {
        let result = self.enqueue_all(vec![message]);
        Box::pin(async move { result })
    }

    fn enqueue_batch(&self, messages: Vec<Message>) -> BoxFuture<'_, Result<(), BrokerError>> {
        let result = self.enqueue_all(messages);
        Box::pin(async move { result })
    }

    fn fetch<'a>(
        &'a self,
        consumer: &'a ConsumerId,
        queues: &'a [String],
        max: usize,
        wait: Duration,
    ) -> BoxFuture<'a, Result<Vec<Delivery>, BrokerError>> {
        Box::pin(async move {
            let deadline = crate::time::deadline(wait);
            loop {
                let notified = self.shared.wake.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                let next_due = match self.try_take(consumer, queues, max.max(1))? {
                    Ok(batch) => return Ok(batch),
                    Err(next_due) => next_due,
                };
                let mut until = deadline;
                if let Some(due) = next_due {
                    let in_ = due.duration_since(SystemTime::now()).unwrap_or_default();
                    until = until.min(crate::time::deadline(in_));
                }
                if tokio::time::Instant::now() >= deadline {
                    return Ok(Vec::new());
                }
                tokio::select! {
                    () = &mut notified => {}
                    () = tokio::time::sleep_until(until) => {}
                }
            }
        })
    }

    fn ack<'a>(&'a self, consumer: &'a ConsumerId, delivery: &'a Delivery) -> BoxFuture<'a, Result<(), BrokerError>> {
        let result = (|| {
            let mut state = self.lock();
            state.fault(BrokerOp::Ack)?;
            state.take_held(consumer, delivery).map(drop)
        })();
        Box::pin(async move { result })
    }

    fn retry<'a>(
        &'a self,
        consumer: &'a ConsumerId,
        delivery: &'a Delivery,
        retry: Message,
    ) -> BoxFuture<'a, Result<(), BrokerError>> {
        let result = (|| {
            let mut state = self.lock();
            state.take_held(consumer, delivery)?;
            state.add(retry);
            Ok(())
        })();
        self.shared.wake.notify_waiters();
        Box::pin(async move { result })
    }

    fn release<'a>(
        &'a self,
        consumer: &'a ConsumerId,
        delivery: &'a Delivery,
    ) -> BoxFuture<'a, Result<(), BrokerError>> {
        let result = (|| {
            let mut state = self.lock();
            let mut entry = state.take_held(consumer, delivery)?;
            entry.deliveries = entry.deliveries.saturating_sub(1);
            state.push(entry, true);
            Ok(())
        })();
        self.shared.wake.notify_waiters();
        Box::pin(async move { result })
    }

    fn dead_letter<'a>(
        &'a self,
        consumer: &'a ConsumerId,
        delivery: &'a Delivery,
        reason: &'a str,
    ) -> BoxFuture<'a, Result<(), BrokerError>> {
        let result = (|| {
            let mut state = self.lock();
            let entry = state.take_held(consumer, delivery)?;
            state.bury(entry, reason.to_owned());
            Ok::<(), BrokerError>(())
        })();
        Box::pin(async move { result })
    }

    fn heartbeat<'a>(&'a self, consumer: &'a ConsumerId, ttl: Duration) -> BoxFuture<'a, Result<(), BrokerError>> {
        self.lock().consumers.insert(consumer.clone(), crate::time::std_deadline(ttl));
        Box::pin(async { Ok(()) })
    }

    fn recover(&self) -> BoxFuture<'_, Result<Recovery, BrokerError>> {
        let recovery = self.recover_now();
        Box::pin(async move { Ok(recovery) })
    }

    fn deregister<'a>(&'a self, consumer: &'a ConsumerId) -> BoxFuture<'a, Result<(), BrokerError>> {
        {
            let mut state = self.lock();
            state.consumers.remove(consumer);
            // A stopped worker leaves the directory at once (as in Redis, where the
            // directory lists the workers of the heartbeat set).
            state.directory.remove(consumer.as_str());
            let tokens: Vec<u64> =
                state.held.iter().filter(|(_, (owner, _))| owner == consumer).map(|(t, _)| *t).collect();
            for token in tokens {
                let (_, mut entry) = state.held.remove(&token).expect("token listed above");
                entry.deliveries = entry.deliveries.saturating_sub(1);
                state.push(entry, true);
            }
        }
        self.shared.wake.notify_waiters();
        Box::pin(async { Ok(()) })
    }

    fn recover_consumer<'a>(&'a self, consumer: &'a ConsumerId) -> BoxFuture<'a, Result<Recovery, BrokerError>> {
        // Gone for good: it leaves the directory at once, as after `deregister`.
        self.lock().directory.remove(consumer.as_str());
        let recovery = self.recover_from(std::slice::from_ref(consumer), "exited");
        Box::pin(async move { Ok(recovery) })
    }

    fn inspect(&self) -> Option<&dyn Inspect> {
        Some(self)
    }

    fn rate_limits(&self) -> Option<&dyn RateLimits> {
        Some(self)
    }

    fn unique_locks(&self) -> Option<&dyn UniqueLocks> {
        Some(self)
    }

    fn send_once(&self) -> Option<&dyn SendOnce> {
        Some(self)
    }

    fn chord_store(&self) -> Option<&dyn ChordStore> {
        Some(self)
    }

    fn tick_store(&self) -> Option<&dyn TickStore> {
        Some(self)
    }

    fn pausing(&self) -> Option<&dyn QueuePause> {
        Some(self)
    }

    fn directory(&self) -> Option<&dyn WorkerDirectory> {
        Some(self)
    }
}
