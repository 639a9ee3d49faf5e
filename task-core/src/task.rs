//! The [`Task`] trait that `#[task]` implements, and per-task [`TaskOptions`].

use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// The queue a task goes to when nothing else says.
pub const DEFAULT_QUEUE: &str = "default";

/// How many times a failing task is retried when nothing else says (Celery's default).
pub const DEFAULT_MAX_RETRIES: u32 = 3;

/// A task known at compile time. `#[task] fn add(..)` implements it for `add::Task`.
///
/// You rarely name it: `add::delay` and `add::signature` are generated for you. It is
/// what lets [`App::send`](crate::App::send) take a task as a type.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a task",
    label = "not a task",
    note = "put `#[task]` on a module-level `fn` or `async fn`, and use its generated `<name>::Task` type"
)]
pub trait Task: Send + Sync + 'static {
    /// The registered name (by default `module_path!()::fn_name`).
    const NAME: &'static str;
    /// The default options given in `#[task(..)]`.
    const OPTIONS: TaskOptions;
    /// The arguments, a struct with one field per parameter.
    type Args: Serialize + DeserializeOwned + Send + 'static;
    /// What the task returns on success.
    type Output: Serialize + DeserializeOwned + Send + 'static;
}

/// The defaults a task declares in `#[task(..)]`; a [`Signature`](crate::Signature)
/// can override most of them per call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct TaskOptions {
    /// The queue (else the app's routes, else [`DEFAULT_QUEUE`]).
    pub queue: Option<&'static str>,
    /// Priority 0–9, higher first (else 0).
    pub priority: Option<u8>,
    /// Retries after a retryable error (else [`DEFAULT_MAX_RETRIES`]).
    pub max_retries: Option<u32>,
    /// How retries are spaced (else [`Backoff::DEFAULT`]).
    pub backoff: Option<Backoff>,
    /// Hard time limit: the run is aborted and ends `FAILURE`.
    pub time_limit: Option<Duration>,
    /// Soft time limit: the task is asked to stop ([`TaskContext::is_cancelled`](crate::TaskContext::is_cancelled)).
    pub soft_time_limit: Option<Duration>,
    /// How long the result is kept (else the app's result TTL, one day by default).
    pub result_ttl: Option<Duration>,
    /// A task not started this long after it was sent ends `REVOKED` ("expired").
    pub expires: Option<Duration>,
    /// At most this many starts per period, across every worker.
    pub rate_limit: Option<RateLimit>,
    /// While a call with the same arguments is pending or running (up to this long),
    /// another `delay` returns its result handle instead of sending again.
    pub unique_for: Option<Duration>,
    /// Keep no state or result once the task ends.
    pub ignore_result: bool,
    /// Acknowledge before running (at most once): a task lost with its worker is not run again.
    pub acks_early: bool,
    /// Store `STARTED` when the task starts (else the app's setting, on by default).
    pub track_started: Option<bool>,
}

impl TaskOptions {
    /// No option set.
    pub const fn new() -> Self {
        Self {
            queue: None,
            priority: None,
            max_retries: None,
            backoff: None,
            time_limit: None,
            soft_time_limit: None,
            result_ttl: None,
            expires: None,
            rate_limit: None,
            unique_for: None,
            ignore_result: false,
            acks_early: false,
            track_started: None,
        }
    }

    /// Sets the default queue.
    pub const fn queue(mut self, queue: &'static str) -> Self {
        self.queue = Some(queue);
        self
    }

    /// Sets the default priority (0–9).
    pub const fn priority(mut self, priority: u8) -> Self {
        self.priority = Some(priority);
        self
    }

    /// Sets the default number of retries.
    pub const fn max_retries(mut self, n: u32) -> Self {
        self.max_retries = Some(n);
        self
    }

    /// Sets how retries are spaced.
    pub const fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = Some(backoff);
        self
    }

    /// Sets how long the result is kept.
    pub const fn result_ttl(mut self, ttl: Duration) -> Self {
        self.result_ttl = Some(ttl);
        self
    }

    /// Sets the hard time limit.
    pub const fn time_limit(mut self, limit: Duration) -> Self {
        self.time_limit = Some(limit);
        self
    }

    /// Sets the soft time limit.
    pub const fn soft_time_limit(mut self, limit: Duration) -> Self {
        self.soft_time_limit = Some(limit);
        self
    }

    /// Sets the expiry, counted from sending.
    pub const fn expires(mut self, after: Duration) -> Self {
        self.expires = Some(after);
        self
    }

    /// Sets the cluster-wide rate limit.
    pub const fn rate_limit(mut self, limit: RateLimit) -> Self {
        self.rate_limit = Some(limit);
        self
    }

    /// Makes calls unique by task name and arguments for up to `window`.
    pub const fn unique_for(mut self, window: Duration) -> Self {
        self.unique_for = Some(window);
        self
    }

    /// Keeps no state or result once the task ends.
    pub const fn ignore_result(mut self, yes: bool) -> Self {
        self.ignore_result = yes;
        self
    }

    /// Acknowledges before running (at most once).
    pub const fn acks_early(mut self, yes: bool) -> Self {
        self.acks_early = yes;
        self
    }

    /// Stores `STARTED` when the task starts, or not (see
    /// [`AppBuilder::track_started`](crate::AppBuilder::track_started)).
    pub const fn track_started(mut self, yes: bool) -> Self {
        self.track_started = Some(yes);
        self
    }
}

impl Default for TaskOptions {
    fn default() -> Self {
        Self::new()
    }
}

/// How retries are spaced: exponential from `base`, capped at `max`, with full jitter
/// (a uniform draw in `[0, delay]`) unless `jitter` is off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The first retry's ceiling; doubles with each retry.
    pub base: Duration,
    /// The largest delay.
    pub max: Duration,
    /// Full jitter (default on): spreads retries of many failing tasks.
    pub jitter: bool,
}

impl Backoff {
    /// 1 s, doubling, at most 10 min, full jitter.
    pub const DEFAULT: Backoff = Backoff { base: Duration::from_secs(1), max: Duration::from_secs(600), jitter: true };

    /// The delay before retry number `retries + 1`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use task_core::Backoff;
    /// let fixed = Backoff { base: Duration::from_secs(2), max: Duration::from_secs(5), jitter: false };
    /// assert_eq!(fixed.delay(0), Duration::from_secs(2));
    /// assert_eq!(fixed.delay(1), Duration::from_secs(4));
    /// assert_eq!(fixed.delay(9), Duration::from_secs(5)); // capped
    /// assert!(Backoff::DEFAULT.delay(3) <= Duration::from_secs(8));
    /// ```
    pub fn delay(&self, retries: u32) -> Duration {
        let factor = 1u32.checked_shl(retries.min(31)).unwrap_or(u32::MAX);
        let ceiling = self.base.saturating_mul(factor).min(self.max);
        if !self.jitter {
            return ceiling;
        }
        let millis = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(rand::random_range(0..=millis))
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// A rate: at most `count` task starts per `per`, spread evenly (GCRA), across every
/// worker of the broker. Written `"100/s"`, `"30/m"` or `"500/h"`.
///
/// ```
/// use std::time::Duration;
/// use task_core::RateLimit;
/// let limit: RateLimit = "20/s".parse().unwrap();
/// assert_eq!(limit.interval(), Duration::from_millis(50));
/// assert!("20/fortnight".parse::<RateLimit>().is_err());
/// assert!("0/s".parse::<RateLimit>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    count: u32,
    per: Duration,
}

impl RateLimit {
    /// `count` starts per `per` (`#[task(rate_limit = "..")]` checks the text at compile time).
    ///
    /// # Panics
    /// When `count` is 0 or `per` is zero (in a `const`, at compile time).
    pub const fn new(count: u32, per: Duration) -> Self {
        assert!(count > 0 && !per.is_zero(), "a rate limit needs a count and a period above zero");
        Self { count, per }
    }

    /// How many starts per period.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// The period.
    pub fn per(&self) -> Duration {
        self.per
    }

    /// The even spacing between two starts: `per / count`.
    pub fn interval(&self) -> Duration {
        self.per / self.count
    }
}

impl std::str::FromStr for RateLimit {
    type Err = crate::Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad =
            || crate::Error::Config(format!("invalid rate limit `{s}`: write it as N/s, N/m or N/h, with N above 0"));
        let (count, unit) = s.trim().split_once('/').ok_or_else(bad)?;
        let count: u32 = count.trim().parse().map_err(|_| bad())?;
        let per = match unit.trim() {
            "s" | "sec" | "second" => Duration::from_secs(1),
            "m" | "min" | "minute" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            _ => return Err(bad()),
        };
        if count == 0 {
            return Err(bad());
        }
        Ok(Self { count, per })
    }
}

impl std::fmt::Display for RateLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let unit = match self.per.as_secs() {
            1 => "s",
            60 => "m",
            3600 => "h",
            _ => return write!(f, "{}/{:?}", self.count, self.per),
        };
        write!(f, "{}/{unit}", self.count)
    }
}
