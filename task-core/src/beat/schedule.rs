//! [`Schedule`]: when a periodic entry is due. Every tick is a fixed point in time that
//! every scheduler computes alike (intervals are aligned to the Unix epoch, cron times
//! are wall-clock times in the entry's time zone), so the tick's time is its run id.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;

use crate::error::Error;

/// When a periodic entry runs.
///
/// ```
/// use std::time::Duration;
/// use task_core::Schedule;
///
/// let every = Schedule::every(Duration::from_secs(30));
/// assert_eq!(every.to_string(), "every 30s");
/// // Six fields, seconds first; five-field expressions run at second 0.
/// let nightly = Schedule::cron("0 30 2 * * *")?.in_time_zone("Europe/Paris")?;
/// assert_eq!(nightly.to_string(), "cron `0 30 2 * * *` (Europe/Paris)");
/// assert!(Schedule::cron("61 * * * * *").is_err());
/// # Ok::<(), task_core::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Schedule(Kind);

#[derive(Clone, Debug)]
enum Kind {
    /// Every `ms` milliseconds, at the multiples of `ms` since the Unix epoch.
    Every(i64),
    Cron {
        expr: Box<cron::Schedule>,
        text: String,
        tz: Tz,
    },
}

impl Schedule {
    /// Every `period`, at the multiples of `period` since the Unix epoch (so every
    /// scheduler agrees on the ticks: a 1 h period ticks on the hour, UTC). Periods
    /// under a millisecond count as one.
    pub fn every(period: Duration) -> Self {
        Self(Kind::Every(i64::try_from(period.as_millis()).unwrap_or(i64::MAX).max(1)))
    }

    /// A cron expression: `sec min hour day-of-month month day-of-week [year]`, or the
    /// classic five fields (run at second 0), in UTC unless [`in_time_zone`] is used.
    ///
    /// [`in_time_zone`]: Schedule::in_time_zone
    pub fn cron(expr: &str) -> Result<Self, Error> {
        let text = expr.split_whitespace().collect::<Vec<_>>().join(" ");
        let full = if text.split(' ').count() == 5 { format!("0 {text}") } else { text.clone() };
        let parsed = cron::Schedule::from_str(&full)
            .map_err(|e| Error::Config(format!("invalid cron expression `{expr}`: {e}")))?;
        Ok(Self(Kind::Cron { expr: Box::new(parsed), text, tz: Tz::UTC }))
    }

    /// Evaluates a cron schedule in this IANA time zone (`"Europe/Paris"`): its times are
    /// wall-clock times there, across daylight-saving changes. No effect on `every`.
    pub fn in_time_zone(mut self, zone: &str) -> Result<Self, Error> {
        let zone: Tz = zone.parse().map_err(|e| Error::Config(format!("unknown time zone `{zone}`: {e}")))?;
        if let Kind::Cron { tz, .. } = &mut self.0 {
            *tz = zone;
        }
        Ok(self)
    }

    /// The first tick strictly after `t` (Unix ms); `None` when the schedule has ended.
    pub fn next_after(&self, t: i64) -> Option<i64> {
        match &self.0 {
            Kind::Every(ms) => t.div_euclid(*ms).checked_add(1)?.checked_mul(*ms),
            Kind::Cron { expr, tz, .. } => {
                let at = tz.timestamp_millis_opt(t).single()?;
                expr.after(&at).next().map(|d| d.timestamp_millis())
            }
        }
    }

    /// The last tick at or before `t` (Unix ms), if any.
    pub fn last_at_or_before(&self, t: i64) -> Option<i64> {
        match &self.0 {
            Kind::Every(ms) => Some(t.div_euclid(*ms) * ms),
            Kind::Cron { expr, tz, .. } => {
                // `after(t)` iterated backwards yields the ticks at or before `t`.
                let at = tz.timestamp_millis_opt(t.checked_add(1)?).single()?;
                expr.after(&at).next_back().map(|d| d.timestamp_millis())
            }
        }
    }
}

/// A tick as a UTC time, for logs.
pub(crate) fn utc(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Kind::Every(ms) if ms % 3_600_000 == 0 => write!(f, "every {}h", ms / 3_600_000),
            Kind::Every(ms) if ms % 60_000 == 0 => write!(f, "every {}m", ms / 60_000),
            Kind::Every(ms) if ms % 1000 == 0 => write!(f, "every {}s", ms / 1000),
            Kind::Every(ms) => write!(f, "every {ms}ms"),
            Kind::Cron { text, tz, .. } => write!(f, "cron `{text}` ({tz})"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(s: &str) -> i64 {
        DateTime::parse_from_rfc3339(s).unwrap().timestamp_millis()
    }

    #[test]
    fn intervals_are_aligned_to_the_epoch() {
        let every = Schedule::every(Duration::from_secs(10));
        assert_eq!(every.next_after(ms("2026-11-28T10:00:03Z")), Some(ms("2026-11-28T10:00:10Z")));
        assert_eq!(every.next_after(ms("2026-11-28T10:00:10Z")), Some(ms("2026-11-28T10:00:20Z")), "strictly after");
        assert_eq!(every.last_at_or_before(ms("2026-11-28T10:00:10Z")), Some(ms("2026-11-28T10:00:10Z")));
        assert_eq!(every.last_at_or_before(ms("2026-11-28T10:00:19.999Z")), Some(ms("2026-11-28T10:00:10Z")));
        assert_eq!(Schedule::every(Duration::ZERO).to_string(), "every 1ms");
        assert_eq!(Schedule::every(Duration::from_secs(90)).to_string(), "every 90s");
        assert_eq!(Schedule::every(Duration::from_secs(300)).to_string(), "every 5m");
        assert_eq!(Schedule::every(Duration::from_secs(7200)).to_string(), "every 2h");
    }

    #[test]
    fn cron_has_a_seconds_field_and_reads_five_fields_too() {
        let every_15s = Schedule::cron("*/15 * * * * *").unwrap();
        assert_eq!(every_15s.next_after(ms("2026-11-28T10:00:16Z")), Some(ms("2026-11-28T10:00:30Z")));
        assert_eq!(every_15s.next_after(ms("2026-11-28T10:00:30Z")), Some(ms("2026-11-28T10:00:45Z")));
        assert_eq!(every_15s.last_at_or_before(ms("2026-11-28T10:00:30Z")), Some(ms("2026-11-28T10:00:30Z")));
        assert_eq!(every_15s.last_at_or_before(ms("2026-11-28T10:00:29Z")), Some(ms("2026-11-28T10:00:15Z")));
        let hourly = Schedule::cron("5 * * * *").unwrap();
        assert_eq!(hourly.next_after(ms("2026-11-28T10:06:00Z")), Some(ms("2026-11-28T11:05:00Z")));
    }

    #[test]
    fn cron_times_are_wall_clock_times_in_the_time_zone() {
        let nine = Schedule::cron("0 0 9 * * *").unwrap().in_time_zone("Europe/Paris").unwrap();
        // Paris is UTC+1 in winter and UTC+2 in summer.
        assert_eq!(nine.next_after(ms("2026-11-28T09:00:00Z")), Some(ms("2026-11-29T08:00:00Z")));
        assert_eq!(nine.next_after(ms("2026-07-01T00:00:00Z")), Some(ms("2026-07-01T07:00:00Z")));
    }

    #[test]
    fn bad_expressions_and_zones_are_clear_errors() {
        let err = Schedule::cron("0 0 25 * * *").unwrap_err().to_string();
        assert!(err.contains("invalid cron expression `0 0 25 * * *`"), "{err}");
        let err = Schedule::cron("* * *").unwrap_err().to_string();
        assert!(err.contains("invalid cron expression"), "{err}");
        let err = Schedule::cron("* * * * * *").unwrap().in_time_zone("Mars/Olympus").unwrap_err().to_string();
        assert!(err.contains("unknown time zone `Mars/Olympus`"), "{err}");
    }
}
