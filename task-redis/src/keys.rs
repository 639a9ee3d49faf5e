//! Every Redis key and channel name, built here and only here.
//!
//! All keys of one queue share the hash tag `{queue}`, so each Lua script touches one
//! slot and the same scripts run on one Redis and on Redis Cluster:
//!
//! | key | type | holds |
//! |---|---|---|
//! | `NS:{Q}:ready:P` | list | ready messages of queue `Q` at priority `P` (0–9) |
//! | `NS:{Q}:delayed` | zset | messages waiting for their due time (score: Unix ms) |
//! | `NS:{Q}:wake` | list | at most one token; idle workers block on it (`BLPOP`) |
//! | `NS:{Q}:proc:W` | list | messages held by worker `W` (moved here atomically by fetch) |
//! | `NS:{Q}:celery-proc:W` | list | Celery messages of queue `Q` (kombu's lists `Q`, `Q\x06\x16N`) held by worker `W` |
//! | `NS:celery-canvas:ID` | string | a Celery task's links and the rest of its chain (JSON), from its fetch until it ends |
//! | `NS:{Q}:celery-deaths` | hash | how many times workers holding each Celery message of `Q` died (by its SHA1); a day |
//! | `NS:{Q}:celery-burying` | list | Celery messages of `Q` that reached the delivery limit, on their way to the dead letters |
//! | `NS:{Q}:dead` | list | dead letters: `at_ms:reason_len:reason` + envelope |
//! | `NS:{Q}:sent:ID` | string | marks callback / chain step `ID` as sent (TTL: the parent's result TTL) |
//! | `NS:{Q}:chord:ID` | hash | a chord's join (size, remaining, callback, closed, `r:<i>` results); `Q` is the callback's queue |
//! | `NS:queues` | set | the queue names in use |
//! | `NS:partitions` | hash | partitioned queue name -> its partition count; partition `p` of `Q` is the queue `Q#p` (hash tag `{Q#p}`) |
//! | `NS:workers:offline` | zset | workers that stopped, by when (Unix ms); the last day |
//! | `NS:beat:ticks` | hash | periodic entry name -> its last claimed tick (Unix ms) |
//! | `NS:beat:schedule` | hash | periodic entry name -> the record its scheduler announced |
//! | `NS:workers` | zset | worker ids, scored by heartbeat deadline (Redis clock, ms) |
//! | `NS:worker:W` | hash | worker `W`'s host, pid, concurrency, queues, tasks, counts; TTL = heartbeat |
//! | `NS:lock:recover` | string | short lock held while a dead worker's messages are recovered |
//! | `NS:rate:TASK` | string | rate limiter: next start time (GCRA), with a TTL |
//! | `NS:unique:KEY` | string | uniqueness lock: the holding task id, with a TTL |
//! | `NS:idx:recent` | list | ids of tasks whose record changed, newest first (capped at 100,000 entries) |
//! | `NS:events` | stream | events: entries of up to 100 (`at`, `lines`: one `Event::push_line` line each — `KIND-or-STATE<TAB>id<TAB>task<TAB>worker<TAB>detail`), sent by each process every 250 ms of stored writes, or one per recorded event; `MAXLEN ~ cap/100` |
//! | `NS:idx:state:S`, `NS:idx:task:NAME` | list, list | ids that entered state `S` (FAILURE, RETRY); ids of one task name; newest first, capped at 100,000, gone a day after their last entry |
//! | `NS:stats:tasks`, `NS:stats:runtime` | hash, hash | counts by `task<TAB>state`; run times by `task<TAB>bucket` (ms bound, `+Inf`, `sum`, `count`) |
//! | `NS:stats:MINUTE` | hash | tasks succeeded / failed in that minute (kept 2 hours) |
//! | `NS:result:ID` | hash | state, result, error, progress, worker, retries, timings; with a TTL |
//! | channel `NS:done:ID` | pub/sub | the final state, published when the task ends (on a cluster: the sharded channel `NS:result:ID`, named as the record, in its slot) |
//! | channel `NS:control` | pub/sub | `terminate ID`: abort a running task (revoke with terminate) |

use task_core::broker::MAX_PRIORITY;
use task_core::{BrokerError, ErrorKind, TaskId, TaskState};

/// Key names under one namespace.
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    ns: String,
}

impl Keys {
    pub(crate) fn new(namespace: &str) -> Self {
        Self { ns: namespace.to_owned() }
    }

    /// Refuses queue names that would break the hash tag or the key layout.
    pub(crate) fn check_queue(queue: &str) -> Result<(), BrokerError> {
        if queue.is_empty() || queue.contains(['{', '}']) || queue.chars().any(char::is_control) {
            return Err(BrokerError::new(
                ErrorKind::Other,
                format!("invalid queue name `{queue}`: it must be non-empty, without braces or control characters"),
            ));
        }
        Ok(())
    }

    fn tag(&self, queue: &str) -> String {
        self.in_queue(queue, &[])
    }

    /// `NS:{queue}` followed by `rest`, built at its exact length (some are built per
    /// task).
    fn in_queue(&self, queue: &str, rest: &[&str]) -> String {
        let parts = [self.ns.as_str(), ":{", queue, "}"].into_iter().chain(rest.iter().copied());
        let mut key = String::with_capacity(parts.clone().map(str::len).sum());
        parts.for_each(|part| key.push_str(part));
        key
    }

    pub(crate) fn ready(&self, queue: &str, priority: u8) -> String {
        format!("{}:ready:{}", self.tag(queue), priority.min(MAX_PRIORITY))
    }

    /// The ready lists of `queue`, highest priority first (the order scripts expect).
    pub(crate) fn ready_all(&self, queue: &str) -> Vec<String> {
        (0..=MAX_PRIORITY).rev().map(|p| self.ready(queue, p)).collect()
    }

    pub(crate) fn delayed(&self, queue: &str) -> String {
        self.in_queue(queue, &[":delayed"])
    }

    pub(crate) fn wake(&self, queue: &str) -> String {
        self.in_queue(queue, &[":wake"])
    }

    /// Set while the queue is paused (any value): `fetch.lua` takes nothing from it.
    pub(crate) fn paused(&self, queue: &str) -> String {
        self.in_queue(queue, &[":paused"])
    }

    pub(crate) fn processing(&self, queue: &str, worker: &str) -> String {
        self.in_queue(queue, &[":proc:", worker])
    }

    /// Celery messages held by worker `W` (kombu's JSON, as Celery wrote it).
    pub(crate) fn celery_processing(&self, queue: &str, worker: &str) -> String {
        self.in_queue(queue, &[":celery-proc:", worker])
    }

    /// How many times the workers holding each Celery message of `queue` died (by the
    /// message's SHA1; a day).
    pub(crate) fn celery_deaths(&self, queue: &str) -> String {
        self.in_queue(queue, &[":celery-deaths"])
    }

    /// Celery messages of `queue` on their way to the dead letters.
    pub(crate) fn celery_burying(&self, queue: &str) -> String {
        self.in_queue(queue, &[":celery-burying"])
    }

    /// The processing list a delivery's receipt sits in: a Celery message's (kombu's
    /// JSON, which starts with `{`, never with an entry's header) or the queue's own.
    pub(crate) fn held_in(&self, queue: &str, worker: &str, receipt: &[u8]) -> String {
        if crate::celery::is_kombu(receipt) {
            self.celery_processing(queue, worker)
        } else {
            self.processing(queue, worker)
        }
    }

    /// kombu's lists of a Celery queue, highest priority first: `Q`, then `Q\x06\x16N`
    /// for kombu's priority steps 3, 6 and 9 (no namespace: Celery's own keys).
    pub(crate) fn celery_lists(queue: &str) -> Vec<String> {
        [0, 3, 6, 9].map(|step| crate::celery::kombu_list(queue, step)).into()
    }

    pub(crate) fn dead(&self, queue: &str) -> String {
        format!("{}:dead", self.tag(queue))
    }

    /// The marker of a message sent once (a callback, a chain step), beside its queue.
    pub(crate) fn sent(&self, queue: &str, id: &TaskId) -> String {
        format!("{}:sent:{id}", self.tag(queue))
    }

    /// A chord's join, beside its callback's queue (one hash slot for the fire script).
    pub(crate) fn chord(&self, queue: &str, chord: &TaskId) -> String {
        format!("{}:chord:{chord}", self.tag(queue))
    }

    /// The last claimed tick of every periodic entry.
    pub(crate) fn beat_ticks(&self) -> String {
        format!("{}:beat:ticks", self.ns)
    }

    /// The periodic entries the running schedulers announced.
    pub(crate) fn beat_schedule(&self) -> String {
        format!("{}:beat:schedule", self.ns)
    }

    /// The event stream.
    pub(crate) fn events(&self) -> String {
        format!("{}:events", self.ns)
    }

    /// Counts by task name and state.
    pub(crate) fn task_counts(&self) -> String {
        format!("{}:stats:tasks", self.ns)
    }

    /// Run-time histograms by task name.
    pub(crate) fn runtimes(&self) -> String {
        format!("{}:stats:runtime", self.ns)
    }

    /// The partition count of every partitioned queue.
    pub(crate) fn partitions(&self) -> String {
        format!("{}:partitions", self.ns)
    }

    pub(crate) fn queues(&self) -> String {
        format!("{}:queues", self.ns)
    }

    pub(crate) fn workers(&self) -> String {
        format!("{}:workers", self.ns)
    }

    /// What a worker says about itself (a hash with a TTL).
    pub(crate) fn worker(&self, id: &str) -> String {
        format!("{}:worker:{id}", self.ns)
    }

    pub(crate) fn recover_lock(&self) -> String {
        format!("{}:lock:recover", self.ns)
    }

    /// The canvas of a Celery task (its links and the rest of its chain), kept from its
    /// fetch until it ends.
    pub(crate) fn celery_canvas(&self, id: &str) -> String {
        [self.ns.as_str(), ":celery-canvas:", id].concat()
    }

    /// Built at its exact length: two of these per state write.
    pub(crate) fn result(&self, id: &TaskId) -> String {
        [self.ns.as_str(), ":result:", id.as_str()].concat()
    }

    /// The length of what every result key starts with (`store_many.lua` reads the id
    /// after it).
    pub(crate) fn result_prefix_len(&self) -> usize {
        self.ns.len() + ":result:".len()
    }

    pub(crate) fn done_channel(&self, id: &TaskId) -> String {
        [self.done_prefix().as_str(), id.as_str()].concat()
    }

    /// What every done channel starts with (`store_many.lua` adds the id).
    pub(crate) fn done_prefix(&self) -> String {
        [self.ns.as_str(), ":done:"].concat()
    }

    /// The completion channel of `id` on a cluster: a sharded channel (`SPUBLISH`) named
    /// as the record, so it is in the record's slot and only that slot's node carries it.
    pub(crate) fn done_shard_channel(&self, id: &TaskId) -> String {
        self.result(id)
    }

    /// Recently changed task ids, newest first (a capped list).
    pub(crate) fn recent(&self) -> String {
        format!("{}:idx:recent", self.ns)
    }

    /// Workers that stopped, scored by when (Unix ms), kept a day.
    pub(crate) fn workers_offline(&self) -> String {
        format!("{}:workers:offline", self.ns)
    }

    /// Tasks that entered `state`, newest first (capped).
    pub(crate) fn state_index(&self, state: TaskState) -> String {
        format!("{}:idx:state:{state}", self.ns)
    }

    /// Tasks of one name, newest first (capped).
    pub(crate) fn task_index(&self, task: &str) -> String {
        format!("{}:idx:task:{task}", self.ns)
    }

    /// Finished tasks in the minute starting at `minute_ms` (a hash with a TTL).
    pub(crate) fn minute(&self, minute_ms: i64) -> String {
        format!("{}:stats:{minute_ms}", self.ns)
    }

    /// A rate limiter (GCRA: the next start time, Unix ms).
    pub(crate) fn rate(&self, name: &str) -> String {
        format!("{}:rate:{name}", self.ns)
    }

    /// A uniqueness lock (value: the holding task's id).
    pub(crate) fn unique(&self, key: &str) -> String {
        format!("{}:unique:{key}", self.ns)
    }

    /// Worker control messages (`terminate ID`).
    /// Revoked task ids, scored by until when the revoke holds (Unix ms).
    pub(crate) fn revoked(&self) -> String {
        format!("{}:revoked", self.ns)
    }

    pub(crate) fn control_channel(&self) -> String {
        format!("{}:control", self.ns)
    }

    /// The list the answers to remote-control request `id` are pushed to.
    pub(crate) fn reply(&self, id: &str) -> String {
        format!("{}:reply:{id}", self.ns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_keys_share_one_hash_tag() {
        let k = Keys::new("celerity");
        assert_eq!(k.ready("mail", 3), "celerity:{mail}:ready:3");
        assert_eq!(k.processing("mail", "w1"), "celerity:{mail}:proc:w1");
        assert_eq!(k.ready_all("mail").first().unwrap(), "celerity:{mail}:ready:9");
        for key in [k.delayed("mail"), k.wake("mail"), k.dead("mail")] {
            assert!(key.starts_with("celerity:{mail}:"), "{key}");
        }
    }

    #[test]
    fn a_result_key_is_its_prefix_then_the_id() {
        let k = Keys::new("célérity");
        let id: TaskId = "6f1e-é".parse().unwrap();
        assert_eq!(&k.result(&id)[k.result_prefix_len()..], "6f1e-é");
    }

    #[test]
    fn braces_in_queue_names_are_refused() {
        assert!(Keys::check_queue("a{b}").is_err());
        assert!(Keys::check_queue("").is_err());
        Keys::check_queue("emails.high").unwrap();
    }
}
