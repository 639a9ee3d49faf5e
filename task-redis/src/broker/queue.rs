//! The queues: [`Broker`] for Redis (enqueue, reliable fetch, acks, retries, recovery).

use super::*;

impl Broker for RedisBroker {
    fn enqueue(&self, message: Message) -> BoxFuture<'_, Result<(), BrokerError>> {
        Box::pin(async move {
            self.remember_queue(&message.queue).await?;
            let message = self.placed(message);
            let queue = message.queue.clone();
            let failed = |e: Failure| e.broker(&format!("cannot enqueue task {} to `{queue}`", message.id));
            if self.replicas().is_some() {
                // The send and its WAIT in one request, on a connection of their own.
                return self.enqueue_many(std::slice::from_ref(&message)).await.map_err(failed);
            }
            let invocation = self.enqueue_invocation(&SCRIPTS.enqueue, &message);
            let mut con = self.con();
            let _: i64 = timed(self.limit(), invocation.invoke_async(&mut con)).await.map_err(failed)?;
            Ok(())
        })
    }

    fn enqueue_batch(&self, messages: Vec<Message>) -> BoxFuture<'_, Result<(), BrokerError>> {
        Box::pin(async move {
            // A batch names few queues (most often one): a scan beats hashing every message.
            let mut queues: Vec<&str> = Vec::new();
            for m in &messages {
                if !queues.contains(&m.queue.as_str()) {
                    queues.push(&m.queue);
                }
            }
            for queue in queues {
                self.remember_queue(queue).await?;
            }
            let messages: Vec<Message> = if self.partitions().is_empty() {
                messages
            } else {
                messages.into_iter().map(|m| self.placed(m)).collect()
            };
            for chunk in messages.chunks(1000) {
                self.enqueue_many(chunk)
                    .await
                    .map_err(|e| e.broker(&format!("cannot enqueue a batch of {} tasks", chunk.len())))?;
            }
            Ok(())
        })
    }

    fn fetch<'a>(
        &'a self,
        consumer: &'a ConsumerId,
        queues: &'a [String],
        max: usize,
        wait: Duration,
    ) -> BoxFuture<'a, Result<Vec<Delivery>, BrokerError>> {
        Box::pin(async move {
            for queue in queues {
                self.remember_queue(queue).await?;
            }
            // A partitioned queue is fetched as its partitions, from a moving start.
            let expanded: std::borrow::Cow<'_, [String]> = if self.partitions().is_empty() {
                std::borrow::Cow::Borrowed(queues)
            } else {
                std::borrow::Cow::Owned(self.partitions().fetch_order(queues, self.turn()))
            };
            let queues = &expanded[..];
            let generation = self.inner.conns.generation();
            let unsure = {
                let mut handed_out = self.handed_out();
                let mine = handed_out
                    .entry(consumer.clone())
                    .or_insert_with(|| HandedOut { generation, ..HandedOut::default() });
                mine.unsure || mine.generation != generation
            };
            if unsure {
                self.reconcile(consumer, queues).await.map_err(|e| e.broker("cannot check the processing lists"))?;
            }
            let deadline = task_core::time::deadline(wait);
            // What the fetch sent behind the last wait found (see `blocked_fetch`).
            let mut after_wait = None;
            loop {
                // Unsure until the script's reply is in: a fetch dropped while its script
                // runs (fetches are cancel-safe) leaves what it moved to be reconciled.
                self.handed_out().entry(consumer.clone()).or_default().unsure = true;
                let (batch, next_due, passed_over) = match after_wait.take() {
                    Some((batch, next_due)) => (batch, next_due, false),
                    None => match self.fetch_once(consumer, queues, max.max(1)).await {
                        Ok(fetched) => fetched,
                        Err(e) => return Err(e.broker("cannot fetch")),
                    },
                };
                // A queue passed over may have taken messages whose reply was lost.
                self.handed_out().entry(consumer.clone()).or_default().unsure = passed_over;
                if !batch.is_empty() {
                    let mut handed_out = self.handed_out();
                    let mine = handed_out.entry(consumer.clone()).or_default();
                    mine.receipts.extend(batch.iter().map(|d| receipt_hash(d.receipt.as_bytes())));
                    return Ok(batch);
                }
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                if left.is_zero() {
                    return Ok(batch);
                }
                let until_due = next_due.map(|due| Duration::from_millis(u64::try_from(due - now_ms()).unwrap_or(0)));
                let block = until_due.map_or(left, |d| d.min(left)).max(Duration::from_millis(10));
                if self.fetch_follows_wait(queues) {
                    // The fetch may run from here on: unsure until its reply is in.
                    self.handed_out().entry(consumer.clone()).or_default().unsure = true;
                    after_wait = self
                        .wait_then_fetch(consumer, &queues[0], block, max.max(1))
                        .await
                        .map_err(|e| e.broker("cannot wait for messages"))?;
                } else {
                    self.block(queues, block).await.map_err(|e| e.broker("cannot wait for messages"))?;
                }
            }
        })
    }

    fn ack<'a>(&'a self, consumer: &'a ConsumerId, delivery: &'a Delivery) -> BoxFuture<'a, Result<(), BrokerError>> {
        Box::pin(async move {
            let mut con = self.con();
            let key = self.inner.keys.held_in(&delivery.queue, consumer.as_str(), delivery.receipt.as_bytes());
            let removed: i64 = timed(
                self.limit(),
                redis::cmd("LREM").arg(key).arg(1).arg(delivery.receipt.as_bytes()).query_async(&mut con),
            )
            .await
            .map_err(|e| e.broker("cannot ack"))?;
            self.settled(consumer, delivery);
            if removed == 0 {
                return Err(fenced(consumer, "ack"));
            }
            Ok(())
        })
    }

    fn retry<'a>(
        &'a self,
        consumer: &'a ConsumerId,
        delivery: &'a Delivery,
        retry: Message,
    ) -> BoxFuture<'a, Result<(), BrokerError>> {
        Box::pin(async move {
            let keys = &self.inner.keys;
            let receipt = delivery.receipt.as_bytes();
            let celery = crate::celery::is_kombu(receipt) && self.is_celery(&retry.queue);
            if let Some(next) =
                celery.then(|| crate::celery::retried(receipt, &retry.payload, retry.eta, &retry.queue)).flatten()
            {
                // A Celery message's next try goes back in Celery's format, as Celery's
                // own retry sends it (a Python worker of the queue may take it), with
                // the held one's removal, in one script.
                return self
                    .settle(
                        &SCRIPTS.celery_retry,
                        vec![
                            keys.celery_processing(&delivery.queue, consumer.as_str()),
                            crate::celery::kombu_list(&retry.queue, next.priority),
                        ],
                        vec![receipt.to_vec(), next.to_kombu().into_bytes()],
                        "retry",
                        consumer,
                        delivery,
                    )
                    .await
                    .map(drop);
            }
            if retry.queue != delivery.queue || crate::celery::is_kombu(receipt) {
                // Another queue is another hash slot, and a Celery message is held in a
                // list of its own: enqueue (into Celerity's layout), then ack (at least
                // once).
                self.enqueue(retry).await?;
                return self.ack(consumer, delivery).await;
            }
            let due = Self::due(&retry).to_string().into_bytes();
            self.settle(
                &SCRIPTS.retry,
                vec![
                    keys.ready(&retry.queue, retry.priority),
                    keys.delayed(&retry.queue),
                    keys.wake(&retry.queue),
                    keys.processing(&delivery.queue, consumer.as_str()),
                ],
                vec![entry::encode(retry.priority, 0, &retry.payload), due, delivery.receipt.as_bytes().to_vec()],
                "retry",
                consumer,
                delivery,
            )
            .await
            .map(drop)
        })
    }

    fn release<'a>(
        &'a self,
        consumer: &'a ConsumerId,
        delivery: &'a Delivery,
    ) -> BoxFuture<'a, Result<(), BrokerError>> {
        Box::pin(async move {
            let keys = &self.inner.keys;
            if crate::celery::is_kombu(delivery.receipt.as_bytes()) {
                // Back to the front of kombu's list of its priority, as Celery wrote it.
                return self
                    .settle(
                        &SCRIPTS.celery_return,
                        vec![
                            keys.celery_processing(&delivery.queue, consumer.as_str()),
                            crate::celery::home_list(&delivery.queue, delivery.receipt.as_bytes()),
                        ],
                        vec![delivery.receipt.as_bytes().to_vec(), crate::celery::HELD.to_vec()],
                        "release",
                        consumer,
                        delivery,
                    )
                    .await
                    .map(drop);
            }
            self.settle(
                &SCRIPTS.release,
                vec![
                    keys.processing(&delivery.queue, consumer.as_str()),
                    keys.ready(&delivery.queue, delivery.priority),
                    keys.wake(&delivery.queue),
                ],
                vec![delivery.receipt.as_bytes().to_vec()],
                "release",
                consumer,
                delivery,
            )
            .await
            .map(drop)
        })
    }

    fn dead_letter<'a>(
        &'a self,
        consumer: &'a ConsumerId,
        delivery: &'a Delivery,
        reason: &'a str,
    ) -> BoxFuture<'a, Result<(), BrokerError>> {
        Box::pin(async move {
            let keys = &self.inner.keys;
            let code = self
                .settle(
                    &SCRIPTS.bury,
                    vec![
                        keys.held_in(&delivery.queue, consumer.as_str(), delivery.receipt.as_bytes()),
                        keys.dead(&delivery.queue),
                    ],
                    vec![
                        delivery.receipt.as_bytes().to_vec(),
                        entry::dead_record(now_ms(), reason, &delivery.payload),
                        self.inner.config.dead_letter_cap.to_string().into_bytes(),
                    ],
                    "dead-letter",
                    consumer,
                    delivery,
                )
                .await?;
            if code == 2 {
                warn!(
                    queue = %delivery.queue,
                    cap = self.inner.config.dead_letter_cap,
                    "the queue's dead letters are at their cap: the oldest was dropped"
                );
            }
            Ok(())
        })
    }

    fn heartbeat<'a>(&'a self, consumer: &'a ConsumerId, ttl: Duration) -> BoxFuture<'a, Result<(), BrokerError>> {
        Box::pin(async move {
            let mut con = self.con();
            let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
            self.inner.longest_ttl_ms.fetch_max(ttl_ms, std::sync::atomic::Ordering::Relaxed);
            let _: i64 = timed(
                self.limit(),
                SCRIPTS
                    .heartbeat
                    .key(self.inner.keys.workers())
                    .arg(consumer.as_str())
                    .arg(ttl_ms)
                    .invoke_async(&mut con),
            )
            .await
            .map_err(|e| {
                self.unreachable();
                e.broker("cannot send the heartbeat")
            })?;
            Ok(())
        })
    }

    fn recover(&self) -> BoxFuture<'_, Result<Recovery, BrokerError>> {
        Box::pin(self.recover_dead())
    }

    fn deregister<'a>(&'a self, consumer: &'a ConsumerId) -> BoxFuture<'a, Result<(), BrokerError>> {
        Box::pin(async move {
            self.drain_worker(consumer.as_str(), false).await?;
            self.forget_worker(consumer).await
        })
    }

    fn recover_consumer<'a>(&'a self, consumer: &'a ConsumerId) -> BoxFuture<'a, Result<Recovery, BrokerError>> {
        Box::pin(async move {
            let recovery = self.drain_worker(consumer.as_str(), true).await?;
            self.forget_worker(consumer).await?;
            Ok(recovery)
        })
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

    fn shared_store(&self) -> Option<&dyn SharedStore> {
        Some(self)
    }
}
