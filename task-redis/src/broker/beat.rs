//! Periodic-task coordination in Redis: the last claimed tick of every entry in one
//! hash (`NS:beat:ticks`, claimed by a compare-and-set script), and the entries the
//! running schedulers announce (`NS:beat:schedule`, name -> encoded record).

use task_core::{BrokerError, ScheduledEntry};

use super::RedisBroker;
use crate::error::{timed, timed_pipe};
use crate::scripts::SCRIPTS;

/// The schedule hash outlives its last announcement by this much (records carry their
/// own expiry; this only bounds what a stopped deployment leaves behind).
const SCHEDULE_KEEP_MS: u64 = 24 * 3600 * 1000;

impl RedisBroker {
    pub(super) async fn claim(&self, entry: &str, tick_ms: i64) -> Result<bool, BrokerError> {
        let mut con = self.con();
        let claimed: i64 = timed(
            self.limit(),
            SCRIPTS.claim_tick.key(self.inner.keys.beat_ticks()).arg(entry).arg(tick_ms).invoke_async(&mut con),
        )
        .await
        .map_err(|e| e.broker(&format!("cannot claim a tick of periodic entry `{entry}`")))?;
        Ok(claimed == 1)
    }

    pub(super) async fn last_claimed(&self, entry: &str) -> Result<Option<i64>, BrokerError> {
        let mut con = self.con();
        timed(self.limit(), redis::cmd("HGET").arg(self.inner.keys.beat_ticks()).arg(entry).query_async(&mut con))
            .await
            .map_err(|e| e.broker(&format!("cannot read the last tick of periodic entry `{entry}`")))
    }

    pub(super) async fn announce_entries(&self, entries: &[ScheduledEntry]) -> Result<(), BrokerError> {
        if entries.is_empty() {
            return Ok(());
        }
        let key = self.inner.keys.beat_schedule();
        let mut hset = redis::cmd("HSET");
        hset.arg(&key);
        for entry in entries {
            let record = entry.encode().map_err(|e| BrokerError::new(task_core::ErrorKind::Other, e.to_string()))?;
            hset.arg(&entry.name).arg(record);
        }
        let mut pipe = redis::pipe();
        pipe.add_command(hset).ignore().cmd("PEXPIRE").arg(&key).arg(SCHEDULE_KEEP_MS).ignore();
        let mut con = self.con();
        let _: () = timed_pipe(self.limit(), &pipe, &mut con)
            .await
            .map_err(|e| e.broker("cannot record the periodic entries"))?;
        Ok(())
    }

    pub(super) async fn announced_entries(&self) -> Result<Vec<ScheduledEntry>, BrokerError> {
        let mut con = self.con();
        let records: Vec<(String, Vec<u8>)> =
            timed(self.limit(), redis::cmd("HGETALL").arg(self.inner.keys.beat_schedule()).query_async(&mut con))
                .await
                .map_err(|e| e.broker("cannot read the periodic entries"))?;
        let now = super::now_ms();
        let mut entries: Vec<ScheduledEntry> = records
            .iter()
            .filter_map(|(_, bytes)| ScheduledEntry::decode(bytes).ok())
            .filter(|e| e.expires_ms > now)
            .collect();
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(entries)
    }
}
