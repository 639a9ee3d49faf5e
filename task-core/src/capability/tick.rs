//! Periodic ticks claimed once: any number of schedulers may run, and each tick of an
//! entry is sent by the one that claims it; the entries they run are listed for
//! `celerity schedule` and the dashboard.

use crate::error::BrokerError;
use crate::future::BoxFuture;
use crate::scheduled::ScheduledEntry;

/// Tick claims and the running schedules.
pub trait TickStore: Send + Sync {
    /// Claims tick `tick_ms` (Unix ms) of the periodic entry `entry`: true for the one
    /// caller that sends it, the first to claim a tick later than the entry's last
    /// claimed tick (so a tick is sent once, whatever the number of schedulers and
    /// however far apart their clocks are).
    fn claim_tick<'a>(&'a self, entry: &'a str, tick_ms: i64) -> BoxFuture<'a, Result<bool, BrokerError>>;

    /// The last tick of `entry` that any scheduler claimed.
    fn last_tick<'a>(&'a self, entry: &'a str) -> BoxFuture<'a, Result<Option<i64>, BrokerError>>;

    /// Records the entries a scheduler runs, for `celerity schedule` and the dashboard;
    /// each record lasts until its `expires_ms`.
    fn announce_schedule<'a>(&'a self, entries: &'a [ScheduledEntry]) -> BoxFuture<'a, Result<(), BrokerError>>;

    /// The periodic entries announced by running schedulers, by name.
    fn schedules(&self) -> BoxFuture<'_, Result<Vec<ScheduledEntry>, BrokerError>>;
}
