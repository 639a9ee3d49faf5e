//! The machine's name, shown beside a worker's or a scheduler's id (never used as an id:
//! two processes on one host must not share one).

/// This machine's name (Linux: the kernel's hostname; else `HOSTNAME`, else "unknown").
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".into())
}
