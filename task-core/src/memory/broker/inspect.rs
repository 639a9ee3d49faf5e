//! Inspection and administration of the in-memory broker.

use super::*;
use crate::envelope::Envelope;

impl Inspect for InMemoryBroker {
    fn queue_stats<'a>(&'a self, queue: &'a str) -> BoxFuture<'a, Result<QueueStats, BrokerError>> {
        let mut state = self.lock();
        state.promote_due();
        let stats = QueueStats {
            ready: state.queues.get(queue).map_or(0, Lanes::len),
            scheduled: state.delayed.values().filter(|e| e.queue == queue).count(),
            in_flight: state.held.values().filter(|(_, e)| e.queue == queue).count(),
            dead: state.dead.iter().filter(|d| d.queue == queue).count(),
            paused: state.paused.contains(queue),
        };
        Box::pin(async move { Ok(stats) })
    }

    fn queues(&self) -> BoxFuture<'_, Result<Vec<String>, BrokerError>> {
        let state = self.lock();
        let mut names: Vec<String> = state.queues.keys().cloned().collect();
        names.extend(state.delayed.values().map(|e| e.queue.clone()));
        names.sort();
        names.dedup();
        Box::pin(async move { Ok(names) })
    }

    fn dead_letters(&self, limit: usize) -> BoxFuture<'_, Result<Vec<DeadLetter>, BrokerError>> {
        let dead = self.lock().dead.iter().rev().take(limit).cloned().collect();
        Box::pin(async move { Ok(dead) })
    }

    fn purge<'a>(&'a self, queue: &'a str) -> BoxFuture<'a, Result<usize, BrokerError>> {
        let mut state = self.lock();
        let mut purged: Vec<Entry> =
            state.queues.remove(queue).map(|l| l.0.into_iter().flatten().collect()).unwrap_or_default();
        let delayed = std::mem::take(&mut state.delayed);
        for (at, entry) in delayed {
            if entry.queue == queue {
                purged.push(entry);
            } else {
                state.delayed.insert(at, entry);
            }
        }
        // A purged task will not run: its uniqueness lock goes with it.
        for (key, id) in purged.iter().filter_map(|e| unique_lock_of(&e.payload)) {
            if state.uniques.get(&key).is_some_and(|(holder, _)| *holder == id) {
                state.uniques.remove(&key);
            }
        }
        let removed = purged.len();
        Box::pin(async move { Ok(removed) })
    }

    fn peek<'a>(&'a self, queue: &'a str, at: PeekAt, limit: usize) -> BoxFuture<'a, Result<Vec<Peeked>, BrokerError>> {
        let state = self.lock();
        let unix_ms = crate::time::to_ms;
        let found: Vec<Peeked> = match at {
            PeekAt::Scheduled => state
                .delayed
                .iter()
                .filter(|(_, e)| e.queue == queue)
                .take(limit)
                .map(|((due, _), e)| Peeked::new(e.payload.clone(), Some(unix_ms(*due)), None))
                .collect(),
            PeekAt::InFlight => state
                .held
                .values()
                .filter(|(_, e)| e.queue == queue)
                .take(limit)
                .map(|(owner, e)| Peeked::new(e.payload.clone(), None, Some(owner.to_string())))
                .collect(),
        };
        Box::pin(async move { Ok(found) })
    }

    fn retry_dead<'a>(&'a self, queue: &'a str, limit: usize) -> BoxFuture<'a, Result<usize, BrokerError>> {
        let moved = {
            let mut state = self.lock();
            let (mut again, mut keep) = (Vec::new(), VecDeque::new());
            for dead in state.dead.drain(..) {
                if dead.queue == queue && again.len() < limit { again.push(dead) } else { keep.push_back(dead) }
            }
            state.dead = keep;
            let moved = again.len();
            for dead in again {
                let priority = Envelope::priority_in(&dead.payload);
                state.push(Entry { queue: dead.queue, priority, payload: dead.payload, deliveries: 0 }, false);
            }
            moved
        };
        self.shared.wake.notify_waiters();
        Box::pin(async move { Ok(moved) })
    }

    fn retry_dead_letter<'a>(&'a self, letter: &'a DeadLetter) -> BoxFuture<'a, Result<bool, BrokerError>> {
        let found = self.add_then_wake(|state| {
            let at = state.dead.iter().position(|d| d == letter);
            let Some(dead) = at.and_then(|at| state.dead.remove(at)) else { return Ok(false) };
            let priority = Envelope::priority_in(&dead.payload);
            state.push(Entry { queue: dead.queue, priority, payload: dead.payload, deliveries: 0 }, false);
            Ok(true)
        });
        Box::pin(async move { found })
    }

    fn purge_dead<'a>(&'a self, queue: &'a str) -> BoxFuture<'a, Result<usize, BrokerError>> {
        let mut state = self.lock();
        let before = state.dead.len();
        state.dead.retain(|d| d.queue != queue);
        let removed = before - state.dead.len();
        Box::pin(async move { Ok(removed) })
    }
}

/// The uniqueness lock an encoded envelope holds: (key, task id).
pub(crate) fn unique_lock_of(payload: &[u8]) -> Option<(String, TaskId)> {
    let envelope = Envelope::decode(payload).ok()?;
    Some((envelope.unique_key?, envelope.id))
}
