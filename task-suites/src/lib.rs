//! The suites every Celerity driver must pass, written once and run on each driver
//! (`memory://` in this crate's own tests, Redis in `task-redis`'s).
//!
//! A crate of its own, never published, in the manner of serde's `test_suite`: the
//! control, workflow and beat suites define `#[task]`s, and tasks register themselves
//! in whatever binary links them. Kept here, they are linked only into test binaries,
//! so a user's worker lists its own tasks and no others.
//!
//! | macro | harness | what it checks |
//! |---|---|---|
//! | [`conformance_tests!`] | [`conformance::Harness`] (a broker and a backend) | the driver contracts: delivery, fencing, delays, dead letters, results, capabilities |
//! | [`control_tests!`] | [`control::AppHarness`] (an `AppBuilder`) | task control end to end: expiry, revoke, terminate, limits, unique, routes |
//! | [`workflow_tests!`] | the same | chains, chords, send-once |
//! | [`beat_tests!`] | the same | periodic ticks sent once by any number of schedulers |
//!
//! ```ignore
//! async fn setup() -> task_suites::conformance::Harness { /* a fresh broker + backend */ }
//! task_suites::conformance_tests!(setup);
//! ```

pub mod beat;
pub mod conformance;
pub mod control;
mod hardening;
pub mod workflow;
