//! Exponential backoff policies with jitter and stopping conditions.
//!
//! A [`Backoff`] is an immutable, validated *policy*: how long to wait before
//! each retry and when to give up. Calling [`Backoff::schedule`] produces a
//! [`BackoffSchedule`], the mutable *state* of one retry loop, which hands out
//! successive delays until the policy says to stop.
//!
//! The delay before retry number `n` (counting from 0) is
//! `min(initial * multiplier^n, max)`, then reduced by a random amount of up
//! to `jitter * 100` percent (see [`Backoff::jitter`]). Jitter only ever
//! *shortens* a delay, so no delay ever exceeds [`Backoff::max`].
//!
//! For the common case of retrying an async operation, see
//! [`retry`](crate::retry::retry) and [`retry_if`](crate::retry::retry_if).
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use spoke::backoff::Backoff;
//!
//! let backoff = Backoff::builder()
//!     .initial(Duration::from_millis(100))
//!     .max(Duration::from_secs(1))
//!     .jitter(0.0)
//!     .max_retries(5)
//!     .build()?;
//!
//! let delays: Vec<Duration> = backoff.schedule().collect();
//! assert_eq!(
//!     delays,
//!     [100, 200, 400, 800, 1000].map(Duration::from_millis),
//! );
//! # Ok::<(), spoke::backoff::BackoffError>(())
//! ```

use std::time::Duration;

use tokio::time::Instant;

/// Default delay before the first retry: 500 ms.
const DEFAULT_INITIAL: Duration = Duration::from_millis(500);
/// Default cap on a single delay: 30 s.
const DEFAULT_MAX: Duration = Duration::from_secs(30);
/// Default growth factor between consecutive delays.
const DEFAULT_MULTIPLIER: f64 = 2.0;
/// Default jitter fraction.
const DEFAULT_JITTER: f64 = 0.2;

/// An exponential backoff policy.
///
/// A `Backoff` describes:
///
/// * the delay before the first retry ([`initial`](Self::initial)),
/// * how fast delays grow ([`multiplier`](Self::multiplier)),
/// * the cap on any single delay ([`max`](Self::max)),
/// * how much randomness is applied ([`jitter`](Self::jitter)), and
/// * when to stop: after a number of retries
///   ([`max_retries`](Self::max_retries)), after a total amount of time
///   ([`max_elapsed`](Self::max_elapsed)), whichever comes first, or never if
///   neither is set.
///
/// A `Backoff` can only be constructed through [`Backoff::builder`] (which
/// validates every field) or [`Backoff::default`], so every value of this type
/// is valid. It is cheap to clone and holds no state; use
/// [`Backoff::schedule`] to obtain the delays for one retry loop.
///
/// The defaults are: initial 500 ms, max 30 s, multiplier 2.0, jitter 0.2 and
/// no stopping condition (retry forever).
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use spoke::backoff::Backoff;
///
/// let backoff = Backoff::builder()
///     .initial(Duration::from_millis(250))
///     .max(Duration::from_secs(10))
///     .max_elapsed(Duration::from_secs(60))
///     .build()
///     .expect("valid backoff");
///
/// assert_eq!(backoff.initial(), Duration::from_millis(250));
/// assert_eq!(backoff.multiplier(), 2.0); // default
/// assert_eq!(backoff.max_retries(), None); // only the time budget applies
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    multiplier: f64,
    jitter: f64,
    max_retries: Option<u32>,
    max_elapsed: Option<Duration>,
}

impl Default for Backoff {
    /// Returns the default policy: initial 500 ms, max 30 s, multiplier 2.0,
    /// jitter 0.2, no retry limit and no time limit.
    ///
    /// # Example
    ///
    /// ```
    /// use std::time::Duration;
    /// use spoke::backoff::Backoff;
    ///
    /// let backoff = Backoff::default();
    /// assert_eq!(backoff.initial(), Duration::from_millis(500));
    /// assert_eq!(backoff.max(), Duration::from_secs(30));
    /// assert_eq!(backoff, Backoff::builder().build().unwrap());
    /// ```
    fn default() -> Self {
        Self {
            initial: DEFAULT_INITIAL,
            max: DEFAULT_MAX,
            multiplier: DEFAULT_MULTIPLIER,
            jitter: DEFAULT_JITTER,
            max_retries: None,
            max_elapsed: None,
        }
    }
}

impl Backoff {
    /// Starts building a policy, with every field set to its default.
    ///
    /// # Example
    ///
    /// ```
    /// use std::time::Duration;
    /// use spoke::backoff::Backoff;
    ///
    /// let backoff = Backoff::builder()
    ///     .initial(Duration::from_millis(100))
    ///     .multiplier(1.5)
    ///     .max_retries(3)
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(backoff.max_retries(), Some(3));
    /// ```
    pub fn builder() -> BackoffBuilder {
        BackoffBuilder::new()
    }

    /// Delay before the first retry, before jitter.
    ///
    /// # Example
    ///
    /// ```
    /// use std::time::Duration;
    /// use spoke::backoff::Backoff;
    ///
    /// assert_eq!(Backoff::default().initial(), Duration::from_millis(500));
    /// ```
    #[must_use]
    pub fn initial(&self) -> Duration {
        self.initial
    }

    /// Upper bound on any single delay. Jitter never pushes a delay above it.
    ///
    /// # Example
    ///
    /// ```
    /// use std::time::Duration;
    /// use spoke::backoff::Backoff;
    ///
    /// assert_eq!(Backoff::default().max(), Duration::from_secs(30));
    /// ```
    #[must_use]
    pub fn max(&self) -> Duration {
        self.max
    }

    /// Factor by which the delay grows after each retry (always `>= 1.0`).
    ///
    /// # Example
    ///
    /// ```
    /// use spoke::backoff::Backoff;
    ///
    /// assert_eq!(Backoff::default().multiplier(), 2.0);
    /// ```
    #[must_use]
    pub fn multiplier(&self) -> f64 {
        self.multiplier
    }

    /// Jitter fraction, between `0.0` and `1.0` inclusive.
    ///
    /// With jitter `j`, each delay `d` computed from the exponential sequence
    /// (already capped at [`max`](Self::max)) is replaced by a value drawn
    /// uniformly from `[d * (1 - j), d]`. `0.0` disables jitter; `1.0` gives
    /// "full jitter" (anything from zero to `d`).
    ///
    /// # Example
    ///
    /// ```
    /// use spoke::backoff::Backoff;
    ///
    /// assert_eq!(Backoff::default().jitter(), 0.2);
    /// ```
    #[must_use]
    pub fn jitter(&self) -> f64 {
        self.jitter
    }

    /// Maximum number of retries (not counting the first attempt), or `None`
    /// for no limit on the count.
    ///
    /// # Example
    ///
    /// ```
    /// use spoke::backoff::Backoff;
    ///
    /// assert_eq!(Backoff::default().max_retries(), None);
    /// let limited = Backoff::builder().max_retries(4).build().unwrap();
    /// assert_eq!(limited.max_retries(), Some(4));
    /// ```
    #[must_use]
    pub fn max_retries(&self) -> Option<u32> {
        self.max_retries
    }

    /// Total time budget, measured from the creation of a
    /// [`BackoffSchedule`], or `None` for no time limit.
    ///
    /// # Example
    ///
    /// ```
    /// use std::time::Duration;
    /// use spoke::backoff::Backoff;
    ///
    /// assert_eq!(Backoff::default().max_elapsed(), None);
    /// let limited = Backoff::builder()
    ///     .max_elapsed(Duration::from_secs(90))
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(limited.max_elapsed(), Some(Duration::from_secs(90)));
    /// ```
    #[must_use]
    pub fn max_elapsed(&self) -> Option<Duration> {
        self.max_elapsed
    }

    /// The delay before retry number `attempt` (counting from 0), *without*
    /// jitter and without regard to the stopping conditions:
    /// `min(initial * multiplier^attempt, max)`.
    ///
    /// This never overflows or panics: for very large `attempt` values the
    /// result saturates at [`max`](Self::max).
    ///
    /// # Example
    ///
    /// ```
    /// use std::time::Duration;
    /// use spoke::backoff::Backoff;
    ///
    /// let backoff = Backoff::builder()
    ///     .initial(Duration::from_millis(100))
    ///     .max(Duration::from_secs(1))
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(backoff.base_delay(0), Duration::from_millis(100));
    /// assert_eq!(backoff.base_delay(2), Duration::from_millis(400));
    /// assert_eq!(backoff.base_delay(u32::MAX), Duration::from_secs(1));
    /// ```
    #[must_use]
    #[allow(
        clippy::cast_precision_loss,
        reason = "delays are computed in f64 nanoseconds; sub-nanosecond precision is irrelevant"
    )]
    pub fn base_delay(&self, attempt: u32) -> Duration {
        // `multiplier >= 1.0` is finite, so `factor` is in `[1.0, +inf]`.
        let factor = self.multiplier.powf(f64::from(attempt));
        let nanos = self.initial.as_nanos() as f64 * factor;
        let max_nanos = self.max.as_nanos() as f64;
        if nanos.is_nan() || nanos >= max_nanos {
            return self.max;
        }
        duration_from_nanos(nanos).clamp(self.initial, self.max)
    }

    /// Creates the mutable schedule for one retry loop.
    ///
    /// The schedule's time budget ([`max_elapsed`](Self::max_elapsed)) starts
    /// counting now, using [`tokio::time::Instant`] (so a paused Tokio clock is
    /// honoured in tests).
    ///
    /// # Example
    ///
    /// ```
    /// use std::time::Duration;
    /// use spoke::backoff::Backoff;
    ///
    /// let backoff = Backoff::builder()
    ///     .initial(Duration::from_millis(10))
    ///     .jitter(0.0)
    ///     .max_retries(2)
    ///     .build()
    ///     .unwrap();
    ///
    /// let mut schedule = backoff.schedule();
    /// assert_eq!(schedule.next_delay(), Some(Duration::from_millis(10)));
    /// assert_eq!(schedule.next_delay(), Some(Duration::from_millis(20)));
    /// assert_eq!(schedule.next_delay(), None);
    /// ```
    #[must_use]
    pub fn schedule(&self) -> BackoffSchedule {
        BackoffSchedule::new(self.clone(), fastrand::Rng::new())
    }

    /// Applies jitter to an (already capped) base delay.
    ///
    /// The result lies in `[base * (1 - jitter), base]`: the random factor is
    /// `1 - jitter * r` with `r` in `[0, 1)`, and floating-point
    /// multiplication and rounding are monotonic, so the lower bound holds
    /// exactly; the upper bound is enforced with `min`.
    #[allow(
        clippy::cast_precision_loss,
        reason = "delays are computed in f64 nanoseconds; sub-nanosecond precision is irrelevant"
    )]
    fn apply_jitter(&self, base: Duration, rng: &mut fastrand::Rng) -> Duration {
        if self.jitter == 0.0 || base.is_zero() {
            return base;
        }
        let factor = 1.0 - self.jitter * rng.f64();
        duration_from_nanos(base.as_nanos() as f64 * factor).min(base)
    }
}

/// Converts a finite, non-negative number of nanoseconds to a [`Duration`],
/// rounding to the nearest nanosecond and saturating instead of panicking.
#[allow(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "the value is range-checked and `as` saturates, which is the intent"
)]
fn duration_from_nanos(nanos: f64) -> Duration {
    if nanos < u64::MAX as f64 {
        // `as` saturates (and maps NaN to 0), so this cannot panic.
        Duration::from_nanos(nanos.round() as u64)
    } else {
        Duration::try_from_secs_f64(nanos / 1e9).unwrap_or(Duration::MAX)
    }
}

/// Builder for [`Backoff`], obtained from [`Backoff::builder`].
///
/// Every field starts at its default (see [`Backoff`]). Setters can be
/// chained and do no validation; [`build`](Self::build) checks all fields and
/// returns a [`BackoffError`] naming the first invalid one. Building never
/// panics.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use spoke::backoff::{Backoff, BackoffError};
///
/// let err = Backoff::builder().multiplier(0.5).build().unwrap_err();
/// assert_eq!(err, BackoffError::InvalidMultiplier { multiplier: 0.5 });
///
/// let ok = Backoff::builder()
///     .initial(Duration::from_secs(1))
///     .max(Duration::from_secs(60))
///     .multiplier(3.0)
///     .jitter(0.5)
///     .max_retries(10)
///     .max_elapsed(Duration::from_secs(300))
///     .build();
/// assert!(ok.is_ok());
/// ```
#[derive(Debug, Clone, PartialEq)]
#[must_use = "a builder does nothing until `build()` is called"]
pub struct BackoffBuilder {
    initial: Duration,
    max: Duration,
    multiplier: f64,
    jitter: f64,
    max_retries: Option<u32>,
    max_elapsed: Option<Duration>,
}

impl Default for BackoffBuilder {
    /// Same as [`Backoff::builder`].
    ///
    /// # Example
    ///
    /// ```
    /// use spoke::backoff::{Backoff, BackoffBuilder};
    ///
    /// assert_eq!(BackoffBuilder::default(), Backoff::builder());
    /// ```
    fn default() -> Self {
        Self::new()
    }
}

impl BackoffBuilder {
    /// Creates a builder with every field set to its default. Equivalent to
    /// [`Backoff::builder`].
    ///
    /// # Example
    ///
    /// ```
    /// use spoke::backoff::{Backoff, BackoffBuilder};
    ///
    /// assert_eq!(BackoffBuilder::new().build().unwrap(), Backoff::default());
    /// ```
    pub fn new() -> Self {
        let Backoff {
            initial,
            max,
            multiplier,
            jitter,
            max_retries,
            max_elapsed,
        } = Backoff::default();
        Self {
            initial,
            max,
            multiplier,
            jitter,
            max_retries,
            max_elapsed,
        }
    }

    /// Sets the delay before the first retry. Must be greater than zero.
    ///
    /// # Example
    ///
    /// ```
    /// use std::time::Duration;
    /// use spoke::backoff::Backoff;
    ///
    /// let backoff = Backoff::builder()
    ///     .initial(Duration::from_millis(50))
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(backoff.initial(), Duration::from_millis(50));
    /// ```
    pub fn initial(mut self, initial: Duration) -> Self {
        self.initial = initial;
        self
    }

    /// Sets the cap on any single delay. Must be at least `initial`.
    ///
    /// # Example
    ///
    /// ```
    /// use std::time::Duration;
    /// use spoke::backoff::Backoff;
    ///
    /// let backoff = Backoff::builder()
    ///     .max(Duration::from_secs(5))
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(backoff.max(), Duration::from_secs(5));
    /// ```
    pub fn max(mut self, max: Duration) -> Self {
        self.max = max;
        self
    }

    /// Sets the growth factor between consecutive delays. Must be finite and
    /// at least `1.0` (`1.0` gives a constant delay).
    ///
    /// # Example
    ///
    /// ```
    /// use std::time::Duration;
    /// use spoke::backoff::Backoff;
    ///
    /// let constant = Backoff::builder()
    ///     .initial(Duration::from_secs(1))
    ///     .multiplier(1.0)
    ///     .jitter(0.0)
    ///     .build()
    ///     .unwrap();
    /// assert!(constant.schedule().take(5).all(|d| d == Duration::from_secs(1)));
    /// ```
    pub fn multiplier(mut self, multiplier: f64) -> Self {
        self.multiplier = multiplier;
        self
    }

    /// Sets the jitter fraction. Must be finite and within `0.0..=1.0`; see
    /// [`Backoff::jitter`] for its meaning.
    ///
    /// # Example
    ///
    /// ```
    /// use std::time::Duration;
    /// use spoke::backoff::Backoff;
    ///
    /// let backoff = Backoff::builder()
    ///     .initial(Duration::from_secs(1))
    ///     .jitter(0.5)
    ///     .build()
    ///     .unwrap();
    /// let first = backoff.schedule().next_delay().unwrap();
    /// assert!(first >= Duration::from_millis(500) && first <= Duration::from_secs(1));
    /// ```
    pub fn jitter(mut self, jitter: f64) -> Self {
        self.jitter = jitter;
        self
    }

    /// Sets the maximum number of retries (not counting the first attempt).
    /// Accepts a `u32` or an `Option<u32>`; `None` removes the limit. `0`
    /// means "never retry".
    ///
    /// # Example
    ///
    /// ```
    /// use spoke::backoff::Backoff;
    ///
    /// let backoff = Backoff::builder().max_retries(3).build().unwrap();
    /// assert_eq!(backoff.schedule().count(), 3);
    ///
    /// let unlimited = Backoff::builder().max_retries(3).max_retries(None).build().unwrap();
    /// assert_eq!(unlimited.max_retries(), None);
    /// ```
    pub fn max_retries(mut self, max_retries: impl Into<Option<u32>>) -> Self {
        self.max_retries = max_retries.into();
        self
    }

    /// Sets the total time budget, counted from the creation of each
    /// [`BackoffSchedule`]. Accepts a `Duration` or an `Option<Duration>`;
    /// `None` removes the limit. When set, it must be greater than zero.
    ///
    /// # Example
    ///
    /// ```
    /// use std::time::Duration;
    /// use spoke::backoff::Backoff;
    ///
    /// let backoff = Backoff::builder()
    ///     .max_elapsed(Duration::from_secs(120))
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(backoff.max_elapsed(), Some(Duration::from_secs(120)));
    /// ```
    pub fn max_elapsed(mut self, max_elapsed: impl Into<Option<Duration>>) -> Self {
        self.max_elapsed = max_elapsed.into();
        self
    }

    /// Validates the fields and builds the [`Backoff`].
    ///
    /// # Errors
    ///
    /// Returns the [`BackoffError`] for the first invalid field, checked in
    /// this order:
    ///
    /// * [`InvalidInitial`](BackoffError::InvalidInitial) if `initial` is zero;
    /// * [`MaxBelowInitial`](BackoffError::MaxBelowInitial) if `max < initial`;
    /// * [`InvalidMultiplier`](BackoffError::InvalidMultiplier) if
    ///   `multiplier` is NaN, infinite or below `1.0`;
    /// * [`InvalidJitter`](BackoffError::InvalidJitter) if `jitter` is NaN or
    ///   outside `0.0..=1.0`;
    /// * [`InvalidMaxElapsed`](BackoffError::InvalidMaxElapsed) if
    ///   `max_elapsed` is set to zero.
    ///
    /// # Example
    ///
    /// ```
    /// use std::time::Duration;
    /// use spoke::backoff::{Backoff, BackoffError};
    ///
    /// let err = Backoff::builder().initial(Duration::ZERO).build().unwrap_err();
    /// assert!(matches!(err, BackoffError::InvalidInitial { .. }));
    /// assert_eq!(
    ///     err.to_string(),
    ///     "backoff initial delay must be greater than zero, got 0ns",
    /// );
    /// ```
    pub fn build(self) -> Result<Backoff, BackoffError> {
        let Self {
            initial,
            max,
            multiplier,
            jitter,
            max_retries,
            max_elapsed,
        } = self;
        if initial.is_zero() {
            return Err(BackoffError::InvalidInitial { initial });
        }
        if max < initial {
            return Err(BackoffError::MaxBelowInitial { max, initial });
        }
        if !(multiplier.is_finite() && multiplier >= 1.0) {
            return Err(BackoffError::InvalidMultiplier { multiplier });
        }
        if !(0.0..=1.0).contains(&jitter) {
            // `contains` is false for NaN; infinities are out of range.
            return Err(BackoffError::InvalidJitter { jitter });
        }
        if let Some(max_elapsed) = max_elapsed
            && max_elapsed.is_zero()
        {
            return Err(BackoffError::InvalidMaxElapsed { max_elapsed });
        }
        Ok(Backoff {
            initial,
            max,
            multiplier,
            jitter,
            max_retries,
            max_elapsed,
        })
    }
}

/// Why [`BackoffBuilder::build`] rejected a configuration.
///
/// Each variant names the offending field and carries the value that was
/// given, and its message says what was expected.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use spoke::backoff::{Backoff, BackoffError};
///
/// match Backoff::builder().jitter(1.5).build() {
///     Err(BackoffError::InvalidJitter { jitter }) => assert_eq!(jitter, 1.5),
///     other => panic!("unexpected: {other:?}"),
/// }
///
/// let err = Backoff::builder().multiplier(0.5).build().unwrap_err();
/// assert_eq!(
///     err.to_string(),
///     "backoff multiplier must be a finite number >= 1.0, got 0.5",
/// );
/// ```
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum BackoffError {
    /// `initial` was zero.
    #[error("backoff initial delay must be greater than zero, got {initial:?}")]
    InvalidInitial {
        /// The value given for `initial`.
        initial: Duration,
    },
    /// `max` was smaller than `initial`.
    #[error("backoff max delay must be >= the initial delay ({initial:?}), got {max:?}")]
    MaxBelowInitial {
        /// The value given for `max`.
        max: Duration,
        /// The value given for `initial`.
        initial: Duration,
    },
    /// `multiplier` was NaN, infinite or below `1.0`.
    #[error("backoff multiplier must be a finite number >= 1.0, got {multiplier}")]
    InvalidMultiplier {
        /// The value given for `multiplier`.
        multiplier: f64,
    },
    /// `jitter` was NaN or outside `0.0..=1.0`.
    #[error("backoff jitter must be a finite number between 0.0 and 1.0, got {jitter}")]
    InvalidJitter {
        /// The value given for `jitter`.
        jitter: f64,
    },
    /// `max_elapsed` was set to zero.
    #[error("backoff max_elapsed must be greater than zero when set, got {max_elapsed:?}")]
    InvalidMaxElapsed {
        /// The value given for `max_elapsed`.
        max_elapsed: Duration,
    },
}

/// The state of one retry loop driven by a [`Backoff`] policy.
///
/// Created by [`Backoff::schedule`]. Each call to
/// [`next_delay`](Self::next_delay) (or [`Iterator::next`]) returns the delay
/// to wait before the next retry, or `None` once the policy's retry count or
/// time budget is exhausted.
///
/// # Time budget
///
/// When [`Backoff::max_elapsed`] is set, the budget is measured from the
/// creation of the schedule (or the last [`reset`](Self::reset)) with
/// [`tokio::time::Instant`]. A delay that would run past the end of the
/// budget is **shortened to the remaining budget**, so the last retry happens
/// right at the deadline; once the budget is used up, `next_delay` returns
/// `None`. Time spent by the caller between calls (for example running the
/// operation being retried) counts against the budget.
///
/// After `next_delay` has returned `None` it keeps returning `None` until
/// [`reset`](Self::reset) is called.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use spoke::backoff::Backoff;
///
/// let backoff = Backoff::builder()
///     .initial(Duration::from_millis(100))
///     .max(Duration::from_millis(300))
///     .jitter(0.0)
///     .build()
///     .unwrap();
///
/// // With no stopping condition the schedule is infinite.
/// let delays: Vec<_> = backoff.schedule().take(4).collect();
/// assert_eq!(delays, [100, 200, 300, 300].map(Duration::from_millis));
/// ```
#[derive(Debug, Clone)]
pub struct BackoffSchedule {
    backoff: Backoff,
    attempt: u32,
    started: Instant,
    rng: fastrand::Rng,
}

impl BackoffSchedule {
    fn new(backoff: Backoff, rng: fastrand::Rng) -> Self {
        Self {
            backoff,
            attempt: 0,
            started: Instant::now(),
            rng,
        }
    }

    /// Returns the delay to wait before the next retry, or `None` if the
    /// policy says to stop.
    ///
    /// The delay is the jittered exponential delay for the current
    /// [`attempt`](Self::attempt), shortened to the remaining time budget if
    /// [`Backoff::max_elapsed`] is set (see the
    /// [type-level docs](BackoffSchedule#time-budget)). Returns `None`, without
    /// advancing the attempt counter, when `max_retries` delays have already
    /// been handed out or the time budget is used up.
    ///
    /// # Example
    ///
    /// ```
    /// use std::time::Duration;
    /// use spoke::backoff::Backoff;
    ///
    /// let backoff = Backoff::builder()
    ///     .initial(Duration::from_millis(100))
    ///     .jitter(0.0)
    ///     .max_retries(1)
    ///     .build()
    ///     .unwrap();
    /// let mut schedule = backoff.schedule();
    /// assert_eq!(schedule.next_delay(), Some(Duration::from_millis(100)));
    /// assert_eq!(schedule.next_delay(), None);
    /// assert_eq!(schedule.next_delay(), None);
    /// ```
    pub fn next_delay(&mut self) -> Option<Duration> {
        if let Some(max_retries) = self.backoff.max_retries
            && self.attempt >= max_retries
        {
            return None;
        }

        let base = self.backoff.base_delay(self.attempt);
        let mut delay = self.backoff.apply_jitter(base, &mut self.rng);

        if let Some(budget) = self.backoff.max_elapsed {
            let remaining = budget.saturating_sub(self.started.elapsed());
            if remaining.is_zero() {
                return None;
            }
            delay = delay.min(remaining);
        }

        self.attempt = self.attempt.saturating_add(1);
        Some(delay)
    }

    /// Number of delays handed out so far, i.e. the number of retries
    /// scheduled since creation or the last [`reset`](Self::reset).
    ///
    /// This is also the exponent used for the next delay. It saturates at
    /// `u32::MAX`.
    ///
    /// # Example
    ///
    /// ```
    /// use spoke::backoff::Backoff;
    ///
    /// let mut schedule = Backoff::default().schedule();
    /// assert_eq!(schedule.attempt(), 0);
    /// schedule.next_delay();
    /// schedule.next_delay();
    /// assert_eq!(schedule.attempt(), 2);
    /// ```
    #[must_use]
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// Restarts the schedule as if it had just been created: the attempt
    /// counter goes back to zero (so the next delay is `initial` again) and
    /// the time budget starts over from now.
    ///
    /// Supervisors call this when a run lasted long enough to be considered
    /// healthy, so that the next failure is retried quickly again.
    ///
    /// # Example
    ///
    /// ```
    /// use std::time::Duration;
    /// use spoke::backoff::Backoff;
    ///
    /// let backoff = Backoff::builder()
    ///     .initial(Duration::from_millis(100))
    ///     .jitter(0.0)
    ///     .build()
    ///     .unwrap();
    /// let mut schedule = backoff.schedule();
    /// schedule.next_delay();
    /// assert_eq!(schedule.next_delay(), Some(Duration::from_millis(200)));
    ///
    /// schedule.reset();
    /// assert_eq!(schedule.attempt(), 0);
    /// assert_eq!(schedule.next_delay(), Some(Duration::from_millis(100)));
    /// ```
    pub fn reset(&mut self) {
        self.attempt = 0;
        self.started = Instant::now();
    }

    /// The policy this schedule follows.
    ///
    /// # Example
    ///
    /// ```
    /// use spoke::backoff::Backoff;
    ///
    /// let backoff = Backoff::default();
    /// assert_eq!(backoff.schedule().backoff(), &backoff);
    /// ```
    #[must_use]
    pub fn backoff(&self) -> &Backoff {
        &self.backoff
    }
}

impl Iterator for BackoffSchedule {
    type Item = Duration;

    /// Same as [`BackoffSchedule::next_delay`].
    fn next(&mut self) -> Option<Duration> {
        self.next_delay()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// 100 ms initial, doubling, capped at 1 s, no jitter, no limits.
    fn plain() -> BackoffBuilder {
        Backoff::builder()
            .initial(ms(100))
            .max(ms(1000))
            .multiplier(2.0)
            .jitter(0.0)
    }

    // ---- defaults -------------------------------------------------------

    #[test]
    fn default_values() {
        let b = Backoff::default();
        assert_eq!(b.initial(), ms(500));
        assert_eq!(b.max(), Duration::from_secs(30));
        assert_eq!(b.multiplier(), 2.0);
        assert_eq!(b.jitter(), 0.2);
        assert_eq!(b.max_retries(), None);
        assert_eq!(b.max_elapsed(), None);
    }

    #[test]
    fn builder_defaults_match_default() {
        assert_eq!(Backoff::builder().build().unwrap(), Backoff::default());
        assert_eq!(BackoffBuilder::default(), Backoff::builder());
        assert_eq!(BackoffBuilder::new(), Backoff::builder());
    }

    #[test]
    fn builder_sets_every_field() {
        let b = Backoff::builder()
            .initial(ms(7))
            .max(ms(70))
            .multiplier(3.5)
            .jitter(0.75)
            .max_retries(9)
            .max_elapsed(Duration::from_secs(11))
            .build()
            .unwrap();
        assert_eq!(b.initial(), ms(7));
        assert_eq!(b.max(), ms(70));
        assert_eq!(b.multiplier(), 3.5);
        assert_eq!(b.jitter(), 0.75);
        assert_eq!(b.max_retries(), Some(9));
        assert_eq!(b.max_elapsed(), Some(Duration::from_secs(11)));
    }

    #[test]
    fn optional_limits_can_be_cleared() {
        let b = Backoff::builder()
            .max_retries(3)
            .max_elapsed(ms(10))
            .max_retries(None)
            .max_elapsed(None)
            .build()
            .unwrap();
        assert_eq!(b.max_retries(), None);
        assert_eq!(b.max_elapsed(), None);

        let b = Backoff::builder()
            .max_retries(Some(2))
            .max_elapsed(Some(ms(10)))
            .build()
            .unwrap();
        assert_eq!(b.max_retries(), Some(2));
        assert_eq!(b.max_elapsed(), Some(ms(10)));
    }

    #[test]
    fn clone_and_eq() {
        let a = plain().max_retries(3).build().unwrap();
        let b = a.clone();
        assert_eq!(a, b);
        assert_ne!(a, plain().max_retries(4).build().unwrap());
        assert_ne!(a, Backoff::default());
    }

    // ---- validation -----------------------------------------------------

    #[test]
    fn rejects_zero_initial() {
        let err = Backoff::builder()
            .initial(Duration::ZERO)
            .build()
            .unwrap_err();
        assert_eq!(
            err,
            BackoffError::InvalidInitial {
                initial: Duration::ZERO
            }
        );
        assert_eq!(
            err.to_string(),
            "backoff initial delay must be greater than zero, got 0ns"
        );
    }

    #[test]
    fn rejects_max_below_initial() {
        let err = Backoff::builder()
            .initial(ms(500))
            .max(ms(499))
            .build()
            .unwrap_err();
        assert_eq!(
            err,
            BackoffError::MaxBelowInitial {
                max: ms(499),
                initial: ms(500)
            }
        );
        assert_eq!(
            err.to_string(),
            "backoff max delay must be >= the initial delay (500ms), got 499ms"
        );
    }

    #[test]
    fn rejects_bad_multiplier() {
        let err = Backoff::builder().multiplier(0.5).build().unwrap_err();
        assert_eq!(err, BackoffError::InvalidMultiplier { multiplier: 0.5 });
        assert_eq!(
            err.to_string(),
            "backoff multiplier must be a finite number >= 1.0, got 0.5"
        );

        for bad in [0.999, 0.0, -2.0, f64::INFINITY, f64::NEG_INFINITY] {
            assert_eq!(
                Backoff::builder().multiplier(bad).build(),
                Err(BackoffError::InvalidMultiplier { multiplier: bad }),
                "multiplier {bad} should be rejected"
            );
        }

        // NaN != NaN, so match instead of comparing.
        let err = Backoff::builder().multiplier(f64::NAN).build().unwrap_err();
        assert!(
            matches!(err, BackoffError::InvalidMultiplier { multiplier } if multiplier.is_nan())
        );
        assert!(err.to_string().ends_with("got NaN"), "{err}");
        let err = Backoff::builder()
            .multiplier(f64::INFINITY)
            .build()
            .unwrap_err();
        assert!(err.to_string().ends_with("got inf"), "{err}");
    }

    #[test]
    fn rejects_bad_jitter() {
        let err = Backoff::builder().jitter(1.5).build().unwrap_err();
        assert_eq!(err, BackoffError::InvalidJitter { jitter: 1.5 });
        assert_eq!(
            err.to_string(),
            "backoff jitter must be a finite number between 0.0 and 1.0, got 1.5"
        );

        for bad in [-0.1, 1.000_001, f64::INFINITY, f64::NEG_INFINITY] {
            assert_eq!(
                Backoff::builder().jitter(bad).build(),
                Err(BackoffError::InvalidJitter { jitter: bad }),
                "jitter {bad} should be rejected"
            );
        }

        let err = Backoff::builder().jitter(f64::NAN).build().unwrap_err();
        assert!(matches!(err, BackoffError::InvalidJitter { jitter } if jitter.is_nan()));
        assert!(err.to_string().ends_with("got NaN"), "{err}");
    }

    #[test]
    fn rejects_zero_max_elapsed() {
        let err = Backoff::builder()
            .max_elapsed(Duration::ZERO)
            .build()
            .unwrap_err();
        assert_eq!(
            err,
            BackoffError::InvalidMaxElapsed {
                max_elapsed: Duration::ZERO
            }
        );
        assert_eq!(
            err.to_string(),
            "backoff max_elapsed must be greater than zero when set, got 0ns"
        );
    }

    #[test]
    fn accepts_boundary_values() {
        let b = Backoff::builder()
            .initial(Duration::from_nanos(1))
            .max(Duration::from_nanos(1))
            .multiplier(1.0)
            .jitter(0.0)
            .max_retries(0)
            .max_elapsed(Duration::from_nanos(1))
            .build();
        assert!(b.is_ok(), "{b:?}");

        let b = Backoff::builder()
            .max(Duration::MAX)
            .multiplier(f64::MAX)
            .jitter(1.0)
            .build();
        assert!(b.is_ok(), "{b:?}");
    }

    #[test]
    fn reports_first_invalid_field() {
        let err = Backoff::builder()
            .initial(Duration::ZERO)
            .multiplier(0.0)
            .jitter(2.0)
            .build()
            .unwrap_err();
        assert!(
            matches!(err, BackoffError::InvalidInitial { .. }),
            "{err:?}"
        );

        let err = Backoff::builder()
            .multiplier(0.0)
            .jitter(2.0)
            .build()
            .unwrap_err();
        assert!(
            matches!(err, BackoffError::InvalidMultiplier { .. }),
            "{err:?}"
        );
    }

    // ---- growth -----------------------------------------------------------

    #[test]
    fn growth_sequence_without_jitter() {
        let b = plain().build().unwrap();
        let delays: Vec<Duration> = b.schedule().take(8).collect();
        assert_eq!(
            delays,
            [100, 200, 400, 800, 1000, 1000, 1000, 1000]
                .map(ms)
                .to_vec()
        );
    }

    #[test]
    fn growth_with_fractional_multiplier() {
        let b = plain().multiplier(1.5).max(ms(10_000)).build().unwrap();
        let delays: Vec<Duration> = b.schedule().take(5).collect();
        assert_eq!(
            delays,
            vec![
                ms(100),
                ms(150),
                ms(225),
                Duration::from_micros(337_500),
                Duration::from_micros(506_250),
            ]
        );
    }

    #[test]
    fn multiplier_one_is_constant() {
        let b = plain().multiplier(1.0).build().unwrap();
        assert!(b.schedule().take(50).all(|d| d == ms(100)));
    }

    #[test]
    fn max_equal_to_initial_is_constant() {
        let b = plain().max(ms(100)).build().unwrap();
        assert!(b.schedule().take(50).all(|d| d == ms(100)));
    }

    #[test]
    fn base_delay_matches_formula() {
        let b = plain().build().unwrap();
        assert_eq!(b.base_delay(0), ms(100));
        assert_eq!(b.base_delay(1), ms(200));
        assert_eq!(b.base_delay(3), ms(800));
        assert_eq!(b.base_delay(4), ms(1000));
    }

    #[test]
    fn huge_attempts_saturate_at_max() {
        let b = plain().build().unwrap();
        assert_eq!(b.base_delay(10_000), ms(1000));
        assert_eq!(b.base_delay(u32::MAX), ms(1000));

        // Drive a real schedule to attempt 10_000.
        let mut s = b.schedule();
        let last = s.by_ref().take(10_001).last();
        assert_eq!(last, Some(ms(1000)));
        assert_eq!(s.attempt(), 10_001);
        assert_eq!(s.next_delay(), Some(ms(1000)));
    }

    #[test]
    fn huge_attempts_with_unbounded_max_do_not_panic() {
        let b = Backoff::builder()
            .initial(Duration::from_secs(1))
            .max(Duration::MAX)
            .multiplier(f64::MAX)
            .jitter(1.0)
            .build()
            .unwrap();
        assert_eq!(b.base_delay(0), Duration::from_secs(1));
        assert_eq!(b.base_delay(1), Duration::MAX);
        assert_eq!(b.base_delay(10_000), Duration::MAX);
        assert_eq!(b.base_delay(u32::MAX), Duration::MAX);
        let mut s = b.schedule();
        for _ in 0..100 {
            let d = s.next_delay().unwrap();
            assert!(d <= Duration::MAX);
        }

        // Slow growth towards a huge max: intermediate values beyond the
        // range of `u64` nanoseconds must convert without panicking.
        let b = Backoff::builder()
            .initial(Duration::from_secs(1))
            .max(Duration::MAX)
            .multiplier(1.5)
            .jitter(0.0)
            .build()
            .unwrap();
        let mut previous = Duration::ZERO;
        for attempt in [0, 10, 50, 80, 100, 150, 200, 10_000] {
            let d = b.base_delay(attempt);
            assert!(d >= previous, "attempt {attempt}: {d:?} < {previous:?}");
            previous = d;
        }
        assert_eq!(previous, Duration::MAX);
    }

    #[test]
    fn delays_are_monotonic_without_jitter() {
        let b = plain()
            .multiplier(1.1)
            .max(Duration::from_secs(3600))
            .build()
            .unwrap();
        let delays: Vec<Duration> = b.schedule().take(500).collect();
        assert!(delays.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(*delays.last().unwrap(), Duration::from_secs(3600));
    }

    // ---- jitter -----------------------------------------------------------

    #[test]
    fn jittered_delays_stay_within_band_and_vary() {
        let b = Backoff::builder()
            .initial(Duration::from_secs(1))
            .max(Duration::from_secs(8))
            .multiplier(2.0)
            .jitter(0.5)
            .build()
            .unwrap();
        for attempt in 0..6u32 {
            let upper = Duration::from_secs(1 << attempt.min(3));
            let lower = upper / 2;
            let samples: Vec<Duration> = (0..1000)
                .map(|_| {
                    let mut s = b.schedule();
                    s.by_ref().take(attempt as usize).for_each(drop);
                    s.next_delay().unwrap()
                })
                .collect();
            for d in &samples {
                assert!(
                    *d >= lower && *d <= upper,
                    "attempt {attempt}: {d:?} not in [{lower:?}, {upper:?}]"
                );
            }
            let first = samples[0];
            assert!(
                samples.iter().any(|d| *d != first),
                "attempt {attempt}: all 1000 samples equal {first:?}"
            );
            // Not clustered at one end: both halves of the band are hit.
            let mid = lower + (upper - lower) / 2;
            assert!(samples.iter().any(|d| *d < mid), "attempt {attempt}");
            assert!(samples.iter().any(|d| *d > mid), "attempt {attempt}");
        }
    }

    #[test]
    fn full_jitter_stays_within_zero_and_base() {
        let b = plain().jitter(1.0).build().unwrap();
        let mut s = b.schedule();
        let delays: Vec<Duration> = s.by_ref().take(2000).collect();
        for (attempt, d) in delays.iter().enumerate() {
            let upper = b.base_delay(attempt as u32);
            assert!(*d <= upper, "attempt {attempt}: {d:?} > {upper:?}");
        }
        // Capped region: full jitter should produce values well below max.
        assert!(delays[10..].iter().any(|d| *d < ms(500)));
        assert!(delays[10..].iter().any(|d| *d > ms(500)));
    }

    #[test]
    fn jitter_never_exceeds_max() {
        let b = Backoff::builder()
            .initial(ms(300))
            .max(ms(1000))
            .multiplier(3.0)
            .jitter(0.2)
            .build()
            .unwrap();
        let mut s = b.schedule();
        let delays: Vec<Duration> = s.by_ref().take(5000).collect();
        assert!(delays.iter().all(|d| *d <= ms(1000)));
        // From attempt 2 on, the base is capped at 1 s, so the band is
        // [800 ms, 1 s].
        assert!(delays[2..].iter().all(|d| *d >= ms(800)));
        assert!(delays[2..].iter().any(|d| *d != delays[2]));
    }

    #[test]
    fn jitter_lower_bound_is_exact_with_seeded_rng() {
        let b = plain().jitter(0.25).build().unwrap();
        for seed in 0..200 {
            let mut s = BackoffSchedule::new(b.clone(), fastrand::Rng::with_seed(seed));
            for attempt in 0..6 {
                let d = s.next_delay().unwrap();
                let upper = b.base_delay(attempt);
                let lower = upper.mul_f64(0.75);
                assert!(
                    d <= upper && d >= lower,
                    "seed {seed} attempt {attempt}: {d:?}"
                );
            }
        }
    }

    #[test]
    fn seeded_schedules_are_reproducible() {
        let b = Backoff::default();
        let a: Vec<_> = BackoffSchedule::new(b.clone(), fastrand::Rng::with_seed(42))
            .take(20)
            .collect();
        let c: Vec<_> = BackoffSchedule::new(b, fastrand::Rng::with_seed(42))
            .take(20)
            .collect();
        assert_eq!(a, c);
    }

    // ---- stopping conditions ----------------------------------------------

    #[test]
    fn max_retries_yields_exactly_n_delays() {
        for n in [0u32, 1, 2, 5, 17] {
            let b = plain().max_retries(n).build().unwrap();
            let mut s = b.schedule();
            for i in 0..n {
                assert!(s.next_delay().is_some(), "n={n}, delay {i}");
                assert_eq!(s.attempt(), i + 1);
            }
            assert_eq!(s.next_delay(), None, "n={n}");
            assert_eq!(s.next_delay(), None, "n={n}: must stay exhausted");
            assert_eq!(s.attempt(), n, "None must not advance attempt");
            assert_eq!(b.schedule().count(), n as usize);
        }
    }

    #[test]
    fn max_retries_with_jitter() {
        let b = Backoff::builder()
            .initial(ms(1))
            .max_retries(4)
            .build()
            .unwrap();
        assert_eq!(b.schedule().count(), 4);
    }

    #[test]
    fn no_limits_means_forever() {
        let b = plain().build().unwrap();
        let mut s = b.schedule();
        assert_eq!(s.by_ref().take(100_000).count(), 100_000);
        assert!(s.next_delay().is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn max_elapsed_ends_schedule() {
        let b = plain().max_elapsed(Duration::from_secs(1)).build().unwrap();
        let mut s = b.schedule();
        assert_eq!(s.next_delay(), Some(ms(100)));
        tokio::time::advance(ms(100)).await;
        assert_eq!(s.next_delay(), Some(ms(200)));
        tokio::time::advance(ms(200)).await;
        assert_eq!(s.next_delay(), Some(ms(400)));
        tokio::time::advance(ms(400)).await;
        // 700 ms elapsed: the 800 ms delay is shortened to the 300 ms left.
        assert_eq!(s.next_delay(), Some(ms(300)));
        tokio::time::advance(ms(300)).await;
        assert_eq!(s.next_delay(), None);
        assert_eq!(s.next_delay(), None);
        assert_eq!(s.attempt(), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn max_elapsed_counts_time_between_calls() {
        let b = plain().max_elapsed(ms(250)).build().unwrap();
        let mut s = b.schedule();
        tokio::time::advance(ms(200)).await;
        // Only 50 ms of budget left.
        assert_eq!(s.next_delay(), Some(ms(50)));
        tokio::time::advance(ms(49)).await;
        assert_eq!(s.next_delay(), Some(ms(1)));
        tokio::time::advance(ms(1)).await;
        assert_eq!(s.next_delay(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn max_elapsed_exhausted_before_first_delay() {
        let b = plain().max_elapsed(ms(100)).build().unwrap();
        let mut s = b.schedule();
        tokio::time::advance(ms(150)).await;
        assert_eq!(s.next_delay(), None);
        assert_eq!(s.attempt(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn both_limits_whichever_first() {
        // Retry limit hits first.
        let b = plain()
            .max_retries(2)
            .max_elapsed(Duration::from_secs(60))
            .build()
            .unwrap();
        assert_eq!(b.schedule().count(), 2);

        // Time budget hits first. The paused clock only moves when advanced,
        // so advance it by each delay as a retry loop would.
        let b = plain()
            .max_retries(100)
            .max_elapsed(ms(350))
            .build()
            .unwrap();
        let mut s = b.schedule();
        let mut total = Duration::ZERO;
        while let Some(d) = s.next_delay() {
            total += d;
            tokio::time::advance(d).await;
        }
        assert_eq!(total, ms(350));
        assert_eq!(s.attempt(), 3); // 100 + 200 + 50 (shortened)
    }

    // ---- reset ------------------------------------------------------------

    #[test]
    fn reset_restarts_sequence() {
        let b = plain().max_retries(3).build().unwrap();
        let mut s = b.schedule();
        let first: Vec<Duration> = s.by_ref().collect();
        assert_eq!(first, [100, 200, 400].map(ms).to_vec());
        assert_eq!(s.next_delay(), None);

        s.reset();
        assert_eq!(s.attempt(), 0);
        let second: Vec<Duration> = s.by_ref().collect();
        assert_eq!(second, first);
    }

    #[test]
    fn reset_mid_sequence() {
        let b = plain().build().unwrap();
        let mut s = b.schedule();
        s.by_ref().take(6).for_each(drop);
        assert_eq!(s.next_delay(), Some(ms(1000)));
        s.reset();
        assert_eq!(s.next_delay(), Some(ms(100)));
        assert_eq!(s.next_delay(), Some(ms(200)));
    }

    #[tokio::test(start_paused = true)]
    async fn reset_restarts_time_budget() {
        let b = plain().max_elapsed(ms(500)).build().unwrap();
        let mut s = b.schedule();
        tokio::time::advance(ms(600)).await;
        assert_eq!(s.next_delay(), None);

        s.reset();
        assert_eq!(s.next_delay(), Some(ms(100)));
        tokio::time::advance(ms(450)).await;
        assert_eq!(s.next_delay(), Some(ms(50)));
    }

    // ---- misc -------------------------------------------------------------

    #[test]
    fn attempt_counts_delays() {
        let mut s = Backoff::default().schedule();
        assert_eq!(s.attempt(), 0);
        for i in 1..=10 {
            s.next_delay();
            assert_eq!(s.attempt(), i);
        }
    }

    #[test]
    fn schedule_exposes_its_policy() {
        let b = plain().max_retries(2).build().unwrap();
        assert_eq!(b.schedule().backoff(), &b);
    }

    #[test]
    fn types_are_send_sync() {
        fn assert_send_sync<T: Send + Sync + 'static>() {}
        assert_send_sync::<Backoff>();
        assert_send_sync::<BackoffBuilder>();
        assert_send_sync::<BackoffSchedule>();
        assert_send_sync::<BackoffError>();
    }

    #[test]
    fn error_is_std_error() {
        let err: Box<dyn std::error::Error + Send + Sync> =
            Box::new(Backoff::builder().jitter(-1.0).build().unwrap_err());
        assert!(err.to_string().contains("jitter"));
        assert!(err.to_string().contains("-1"));
    }
}
