//! Requests to terminate running tasks (`revoke(id, terminate = true)`), relayed by the
//! result backend to the workers of every process that runs them.
//!
//! A plain callback, not a channel of one runtime: the worker registers what to do with
//! an id, and the backend calls it for every request until the [`Listening`] guard drops.
//! [`Listeners`] is the list a driver keeps: it calls each listener with no lock held
//! (a listener may add or drop listeners) and catches a listener's panic, so one bad
//! listener stops neither the driver's task that relays the requests nor the others.
//! A listener may still be called once just after its guard dropped.

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
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

/// The listeners a driver calls (of terminate requests by default: a [`TaskId`]), for
/// driver authors.
pub struct Listeners<T: ?Sized = TaskId> {
    inner: Arc<ListenersInner<T>>,
}

impl<T: ?Sized> Clone for Listeners<T> {
    fn clone(&self) -> Self {
        Self { inner: self.inner.clone() }
    }
}

impl<T: ?Sized> Default for Listeners<T> {
    fn default() -> Self {
        Self { inner: Arc::new(ListenersInner { next: AtomicU64::new(0), each: Mutex::new(Vec::new()) }) }
    }
}

/// A listener as kept: shared, so that it is called with no lock held.
type Listener<T> = Arc<dyn Fn(&T) + Send + Sync>;

struct ListenersInner<T: ?Sized> {
    next: AtomicU64,
    each: Mutex<Vec<(u64, Listener<T>)>>,
}

impl<T: ?Sized + 'static> Listeners<T> {
    /// Adds `on_request`, called by [`notify`](Self::notify) until the guard drops.
    pub fn add(&self, on_request: Box<dyn Fn(&T) + Send + Sync>) -> Listening {
        let key = self.inner.next.fetch_add(1, Ordering::Relaxed);
        self.inner.each.lock().unwrap_or_else(PoisonError::into_inner).push((key, Arc::from(on_request)));
        let weak = Arc::downgrade(&self.inner);
        Listening {
            remove: Some(Box::new(move || {
                if let Some(inner) = weak.upgrade() {
                    let mut each = inner.each.lock().unwrap_or_else(PoisonError::into_inner);
                    let removed = each.iter().position(|(k, _)| *k == key).map(|at| each.remove(at));
                    drop(each);
                    // Dropped here, with no lock held: its captures may drop listeners too.
                    drop(removed);
                }
            })),
        }
    }

    /// Calls every listener with `what`; a listener's panic is caught and logged.
    pub fn notify(&self, what: &T) {
        let each: Vec<_> =
            self.inner.each.lock().unwrap_or_else(PoisonError::into_inner).iter().map(|(_, f)| f.clone()).collect();
        for on_request in each {
            if catch_unwind(AssertUnwindSafe(|| on_request(what))).is_err() {
                tracing::error!("a listener of the control channel panicked");
            }
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

impl<T: ?Sized + 'static> fmt::Debug for Listeners<T> {
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

    #[test]
    fn a_listener_may_drop_listeners_and_a_panicking_one_stops_no_other() {
        let listeners = Listeners::default();
        let heard = Arc::new(AtomicUsize::new(0));
        // A listener that, called, drops another listener's guard (and so takes the lock).
        let held = Arc::new(Mutex::new(Some(listeners.add(Box::new(|_| {})))));
        let _dropper = listeners.add(Box::new(move |_| drop(held.lock().unwrap().take())));
        let _panicker = listeners.add(Box::new(|_| panic!("a bad listener")));
        let counter = heard.clone();
        let _counter = listeners.add(Box::new(move |_| {
            counter.fetch_add(1, Ordering::SeqCst);
        }));
        listeners.notify(&TaskId::new());
        assert_eq!(heard.load(Ordering::SeqCst), 1, "the listener after the panicking one is called");
        assert_eq!(listeners.len(), 3, "the dropped guard removed its listener");
    }
}
