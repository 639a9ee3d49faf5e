//! Rate limits, uniqueness locks, send-once, chord joins and tick claims of the
//! in-memory broker: held in its state, so they hold for every worker of the process.

use super::*;

impl RateLimits for InMemoryBroker {
    fn reserve_rate<'a>(
        &'a self,
        key: &'a str,
        limit: RateLimit,
    ) -> BoxFuture<'a, Result<Option<SystemTime>, BrokerError>> {
        let now = SystemTime::now();
        let mut state = self.lock();
        let tat = state.rates.get(key).copied().filter(|t| *t > now).unwrap_or(now);
        state.rates.insert(key.to_owned(), tat + limit.interval());
        let slot = (tat > now).then_some(tat);
        Box::pin(async move { Ok(slot) })
    }
}

impl UniqueLocks for InMemoryBroker {
    fn lock_unique<'a>(
        &'a self,
        key: &'a str,
        id: &'a TaskId,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Option<TaskId>, BrokerError>> {
        let now = Instant::now();
        let mut state = self.lock();
        let holder = match state.uniques.get(key) {
            Some((holder, until)) if *until > now => Some(holder.clone()),
            _ => {
                state.uniques.insert(key.to_owned(), (id.clone(), now + ttl));
                None
            }
        };
        Box::pin(async move { Ok(holder) })
    }

    fn unlock_unique<'a>(&'a self, key: &'a str, id: &'a TaskId) -> BoxFuture<'a, Result<(), BrokerError>> {
        let mut state = self.lock();
        if state.uniques.get(key).is_some_and(|(holder, _)| holder == id) {
            state.uniques.remove(key);
        }
        Box::pin(async { Ok(()) })
    }
}

impl SendOnce for InMemoryBroker {
    fn enqueue_once(&self, message: Message, ttl: Duration) -> BoxFuture<'_, Result<bool, BrokerError>> {
        let now = Instant::now();
        let sent = self.add_then_wake(|state| {
            state.fault(BrokerOp::Enqueue)?;
            state.sent_once.retain(|_, until| *until > now);
            if state.sent_once.contains_key(&message.id) {
                return Ok(false);
            }
            state.sent_once.insert(message.id.clone(), now + ttl);
            state.add(message);
            Ok(true)
        });
        Box::pin(async move { sent })
    }
}

impl ChordStore for InMemoryBroker {
    fn chord_open<'a>(
        &'a self,
        chord: &'a TaskId,
        _queue: &'a str,
        size: u32,
        callback: &'a [u8],
        ttl: Duration,
    ) -> BoxFuture<'a, Result<(), BrokerError>> {
        let now = Instant::now();
        let mut state = self.lock();
        state.chords.retain(|_, c| c.until > now);
        let join =
            Chord { size, callback: callback.to_vec(), results: BTreeMap::new(), closed: false, until: now + ttl };
        state.chords.insert(chord.clone(), join);
        Box::pin(async { Ok(()) })
    }

    fn chord_join<'a>(
        &'a self,
        member: &'a ChordMember,
        result: &'a [u8],
    ) -> BoxFuture<'a, Result<ChordJoin, BrokerError>> {
        let mut state = self.lock();
        let join = match state.chords.get_mut(&member.chord) {
            Some(join) if !join.closed && join.until > Instant::now() => {
                join.results.entry(member.index).or_insert_with(|| result.to_vec());
                let size = usize::try_from(join.size).unwrap_or(usize::MAX);
                if join.results.len() < size {
                    ChordJoin::Waiting(join.size - u32::try_from(join.results.len()).unwrap_or(0))
                } else {
                    ChordJoin::Complete {
                        callback: join.callback.clone(),
                        results: join.results.values().cloned().collect(),
                    }
                }
            }
            _ => ChordJoin::Closed,
        };
        Box::pin(async move { Ok(join) })
    }

    fn chord_fire<'a>(&'a self, member: &'a ChordMember, message: Message) -> BoxFuture<'a, Result<bool, BrokerError>> {
        let fired = self.add_then_wake(|state| {
            Ok(match state.chords.get_mut(&member.chord) {
                Some(join) if !join.closed => {
                    join.closed = true;
                    state.add(message);
                    true
                }
                _ => false,
            })
        });
        Box::pin(async move { fired })
    }

    fn chord_fail<'a>(&'a self, member: &'a ChordMember) -> BoxFuture<'a, Result<bool, BrokerError>> {
        let mut state = self.lock();
        let closed = state.chords.get_mut(&member.chord).is_some_and(|join| !std::mem::replace(&mut join.closed, true));
        Box::pin(async move { Ok(closed) })
    }
}

impl TickStore for InMemoryBroker {
    fn claim_tick<'a>(&'a self, entry: &'a str, tick_ms: i64) -> BoxFuture<'a, Result<bool, BrokerError>> {
        let mut state = self.lock();
        let last = state.ticks.entry(entry.to_owned()).or_insert(i64::MIN);
        let claimed = tick_ms > *last;
        if claimed {
            *last = tick_ms;
        }
        Box::pin(async move { Ok(claimed) })
    }

    fn last_tick<'a>(&'a self, entry: &'a str) -> BoxFuture<'a, Result<Option<i64>, BrokerError>> {
        let last = self.lock().ticks.get(entry).copied().filter(|t| *t != i64::MIN);
        Box::pin(async move { Ok(last) })
    }

    fn announce_schedule<'a>(&'a self, entries: &'a [ScheduledEntry]) -> BoxFuture<'a, Result<(), BrokerError>> {
        let mut state = self.lock();
        for entry in entries {
            state.schedule.insert(entry.name.clone(), entry.clone());
        }
        Box::pin(async { Ok(()) })
    }

    fn schedules(&self) -> BoxFuture<'_, Result<Vec<ScheduledEntry>, BrokerError>> {
        let now = now_ms();
        let mut state = self.lock();
        state.schedule.retain(|_, e| e.expires_ms > now);
        let entries = state.schedule.values().cloned().collect();
        Box::pin(async move { Ok(entries) })
    }
}

impl QueuePause for InMemoryBroker {
    fn pause<'a>(&'a self, queue: &'a str) -> BoxFuture<'a, Result<(), BrokerError>> {
        self.lock().paused.insert(queue.to_owned());
        Box::pin(async { Ok(()) })
    }

    fn resume<'a>(&'a self, queue: &'a str) -> BoxFuture<'a, Result<(), BrokerError>> {
        let _ = self.add_then_wake(|state| Ok(state.paused.remove(queue)));
        Box::pin(async { Ok(()) })
    }
}
