//! State writes: grouped into `store_many` script calls (group commit), each write
//! sending only its values when its fields are one of the common shapes.

use super::tallies::TALLY_EVERY;
use super::*;

/// The field sets of the common writes, each field in the order `run_store` writes
/// them. A write with exactly one of these sets sends its values only: `store_many.lua`
/// names them (its `store_shaped`, written from this list when the script loads). The
/// names cost Redis more than their bytes: each argument is one more Lua string per write.
/// Any other set goes as field/value pairs.
pub(crate) const WRITE_SHAPES: [&[&str]; 3] = [
    // The first and only write of a run whose start is not stored (success).
    &["worker", record::RUN, "result"],
    // STARTED: the claim.
    &["worker", record::RUN],
    // SUCCESS after a stored start.
    &[record::END, "result"],
];

/// `value`, unless its group is `packed`.
fn unless<T>(packed: bool, value: Option<T>) -> Option<T> {
    if packed { None } else { value }
}

/// The names of the fields of a write that are set, in order.
fn set_fields<'a, T>(fields: &'a [(&'static str, Option<T>)]) -> impl Iterator<Item = &'static str> + Clone + 'a {
    fields.iter().filter(|(_, value)| value.is_some()).map(|(field, _)| *field)
}

/// Appends a write's fields that are set: their values, each after its name when the
/// write is `named` (not one of [`WRITE_SHAPES`]).
fn push_fields<T: redis::ToRedisArgs>(
    args: &mut redis::Cmd,
    named: bool,
    fields: impl IntoIterator<Item = (&'static str, Option<T>)>,
) {
    for (field, value) in fields {
        if let Some(value) = value {
            if named {
                args.arg(field);
            }
            args.arg(value);
        }
    }
}

/// One state write on its way to the `store_many` script.
#[derive(Debug)]
pub(super) struct Write {
    pub(super) key: String,
    /// What the write may have in common with others of its call, sent once a call.
    pub(super) head: Head,
    /// The processing list to ack the write's message in (its receipt is in `args`).
    pub(super) ack_key: Option<String>,
    /// The receipt (when it acks), then the values of its shape's fields or (shape 0) a
    /// field count and field/value pairs: arguments only, no command name.
    pub(super) args: redis::Cmd,
    /// What the write adds to the events and counters once stored.
    pub(super) tally: Tally,
    pub(super) reply: oneshot::Sender<Result<i64, (ErrorKind, String)>>,
}

/// The arguments of a write that the writes of a worker mostly share (`store_many.lua`'s
/// heads), but for its processing list ([`Write::ack_key`]) and its writer (the tally's
/// worker, when `fenced_by_writer`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Head {
    ttl_ms: u64,
    /// Whether the record's owner fences the write (one that acks is fenced by its ack).
    fenced_by_writer: bool,
    /// `"1"` a claim (STARTED), `"2"` the first write of a run whose start is not
    /// stored, `"0"` neither.
    claim: &'static str,
    state: TaskState,
    /// The number of the write's shape in [`WRITE_SHAPES`] (from 1), 0 for none.
    shape: usize,
}

impl Write {
    /// Whether `self` and `other` send the same head (and ack in the same list).
    fn same_head(&self, other: &Write) -> bool {
        self.head == other.head
            && (!self.head.fenced_by_writer || self.tally.worker == other.tally.worker)
            && self.ack_key == other.ack_key
    }

    /// The writer the script fences the write with, `""` for none.
    fn writer(&self) -> &str {
        if self.head.fenced_by_writer { &self.tally.worker } else { "" }
    }
}

/// The distinct items of `items` by `same`: the index of the first of each, and for
/// each item the number (from 1) of the one it is the same as.
fn distinct<T>(items: &[T], same: impl Fn(&T, &T) -> bool) -> (Vec<usize>, Vec<usize>) {
    let mut firsts: Vec<usize> = Vec::new();
    let numbers = items
        .iter()
        .enumerate()
        .map(|(at, item)| match firsts.iter().position(|&first| same(&items[first], item)) {
            Some(n) => n + 1,
            None => {
                firsts.push(at);
                firsts.len()
            }
        })
        .collect();
    (firsts, numbers)
}

/// The most writes in one script call.
const MAX_GROUP: usize = 256;

/// Sends state writes to Redis, one script call at a time, each carrying every write
/// that arrived meanwhile (group commit): under load, one call serves many tasks; alone,
/// a write goes at once. The script applies each write's own fencing and revoke rules.
/// On a cluster (`cluster`), a call carries the writes of one slot, the calls of a
/// group go in one pipeline (split per slot), and the recent-tasks list and the minute
/// counters, of slots of their own, are written after them, before the writers hear.
pub(super) async fn flush_writes(
    mut writes: mpsc::UnboundedReceiver<Write>,
    mut con: Conn,
    op_timeout: Duration,
    keys: Keys,
    events_cap: usize,
    cluster: bool,
) {
    let mut tallies = Tallies::default();
    let mut tally_due = tokio::time::Instant::now() + TALLY_EVERY;
    // Groups in flight at once: the next group is sent while Redis runs the previous
    // one. Each task awaits a write before its next, so its writes stay in order.
    let in_flight = Arc::new(tokio::sync::Semaphore::new(GROUPS_IN_FLIGHT));
    let (stored_tx, mut stored_rx) = mpsc::unbounded_channel::<Vec<Tally>>();
    loop {
        let first = tokio::select! {
            write = writes.recv() => write,
            // The stored writes of a call that came back: tallied (and sent within
            // TALLY_EVERY even if no other write comes).
            Some(stored) = stored_rx.recv() => {
                if tallies.is_empty() {
                    tally_due = tokio::time::Instant::now() + TALLY_EVERY;
                }
                stored.iter().for_each(|t| tallies.add(t));
                if tallies.is_full() {
                    tallies.send(&mut con, &keys, events_cap, op_timeout).await;
                }
                continue;
            }
            () = tokio::time::sleep_until(tally_due), if !tallies.is_empty() => {
                tallies.send(&mut con, &keys, events_cap, op_timeout).await;
                continue;
            }
        };
        let Some(first) = first else { break };
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match writes.try_recv() {
                Ok(write) => group.push(write),
                Err(_) => break,
            }
        }
        // Shared among the calls that may go now, so that Redis starts on the first
        // while the worker still sends the others, and the tasks of the first go on
        // while Redis runs the rest: one call of every write would have the worker wait
        // on Redis, then Redis on the worker, in turn. Under load the calls in flight
        // take every permit, writes queue meanwhile, and each call carries many.
        let calls = shares(group.len(), in_flight.available_permits());
        let size = group.len().div_ceil(calls);
        let mut group = group.into_iter();
        loop {
            let share: Vec<Write> = group.by_ref().take(size).collect();
            if share.is_empty() {
                break;
            }
            let now = now_ms();
            let parts = if cluster {
                by_slot(share).into_iter().map(|part| (store_call(&part, None, now), part)).collect()
            } else {
                vec![(store_call(&share, Some(&keys), now), share)]
            };
            let permit = in_flight.clone().acquire_owned().await.expect("never closed");
            let (mut con, stored_tx, keys_) = (con.clone(), stored_tx.clone(), keys.clone());
            tokio::spawn(async move {
                let _permit = permit;
                store_parts(&mut con, parts, op_timeout, &stored_tx, cluster.then_some(&keys_)).await;
            });
        }
    }
    let _ = in_flight.acquire_many(u32::try_from(GROUPS_IN_FLIGHT).unwrap_or(u32::MAX)).await;
    while let Ok(stored) = stored_rx.try_recv() {
        stored.iter().for_each(|t| tallies.add(t));
    }
    if !tallies.is_empty() {
        tallies.send(&mut con, &keys, events_cap, op_timeout).await;
    }
}

/// The writes of `group` by the slot of their record, each slot's in their order.
fn by_slot(group: Vec<Write>) -> Vec<Vec<Write>> {
    let mut parts: Vec<(redis::cluster_routing::Slot, Vec<Write>)> = Vec::new();
    for write in group {
        let slot = redis::cluster_routing::Slot::for_key(&write.key);
        match parts.iter_mut().find(|(s, _)| *s == slot) {
            Some((_, part)) => part.push(write),
            None => parts.push((slot, vec![write])),
        }
    }
    parts.into_iter().map(|(_, part)| part).collect()
}

/// The `store_many` call of `group`: with the recent-tasks list and this minute's
/// counters of `index` (one Redis), or without (a cluster: the script answers 2 for a
/// stored write to list, and the caller lists it).
fn store_call(group: &[Write], index: Option<&Keys>, now: i64) -> redis::Cmd {
    // What writes have in common goes once (their heads), each processing list once:
    // every argument costs Redis a parse, an object and a Lua string.
    let (heads, head_of) = distinct(group, Write::same_head);
    let mut lists: Vec<&str> = Vec::new();
    let list_of: Vec<usize> = heads
        .iter()
        .map(|&at| match group[at].ack_key.as_deref() {
            None => 0,
            Some(list) => {
                1 + lists.iter().position(|&l| l == list).unwrap_or_else(|| {
                    lists.push(list);
                    lists.len() - 1
                })
            }
        })
        .collect();
    // EVALSHA built as one command: its arguments go straight into the command's
    // buffer (a ScriptInvocation would copy each into a vector of its own first).
    // Sized up front: a group of a hundred writes would otherwise regrow it often.
    let size =
        |w: &Write| w.args.args_iter().map(|a| if let redis::Arg::Simple(a) = a { a.len() } else { 0 }).sum::<usize>();
    let bytes: usize = group.iter().map(|w| w.key.len() + 4 + size(w)).sum::<usize>()
        + heads.iter().map(|&at| group[at].writer().len() + 32).sum::<usize>()
        + lists.iter().map(|list| list.len()).sum::<usize>();
    let count: usize = group.iter().map(|w| 2 + w.args.args_iter().len()).sum::<usize>() + 6 * heads.len();
    let mut cmd = redis::Cmd::with_capacity(count + lists.len() + 10, bytes + 256);
    cmd.arg("EVALSHA");
    let indexes = if index.is_some() { 2 } else { 0 };
    cmd.arg(SCRIPTS.store_many.get_hash()).arg(group.len() + indexes + lists.len());
    for write in group {
        cmd.arg(&write.key);
    }
    if let Some(keys) = index {
        cmd.arg(keys.recent()).arg(keys.minute(now - now.rem_euclid(60_000)));
    }
    for list in &lists {
        cmd.arg(list);
    }
    // The done channels' prefix and the result keys' (the script names each final
    // write's channel from its key); on a cluster neither is needed.
    let (done_prefix, result_prefix) =
        index.map_or((String::new(), 0), |keys| (keys.done_prefix(), keys.result_prefix_len()));
    cmd.arg(group.len()).arg(now).arg(task_core::HISTORY_CAP).arg(done_prefix).arg(result_prefix).arg(heads.len());
    for (&at, &list) in heads.iter().zip(&list_of) {
        let write = &group[at];
        let head = write.head;
        cmd.arg(head.ttl_ms).arg(write.writer()).arg(head.claim).arg(head.state.as_str()).arg(head.shape).arg(list);
    }
    for (write, head) in group.iter().zip(head_of) {
        cmd.arg(head);
        for arg in write.args.args_iter() {
            if let redis::Arg::Simple(arg) = arg {
                cmd.arg(arg);
            }
        }
    }
    cmd
}

/// Runs the calls of `parts` and answers each write.
/// On a cluster (`index`: its keys), the writes stored are listed and counted first.
async fn store_parts(
    con: &mut Conn,
    parts: Vec<(redis::Cmd, Vec<Write>)>,
    op_timeout: Duration,
    tallied: &mpsc::UnboundedSender<Vec<Tally>>,
    index: Option<&Keys>,
) {
    // On a cluster each part (one slot) is a call of its own, all at once: a part whose
    // node is away, or lost the script (NOSCRIPT), fails or goes again alone.
    let results: Vec<Result<Vec<i64>, crate::error::Failure>> = if let [(cmd, _)] = &parts[..] {
        vec![store_call_once(con, cmd, op_timeout).await]
    } else {
        let mut calls = tokio::task::JoinSet::new();
        for (at, (cmd, _)) in parts.iter().enumerate() {
            let (mut con, cmd) = (con.clone(), cmd.clone());
            calls.spawn(async move { (at, store_call_once(&mut con, &cmd, op_timeout).await) });
        }
        let mut results: Vec<Result<Vec<i64>, crate::error::Failure>> =
            (0..parts.len()).map(|_| Err(crate::error::Failure::Closed)).collect();
        while let Some(done) = calls.join_next().await {
            if let Ok((at, result)) = done {
                results[at] = result;
            }
        }
        results
    };
    if let Some(keys) = index {
        let stored: Vec<(&[Write], &[i64])> = parts
            .iter()
            .zip(&results)
            .filter_map(|((_, group), result)| Some((group.as_slice(), result.as_ref().ok()?.as_slice())))
            .collect();
        let listed = indexes(&stored, keys);
        if !listed.is_empty() {
            if let Err(e) = timed_pipe::<()>(op_timeout, &listed, con).await {
                tracing::warn!(error = %e.backend("Redis"), "stored tasks are missing from the recent list");
            }
        }
    }
    for ((_, group), result) in parts.into_iter().zip(results) {
        let result = result.map_err(|e| (e.kind(), e.backend("Redis").to_string()));
        answer(group, result, tallied);
    }
}

/// One `store_many` call; when Redis answers `NOSCRIPT` (it restarted and forgot the
/// script), the script is loaded and the same call sent again.
async fn store_call_once(
    con: &mut Conn,
    cmd: &redis::Cmd,
    op_timeout: Duration,
) -> Result<Vec<i64>, crate::error::Failure> {
    match timed(op_timeout, cmd.query_async(con)).await {
        Err(e) if e.is_noscript() => {
            timed(op_timeout, SCRIPTS.store_many.load_async(con)).await?;
            timed(op_timeout, cmd.query_async(con)).await
        }
        other => other,
    }
}

/// How many grouped write calls may be on their way to Redis at once. One worker
/// process's drain is bound by how its calls overlap with Redis's work on the others
/// (the README's Performance section); the more may go, the fewer writes each carries,
/// and each call costs Redis its own script run.
const GROUPS_IN_FLIGHT: usize = 4;

/// The fewest writes a call carries when the writes that came together are shared
/// among calls: below it a call's own cost (its script call, the recent list and the
/// counters it writes once) outweighs what the overlap gains.
const MIN_SHARE: usize = 8;

/// Among how many calls `n` writes that came together are shared when `free` more
/// calls may go now: as many as may go, each of [`MIN_SHARE`] writes at least; one
/// when none may go (it waits for the first call to come back, and carries them all).
fn shares(n: usize, free: usize) -> usize {
    free.min(n / MIN_SHARE).max(1)
}

/// The recent-tasks list and minute counters of the writes a cluster's calls stored:
/// those answered 2 listed, the successes and failures among those answered 1 or 2.
fn indexes(stored: &[(&[Write], &[i64])], keys: &Keys) -> redis::Pipeline {
    let mut pipe = redis::pipe();
    let stored = || stored.iter().flat_map(|(group, codes)| group.iter().zip(codes.iter()));
    let listed: Vec<&str> = stored().filter(|(_, code)| **code == 2).map(|(w, _)| w.tally.id.as_str()).collect();
    if !listed.is_empty() {
        let recent = keys.recent();
        pipe.cmd("LPUSH").arg(&recent).arg(listed).ignore();
        pipe.cmd("LTRIM").arg(&recent).arg(0).arg(task_core::HISTORY_CAP - 1).ignore();
    }
    let ended = |state| stored().filter(|(w, code)| **code >= 1 && w.tally.state == state).count();
    let (succeeded, failed) = (ended(TaskState::Success), ended(TaskState::Failure));
    if succeeded + failed > 0 {
        let now = now_ms();
        let minute = keys.minute(now - now.rem_euclid(60_000));
        for (field, n) in [("succeeded", succeeded), ("failed", failed)].into_iter().filter(|(_, n)| *n > 0) {
            pipe.cmd("HINCRBY").arg(&minute).arg(field).arg(n).ignore();
        }
        pipe.cmd("EXPIRE").arg(&minute).arg(7200).ignore();
    }
    pipe
}

/// Answers each write of one `store_many` call. The tallies of the stored writes go to
/// `tallied` before any writer hears back: a writer's next write may be in a later
/// group, whose tallies must not overtake these (the event stream keeps each task's
/// order). Code 2 (a cluster's call) is a write stored that the tallies list.
fn answer(
    group: Vec<Write>,
    stored: Result<Vec<i64>, (ErrorKind, String)>,
    tallied: &mpsc::UnboundedSender<Vec<Tally>>,
) {
    match stored {
        Ok(codes) if codes.len() == group.len() => {
            let (tallies, replies): (Vec<_>, Vec<_>) = group
                .into_iter()
                .zip(codes)
                .map(|(write, code)| ((code >= 1).then_some(write.tally), (write.reply, code.min(1))))
                .unzip();
            let _ = tallied.send(tallies.into_iter().flatten().collect());
            for (reply, code) in replies {
                let _ = reply.send(Ok(code));
            }
        }
        Ok(codes) => {
            let text = format!("the store script answered {} codes for {} writes", codes.len(), group.len());
            for write in group {
                let _ = write.reply.send(Err((ErrorKind::Protocol, text.clone())));
            }
        }
        Err(e) => {
            for write in group {
                let _ = write.reply.send(Err(e.clone()));
            }
        }
    }
}

impl RedisBackend {
    /// Runs the store rules for one write: 1 stored, 0 fenced (another worker owns
    /// the task, or no longer holds the message to `ack`), -1 a claim of a revoked
    /// task. Concurrent writes are grouped into one `store_many` script call (see
    /// [`flush_writes`]). `ack`: the processing list and receipt of the message to ack
    /// with the write.
    pub(super) async fn run_store(
        &self,
        id: &TaskId,
        update: TaskMeta,
        ttl: Duration,
        ack: Option<(String, &[u8])>,
    ) -> Result<i64, BackendError> {
        let keys = &self.inner.keys;
        let state = update.state;
        // The name goes to the events and counts with every write; the record keeps it
        // from the claim (or from an end without a start), so it is not written again.
        // A write with the arguments starts the task's record (STARTED, or the first write
        // of a run whose start is not tracked): it is listed, and names the task.
        let starts = state == TaskState::Started || update.args.is_some();
        let names_task = (starts || !matches!(state, TaskState::Success | TaskState::Retry | TaskState::Progress))
            && update.task.as_deref().is_some_and(|name| !name.is_empty());
        // Whole groups travel packed (`record`); what is left of them, by name.
        let packed = record::pack(&update, names_task);
        let (holds_run, holds_end) = (packed.run.is_some(), packed.holds_end);
        let name = update.task.unwrap_or_default();
        let task = names_task.then(|| name.clone());
        let tally = Tally {
            state,
            id: id.clone(),
            task: name,
            worker: update.worker.clone().unwrap_or_default(),
            runtime_ms: update.runtime_ms,
            starts,
        };
        // The end of a run whose claim is stored: the claim named the worker, and the
        // fence (the ack, or the writer) keeps any other worker's end out.
        let worker = if !starts && holds_end { None } else { update.worker };
        let texts = [
            ("task", unless(holds_run, task)),
            ("error", update.error),
            ("worker", worker),
            ("queue", unless(holds_run, update.queue)),
        ];
        let numbers = [
            ("runtime_ms", unless(holds_end, update.runtime_ms.and_then(|ms| i64::try_from(ms).ok()))),
            ("retries", unless(holds_run, update.retries.map(i64::from))),
            ("started_ms", unless(holds_run, update.started_ms)),
            ("finished_ms", unless(holds_end, update.finished_ms)),
        ];
        let blobs = [
            (record::RUN, packed.run),
            (record::END, packed.end),
            ("result", update.result),
            ("progress", update.progress),
            ("args", unless(holds_run, update.args)),
        ];
        let (fields, shape) = {
            let present = set_fields(&texts).chain(set_fields(&numbers)).chain(set_fields(&blobs));
            (present.clone().count(), WRITE_SHAPES.iter().position(|shape| shape.iter().copied().eq(present.clone())))
        };
        // A shaped write sends values only; any other, field/value pairs.
        let named = shape.is_none();
        let (ack_key, receipt) = ack.unzip();
        let bytes = texts.iter().filter_map(|(_, v)| v.as_ref().map(String::len)).sum::<usize>()
            + blobs.iter().filter_map(|(_, v)| v.as_ref().map(Vec::len)).sum::<usize>()
            + receipt.map_or(0, <[u8]>::len)
            + 256;
        // All of the write's arguments in one buffer (a Cmd without a command name):
        // numbers are written in place, nothing is allocated per argument.
        let mut args = redis::Cmd::with_capacity(2 + 2 * fields, bytes);
        // A write that acks is fenced by its ack, not by the record's owner.
        let head = Head {
            ttl_ms: u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1),
            fenced_by_writer: receipt.is_none() && !tally.worker.is_empty(),
            claim: match (state, starts) {
                (TaskState::Started, _) => "1",
                (_, true) => "2",
                _ => "0",
            },
            state,
            shape: shape.map_or(0, |i| i + 1),
        };
        if let Some(receipt) = receipt {
            args.arg(receipt);
        }
        if named {
            args.arg(fields);
        }
        push_fields(&mut args, named, texts);
        push_fields(&mut args, named, numbers);
        push_fields(&mut args, named, blobs);
        let (reply, answer) = oneshot::channel();
        let context = || format!("cannot store state {state} of task {id}");
        self.inner.writes.send(Write { key: keys.result(id), head, ack_key, args, tally, reply }).map_err(|_| {
            BackendError::new(ErrorKind::Closed, format!("{}: the result backend is shut down", context()))
        })?;
        match answer.await {
            Ok(Ok(code)) => Ok(code),
            Ok(Err((kind, text))) => Err(BackendError::new(kind, format!("{}: {text}", context()))),
            Err(_) => {
                Err(BackendError::new(ErrorKind::Closed, format!("{}: the result backend is shut down", context())))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distinct_items_are_numbered_from_one_in_the_order_they_first_come() {
        let (firsts, numbers) = distinct(&["a", "b", "a", "c", "b"], |x, y| x == y);
        assert_eq!(firsts, [0, 1, 3]);
        assert_eq!(numbers, [1, 2, 1, 3, 2]);
        let (firsts, numbers) = distinct::<u8>(&[], |x, y| x == y);
        assert!(firsts.is_empty() && numbers.is_empty());
    }

    /// A write of `state` by worker `w1`, acking `receipt` in `list` when given.
    fn write(id: &str, state: TaskState, claim: &'static str, ack: Option<(&str, &str)>) -> Write {
        let mut args = redis::Cmd::new();
        if let Some((_, receipt)) = ack {
            args.arg(receipt);
        }
        args.arg(format!("value of {id}"));
        let id: TaskId = id.parse().unwrap();
        Write {
            key: Keys::new("ns").result(&id),
            head: Head { ttl_ms: 1000, fenced_by_writer: ack.is_none(), claim, state, shape: 2 },
            ack_key: ack.map(|(list, _)| list.to_string()),
            args,
            tally: Tally {
                state,
                id,
                task: String::new(),
                worker: "w1".into(),
                runtime_ms: None,
                starts: claim != "0",
            },
            reply: oneshot::channel().0,
        }
    }

    fn words(cmd: &redis::Cmd) -> Vec<String> {
        cmd.args_iter()
            .map(|arg| match arg {
                redis::Arg::Simple(bytes) => String::from_utf8_lossy(bytes).into_owned(),
                _ => "<not simple>".into(),
            })
            .collect()
    }

    #[test]
    fn a_call_sends_what_its_writes_share_once_and_each_processing_list_once() {
        let group = [
            write("a", TaskState::Success, "2", Some(("proc:q1", "ra"))),
            write("b", TaskState::Started, "1", None),
            write("c", TaskState::Success, "2", Some(("proc:q1", "rc"))),
            write("d", TaskState::Success, "2", Some(("proc:q2", "rd"))),
        ];
        let keys = Keys::new("ns");
        let words = words(&store_call(&group, Some(&keys), 60_000));
        let prefix = keys.result_prefix_len().to_string();
        let expected = [
            "EVALSHA",
            SCRIPTS.store_many.get_hash(),
            "8",
            "ns:result:a",
            "ns:result:b",
            "ns:result:c",
            "ns:result:d",
            &keys.recent(),
            &keys.minute(60_000),
            "proc:q1",
            "proc:q2",
            "4",
            "60000",
            &task_core::HISTORY_CAP.to_string(),
            "ns:done:",
            &prefix,
            "3",
            // The heads: a and c's (list 1), b's (no list: fenced by its writer), d's.
            "1000",
            "",
            "2",
            "SUCCESS",
            "2",
            "1",
            "1000",
            "w1",
            "1",
            "STARTED",
            "2",
            "0",
            "1000",
            "",
            "2",
            "SUCCESS",
            "2",
            "2",
            // The writes: their head, their receipt when they ack, their values.
            "1",
            "ra",
            "value of a",
            "2",
            "value of b",
            "1",
            "rc",
            "value of c",
            "3",
            "rd",
            "value of d",
        ];
        assert_eq!(words, expected);
    }

    #[test]
    fn writes_that_came_together_are_shared_among_the_calls_that_may_go() {
        assert_eq!(shares(1, GROUPS_IN_FLIGHT), 1, "alone: at once, in one call");
        assert_eq!(shares(MIN_SHARE * 2 - 1, 3), 1, "too few to share");
        assert_eq!(shares(MIN_SHARE * 2, 3), 2);
        assert_eq!(shares(64, 3), 3, "the slots of a busy worker: three calls in flight");
        assert_eq!(shares(64, 1), 1, "two in flight already: one call more");
        assert_eq!(shares(256, 0), 1, "none may go: one call, sent when one comes back");
    }
}
