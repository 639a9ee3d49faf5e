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
    pub(crate) unlock: Script,
    pub(crate) chord_join: Script,
    pub(crate) chord_fire: Script,
    pub(crate) chord_fail: Script,
    pub(crate) claim_tick: Script,
    pub(crate) enqueue_once: Script,
    pub(crate) retry_dead_one: Script,
    pub(crate) celery_fetch: Script,
    pub(crate) celery_return: Script,
    pub(crate) celery_retry: Script,
    pub(crate) celery_recover: Script,
    pub(crate) celery_bury: Script,
    pub(crate) celery_chord_part: Script,
    pub(crate) celery_chord_done: Script,
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
    store_many: Script::new(&store_many()),
    revoke: Script::new(include_str!("../lua/revoke.lua")),
    rate: Script::new(include_str!("../lua/rate.lua")),
    unlock: Script::new(include_str!("../lua/unlock.lua")),
    chord_join: Script::new(include_str!("../lua/chord_join.lua")),
    // A guard (close the chord) in front of the enqueue script, like retry.
    chord_fire: Script::new(concat!(include_str!("../lua/chord_fire_guard.lua"), include_str!("../lua/enqueue.lua"))),
    chord_fail: Script::new(include_str!("../lua/chord_fail.lua")),
    claim_tick: Script::new(include_str!("../lua/claim_tick.lua")),
    retry_dead_one: Script::new(include_str!("../lua/retry_dead_one.lua")),
    celery_fetch: Script::new(include_str!("../lua/celery_fetch.lua")),
    celery_return: Script::new(include_str!("../lua/celery_return.lua")),
    celery_retry: Script::new(include_str!("../lua/celery_retry.lua")),
    celery_recover: Script::new(include_str!("../lua/celery_recover.lua")),
    celery_bury: Script::new(include_str!("../lua/celery_bury.lua")),
    celery_chord_part: Script::new(include_str!("../lua/celery_chord_part.lua")),
    celery_chord_done: Script::new(include_str!("../lua/celery_chord_done.lua")),
    enqueue_once: Script::new(concat!(include_str!("../lua/once_guard.lua"), include_str!("../lua/enqueue.lua"))),
});

/// `store_many.lua` with its shaped writes (`crate::backend::WRITE_SHAPES`) written in
/// after its `-- @shapes` line: one `HSET` per shape that names the fields itself. A
/// shaped write carries its own time (a start, an end: `backend/record.rs`), so it
/// sets no `changed_ms`.
fn store_many() -> String {
    let shapes = crate::backend::WRITE_SHAPES;
    let lens: Vec<String> = shapes.iter().map(|shape| shape.len().to_string()).collect();
    let mut lua =
        format!("local SHAPE_LEN = {{{}}}\nlocal function store_shaped(shape, key, state, i)\n", lens.join(", "));
    for (n, shape) in shapes.iter().enumerate() {
        let fields: Vec<String> =
            shape.iter().enumerate().map(|(j, field)| format!("'{field}', ARGV[i + {j}]")).collect();
        let branch = if n == 0 { "if" } else { "elseif" };
        lua += &format!(
            "  {branch} shape == {} then\n    redis.call('HSET', key, 'state', state, {})\n",
            n + 1,
            fields.join(", ")
        );
    }
    lua += "  end\nend\n";
    let source = include_str!("../lua/store_many.lua");
    let marker = source.find("-- @shapes").expect("store_many.lua has its -- @shapes line");
    let at = marker + source[marker..].find('\n').map_or(source.len() - marker, |end| end + 1);
    format!("{}{lua}{}", &source[..at], &source[at..])
}

#[cfg(test)]
mod tests {
    #[test]
    fn store_many_names_the_fields_of_every_shape() {
        let lua = super::store_many();
        assert!(lua.contains("local SHAPE_LEN = {3, 2, 2}\n"), "{lua}");
        assert!(lua.find("-- @shapes") < lua.find("local SHAPE_LEN"), "written in after its marker line");
        assert!(
            lua.contains(
                "  elseif shape == 3 then\n    redis.call('HSET', key, 'state', state, \
                 'end', ARGV[i + 0], 'result', ARGV[i + 1])\n"
            ),
            "{lua}"
        );
    }
}
