//! The one clock every layer reads: milliseconds since the Unix epoch, the unit of every
//! time stored in a record, an envelope or an event.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// `time` as Unix milliseconds (negative before 1970).
pub fn to_ms(time: SystemTime) -> i64 {
    chrono::DateTime::<chrono::Utc>::from(time).timestamp_millis()
}

/// Unix milliseconds as a time; before 1970 is read as the epoch.
pub fn from_ms(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0))
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
        assert!((now_ms() - to_ms(SystemTime::now())).abs() < 1_000);
    }
}
