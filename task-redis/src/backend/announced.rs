//! Final states announced on their done channel and not yet followed by their record.
//!
//! `store_many.lua` publishes a final state in two messages: `+`, whose receiver count
//! tells the script whether anyone listens, then the record (or the state alone). A
//! listener on another server than the one that stored it (a demoted primary, now a
//! replica, until Sentinel moves its clients) hears the replicated `+` alone: the
//! primary counted no listener of its own and sent nothing after it. The second message
//! leaves Redis with the first, so an announcement it has not followed within
//! [`GRACE`] is taken as such a lone one, and its waiters read their state again.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use tokio::time::Instant;

/// How long the second message may lag behind the `+`: both leave Redis together, so
/// only a listener stalled this long ever waits for one that comes; its waiters then
/// read once more than they needed to.
pub(super) const GRACE: Duration = Duration::from_millis(100);

/// The announcements waiting for their second message, by channel.
#[derive(Debug, Default)]
pub(super) struct Announced {
    /// When each channel's latest announcement is due, oldest first; an entry whose
    /// channel has been followed (or announced again) since is skipped when it falls due.
    due: VecDeque<(Instant, String)>,
    open: HashMap<String, Instant>,
}

impl Announced {
    /// A `+` heard on `channel` at `now`.
    pub(super) fn announce(&mut self, channel: String, now: Instant) {
        let at = now + GRACE;
        self.open.insert(channel.clone(), at);
        self.due.push_back((at, channel));
    }

    /// The second message heard on `channel`.
    pub(super) fn followed(&mut self, channel: &str) {
        self.open.remove(channel);
    }

    /// When the oldest announcement still unfollowed falls due, if any (those followed
    /// are dropped from the front first, so that a listener whose messages all came in
    /// pairs sets no timer).
    pub(super) fn next_due(&mut self) -> Option<Instant> {
        while let Some((at, channel)) = self.due.front() {
            if self.open.get(channel) == Some(at) {
                return Some(*at);
            }
            self.due.pop_front();
        }
        None
    }

    /// The channels whose announcement went unfollowed up to `now`: their waiters read
    /// their state again.
    pub(super) fn overdue(&mut self, now: Instant) -> Vec<String> {
        let mut out = Vec::new();
        while let Some((at, _)) = self.due.front() {
            if *at > now {
                break;
            }
            let Some((at, channel)) = self.due.pop_front() else { break };
            if self.open.get(&channel) == Some(&at) {
                self.open.remove(&channel);
                out.push(channel);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_announcement_alone_falls_due_after_the_grace_and_a_followed_one_never() {
        let start = Instant::now();
        let mut announced = Announced::default();
        assert_eq!(announced.next_due(), None, "nothing announced");
        announced.announce("a".into(), start);
        announced.announce("b".into(), start + Duration::from_millis(10));
        announced.followed("b");
        assert_eq!(announced.next_due(), Some(start + GRACE));
        announced.followed("a");
        assert_eq!(announced.next_due(), None, "both followed: no timer");
        announced.announce("a".into(), start);
        assert!(announced.overdue(start + GRACE - Duration::from_millis(1)).is_empty(), "within its grace");
        assert_eq!(announced.overdue(start + GRACE), vec!["a".to_owned()]);
        assert!(announced.overdue(start + GRACE * 3).is_empty(), "b was followed; a is due once");
        assert_eq!(announced.next_due(), None);
    }

    #[test]
    fn an_announcement_made_again_falls_due_from_the_latest() {
        let start = Instant::now();
        let mut announced = Announced::default();
        announced.announce("a".into(), start);
        announced.followed("a");
        announced.announce("a".into(), start + Duration::from_millis(50));
        assert!(announced.overdue(start + GRACE).is_empty(), "the first was followed, the second is in its grace");
        assert_eq!(announced.overdue(start + Duration::from_millis(50) + GRACE), vec!["a".to_owned()]);
    }
}
