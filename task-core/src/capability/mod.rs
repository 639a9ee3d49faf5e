//! What only some drivers can do, one concern per trait (apalis's backend capabilities):
//! a driver offers a capability by answering its accessor on [`Broker`](crate::Broker)
//! or [`ResultBackend`](crate::ResultBackend) with `Some`, and whoever needs it asks.
//!
//! | capability | offered by | used by |
//! |---|---|---|
//! | [`Inspect`] | broker | CLI, dashboard: depths, peeks, purges, dead letters |
//! | [`WorkerDirectory`] | broker | workers announce themselves; `celerity status`, dashboard |
//! | [`RateLimits`] | broker | `rate_limit`: starts spaced across every worker |
//! | [`UniqueLocks`] | broker | `unique_for`: an equal pending call returns its twin |
//! | [`SendOnce`] | broker | callbacks and chain steps sent once |
//! | [`ChordStore`] | broker | chord joins |
//! | [`TickStore`] | broker | periodic ticks claimed once; the running schedules |
//! | [`QueuePause`] | broker | a queue paused: sends go on, no worker takes from it |
//! | [`SharedStore`] + [`SettleAtomically`] | broker + backend of one store | a final state stored with its ack, in one step |
//! | [`TaskHistory`] | backend | recent tasks, throughput, events, counts |
//! | [`Terminations`] | backend | `revoke(.., terminate)` reaching the running task |
//! | [`RemoteControl`] | backend | `celerity inspect` / `control` answered by the live workers |

mod chord;
mod directory;
mod history;
mod inspect;
mod once;
mod pause;
mod rate;
mod remote;
mod settle;
mod terminate;
mod tick;
mod unique;

pub use chord::{ChordJoin, ChordStore};
pub use directory::{WorkerDirectory, WorkerInfo};
pub use history::{HISTORY_CAP, MinuteCount, RecentTask, TaskFilter, TaskHistory};
pub use inspect::{DeadLetter, Inspect, PeekAt, Peeked, QueueStats};
pub use once::SendOnce;
pub use pause::QueuePause;
pub use rate::RateLimits;
pub use remote::{OnRequest, RemoteControl, Request};
pub use settle::{SettleAtomically, SharedStore, pair};
pub use terminate::{Listeners, Listening, OnTerminate, Terminations};
pub use tick::TickStore;
pub use unique::UniqueLocks;
