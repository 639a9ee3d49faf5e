//! The worker directory of the in-memory broker.

use super::*;

impl WorkerDirectory for InMemoryBroker {
    fn announce<'a>(&'a self, info: &'a WorkerInfo, ttl: Duration) -> BoxFuture<'a, Result<(), BrokerError>> {
        self.lock().directory.insert(info.id.clone(), (info.clone(), crate::time::std_deadline(ttl)));
        Box::pin(async { Ok(()) })
    }

    fn workers(&self) -> BoxFuture<'_, Result<Vec<WorkerInfo>, BrokerError>> {
        let now = Instant::now();
        let mut state = self.lock();
        state.directory.retain(|_, (_, until)| *until > now);
        let mut workers: Vec<WorkerInfo> = state.directory.values().map(|(info, _)| info.clone()).collect();
        workers.sort_by(|a, b| a.id.cmp(&b.id));
        Box::pin(async move { Ok(workers) })
    }
}
