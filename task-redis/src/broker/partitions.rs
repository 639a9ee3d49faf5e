//! Partitioned queues: one logical queue spread over N hash tags (`{emails#0}` ..
//! `{emails#7}`), so that on a cluster its load spreads over the nodes that own those
//! slots. Producers place each message in one partition (by its partition key, so that
//! one key's tasks stay in one partition, in order; round robin without one); workers
//! fetch from every partition, starting at a different one each time. The partition
//! `Q#p` is a queue of its own to the scripts: a delivery names it, and its ack, retry
//! and dead letter stay there. The unpartitioned `Q` is served too (what was sent to it
//! before it was partitioned).
//!
//! Every decision here is pure; the broker applies them.

use std::borrow::Cow;
use std::collections::HashMap;

/// The most partitions of one queue.
pub(crate) const MAX_PARTITIONS: u16 = 1024;

/// The partitioned queues and their partition counts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Partitions {
    counts: HashMap<String, u16>,
}

impl Partitions {
    pub(crate) fn new(counts: impl IntoIterator<Item = (String, u16)>) -> Self {
        Self { counts: counts.into_iter().filter(|(_, n)| *n > 1).collect() }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }

    /// The partition count of `queue` (a logical name), if it is partitioned.
    pub(crate) fn count(&self, queue: &str) -> Option<u16> {
        self.counts.get(queue).copied()
    }

    /// `(queue, p)` when `name` is partition `p` of a partitioned `queue`.
    pub(crate) fn split<'a>(&self, name: &'a str) -> Option<(&'a str, u16)> {
        let (queue, p) = name.rsplit_once('#')?;
        let p: u16 = p.parse().ok().filter(|_| p.bytes().all(|b| b.is_ascii_digit()))?;
        (p < self.count(queue)?).then_some((queue, p))
    }

    /// The logical queue of `name` (itself unless it is a partition).
    pub(crate) fn logical<'a>(&self, name: &'a str) -> &'a str {
        self.split(name).map_or(name, |(queue, _)| queue)
    }

    /// Where a message for `queue` goes: `queue` itself unless it is partitioned; then
    /// the partition of `key` (the same one for every message of that key), or of
    /// `turn` (a counter the caller advances: round robin).
    pub(crate) fn place<'a>(&self, queue: &'a str, key: Option<&str>, turn: usize) -> Cow<'a, str> {
        let Some(n) = self.count(queue) else { return Cow::Borrowed(queue) };
        let p = match key {
            Some(key) => partition_of(key, n),
            None => u16::try_from(turn % usize::from(n)).unwrap_or(0),
        };
        Cow::Owned(partition(queue, p))
    }

    /// Every queue `name` stands for: its partitions (from `turn`, round robin) and
    /// itself when it is partitioned; itself otherwise (a partition too).
    pub(crate) fn expand(&self, name: &str, turn: usize) -> Vec<String> {
        let Some(n) = self.count(name) else { return vec![name.to_owned()] };
        let n = usize::from(n);
        let mut all: Vec<String> =
            (0..n).map(|i| partition(name, u16::try_from((turn + i) % n).unwrap_or(0))).collect();
        all.push(name.to_owned());
        all
    }

    /// The queues a worker of `queues` fetches from, in order: each logical queue in
    /// its place, expanded.
    pub(crate) fn fetch_order(&self, queues: &[String], turn: usize) -> Vec<String> {
        if self.is_empty() {
            return queues.to_vec();
        }
        queues.iter().flat_map(|q| self.expand(q, turn)).collect()
    }

    /// Every queue whose keys may hold messages, given the logical queues in use: the
    /// partitions of each partitioned one, and the rest as they are.
    pub(crate) fn all_of(&self, queues: &[String]) -> Vec<String> {
        queues.iter().flat_map(|q| self.expand(q, 0)).collect()
    }
}

/// The name of partition `p` of `queue`.
pub(crate) fn partition(queue: &str, p: u16) -> String {
    format!("{queue}#{p}")
}

/// The partition of `key` among `n`: FNV-1a, stable across processes and versions.
pub(crate) fn partition_of(key: &str, n: u16) -> u16 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in key.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    u16::try_from(hash % u64::from(n.max(1))).unwrap_or(0)
}

/// Reads `emails=8,reports=4` (`CELERITY_REDIS_PARTITIONS`).
pub(crate) fn parse(setting: &str) -> Result<Vec<(String, u16)>, String> {
    setting
        .split(',')
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .map(|part| {
            let (queue, n) = part.split_once('=').ok_or_else(|| format!("`{part}` is not QUEUE=PARTITIONS"))?;
            let n: u16 = n.trim().parse().map_err(|_| format!("`{n}` is not a number of partitions (in `{part}`)"))?;
            check(queue.trim(), n)?;
            Ok((queue.trim().to_owned(), n))
        })
        .collect()
}

/// A partition count for `queue` that can be used: 1 to [`MAX_PARTITIONS`].
pub(crate) fn check(queue: &str, n: u16) -> Result<(), String> {
    if queue.is_empty() {
        return Err("a partitioned queue needs a name".into());
    }
    if n == 0 || n > MAX_PARTITIONS {
        return Err(format!("queue `{queue}`: {n} partitions; it may have 1 to {MAX_PARTITIONS}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn emails() -> Partitions {
        Partitions::new([("emails".to_owned(), 4), ("solo".to_owned(), 1)])
    }

    #[test]
    fn a_partition_is_known_only_within_its_count() {
        let p = emails();
        assert_eq!(p.split("emails#3"), Some(("emails", 3)));
        assert_eq!(p.split("emails#4"), None, "past the count");
        assert_eq!(p.split("emails#+1"), None);
        assert_eq!(p.split("other#1"), None, "not partitioned");
        assert_eq!(p.split("solo#0"), None, "one partition is none");
        assert_eq!(p.logical("emails#2"), "emails");
        assert_eq!(p.logical("a#b#1"), "a#b#1");
    }

    #[test]
    fn a_key_keeps_its_partition_and_no_key_goes_round_robin() {
        let p = emails();
        let of = |key: &str, turn| p.place("emails", Some(key), turn).into_owned();
        assert_eq!(of("user-42", 0), of("user-42", 7), "the turn does not move a keyed message");
        let spread: std::collections::HashSet<String> = (0..64).map(|i| of(&format!("user-{i}"), 0)).collect();
        assert_eq!(spread.len(), 4, "64 keys use every partition");
        let turns: Vec<String> = (0..5).map(|t| p.place("emails", None, t).into_owned()).collect();
        assert_eq!(turns, ["emails#0", "emails#1", "emails#2", "emails#3", "emails#0"]);
        assert_eq!(p.place("other", Some("k"), 3), "other");
        assert_eq!(partition_of("user-42", 4), partition_of("user-42", 4));
    }

    #[test]
    fn a_worker_fetches_every_partition_from_a_moving_start_then_the_rest() {
        let p = emails();
        let queues = vec!["high".to_owned(), "emails".to_owned(), "low".to_owned()];
        assert_eq!(
            p.fetch_order(&queues, 1),
            ["high", "emails#1", "emails#2", "emails#3", "emails#0", "emails", "low"]
        );
        assert_eq!(p.fetch_order(&["emails#2".to_owned()], 5), ["emails#2"], "a partition alone");
        assert_eq!(Partitions::default().fetch_order(&queues, 3), queues);
        assert_eq!(
            p.all_of(&["emails".to_owned(), "x".to_owned()]),
            ["emails#0", "emails#1", "emails#2", "emails#3", "emails", "x"]
        );
    }

    #[test]
    fn settings_parse_and_bad_ones_say_why() {
        assert_eq!(parse("emails=8, reports = 4,"), Ok(vec![("emails".into(), 8), ("reports".into(), 4)]));
        assert_eq!(parse(""), Ok(vec![]));
        assert!(parse("emails").unwrap_err().contains("QUEUE=PARTITIONS"));
        assert!(parse("emails=x").unwrap_err().contains("not a number"));
        assert!(parse("emails=0").unwrap_err().contains("1 to 1024"));
        assert!(parse("=3").unwrap_err().contains("needs a name"));
    }
}
