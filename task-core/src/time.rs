//! The one clock every layer reads: milliseconds since the Unix epoch, the unit of every
//! time stored in a record, an envelope or an event; and deadlines that saturate, so a
//! caller's `Duration::MAX` (a countdown, a wait, a retry) means "very far" and never
//! overflows a clock.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How far ahead a time or a deadline may be: a thousand years. Further is taken as this.
pub const FAR: Duration = Duration::from_secs(1000 * 365 * 24 * 3600);

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    to_ms(SystemTime::now())
}

/// `time` as Unix milliseconds (negative before 1970), saturating at `i64`'s range.
pub fn to_ms(time: SystemTime) -> i64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_millis()).unwrap_or(i64::MAX),
        Err(before) => i64::try_from(before.duration().as_millis()).map_or(i64::MIN, |ms| -ms),
    }
}

/// Unix milliseconds as a time; before 1970 is read as the epoch.
pub fn from_ms(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

/// The time `delay` from now, at most [`FAR`] ahead.
pub fn after(delay: Duration) -> SystemTime {
    let now = SystemTime::now();
    now.checked_add(delay.min(FAR)).unwrap_or(now)
}

/// The instant `timeout` from now (for waits and timers), at most [`FAR`] ahead.
pub fn deadline(timeout: Duration) -> tokio::time::Instant {
    let now = tokio::time::Instant::now();
    now.checked_add(timeout.min(FAR)).unwrap_or(now)
}

/// [`deadline`] on the standard clock, for what the in-memory driver keeps.
pub(crate) fn std_deadline(timeout: Duration) -> std::time::Instant {
    let now = std::time::Instant::now();
    now.checked_add(timeout.min(FAR)).unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn milliseconds_round_trip() {
        let t = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        assert_eq!(to_ms(t), 1_700_000_000_123);
        assert_eq!(from_ms(1_700_000_000_123), t);
        assert_eq!(from_ms(-5), UNIX_EPOCH);
        assert_eq!(to_ms(UNIX_EPOCH - Duration::from_millis(5)), -5);
        assert!((now_ms() - to_ms(SystemTime::now())).abs() < 1_000);
    }

    #[test]
    fn huge_delays_saturate_instead_of_overflowing() {
        let far = after(Duration::MAX);
        assert!(far > SystemTime::now() + Duration::from_secs(900 * 365 * 24 * 3600));
        assert!(to_ms(far) > now_ms());
        let at = deadline(Duration::MAX);
        assert!(at > tokio::time::Instant::now() + Duration::from_secs(900 * 365 * 24 * 3600));
        assert!(after(Duration::from_secs(1)) > SystemTime::now());
    }
}
