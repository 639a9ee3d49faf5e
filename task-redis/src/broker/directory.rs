//! The worker directory in Redis: one hash per live worker, expiring with its heartbeat.

use super::*;

impl WorkerDirectory for RedisBroker {
    fn announce<'a>(&'a self, info: &'a WorkerInfo, ttl: Duration) -> BoxFuture<'a, Result<(), BrokerError>> {
        Box::pin(async move {
            let key = self.inner.keys.worker(&info.id);
            let mut pipe = redis::pipe();
            pipe.cmd("HSET")
                .arg(&key)
                .arg("hostname")
                .arg(&info.hostname)
                .arg("name")
                .arg(&info.name)
                .arg("pid")
                .arg(info.pid)
                .arg("concurrency")
                .arg(info.concurrency)
                .arg("queues")
                .arg(info.queues.join("\n"))
                .arg("tasks")
                .arg(info.tasks.join("\n"))
                .arg("started_ms")
                .arg(info.started_ms)
                .arg("heartbeat_ms")
                .arg(info.heartbeat_ms)
                .arg("succeeded")
                .arg(info.succeeded)
                .arg("failed")
                .arg(info.failed)
                .arg("last_fetch_ms")
                .arg(info.last_fetch_ms)
                .arg("active")
                .arg(info.active)
                .arg("saturated")
                .arg(u8::from(info.saturated))
                .arg("task_queues")
                .arg(info.task_queues.iter().map(|(task, queue)| format!("{task}\t{queue}\n")).collect::<String>())
                .ignore();
            pipe.cmd("PEXPIRE").arg(&key).arg(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)).ignore();
            let mut con = self.con();
            let _: () =
                timed_pipe(self.limit(), &pipe, &mut con).await.map_err(|e| e.broker("cannot announce the worker"))?;
            Ok(())
        })
    }

    fn workers(&self) -> BoxFuture<'_, Result<Vec<WorkerInfo>, BrokerError>> {
        Box::pin(async move {
            let keys = &self.inner.keys;
            let mut con = self.con();
            let ids = self.worker_ids().await.map_err(|e| e.broker("cannot list workers"))?;
            let mut pipe = redis::pipe();
            for id in &ids {
                pipe.cmd("HGETALL").arg(keys.worker(id));
            }
            let records: Vec<HashMap<String, String>> =
                timed_pipe(self.limit(), &pipe, &mut con).await.map_err(|e| e.broker("cannot read workers"))?;
            let lines = |v: Option<&String>| {
                v.map(|s| s.split('\n').filter(|l| !l.is_empty()).map(str::to_owned).collect()).unwrap_or_default()
            };
            Ok(ids
                .into_iter()
                .zip(records)
                .filter(|(_, r)| !r.is_empty())
                .map(|(id, r)| {
                    let num = |k: &str| r.get(k).and_then(|v| v.parse::<i64>().ok()).unwrap_or(0);
                    let mut info = WorkerInfo::new(
                        id,
                        r.get("hostname").cloned().unwrap_or_default(),
                        u32::try_from(num("pid")).unwrap_or(0),
                        usize::try_from(num("concurrency")).unwrap_or(0),
                        lines(r.get("queues")),
                        lines(r.get("tasks")),
                        num("started_ms"),
                    );
                    info.heartbeat_ms = num("heartbeat_ms");
                    info.succeeded = u64::try_from(num("succeeded")).unwrap_or(0);
                    info.failed = u64::try_from(num("failed")).unwrap_or(0);
                    info.last_fetch_ms = num("last_fetch_ms");
                    info.active = u64::try_from(num("active")).unwrap_or(0);
                    info.saturated = num("saturated") == 1;
                    info.name = r.get("name").cloned().unwrap_or_default();
                    info.task_queues = r
                        .get("task_queues")
                        .map(|lines| {
                            lines
                                .lines()
                                .filter_map(|l| l.split_once('\t'))
                                .map(|(t, q)| (t.to_owned(), q.to_owned()))
                                .collect()
                        })
                        .unwrap_or_default();
                    info
                })
                .collect())
        })
    }
}
