//! Task options changed on a running worker by remote control — `rate-limit TASK N/m`
//! and `time-limit TASK SOFT [HARD]`, as Celery's `control rate_limit` / `time_limit` —
//! over the options the task was registered with. A change lasts until the worker stops.

use std::collections::HashMap;
use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::task::{RateLimit, TaskOptions};

/// One change to a task's options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Change {
    /// A new rate limit (`None`: no limit).
    RateLimit(Option<RateLimit>),
    /// New time limits (`None`: no limit).
    TimeLimits { soft: Option<Duration>, hard: Option<Duration> },
}

/// The options of `options` after `change`.
pub(super) fn applied(mut options: TaskOptions, change: Change) -> TaskOptions {
    match change {
        Change::RateLimit(limit) => options.rate_limit = limit,
        Change::TimeLimits { soft, hard } => (options.soft_time_limit, options.time_limit) = (soft, hard),
    }
    options
}

/// `rate-limit`'s words after the command: `TASK N/s|N/m|N/h`, or `TASK none` (also `0`)
/// to lift the limit.
pub(super) fn parse_rate_limit<'a>(mut words: impl Iterator<Item = &'a str>) -> Result<(&'a str, Change), String> {
    let usage = || "rate-limit takes a task and a limit: N/s, N/m, N/h or none".to_owned();
    let (task, limit) = (words.next().ok_or_else(usage)?, words.next().ok_or_else(usage)?);
    if words.next().is_some() {
        return Err(usage());
    }
    let limit = match limit {
        "none" | "0" => None,
        text => Some(text.parse::<RateLimit>().map_err(|e| e.to_string())?),
    };
    Ok((task, Change::RateLimit(limit)))
}

/// `time-limit`'s words after the command: `TASK SOFT [HARD]` in seconds, `none` (or 0)
/// for no limit; a hard limit under the soft one is refused (the soft one would never act).
pub(super) fn parse_time_limit<'a>(mut words: impl Iterator<Item = &'a str>) -> Result<(&'a str, Change), String> {
    let usage = || "time-limit takes a task, a soft limit and a hard limit in seconds (or none)".to_owned();
    let seconds = |word: &str| -> Result<Option<Duration>, String> {
        if word == "none" {
            return Ok(None);
        }
        let secs: f64 = word.parse().map_err(|_| format!("`{word}` is not a number of seconds"))?;
        let limit = Duration::try_from_secs_f64(secs).map_err(|e| format!("`{word}`: {e}"))?;
        Ok((!limit.is_zero()).then_some(limit))
    };
    let task = words.next().ok_or_else(usage)?;
    let soft = seconds(words.next().ok_or_else(usage)?)?;
    let hard = words.next().map(seconds).transpose()?.flatten();
    if words.next().is_some() {
        return Err(usage());
    }
    if let (Some(soft), Some(hard)) = (soft, hard)
        && hard < soft
    {
        return Err(format!("the hard limit ({hard:?}) is under the soft one ({soft:?})"));
    }
    Ok((task, Change::TimeLimits { soft, hard }))
}

/// The changed options of the tasks remote control changed.
#[derive(Debug, Default)]
pub(super) struct Tunings {
    /// Whether any task was changed: a worker never changed takes no lock per task.
    any: AtomicBool,
    by_task: RwLock<HashMap<String, TaskOptions>>,
}

impl Tunings {
    /// The options task `name` runs with: its registered `options`, or as changed.
    pub(super) fn options(&self, name: &str, registered: &TaskOptions) -> TaskOptions {
        if !self.any.load(Ordering::Acquire) {
            return *registered;
        }
        let by_task = self.by_task.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        by_task.get(name).copied().unwrap_or(*registered)
    }

    /// Changes task `name` (registered with `registered`) by `change`.
    pub(super) fn change(&self, name: &str, registered: &TaskOptions, change: Change) {
        let mut by_task = self.by_task.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = by_task.get(name).copied().unwrap_or(*registered);
        by_task.insert(name.to_owned(), applied(now, change));
        self.any.store(true, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> std::str::SplitWhitespace<'_> {
        s.split_whitespace()
    }

    #[test]
    fn rate_limits_parse_and_lift() {
        let (task, change) = parse_rate_limit(words("app::add 10/m")).unwrap();
        assert_eq!(task, "app::add");
        assert_eq!(change, Change::RateLimit(Some(RateLimit::new(10, Duration::from_secs(60)))));
        assert_eq!(parse_rate_limit(words("t none")).unwrap().1, Change::RateLimit(None));
        assert_eq!(parse_rate_limit(words("t 0")).unwrap().1, Change::RateLimit(None));
        assert!(parse_rate_limit(words("t")).unwrap_err().contains("takes a task"));
        assert!(parse_rate_limit(words("t 10/fortnight")).unwrap_err().contains("invalid rate limit"));
        assert!(parse_rate_limit(words("t 10/m extra")).is_err());
    }

    #[test]
    fn time_limits_parse_in_seconds() {
        let (task, change) = parse_time_limit(words("crawl 1.5 3")).unwrap();
        assert_eq!(task, "crawl");
        let (soft, hard) = (Some(Duration::from_millis(1500)), Some(Duration::from_secs(3)));
        assert_eq!(change, Change::TimeLimits { soft, hard });
        let soft_only = Change::TimeLimits { soft: Some(Duration::from_secs(2)), hard: None };
        assert_eq!(parse_time_limit(words("crawl 2")).unwrap().1, soft_only);
        let neither = Change::TimeLimits { soft: None, hard: None };
        assert_eq!(parse_time_limit(words("crawl none 0")).unwrap().1, neither);
        assert!(parse_time_limit(words("crawl 5 2")).unwrap_err().contains("under the soft"));
        assert!(parse_time_limit(words("crawl -1")).is_err());
        assert!(parse_time_limit(words("crawl soon")).unwrap_err().contains("not a number"));
        assert!(parse_time_limit(words("crawl")).is_err());
    }

    #[test]
    fn changes_apply_over_the_registered_options() {
        let registered = TaskOptions { max_retries: Some(7), ..TaskOptions::new() };
        let tunings = Tunings::default();
        assert_eq!(tunings.options("t", &registered), registered, "unchanged");
        let limit = RateLimit::new(1, Duration::from_secs(1));
        tunings.change("t", &registered, Change::RateLimit(Some(limit)));
        tunings.change("t", &registered, Change::TimeLimits { soft: None, hard: Some(Duration::from_secs(9)) });
        let now = tunings.options("t", &registered);
        assert_eq!(
            (now.rate_limit, now.time_limit, now.max_retries),
            (Some(limit), Some(Duration::from_secs(9)), Some(7))
        );
        assert_eq!(tunings.options("other", &registered), registered, "only the task named");
        tunings.change("t", &registered, Change::RateLimit(None));
        assert_eq!(tunings.options("t", &registered).rate_limit, None, "lifted, the time limit kept");
        assert_eq!(tunings.options("t", &registered).time_limit, Some(Duration::from_secs(9)));
    }
}
