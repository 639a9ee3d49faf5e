//! Settling a run atomically: its final state stored and its delivery acked in one step,
//! when the result backend keeps its records in the store the broker keeps its
//! messages in (one Redis and namespace for both).
//!
//! One step is both faster (one round trip where two were) and safer: the ack is the
//! fence, so a worker whose message was recovered by another cannot store a state
//! either. The pairing is found by asking, never by downcasting: the broker names its
//! store ([`SharedStore::store_id`]), the backend names its own
//! ([`SettleAtomically::store_id`]), and the worker settles atomically when the two
//! names are equal ([`pair`]).

use std::time::Duration;

use crate::error::BackendError;
use crate::future::BoxFuture;
use crate::id::{ConsumerId, TaskId};
use crate::message::Delivery;
use crate::state::TaskMeta;

/// Broker capability: its deliveries are entries of a store that a result backend of the
/// same store may ack.
pub trait SharedStore: Send + Sync {
    /// The store's name: equal names mean one store (for Redis, its URL and namespace).
    fn store_id(&self) -> &str;

    /// A delivery of `consumer` was acked by a [`SettleAtomically::settle`] (or refused
    /// there as fenced): the broker forgets what it kept of it.
    fn settled(&self, consumer: &ConsumerId, delivery: &Delivery);
}

/// Result-backend capability: store a final state and ack its delivery in one atomic step.
pub trait SettleAtomically: Send + Sync {
    /// The store's name, compared with [`SharedStore::store_id`].
    fn store_id(&self) -> &str;

    /// Stores `update` (a final state) for `id` and acks `delivery`, held by `consumer`,
    /// in one step. When the delivery is no longer the consumer's (another worker
    /// recovered it), nothing is stored and the error is
    /// [`ErrorKind::Fenced`](crate::ErrorKind::Fenced).
    fn settle<'a>(
        &'a self,
        id: &'a TaskId,
        update: TaskMeta,
        ttl: Duration,
        consumer: &'a ConsumerId,
        delivery: &'a Delivery,
    ) -> BoxFuture<'a, Result<(), BackendError>>;
}

/// The atomic settle for a broker and a backend, when they share a store.
pub fn pair<'a>(
    broker: Option<&'a dyn SharedStore>,
    backend: Option<&'a dyn SettleAtomically>,
) -> Option<(&'a dyn SharedStore, &'a dyn SettleAtomically)> {
    match (broker, backend) {
        (Some(broker), Some(backend)) if broker.store_id() == backend.store_id() => Some((broker, backend)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Named(&'static str);

    impl SharedStore for Named {
        fn store_id(&self) -> &str {
            self.0
        }
        fn settled(&self, _: &ConsumerId, _: &Delivery) {}
    }

    impl SettleAtomically for Named {
        fn store_id(&self) -> &str {
            self.0
        }
        fn settle<'a>(
            &'a self,
            _: &'a TaskId,
            _: TaskMeta,
            _: Duration,
            _: &'a ConsumerId,
            _: &'a Delivery,
        ) -> BoxFuture<'a, Result<(), BackendError>> {
            Box::pin(async { Ok(()) })
        }
    }

    #[test]
    fn a_broker_and_a_backend_pair_only_on_one_store() {
        let (a, b) = (Named("redis://h:1/0 ns=x"), Named("redis://h:1/0 ns=y"));
        assert!(pair(Some(&a as &dyn SharedStore), Some(&a as &dyn SettleAtomically)).is_some());
        assert!(pair(Some(&a as &dyn SharedStore), Some(&b as &dyn SettleAtomically)).is_none());
        assert!(pair(None, Some(&a as &dyn SettleAtomically)).is_none());
        assert!(pair(Some(&a as &dyn SharedStore), None).is_none());
    }
}
