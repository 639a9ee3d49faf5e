//! Requests to terminate running tasks (`revoke(id, terminate = true)`), relayed by the
//! result backend to the workers of every process that runs them.
//!
//! A plain callback, not a channel of one runtime: the worker registers what to do with
//! an id, and the backend calls it for every request until the [`Listening`] guard drops.
//! [`Listeners`] is the list a driver keeps.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use crate::id::TaskId;

/// What a listener is called with: the id of a task to terminate.
pub type OnTerminate = Box<dyn Fn(&TaskId) + Send + Sync>;

/// Result-backend capability: tells listeners which running tasks to terminate.
pub trait Terminations: Send + Sync {
    /// Calls `on_request` for every terminate request from now on, until the returned
    /// guard is dropped.
    fn listen(&self, on_request: OnTerminate) -> Listening;
}

/// The listeners a driver calls, for driver authors.
#[derive(Clone, Default)]
pub struct Listeners {
    inner: Arc<ListenersInner>,
}

#[derive(Default)]
struct ListenersInner {
    next: AtomicU64,
    each: Mutex<Vec<(u64, OnTerminate)>>,
}

impl Listeners {
    /// Adds `on_request`, called by [`notify`](Self::notify) until the guard drops.
    pub fn add(&self, on_request: OnTerminate) -> Listening {
        let key = self.inner.next.fetch_add(1, Ordering::Relaxed);
        self.inner.each.lock().unwrap_or_else(PoisonError::into_inner).push((key, on_request));
        let weak = Arc::downgrade(&self.inner);
        Listening {
            remove: Some(Box::new(move || {
                if let Some(inner) = weak.upgrade() {
                    inner.each.lock().unwrap_or_else(PoisonError::into_inner).retain(|(k, _)| *k != key);
                }
            })),
        }
    }

    /// Calls every listener with `id`.
    pub fn notify(&self, id: &TaskId) {
        for (_, on_request) in self.inner.each.lock().unwrap_or_else(PoisonError::into_inner).iter() {
            on_request(id);
        }
    }

    /// How many listen now.
    pub fn len(&self) -> usize {
        self.inner.each.lock().unwrap_or_else(PoisonError::into_inner).len()
    }

    /// True when none listens.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl fmt::Debug for Listeners {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Listeners").field("len", &self.len()).finish()
    }
}

/// Keeps a listener registered; dropping it removes the listener.
#[must_use = "the listener is removed when this guard drops"]
pub struct Listening {
    remove: Option<Box<dyn FnOnce() + Send + Sync>>,
}

impl Drop for Listening {
    fn drop(&mut self) {
        if let Some(remove) = self.remove.take() {
            remove();
        }
    }
}

impl fmt::Debug for Listening {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Listening")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn listeners_hear_every_request_until_their_guard_drops() {
        let listeners = Listeners::default();
        let heard = Arc::new(AtomicUsize::new(0));
        let counter = heard.clone();
        let guard = listeners.add(Box::new(move |_| {
            counter.fetch_add(1, Ordering::SeqCst);
        }));
        listeners.notify(&TaskId::new());
        listeners.notify(&TaskId::new());
        assert_eq!(heard.load(Ordering::SeqCst), 2);
        drop(guard);
        assert!(listeners.is_empty());
        listeners.notify(&TaskId::new());
        assert_eq!(heard.load(Ordering::SeqCst), 2);
    }
}
