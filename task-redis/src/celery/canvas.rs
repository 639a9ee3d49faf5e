//! Canvas built in Python and carried on by Celerity workers: a Celery message's
//! callbacks (`link`), errbacks (`link_error`) and the rest of its chain, sent on as
//! Celery's worker sends them when the task ends (celery/app/trace.py and
//! `BaseBackend.mark_as_failure`).
//!
//! On success, each callback and the chain's next step (the last of the list Celery
//! keeps reversed, with the rest of the chain in its own message) are sent with the
//! value first among their arguments (unless immutable, `.si()`). On failure, each
//! errback is sent with the failed task's id (Celery's call of an errback it does not
//! run in-process), and every later step of the chain is stored FAILURE with the same
//! error, so a Python `get()` on the chain's result raises instead of waiting.

use serde_json::{Map, Value, json};

use super::message::CeleryMessage;
use super::meta::ResultMeta;

/// What a finished Celery task's canvas sends on and stores.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Next {
    /// Messages to send (each to [`super::kombu_list`] of its queue and priority).
    pub(crate) messages: Vec<CeleryMessage>,
    /// Tasks of the chain to store FAILURE (with the failed task's error).
    pub(crate) failed: Vec<String>,
    /// Chords applied: their group id and size, set where Celery's producer sets it
    /// (`celery-taskset-meta-<gid>.s`) before their members are sent.
    pub(crate) chord_sizes: Vec<(String, usize)>,
}

/// The canvas of `embed` kept for when the task ends (JSON), `Ok(None)` when it has
/// none, or why Celerity does not carry it on (a chord, a group or a nested chain in
/// it: the message is then refused with that reason, not half run).
pub(crate) fn kept(embed: &Map<String, Value>, m: &CeleryMessage) -> Result<Option<String>, String> {
    let chord = embed.get("chord").filter(|c| !c.is_null());
    if let Some(chord) = chord {
        if m.group.is_none() {
            return Err("a Celery chord member without a group".into());
        }
        match chord.get("subtask_type").and_then(Value::as_str) {
            // A task, or a chain of tasks (Celery makes `chain(group, a, b)` a chord
            // whose body is the chain `a | b`).
            None | Some("chain") => applicable(chord)?,
            Some(kind) => {
                return Err(format!(
                    "Celery canvas (a chord whose body is a {kind}) is not supported by Celerity workers yet"
                ));
            }
        }
    }
    let list = |key: &str| signatures(embed.get(key));
    let (callbacks, errbacks, chain) = (list("callbacks"), list("errbacks"), list("chain"));
    for sig in callbacks.iter().chain(&errbacks).chain(&chain) {
        applicable(sig)?;
    }
    if callbacks.is_empty() && errbacks.is_empty() && chain.is_empty() && chord.is_none() {
        return Ok(None);
    }
    let root = m.root_id.clone().unwrap_or_else(|| m.id.clone());
    let kept = json!({"callbacks": callbacks, "errbacks": errbacks, "chain": chain, "root_id": root,
                      "priority": m.priority, "msgpack": m.msgpack,
                      "chord": chord, "group": m.group, "group_index": m.group_index});
    Ok(Some(kept.to_string()))
}

/// Whether Celerity sends `sig` on: a task's signature, a group of them, or a chord
/// of such a group and a task; anything else (a chain nested in a chain, say) is why
/// not.
fn applicable(sig: &Value) -> Result<(), String> {
    let simple = |sig: &Value| {
        if sig.get("subtask_type").is_some_and(|k| !k.is_null()) || sig.get("task").and_then(Value::as_str).is_none() {
            return Err("Celery canvas (a chain, group or chord nested in a group or chord) is not supported by Celerity workers yet".to_owned());
        }
        Ok(())
    };
    let members = |group: &Value| group.get("kwargs").and_then(|k| k.get("tasks")).and_then(Value::as_array).cloned();
    // A task, or a chain of tasks.
    let plain = |sig: &Value| match sig.get("subtask_type").and_then(Value::as_str) {
        Some("chain") => members(sig).ok_or("a Celery chain without tasks")?.iter().try_for_each(simple),
        _ => simple(sig),
    };
    match sig.get("subtask_type").and_then(Value::as_str) {
        None | Some("chain") => plain(sig),
        Some("group") => members(sig).ok_or("a Celery group without tasks")?.iter().try_for_each(simple),
        Some("chord") => {
            let kwargs = sig.get("kwargs").ok_or("a Celery chord without its parts")?;
            let header = kwargs.get("header").ok_or("a Celery chord without a header")?;
            members(header).ok_or("a Celery chord's header is not a group")?.iter().try_for_each(simple)?;
            plain(kwargs.get("body").ok_or("a Celery chord without a body")?)
        }
        Some(kind) => {
            Err(format!("Celery canvas ({kind} inside a chain or link) is not supported by Celerity workers yet"))
        }
    }
}

/// The messages that apply `sig` as `sig.apply_async((first,))` would, from the task
/// `parent`: a task's one; a group's members, each with the group's id and its place;
/// a chord's header members, each with the chord's body, and the chord's size (for
/// [`Next::chord_sizes`]).
fn apply(
    sig: &Value,
    first: Option<&Value>,
    parent: &str,
    root: &str,
    priority: u8,
    next: &mut Next,
) -> Vec<CeleryMessage> {
    let members = |group: &Value| {
        group.get("kwargs").and_then(|k| k.get("tasks")).and_then(Value::as_array).cloned().unwrap_or_default()
    };
    let id_of =
        |sig: &Value| sig.get("options").and_then(|o| o.get("task_id")).and_then(Value::as_str).map(str::to_owned);
    let group = |group: &Value, body: Option<&Value>| -> Vec<CeleryMessage> {
        let gid = id_of(group).unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        members(group)
            .iter()
            .enumerate()
            .map(|(i, member)| {
                let mut m = signature_message(member, first, parent, root, priority);
                let place = member.get("options").and_then(|o| o.get("group_index")).and_then(Value::as_i64);
                m.group = Some(gid.clone());
                m.group_index = Some(place.unwrap_or(i64::try_from(i).unwrap_or(i64::MAX)));
                if let Some(body) = body {
                    m.embed.insert("chord".into(), body.clone());
                }
                m
            })
            .collect()
    };
    match sig.get("subtask_type").and_then(Value::as_str) {
        Some("group") => group(sig, None),
        Some("chord") => {
            let kwargs = &sig["kwargs"];
            let header = &kwargs["header"];
            let messages = group(header, Some(&kwargs["body"]));
            if let Some(gid) = messages.first().and_then(|m| m.group.clone()) {
                next.chord_sizes.push((gid, messages.len()));
            }
            messages
        }
        _ => vec![signature_message(sig, first, parent, root, priority)],
    }
}

/// What the task `id` with the canvas `kept` (from [`kept`]) sends on and stores,
/// having ended with `outcome`.
pub(crate) fn next(kept: &str, id: &str, outcome: &ResultMeta) -> Next {
    let Ok(kept) = serde_json::from_str::<Value>(kept) else { return Next::default() };
    let list = |key: &str| kept.get(key).and_then(Value::as_array).cloned().unwrap_or_default();
    let root = kept.get("root_id").and_then(Value::as_str).unwrap_or(id).to_owned();
    let priority = kept.get("priority").and_then(Value::as_u64).and_then(|p| u8::try_from(p).ok()).unwrap_or(0);
    let msgpack = kept.get("msgpack").and_then(Value::as_bool).unwrap_or(false);
    let mut next = Next::default();
    let send = |next: &mut Next, sig: &Value, first: Option<&Value>, rest: Vec<Value>| {
        let kind = sig.get("subtask_type").and_then(Value::as_str);
        let mut sig = sig.clone();
        if kind == Some("chord") && !rest.is_empty() {
            // The rest of the chain goes on from the chord's body, as Celery runs it.
            if let Some(options) = sig.pointer_mut("/kwargs/body/options").and_then(Value::as_object_mut) {
                options.insert("chain".into(), Value::Array(rest.clone()));
            }
        }
        for mut m in apply(&sig, first, id, &root, priority, next) {
            m.msgpack = msgpack;
            if kind.is_none() && !rest.is_empty() {
                m.embed.insert("chain".into(), Value::Array(rest.clone()));
            }
            next.messages.push(m);
        }
        if kind == Some("group") && !rest.is_empty() {
            tracing::warn!(
                task = id,
                "steps after a group in a chain are not sent (Celery makes such a group a chord)"
            );
        }
    };
    match outcome {
        ResultMeta::Success(value) => {
            for sig in list("callbacks") {
                send(&mut next, &sig, Some(value), Vec::new());
            }
            let mut chain = list("chain");
            if let Some(step) = chain.pop() {
                send(&mut next, &step, Some(value), chain);
            }
        }
        ResultMeta::Failure { .. } => {
            let failed = Value::String(id.to_owned());
            for sig in list("errbacks") {
                send(&mut next, &sig, Some(&failed), Vec::new());
            }
            next.failed = list("chain").iter().flat_map(step_ids).collect();
        }
        _ => {}
    }
    next
}

/// The ids to store FAILURE for when a chain fails before `step`, as Celery does: a
/// step's own id, or for a chord the body's (what the chain's result waits on) and the
/// ids of the chain after it.
fn step_ids(step: &Value) -> Vec<String> {
    let id = |sig: &Value| sig.pointer("/options/task_id").and_then(Value::as_str).map(str::to_owned);
    match step.get("subtask_type").and_then(Value::as_str) {
        Some("chord") => {
            let body = step.pointer("/kwargs/body").cloned().unwrap_or(Value::Null);
            let rest = body.pointer("/options/chain").and_then(Value::as_array).cloned().unwrap_or_default();
            id(&body).into_iter().chain(rest.iter().flat_map(step_ids)).collect()
        }
        Some("chain") => {
            let tasks = step.pointer("/kwargs/tasks").and_then(Value::as_array).cloned().unwrap_or_default();
            tasks.iter().flat_map(step_ids).collect()
        }
        _ => id(step).into_iter().collect(),
    }
}

/// The message of a Celery signature (`{"task", "args", "kwargs", "options",
/// "immutable"}`) sent as `signature.apply_async((first,))`: `first` before its own
/// arguments unless it is immutable, its own id (`options.task_id`) or a new one, its
/// queue (`options.queue`, else Celery's default `celery`), its links.
fn signature_message(sig: &Value, first: Option<&Value>, parent: &str, root: &str, priority: u8) -> CeleryMessage {
    if sig.get("subtask_type").and_then(Value::as_str) == Some("chain") {
        // A chain (a chord's body, say): its first task, carrying the rest, which the
        // message keeps last-first as Celery does.
        let tasks = sig.pointer("/kwargs/tasks").and_then(Value::as_array).cloned().unwrap_or_default();
        if let Some((head, rest)) = tasks.split_first() {
            let mut m = signature_message(head, first, parent, root, priority);
            if !rest.is_empty() {
                m.embed.insert("chain".into(), Value::Array(rest.iter().rev().cloned().collect()));
            }
            return m;
        }
    }
    let options = sig.get("options").and_then(Value::as_object).cloned().unwrap_or_default();
    let text = |key: &str| options.get(key).and_then(Value::as_str).map(str::to_owned);
    let id = text("task_id").unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let queue = text("queue").unwrap_or_else(|| "celery".into());
    let mut m = CeleryMessage::new(sig.get("task").and_then(Value::as_str).unwrap_or_default(), id, queue);
    let immutable = sig.get("immutable").and_then(Value::as_bool).unwrap_or(false);
    let own = sig.get("args").and_then(Value::as_array).cloned().unwrap_or_default();
    m.args = match first.filter(|_| !immutable) {
        Some(first) => std::iter::once(first.clone()).chain(own).collect(),
        None => own,
    };
    m.kwargs = sig.get("kwargs").and_then(Value::as_object).cloned().unwrap_or_default();
    m.parent_id = Some(parent.to_owned());
    m.root_id = Some(root.to_owned());
    m.priority =
        options.get("priority").and_then(Value::as_u64).map_or(priority, |p| u8::try_from(p.min(255)).unwrap_or(0));
    let countdown =
        options.get("countdown").and_then(Value::as_f64).and_then(|s| std::time::Duration::try_from_secs_f64(s).ok());
    let at = countdown
        .and_then(|d| chrono::Duration::from_std(d).ok())
        .and_then(|d| chrono::Utc::now().checked_add_signed(d));
    m.eta = at.map(super::iso);
    if let Some(Value::Array(rest)) = options.get("chain").filter(|c| c.as_array().is_some_and(|c| !c.is_empty())) {
        m.embed.insert("chain".into(), Value::Array(rest.clone()));
    }
    for (option, part) in [("link", "callbacks"), ("link_error", "errbacks")] {
        if let Some(sigs @ (Value::Array(_) | Value::Object(_))) = options.get(option) {
            m.embed.insert(part.into(), Value::Array(signatures(Some(sigs))));
        }
    }
    m
}

/// The signatures of a link, an errback or a chain: one, or a list of them, as Celery
/// takes both; none for anything else.
fn signatures(value: Option<&Value>) -> Vec<Value> {
    match value {
        Some(Value::Array(sigs)) => sigs.clone(),
        Some(sig @ Value::Object(_)) => vec![sig.clone()],
        _ => Vec::new(),
    }
}

/// A chord member's part of the join: its group, its place, the chord's body.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ChordPart {
    pub(crate) group: String,
    /// `+inf` when Celery sent none, as Celery scores it.
    pub(crate) score: String,
    pub(crate) body: Value,
    root: String,
    msgpack: bool,
}

/// The chord part of the canvas `kept`, if the task is a chord member.
pub(crate) fn chord_part(kept: &str) -> Option<ChordPart> {
    let kept: Value = serde_json::from_str(kept).ok()?;
    let body = kept.get("chord").filter(|c| c.is_object())?.clone();
    Some(ChordPart {
        group: kept.get("group")?.as_str()?.to_owned(),
        score: kept.get("group_index").and_then(Value::as_i64).map_or_else(|| "+inf".to_owned(), |i| i.to_string()),
        body,
        root: kept.get("root_id").and_then(Value::as_str).unwrap_or_default().to_owned(),
        msgpack: kept.get("msgpack").and_then(Value::as_bool).unwrap_or(false),
    })
}

/// The keys of group `gid`'s join in Celery's Redis backend, in the order
/// `celery_chord_part.lua` takes them: `.j`, `.t`, `.s`, `.d`, the group's own, `.c`.
pub(crate) fn chord_keys(gid: &str) -> [String; 6] {
    let key = |suffix: &str| format!("celery-taskset-meta-{gid}{suffix}");
    [key(".j"), key(".t"), key(".s"), key(".d"), key(""), key(".c")]
}

/// A member's entry in the join, as Celery's backend encodes it: `[1, id, state,
/// result]` (an error as Celery stores exceptions). `None` for a state that is not final.
pub(crate) fn chord_entry(id: &str, outcome: &ResultMeta) -> Option<String> {
    let stored: Value = serde_json::from_str(&outcome.to_json(id, None)).ok()?;
    match outcome {
        ResultMeta::Success(_) | ResultMeta::Failure { .. } | ResultMeta::Revoked { .. } => {
            Some(json!([1, id, outcome.status(), stored["result"]]).to_string())
        }
        _ => None,
    }
}

/// What a complete chord does, from its members' entries (in their order).
#[derive(Debug, PartialEq)]
pub(crate) enum ChordDone {
    /// Send the body with the members' values.
    Send(Box<CeleryMessage>),
    /// A member failed: the body (its id, if it has one) fails with Celery's
    /// `ChordError`, and its errbacks are sent.
    /// The chain after the body is failed too (`chain_failed`), as Celery fails it.
    Fail { id: Option<String>, error: ResultMeta, errbacks: Vec<CeleryMessage>, chain_failed: Vec<String> },
}

/// The body's message, or its failure, once every member of `part`'s chord is in.
pub(crate) fn chord_done(part: &ChordPart, entries: &[String]) -> ChordDone {
    let mut values = Vec::with_capacity(entries.len());
    let body_id = part.body.get("options").and_then(|o| o.get("task_id")).and_then(Value::as_str).map(str::to_owned);
    for entry in entries {
        let entry: Value = serde_json::from_str(entry).unwrap_or(Value::Null);
        let (tid, state, value) = (entry[1].as_str().unwrap_or("?"), entry[2].as_str().unwrap_or(""), &entry[3]);
        if state == "FAILURE" || state == "REVOKED" {
            let (kind, text) = super::meta::exception_of(value);
            let error = ResultMeta::Failure {
                kind: "ChordError".into(),
                message: format!("Dependency {tid} raised {kind}('{text}')"),
            };
            let failed = Value::String(body_id.clone().unwrap_or_default());
            let errbacks = signatures(part.body.pointer("/options/link_error"))
                .iter()
                .map(|sig| signature_message(sig, Some(&failed), failed.as_str().unwrap_or_default(), &part.root, 0))
                .collect();
            let rest = part.body.pointer("/options/chain").and_then(Value::as_array).cloned().unwrap_or_default();
            let chain_failed = step_ids(&part.body)
                .into_iter()
                .filter(|i| Some(i) != body_id.as_ref())
                .chain(rest.iter().flat_map(step_ids))
                .collect();
            return ChordDone::Fail { id: body_id, error, errbacks, chain_failed };
        }
        values.push(value.clone());
    }
    let mut m = signature_message(&part.body, Some(&Value::Array(values)), "", &part.root, 0);
    m.parent_id = None;
    m.msgpack = part.msgpack;
    ChordDone::Send(Box::new(m))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The embeds Celery 5.7 sent for `add.apply_async((1, 2), link=shout.s(),
    /// link_error=fail.si('x'))` and `chain(add.s(1, 2), add.s(10), add.s(100))`.
    const LINKS: &str = r#"{"callbacks": [{"task": "proj.tasks.shout", "args": [], "kwargs": {}, "options": {}, "subtask_type": null, "immutable": false}], "errbacks": [{"task": "proj.tasks.fail", "args": ["x"], "kwargs": {}, "options": {}, "subtask_type": null, "immutable": true}], "chain": null, "chord": null}"#;
    const CHAIN: &str = r#"{"callbacks": null, "errbacks": null, "chain": [{"task": "proj.tasks.add", "args": [100], "kwargs": {}, "options": {"task_id": "id-3", "reply_to": "r"}, "subtask_type": null, "immutable": false}, {"task": "proj.tasks.add", "args": [10], "kwargs": {}, "options": {"task_id": "id-2", "reply_to": "r"}, "subtask_type": null, "immutable": false}], "chord": null}"#;

    fn kept_of(embed: &str) -> Result<Option<String>, String> {
        let embed: Map<String, Value> = serde_json::from_str(embed).unwrap();
        let mut m = CeleryMessage::new("proj.tasks.add", "id-1", "celery");
        m.embed = embed.clone();
        kept(&embed, &m)
    }

    #[test]
    fn a_chain_goes_on_with_the_value_first_and_the_rest_of_the_chain() {
        let kept = kept_of(CHAIN).unwrap().unwrap();
        let next = next(&kept, "id-1", &ResultMeta::Success(json!(3)));
        assert_eq!(next.messages.len(), 1);
        let step = &next.messages[0];
        assert_eq!((step.id.as_str(), step.args.clone()), ("id-2", vec![json!(3), json!(10)]));
        assert_eq!((step.parent_id.as_deref(), step.root_id.as_deref()), (Some("id-1"), Some("id-1")));
        assert_eq!(step.embed["chain"][0]["options"]["task_id"], "id-3", "the rest goes with it");
        let last = super::next(
            &kept_of(&serde_json::to_string(&step.embed).unwrap()).unwrap().unwrap(),
            "id-2",
            &ResultMeta::Success(json!(13)),
        );
        assert_eq!(
            (last.messages[0].id.as_str(), last.messages[0].args.clone()),
            ("id-3", vec![json!(13), json!(100)])
        );
        assert!(!last.messages[0].embed.contains_key("chain"), "the chain's end");
    }

    #[test]
    fn a_failure_sends_the_errbacks_and_fails_the_rest_of_the_chain() {
        let links = kept_of(LINKS).unwrap().unwrap();
        let failure = ResultMeta::Failure { kind: "TaskError".into(), message: "no".into() };
        let next = next(&links, "id-1", &failure);
        assert_eq!(next.messages.len(), 1);
        assert_eq!(
            (next.messages[0].task.as_str(), next.messages[0].args.clone()),
            ("proj.tasks.fail", vec![json!("x")])
        );
        let ok = super::next(&links, "id-1", &ResultMeta::Success(json!("hi")));
        assert_eq!(
            (ok.messages[0].task.as_str(), ok.messages[0].args.clone()),
            ("proj.tasks.shout", vec![json!("hi")])
        );
        let chain = super::next(&kept_of(CHAIN).unwrap().unwrap(), "id-1", &failure);
        assert_eq!((chain.messages.len(), chain.failed), (0, vec!["id-3".to_owned(), "id-2".to_owned()]));
        assert_eq!(super::next(&links, "id-1", &ResultMeta::Revoked { reason: "r".into() }), Next::default());
    }

    #[test]
    fn a_chord_member_keeps_its_group_place_and_body() {
        let embed: Map<String, Value> =
            serde_json::from_str(r#"{"chord": {"task": "proj.tasks.tsum", "args": [], "kwargs": {}, "options": {"task_id": "cb"}, "subtask_type": null, "immutable": false}}"#).unwrap();
        let mut m = CeleryMessage::new("proj.tasks.add", "m1", "celery");
        (m.group, m.group_index) = (Some("g1".into()), Some(1));
        let part = chord_part(&kept(&embed, &m).unwrap().unwrap()).unwrap();
        assert_eq!((part.group.as_str(), part.score.as_str()), ("g1", "1"));
        assert_eq!(chord_keys("g1")[0], "celery-taskset-meta-g1.j");
        let entries = [
            chord_entry("m0", &ResultMeta::Success(json!(2))).unwrap(),
            chord_entry("m1", &ResultMeta::Success(json!(4))).unwrap(),
        ];
        assert_eq!(entries[0], r#"[1,"m0","SUCCESS",2]"#);
        let ChordDone::Send(body) = chord_done(&part, &entries) else { panic!("the body is sent") };
        assert_eq!((body.id.as_str(), body.args.clone()), ("cb", vec![json!([2, 4])]));
        let failed =
            chord_entry("m1", &ResultMeta::Failure { kind: "TaskError".into(), message: "no".into() }).unwrap();
        let ChordDone::Fail { id, error, .. } = chord_done(&part, &[entries[0].clone(), failed]) else {
            panic!("fails")
        };
        assert_eq!(id.as_deref(), Some("cb"));
        assert_eq!(
            error,
            ResultMeta::Failure { kind: "ChordError".into(), message: "Dependency m1 raised TaskError('no')".into() }
        );
        assert_eq!(chord_entry("m1", &ResultMeta::Started), None);
        m.group = None;
        assert!(kept(&embed, &m).unwrap_err().contains("without a group"));
    }

    /// What Celery 5.7 sent for `chain(add.s(1, 1), group(add.s(10), add.s(20)))` and
    /// the same chain with `tsum.s()` after the group (Celery makes that a chord).
    const INTO_GROUP: &str = r#"{"chain": [{"task": "celery.group", "args": [], "kwargs": {"tasks": [{"task": "proj.tasks.add", "args": [10], "kwargs": {}, "options": {"task_id": "m0", "group_index": 0}, "subtask_type": null, "immutable": false}, {"task": "proj.tasks.add", "args": [20], "kwargs": {}, "options": {"task_id": "m1", "group_index": 1}, "subtask_type": null, "immutable": false}]}, "options": {"task_id": "g1"}, "subtask_type": "group", "immutable": false}]}"#;
    const INTO_CHORD: &str = r#"{"chain": [{"task": "celery.chord", "args": [], "kwargs": {"kwargs": {}, "header": {"task": "celery.group", "args": [], "kwargs": {"tasks": [{"task": "proj.tasks.add", "args": [10], "kwargs": {}, "options": {"task_id": "m0", "group_index": 0}, "subtask_type": null, "immutable": false}, {"task": "proj.tasks.add", "args": [20], "kwargs": {}, "options": {"task_id": "m1", "group_index": 1}, "subtask_type": null, "immutable": false}]}, "options": {"task_id": "g2"}, "subtask_type": "group", "immutable": false}, "body": {"task": "proj.tasks.tsum", "args": [], "kwargs": {}, "options": {"task_id": "body"}, "subtask_type": null, "immutable": false}}, "options": {"task_id": "g2"}, "subtask_type": "chord", "immutable": false}]}"#;

    #[test]
    fn a_chain_into_a_group_or_a_chord_sends_their_members() {
        let next = next(&kept_of(INTO_GROUP).unwrap().unwrap(), "id-1", &ResultMeta::Success(json!(2)));
        let sent: Vec<_> =
            next.messages.iter().map(|m| (m.id.as_str(), m.args.clone(), m.group.as_deref(), m.group_index)).collect();
        assert_eq!(
            sent,
            [
                ("m0", vec![json!(2), json!(10)], Some("g1"), Some(0)),
                ("m1", vec![json!(2), json!(20)], Some("g1"), Some(1))
            ]
        );
        assert!(next.chord_sizes.is_empty());
        let next = super::next(&kept_of(INTO_CHORD).unwrap().unwrap(), "id-1", &ResultMeta::Success(json!(2)));
        assert_eq!(next.chord_sizes, [("g2".to_owned(), 2)]);
        assert_eq!(next.messages[1].embed["chord"]["options"]["task_id"], "body", "each member carries the body");
        assert_eq!(next.messages[1].group.as_deref(), Some("g2"));
    }

    #[test]
    fn chords_and_nested_canvas_are_refused_and_plain_messages_keep_nothing() {
        assert!(kept_of(r#"{"chord": {"task": "t", "subtask_type": "chain"}}"#).unwrap_err().contains("chord"));
        let group = r#"{"callbacks": [{"task": "celery.group", "subtask_type": "group", "kwargs": {}}]}"#;
        assert!(kept_of(group).unwrap_err().contains("group"));
        let nested = r#"{"chain": [{"task": "celery.chain", "subtask_type": "chain", "kwargs": {"tasks": [{"task": "celery.group", "subtask_type": "group", "kwargs": {"tasks": []}}]}}]}"#;
        assert!(kept_of(nested).unwrap_err().contains("nested"));
        assert_eq!(kept_of(r#"{"callbacks": null, "errbacks": null, "chain": null, "chord": null}"#), Ok(None));
    }
}
