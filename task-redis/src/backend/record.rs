//! The layout of a task's record (`NS:result:ID`, a hash): which fields a write sets
//! and how a read turns them back into a [`TaskMeta`].
//!
//! The fields the scripts read one by one stay fields of their own: `state` (the final
//! rule) and `worker` (the fence), and so do the blobs a write sends alone (`result`,
//! `error`, `progress`). The fields no reader needs alone travel packed, each group in
//! one MessagePack array written by the write that knows the whole group:
//!
//! - `run`: `[task, queue, retries, started_ms, args]`, written by a run's claim (or by
//!   the first write of a run whose start is not stored);
//! - `end`: `[runtime_ms, finished_ms]`, written when a run ends; in `run`, as its last
//!   two, when that write is also the run's first.
//!
//! `changed_ms`, when the record last changed, is written by the writes that carry no
//! time of their own (a progress report, a retry, a revoke); a read takes the latest of
//! it, the start and the end.
//!
//! Every field of a hash costs Redis a search and a reallocation of the hash's
//! listpack, and every argument a parse and a copy into Lua: packing cut the fields of
//! a task's writes from 11 to 4 (STARTED not stored) and from 14 to 6 (stored).
//!
//! A write that carries only part of a group (a buried task's FAILURE names its task
//! and end time, a retry its next attempt) writes those fields by name, and a field by
//! name wins over its packed twin: such a write comes later than the group it touches,
//! and a run's first write over an existing record deletes the fields by name first
//! (`store_many.lua`), so a retried dead letter or a redelivered retry reads its new run
//! (records written before the packing read the same way).

use std::collections::HashMap;

use task_core::{TaskMeta, TaskState};

/// The packed `run` group.
pub(crate) const RUN: &str = "run";
/// The packed `end` group.
pub(crate) const END: &str = "end";

/// The packed groups of one write.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Packed {
    /// The `run` field's value.
    pub(crate) run: Option<Vec<u8>>,
    /// The `end` field's value.
    pub(crate) end: Option<Vec<u8>>,
    /// Whether the end's fields are packed (in `end`, or in `run`): not to be sent by name.
    pub(crate) holds_end: bool,
}

/// The packed groups of a write of `meta`: `run` when it has the whole group and
/// `names_task` (the write is to name its task), `end` when it has the whole group.
/// A write with both, the one write of a run whose start is not stored, sends them as
/// one `run` of six: a field less.
pub(crate) fn pack(meta: &TaskMeta, names_task: bool) -> Packed {
    let args = meta.args.as_deref().map(serde_bytes::Bytes::new);
    let run = (|| Some((meta.task.as_deref()?, meta.queue.as_deref()?, meta.retries?, meta.started_ms?, args?)))()
        .filter(|_| names_task);
    let end = (|| Some((meta.runtime_ms?, meta.finished_ms?)))();
    let holds_end = end.is_some();
    match (run, end) {
        (Some((task, queue, retries, started, args)), Some((runtime, finished))) => Packed {
            run: rmp_serde::to_vec(&(task, queue, retries, started, args, runtime, finished)).ok(),
            end: None,
            holds_end,
        },
        (run, end) => Packed {
            run: run.and_then(|run| rmp_serde::to_vec(&run).ok()),
            end: end.and_then(|end| rmp_serde::to_vec(&end).ok()),
            holds_end,
        },
    }
}

/// The `run` group as read: a claim's five, or six with the end's two when one write did both.
#[derive(serde::Deserialize)]
struct Run {
    task: String,
    queue: String,
    retries: u32,
    started_ms: i64,
    args: serde_bytes::ByteBuf,
    #[serde(default)]
    runtime_ms: Option<u64>,
    #[serde(default)]
    finished_ms: Option<i64>,
}

/// The record as read with `HGETALL`; `None` when there is none (or no state that reads).
pub(crate) fn parse(fields: HashMap<String, Vec<u8>>) -> Option<TaskMeta> {
    read(fields).map(|(meta, _)| meta)
}

/// The record as `store_many.lua` publishes it with a final state (`cmsgpack.pack` of
/// its `HGETALL`: names and values in one array), ready for [`parse`]; `None` for any
/// other message (a state's name, a record cut short).
pub(crate) fn published(message: &[u8]) -> Option<HashMap<String, Vec<u8>>> {
    let flat: Vec<serde_bytes::ByteBuf> = rmp_serde::from_slice(message).ok()?;
    if flat.len() % 2 != 0 {
        return None;
    }
    let mut flat = flat.into_iter();
    let mut fields = HashMap::with_capacity(flat.len() / 2);
    while let (Some(name), Some(value)) = (flat.next(), flat.next()) {
        fields.insert(String::from_utf8(name.into_vec()).ok()?, value.into_vec());
    }
    Some(fields)
}

/// [`parse`], and when the record last changed (Unix ms; 0 when it does not say).
pub(crate) fn read(mut fields: HashMap<String, Vec<u8>>) -> Option<(TaskMeta, i64)> {
    let state: TaskState = String::from_utf8(fields.remove("state")?).ok()?.parse().ok()?;
    let mut meta = TaskMeta::state(state);
    if let Some(run) = fields.remove(RUN).and_then(|run| rmp_serde::from_slice::<Run>(&run).ok()) {
        (meta.task, meta.queue, meta.retries, meta.started_ms, meta.args) =
            (Some(run.task), Some(run.queue), Some(run.retries), Some(run.started_ms), Some(run.args.into_vec()));
        (meta.runtime_ms, meta.finished_ms) = (run.runtime_ms, run.finished_ms);
    }
    if let Some((runtime_ms, finished_ms)) =
        fields.remove(END).and_then(|end| rmp_serde::from_slice::<(u64, i64)>(&end).ok())
    {
        (meta.runtime_ms, meta.finished_ms) = (Some(runtime_ms), Some(finished_ms));
    }
    let mut take_text = |k: &str| fields.remove(k).map(|v| String::from_utf8_lossy(&v).into_owned());
    let changed_ms: Option<i64> = take_text("changed_ms").and_then(|v| v.parse().ok());
    meta.task = take_text("task").or(meta.task);
    meta.queue = take_text("queue").or(meta.queue);
    meta.error = take_text("error");
    meta.worker = take_text("worker");
    meta.retries = take_text("retries").and_then(|v| v.parse().ok()).or(meta.retries);
    meta.started_ms = take_text("started_ms").and_then(|v| v.parse().ok()).or(meta.started_ms);
    meta.finished_ms = take_text("finished_ms").and_then(|v| v.parse().ok()).or(meta.finished_ms);
    meta.runtime_ms = take_text("runtime_ms").and_then(|v| v.parse().ok()).or(meta.runtime_ms);
    meta.result = fields.remove("result");
    meta.progress = fields.remove("progress");
    meta.args = fields.remove("args").or(meta.args);
    let changed = [changed_ms, meta.started_ms, meta.finished_ms].into_iter().flatten().max().unwrap_or(0);
    Some((meta, changed))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(pairs: &[(&str, Vec<u8>)]) -> HashMap<String, Vec<u8>> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect()
    }

    fn claim() -> TaskMeta {
        let mut meta = TaskMeta::state(TaskState::Started);
        (meta.task, meta.queue, meta.retries, meta.started_ms, meta.args) =
            (Some("add".into()), Some("math".into()), Some(2), Some(1_700_000_000_000), Some(vec![0x92, 1, 2]));
        meta
    }

    fn ended(mut meta: TaskMeta) -> TaskMeta {
        (meta.runtime_ms, meta.finished_ms) = (Some(12), Some(1_700_000_000_012));
        meta
    }

    fn success(pairs: &[(&str, Vec<u8>)]) -> TaskMeta {
        let mut all = fields(&[("state", b"SUCCESS".to_vec())]);
        all.extend(fields(pairs));
        parse(all).expect("a record")
    }

    #[test]
    fn a_claim_and_an_end_read_back() {
        let claimed = pack(&claim(), true);
        assert_eq!((claimed.end.as_ref(), claimed.holds_end), (None, false));
        let ends = pack(&ended(TaskMeta::state(TaskState::Success)), false);
        assert_eq!((ends.run.as_ref(), ends.holds_end), (None, true));
        let read = success(&[
            (RUN, claimed.run.unwrap()),
            (END, ends.end.unwrap()),
            ("worker", b"w1".to_vec()),
            ("result", vec![3]),
        ]);
        assert_eq!(read.state, TaskState::Success);
        assert_eq!(
            (read.task.as_deref(), read.queue.as_deref(), read.retries, read.started_ms),
            (Some("add"), Some("math"), Some(2), Some(1_700_000_000_000))
        );
        assert_eq!((read.runtime_ms, read.finished_ms), (Some(12), Some(1_700_000_000_012)));
        assert_eq!((read.worker.as_deref(), read.result), (Some("w1"), Some(vec![3])));
        assert_eq!(read.args, Some(vec![0x92, 1, 2]));
    }

    #[test]
    fn a_record_changed_at_its_latest_time() {
        let run = pack(&claim(), true).run.unwrap();
        let at = |pairs: &[(&str, Vec<u8>)]| {
            let mut all = fields(&[("state", b"STARTED".to_vec()), (RUN, run.clone())]);
            all.extend(fields(pairs));
            read(all).unwrap().1
        };
        assert_eq!(at(&[]), 1_700_000_000_000, "a claim: its start");
        assert_eq!(at(&[("changed_ms", b"1700000000500".to_vec())]), 1_700_000_000_500, "a later progress");
        assert_eq!(at(&[("changed_ms", b"5".to_vec())]), 1_700_000_000_000, "a retry before this run");
        let end = pack(&ended(TaskMeta::state(TaskState::Success)), false).end.unwrap();
        assert_eq!(at(&[(END, end)]), 1_700_000_000_012, "an end: its finish");
        assert_eq!(read(fields(&[("state", b"PENDING".to_vec())])).unwrap().1, 0, "no time at all");
    }

    #[test]
    fn a_first_write_that_ends_the_run_sends_one_group() {
        let first = pack(&ended(claim()), true);
        assert_eq!((first.end.as_ref(), first.holds_end), (None, true), "the end travels in the run");
        let read = success(&[(RUN, first.run.unwrap())]);
        assert_eq!((read.task.as_deref(), read.started_ms), (Some("add"), Some(1_700_000_000_000)));
        assert_eq!((read.runtime_ms, read.finished_ms), (Some(12), Some(1_700_000_000_012)));
    }

    #[test]
    fn only_a_whole_group_is_packed() {
        let mut partial = claim();
        partial.args = None;
        assert_eq!(pack(&partial, true), Packed::default());
        partial.started_ms = None;
        assert_eq!(pack(&partial, true), Packed::default());
        partial.finished_ms = Some(1);
        assert_eq!(pack(&partial, true), Packed::default(), "a buried task's end has no runtime");
        assert_eq!(pack(&claim(), false), Packed::default(), "a write that does not name its task");
    }

    #[test]
    fn a_field_by_name_wins_over_its_packed_twin() {
        let run = pack(&ended(claim()), true).run.unwrap();
        let read = success(&[(RUN, run), ("finished_ms", b"99".to_vec()), ("retries", b"3".to_vec())]);
        assert_eq!((read.retries, read.finished_ms, read.runtime_ms), (Some(3), Some(99), Some(12)));
        assert_eq!(read.task.as_deref(), Some("add"), "the rest of the group stays");
    }

    #[test]
    fn a_record_written_by_name_reads_as_before() {
        let read = success(&[
            ("task", b"add".to_vec()),
            ("queue", b"math".to_vec()),
            ("retries", b"0".to_vec()),
            ("started_ms", b"5".to_vec()),
        ]);
        assert_eq!(
            (read.task.as_deref(), read.queue.as_deref(), read.started_ms),
            (Some("add"), Some("math"), Some(5))
        );
    }

    #[test]
    fn a_malformed_group_is_left_out_not_fatal() {
        let read = success(&[(RUN, vec![0xc1]), (END, b"x".to_vec())]);
        assert_eq!((read.task, read.runtime_ms), (None, None));
        let run = pack(&claim(), true).run.unwrap();
        assert!(parse(fields(&[(RUN, run)])).is_none(), "no state, no record");
    }

    #[test]
    fn a_published_record_reads_as_its_fields_and_anything_else_is_none() {
        // As cmsgpack packs a Lua table of strings: msgpack str, whatever the bytes.
        let mut message = vec![0x94];
        for value in [&b"state"[..], b"SUCCESS", b"result", &[0xa5, 0xff, 0x00]] {
            message.push(0xa0 | u8::try_from(value.len()).unwrap());
            message.extend_from_slice(value);
        }
        let record = published(&message).expect("a record");
        assert_eq!(record, fields(&[("state", b"SUCCESS".to_vec()), ("result", vec![0xa5, 0xff, 0x00])]));
        assert_eq!(parse(record).map(|m| m.state), Some(TaskState::Success));
        let as_bin =
            rmp_serde::to_vec(&[serde_bytes::Bytes::new(b"state"), serde_bytes::Bytes::new(b"FAILURE")]).unwrap();
        assert_eq!(published(&as_bin), Some(fields(&[("state", b"FAILURE".to_vec())])));
        let odd = rmp_serde::to_vec(&["state", "SUCCESS", "result"]).unwrap();
        let bad_name = rmp_serde::to_vec(&[serde_bytes::Bytes::new(&[0xff]), serde_bytes::Bytes::new(b"x")]).unwrap();
        for other in [&b"SUCCESS"[..], b"REVOKED", b"+", b"", &message[..message.len() - 1], &odd, &bad_name] {
            assert_eq!(published(other), None, "{other:?}");
        }
    }
}
