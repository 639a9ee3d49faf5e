//! The states of Celery tasks in Celery's Redis result format, and the canvas they
//! carry on when they end: links, the rest of a chain, a chord's join.

use crate::celery::canvas::{self, ChordDone};
use crate::celery::{ResultMeta, kombu_list, result_key};

use super::*;

/// How long a chord's claim to send its body lasts (Celery: twice its join time-out).
const CHORD_CLAIM_S: u64 = 10;
/// How long a done chord's marker stays (Celery: at least 300 s).
const CHORD_DONE_S: u64 = 300;

/// A task's new state as Celery keeps it, and what its event tells.
pub(super) struct CeleryWrite {
    state: ResultMeta,
    /// The stored JSON.
    json: String,
    /// The worker (its id), the task's name and arguments (JSON), its run time.
    worker: Option<String>,
    task: Option<String>,
    args: Option<String>,
    runtime_s: Option<f64>,
}

/// The node names of this process's workers, by worker id, and when each last sent a
/// worker event (none yet: its next one says it is online; for Celery's `freq`).
#[derive(Debug, Default)]
pub(super) struct Nodes(Mutex<HashMap<String, (String, Beat)>>);

/// Where a worker's events stand.
#[derive(Debug, Clone, Copy)]
enum Beat {
    /// None sent yet: the next says it is online.
    Never,
    /// The last one's time.
    At(std::time::Instant),
    /// It said it went offline: nothing more (a heartbeat in flight at its stop).
    Offline,
}

impl RedisBackend {
    /// `update` in Celery's result format, when states are kept in it too.
    pub(super) fn celery_meta(&self, id: &TaskId, update: &TaskMeta) -> Option<CeleryWrite> {
        if !self.inner.celery {
            return None;
        }
        let state = crate::celery::meta_of(update)?;
        let json = state.to_json(id.as_str(), Some(&celery_now()));
        let args = update
            .args
            .as_deref()
            .and_then(|a| rmp_serde::from_slice::<serde_json::Value>(a).ok())
            .map(|a| a.to_string());
        #[allow(clippy::cast_precision_loss)]
        let runtime_s = update.runtime_ms.map(|ms| ms as f64 / 1000.0);
        Some(CeleryWrite { state, json, worker: update.worker.clone(), task: update.task.clone(), args, runtime_s })
    }

    /// [`Self::run_store`] of `update` (fenced by `ack` when given), with its Celery copy
    /// when states are kept in Celery's format too; the store's code.
    ///
    /// The copy goes first: a crash between the two then runs the task again, so the
    /// canvas the copy carries on is sent at least once, and a state shown a moment
    /// early is read again later (one missing after the record moved on would never
    /// be). Not for a task this process knows as revoked, whose record refuses all but
    /// REVOKED: that copy would tell Python a state Celerity never stored. A copy the
    /// record refused all the same (a revoke this process had not heard of yet), or one
    /// whose write was fenced (another worker's run; this run's write tried again after
    /// it landed), is written over with the record's own final state, so Python's
    /// `AsyncResult` and Celerity's readers agree.
    pub(super) async fn store_with_celery(
        &self,
        id: &TaskId,
        update: TaskMeta,
        ttl: Duration,
        ack: Option<(String, &[u8])>,
    ) -> Result<i64, BackendError> {
        let celery = self.celery_meta(id, &update);
        let revoked = celery.is_some() && self.known_revoked(id);
        let celery = if revoked {
            Some(celery)
        } else {
            self.store_celery(id, celery, ttl).await?;
            None
        };
        let last_word = update.state.is_ready();
        let code = self.run_store(id, update, ttl, ack).await?;
        match (code, celery) {
            (1.., Some(celery)) => self.store_celery(id, celery, ttl).await?,
            (..=0, _) if self.inner.celery => {
                let record = self.read(id).await?;
                if let Some(mut copy) = record.filter(|m| m.state.is_ready()).and_then(|m| self.celery_meta(id, &m)) {
                    if !rewrite_tells(code, last_word) {
                        copy.worker = None;
                    }
                    self.store_celery(id, Some(copy), ttl).await?;
                }
            }
            _ => {}
        }
        Ok(code)
    }

    /// Whether this process knows task `id` as revoked (from the revokes it keeps in
    /// memory): no round trip.
    fn known_revoked(&self, id: &TaskId) -> bool {
        self.inner.subscriber.revocations.lock().unwrap_or_else(|p| p.into_inner()).holds(id)
    }

    /// The Celery node name of worker `id` (from this process's cache, else its entry in
    /// the directory); `None` before the worker has announced itself.
    async fn node_name(&self, id: &str) -> Option<String> {
        let known = self.inner.nodes.0.lock().unwrap_or_else(|p| p.into_inner()).get(id).map(|(n, _)| n.clone());
        if known.is_some() {
            return known;
        }
        let mut con = self.con();
        let name: Option<String> = timed(
            self.inner.op_timeout,
            redis::cmd("HGET").arg(self.inner.keys.worker(id)).arg("name").query_async(&mut con),
        )
        .await
        .ok()
        .flatten();
        let name = name.filter(|n| !n.is_empty())?;
        let mut nodes = self.inner.nodes.0.lock().unwrap_or_else(|p| p.into_inner());
        // Only this process's workers send events: a handful of entries.
        nodes.entry(id.to_owned()).or_insert_with(|| (name.clone(), Beat::Never));
        Some(name)
    }

    /// Celery's event for a worker event of this process's (online, heartbeat,
    /// offline), to publish; `None` while the worker's name is not known yet.
    pub(super) async fn celery_worker_event(&self, event: &task_core::Event) -> Option<(String, String)> {
        use task_core::EventKind;
        if !self.inner.celery {
            return None;
        }
        let kind = match event.kind {
            EventKind::WorkerOnline => "worker-online",
            EventKind::WorkerHeartbeat => "worker-heartbeat",
            EventKind::WorkerOffline => "worker-offline",
            _ => return None,
        };
        let id = event.worker.as_deref()?;
        let name = self.node_name(id).await?;
        let (kind, freq) = {
            let mut nodes = self.inner.nodes.0.lock().unwrap_or_else(|p| p.into_inner());
            let last = nodes.get(id).map_or(Beat::Never, |(_, beat)| *beat);
            // The first event sent under its name says it is online. Heartbeats come
            // every third of the heartbeat TTL; until two were seen, the default TTL's.
            let default = task_core::DEFAULT_HEARTBEAT_TTL.as_secs_f64() / 3.0;
            let (kind, freq) = match last {
                Beat::Offline => return None,
                Beat::Never if event.kind != EventKind::WorkerOffline => ("worker-online", default),
                Beat::Never => (kind, default),
                Beat::At(at) => (kind, at.elapsed().as_secs_f64().clamp(1.0, 60.0)),
            };
            if let Some(entry) = nodes.get_mut(id) {
                entry.1 = if event.kind == EventKind::WorkerOffline {
                    Beat::Offline
                } else {
                    Beat::At(std::time::Instant::now())
                };
            }
            (kind, freq)
        };
        let celery = crate::celery::events::worker(kind, &name, event.detail.as_deref().unwrap_or(""), freq);
        crate::celery::events::message(self.inner.db, &name, vec![celery])
    }

    /// Writes `meta` as Celery's Redis backend does: `SETEX` with the TTL, then `PUBLISH`
    /// on the key (what a waiting `AsyncResult.get()` hears). A final state also carries
    /// on the task's canvas, kept since its fetch ([`crate::celery::canvas`]): the next
    /// messages are sent before the record is stored and the message acked, so a crash
    /// in between runs the task again and loses none of them.
    pub(super) async fn store_celery(
        &self,
        id: &TaskId,
        write: Option<CeleryWrite>,
        ttl: Duration,
    ) -> Result<(), BackendError> {
        let Some(write) = write else { return Ok(()) };
        let (state, meta) = (&write.state, &write.json);
        let event = match write.worker.as_deref() {
            Some(worker) => match self.node_name(worker).await {
                Some(node) => {
                    let events = crate::celery::events::task(
                        id.as_str(),
                        state,
                        &node,
                        write.task.as_deref(),
                        write.args.as_deref(),
                        write.runtime_s,
                    );
                    crate::celery::events::message(self.inner.db, &node, events)
                }
                None => None,
            },
            None => None,
        };
        let key = crate::celery::result_key(id.as_str());
        let canvas_key = self.inner.keys.celery_canvas(id.as_str());
        // Only a final state carries the canvas on (not STARTED, RETRY or PROGRESS).
        let last = matches!(state, ResultMeta::Success(_) | ResultMeta::Failure { .. } | ResultMeta::Revoked { .. });
        let mut pipe = redis::pipe();
        pipe.cmd("SETEX").arg(&key).arg(ttl.as_secs().max(1)).arg(meta).ignore();
        pipe.cmd("PUBLISH").arg(&key).arg(meta).ignore();
        if let Some((channel, message)) = &event {
            pipe.cmd("PUBLISH").arg(channel).arg(message).ignore();
        }
        if last {
            pipe.cmd("GET").arg(&canvas_key);
        }
        let mut con = self.con();
        let context = || format!("cannot store the Celery result of task {id}");
        let canvas: Vec<Option<String>> =
            timed_pipe(self.inner.op_timeout, &pipe, &mut con).await.map_err(|e| e.backend(&context()))?;
        let Some(canvas) = canvas.into_iter().next().flatten() else { return Ok(()) };
        let context = || format!("cannot send on the Celery canvas of task {id}");
        let next = canvas::next(&canvas, id.as_str(), state);
        let mut pipe = redis::pipe();
        for (gid, size) in &next.chord_sizes {
            // As Celery's producer does before a chord's members go out.
            let [_, _, size_key, _, _, claim_key] = canvas::chord_keys(gid);
            pipe.cmd("DEL").arg(&claim_key).ignore();
            pipe.cmd("SET").arg(&size_key).arg(size).arg("EX").arg(ttl.as_secs().max(1)).ignore();
        }
        for m in &next.messages {
            send(&mut pipe, m);
        }
        for failed in &next.failed {
            store(&mut pipe, failed, state, ttl);
        }
        timed_pipe::<()>(self.inner.op_timeout, &pipe, &mut con).await.map_err(|e| e.backend(&context()))?;
        if let Some(part) = canvas::chord_part(&canvas) {
            self.join_chord(id, write.worker.as_deref(), state, &part, ttl).await.map_err(|e| e.backend(&context()))?;
        }
        let _: () = timed(self.inner.op_timeout, redis::cmd("DEL").arg(&canvas_key).query_async(&mut con))
            .await
            .map_err(|e| e.backend(&context()))?;
        Ok(())
    }

    /// Adds chord member `id`'s outcome to its chord's join, as Celery's Redis backend
    /// does (Python and Rust members may share a chord); when it is the last one in and
    /// this worker claims the dispatch, sends the body with the members' values, or
    /// fails it with Celery's `ChordError` when a member failed.
    async fn join_chord(
        &self,
        id: &TaskId,
        worker: Option<&str>,
        state: &ResultMeta,
        part: &canvas::ChordPart,
        ttl: Duration,
    ) -> Result<(), crate::error::Failure> {
        let Some(entry) = canvas::chord_entry(id.as_str(), state) else { return Ok(()) };
        let keys = canvas::chord_keys(&part.group);
        // This run's own token (the member on this worker): a join tried again after a
        // failure finds its claim; another run of the member (elsewhere) does not.
        let token = format!("celerity:{}:{id}", worker.unwrap_or("?"));
        let mut inv = SCRIPTS.celery_chord_part.prepare_invoke();
        for key in &keys {
            inv.key(key);
        }
        inv.arg(id.as_str()).arg(&entry).arg(&part.score).arg(ttl.as_secs().max(1)).arg(CHORD_CLAIM_S).arg(&token);
        let mut con = self.con();
        let (_ready, _diff, _size, claimed): (i64, i64, i64, i64) =
            timed(self.inner.op_timeout, inv.invoke_async(&mut con)).await?;
        if claimed != 1 {
            return Ok(());
        }
        let entries: Vec<String> =
            timed(self.inner.op_timeout, redis::cmd("ZRANGE").arg(&keys[0]).arg(0).arg(-1).query_async(&mut con))
                .await?;
        let mut pipe = redis::pipe();
        match canvas::chord_done(part, &entries) {
            ChordDone::Send(body) => send(&mut pipe, &body),
            ChordDone::Fail { id: body, error, errbacks, chain_failed } => {
                for failed in body.iter().chain(&chain_failed) {
                    store(&mut pipe, failed, &error, ttl);
                }
                for m in &errbacks {
                    send(&mut pipe, m);
                }
            }
        }
        timed_pipe::<()>(self.inner.op_timeout, &pipe, &mut con).await?;
        let mut done = SCRIPTS.celery_chord_done.prepare_invoke();
        done.key(&keys[5]).key(&keys[0]).key(&keys[1]).key(&keys[2]).key(&keys[3]).arg(&token).arg(CHORD_DONE_S);
        let _: i64 = timed(self.inner.op_timeout, done.invoke_async(&mut con)).await?;
        Ok(())
    }
}

/// Adds the sending of `m` to its kombu list to `pipe`.
fn send(pipe: &mut redis::Pipeline, m: &crate::celery::CeleryMessage) {
    let list = kombu_list(m.routing_key.as_deref().unwrap_or("celery"), m.priority);
    pipe.cmd("LPUSH").arg(list).arg(m.to_kombu()).ignore();
}

/// Adds the storing of `state` as task `id`'s Celery result to `pipe`.
fn store(pipe: &mut redis::Pipeline, id: &str, state: &ResultMeta, ttl: Duration) {
    let key = result_key(id);
    let meta = state.to_json(id, Some(&celery_now()));
    pipe.cmd("SETEX").arg(&key).arg(ttl.as_secs().max(1)).arg(&meta).ignore();
    pipe.cmd("PUBLISH").arg(&key).arg(&meta).ignore();
}

/// Now, as Celery writes `date_done`.
fn celery_now() -> String {
    crate::celery::iso(chrono::Utc::now())
}

/// Whether the Celery copy written over from a final record after a write was refused
/// (`code` -1, final already) or fenced (0) sends that record's event too: only when the
/// refused write was a final one (`last_word`), late for a revoke this process had not
/// heard of, which Flower has not heard of either. The other refusals (a late progress;
/// a fenced write) restore a copy whose event went out when the record was stored.
fn rewrite_tells(code: i64, last_word: bool) -> bool {
    code == -1 && last_word
}
