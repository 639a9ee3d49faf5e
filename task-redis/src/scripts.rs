//! The Lua scripts (`lua/*.lua`), loaded once; `redis::Script` runs them with EVALSHA
//! and loads them again after a restart of Redis (NOSCRIPT).

use std::sync::LazyLock;

use redis::Script;

/// Every script, compiled into the binary.
pub(crate) struct Scripts {
    pub(crate) enqueue: Script,
    pub(crate) fetch: Script,
    pub(crate) retry: Script,
    pub(crate) release: Script,
    pub(crate) bury: Script,
    pub(crate) recover: Script,
    pub(crate) heartbeat: Script,
    pub(crate) dead_workers: Script,
    pub(crate) store_many: Script,
    pub(crate) revoke: Script,
    pub(crate) rate: Script,
    pub(crate) retry_dead: Script,
    pub(crate) unlock: Script,
    pub(crate) chord_join: Script,
    pub(crate) chord_fire: Script,
    pub(crate) chord_fail: Script,
    pub(crate) claim_tick: Script,
    pub(crate) enqueue_once: Script,
    pub(crate) retry_dead_one: Script,
}

pub(crate) static SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| Scripts {
    enqueue: Script::new(include_str!("../lua/enqueue.lua")),
    fetch: Script::new(include_str!("../lua/fetch.lua")),
    // A guard (the fenced ack) in front of the enqueue script: one definition of how a
    // message is added.
    retry: Script::new(concat!(include_str!("../lua/retry_guard.lua"), include_str!("../lua/enqueue.lua"))),
    release: Script::new(include_str!("../lua/release.lua")),
    bury: Script::new(include_str!("../lua/bury.lua")),
    recover: Script::new(include_str!("../lua/recover.lua")),
    heartbeat: Script::new(include_str!("../lua/heartbeat.lua")),
    dead_workers: Script::new(include_str!("../lua/dead_workers.lua")),
    store_many: Script::new(include_str!("../lua/store_many.lua")),
    revoke: Script::new(include_str!("../lua/revoke.lua")),
    rate: Script::new(include_str!("../lua/rate.lua")),
    retry_dead: Script::new(include_str!("../lua/retry_dead.lua")),
    unlock: Script::new(include_str!("../lua/unlock.lua")),
    chord_join: Script::new(include_str!("../lua/chord_join.lua")),
    // A guard (close the chord) in front of the enqueue script, like retry.
    chord_fire: Script::new(concat!(include_str!("../lua/chord_fire_guard.lua"), include_str!("../lua/enqueue.lua"))),
    chord_fail: Script::new(include_str!("../lua/chord_fail.lua")),
    claim_tick: Script::new(include_str!("../lua/claim_tick.lua")),
    retry_dead_one: Script::new(include_str!("../lua/retry_dead_one.lua")),
    enqueue_once: Script::new(concat!(include_str!("../lua/once_guard.lua"), include_str!("../lua/enqueue.lua"))),
});
