//! Retrying fallible async operations according to a [`Backoff`] policy.
//!
//! [`retry`] retries every error; [`retry_if`] lets a predicate decide which
//! errors are worth retrying (for example, retry timeouts and 503s but give
//! up at once on a 401).
//!
//! Both functions sleep with [`tokio::time::sleep`], so they need a Tokio
//! runtime with the time driver enabled, and they honour a paused Tokio clock
//! in tests.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use spoke::backoff::Backoff;
//! use spoke::retry::retry;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let backoff = Backoff::builder()
//!     .initial(Duration::from_millis(1))
//!     .max_retries(5)
//!     .build()
//!     .unwrap();
//!
//! // Fails twice, then succeeds on the third call (attempt 2).
//! let result: Result<&str, String> = retry(&backoff, |attempt| async move {
//!     if attempt < 2 {
//!         Err(format!("attempt {attempt} failed"))
//!     } else {
//!         Ok("done")
//!     }
//! })
//! .await;
//! assert_eq!(result, Ok("done"));
//! # }
//! ```

use crate::backoff::Backoff;

/// Runs `op` until it succeeds or `backoff` says to stop, sleeping between
/// attempts.
///
/// `op` is called with the attempt number, starting at `0` for the first call
/// (so attempt `n` is the `n`-th retry). Each time it returns `Err`, the next
/// delay is taken from a fresh [`BackoffSchedule`](crate::backoff::BackoffSchedule)
/// created when `retry` is first polled, the task sleeps for that delay with
/// [`tokio::time::sleep`], and `op` is called again.
///
/// Returns the first `Ok`, or, once the schedule is exhausted (see
/// [`Backoff::max_retries`] and [`Backoff::max_elapsed`]), the last error.
/// With `max_retries(n)`, `op` is called at most `n + 1` times. The
/// `max_elapsed` budget includes the time spent inside `op`, not just the
/// sleeps. With neither limit set, `retry` keeps trying until `op` succeeds.
///
/// Each retry is logged with [`tracing::debug!`], including the attempt
/// number and the delay.
///
/// # Errors
///
/// Returns the error from the last call to `op` when the backoff schedule is
/// exhausted.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use spoke::backoff::Backoff;
/// use spoke::retry::retry;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let backoff = Backoff::builder()
///     .initial(Duration::from_millis(1))
///     .max_retries(2)
///     .build()
///     .unwrap();
///
/// let mut calls = 0;
/// let result: Result<(), u32> = retry(&backoff, |attempt| {
///     calls += 1;
///     async move { Err(attempt) }
/// })
/// .await;
///
/// // One initial call plus two retries; the last error is returned.
/// assert_eq!(calls, 3);
/// assert_eq!(result, Err(2));
/// # }
/// ```
pub async fn retry<T, E, F, Fut>(backoff: &Backoff, op: F) -> Result<T, E>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    retry_if(backoff, op, |_: &E| true).await
}

/// Like [`retry`], but only retries errors for which `should_retry` returns
/// `true`.
///
/// When `op` fails, `should_retry` is called with a reference to the error.
/// If it returns `false`, that error is returned immediately, without
/// sleeping and without consulting the backoff schedule. Otherwise the
/// behaviour is exactly that of [`retry`]. `should_retry` is never called for
/// successful results.
///
/// # Errors
///
/// Returns the first error rejected by `should_retry`, or the error from the
/// last call to `op` when the backoff schedule is exhausted.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use spoke::backoff::Backoff;
/// use spoke::retry::retry_if;
///
/// #[derive(Debug, PartialEq)]
/// enum ApiError {
///     Unavailable,
///     Unauthorized,
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let backoff = Backoff::builder()
///     .initial(Duration::from_millis(1))
///     .max_retries(10)
///     .build()
///     .unwrap();
///
/// let mut calls = 0;
/// let result: Result<(), ApiError> = retry_if(
///     &backoff,
///     |attempt| {
///         calls += 1;
///         async move {
///             if attempt == 0 {
///                 Err(ApiError::Unavailable)
///             } else {
///                 Err(ApiError::Unauthorized)
///             }
///         }
///     },
///     |err| *err == ApiError::Unavailable,
/// )
/// .await;
///
/// // Retried once after `Unavailable`, then stopped at `Unauthorized`.
/// assert_eq!(calls, 2);
/// assert_eq!(result, Err(ApiError::Unauthorized));
/// # }
/// ```
pub async fn retry_if<T, E, F, Fut, P>(
    backoff: &Backoff,
    mut op: F,
    mut should_retry: P,
) -> Result<T, E>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<T, E>>,
    P: FnMut(&E) -> bool,
{
    let mut schedule = backoff.schedule();
    loop {
        let attempt = schedule.attempt();
        let err = match op(attempt).await {
            Ok(value) => return Ok(value),
            Err(err) => err,
        };

        if !should_retry(&err) {
            tracing::debug!(attempt, "operation failed with a non-retryable error");
            return Err(err);
        }

        let Some(delay) = schedule.next_delay() else {
            tracing::debug!(attempt, "operation failed; retries exhausted, giving up");
            return Err(err);
        };

        tracing::debug!(
            attempt,
            next_attempt = schedule.attempt(),
            ?delay,
            "operation failed; retrying after backoff"
        );
        tokio::time::sleep(delay).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::cell::{Cell, RefCell};
    use std::time::Duration;

    use tokio::time::Instant;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// 100 ms initial, doubling, capped at 1 s, no jitter, no limits.
    fn plain() -> crate::backoff::BackoffBuilder {
        Backoff::builder()
            .initial(ms(100))
            .max(ms(1000))
            .multiplier(2.0)
            .jitter(0.0)
    }

    #[derive(Debug, Clone, PartialEq)]
    enum TestError {
        Transient(u32),
        Fatal(u32),
    }

    #[tokio::test(start_paused = true)]
    async fn returns_ok_immediately() {
        let backoff = plain().max_retries(5).build().unwrap();
        let start = Instant::now();
        let calls = Cell::new(0u32);
        let result: Result<&str, TestError> = retry(&backoff, |attempt| {
            calls.set(calls.get() + 1);
            async move {
                assert_eq!(attempt, 0);
                Ok("ok")
            }
        })
        .await;
        assert_eq!(result, Ok("ok"));
        assert_eq!(calls.get(), 1);
        assert_eq!(start.elapsed(), Duration::ZERO, "must not sleep on success");
    }

    #[tokio::test(start_paused = true)]
    async fn retries_until_success_and_sleeps_each_delay() {
        let backoff = plain().max_retries(10).build().unwrap();
        let start = Instant::now();
        let seen = RefCell::new(Vec::new());
        let result = retry(&backoff, |attempt| {
            seen.borrow_mut().push((attempt, start.elapsed()));
            async move {
                if attempt < 3 {
                    Err(TestError::Transient(attempt))
                } else {
                    Ok(attempt * 10)
                }
            }
        })
        .await;
        assert_eq!(result, Ok(30));
        assert_eq!(
            seen.into_inner(),
            vec![(0, ms(0)), (1, ms(100)), (2, ms(300)), (3, ms(700))]
        );
        assert_eq!(start.elapsed(), ms(700));
    }

    #[tokio::test(start_paused = true)]
    async fn max_retries_calls_op_n_plus_one_times_and_returns_last_error() {
        for n in [0u32, 1, 3, 6] {
            let backoff = plain().max_retries(n).build().unwrap();
            let calls = Cell::new(0u32);
            let result: Result<(), TestError> = retry(&backoff, |attempt| {
                calls.set(calls.get() + 1);
                async move { Err(TestError::Transient(attempt)) }
            })
            .await;
            assert_eq!(calls.get(), n + 1, "max_retries = {n}");
            assert_eq!(result, Err(TestError::Transient(n)), "max_retries = {n}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn max_elapsed_stops_retrying() {
        let backoff = plain().max_elapsed(Duration::from_secs(1)).build().unwrap();
        let start = Instant::now();
        let times = RefCell::new(Vec::new());
        let result: Result<(), TestError> = retry(&backoff, |attempt| {
            times.borrow_mut().push(start.elapsed());
            async move { Err(TestError::Transient(attempt)) }
        })
        .await;
        // Delays 100, 200, 400, then 800 shortened to the 300 ms left.
        assert_eq!(
            times.into_inner(),
            vec![ms(0), ms(100), ms(300), ms(700), ms(1000)]
        );
        assert_eq!(result, Err(TestError::Transient(4)));
        assert_eq!(start.elapsed(), Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn max_elapsed_includes_time_spent_in_op() {
        let backoff = plain().max_elapsed(Duration::from_secs(1)).build().unwrap();
        let start = Instant::now();
        let calls = Cell::new(0u32);
        let result: Result<(), TestError> = retry(&backoff, |attempt| {
            calls.set(calls.get() + 1);
            async move {
                tokio::time::sleep(ms(400)).await;
                Err(TestError::Transient(attempt))
            }
        })
        .await;
        // t=0..400 call 0, sleep 100; t=500..900 call 1, sleep 100 (budget);
        // t=1000..1400 call 2; budget exhausted.
        assert_eq!(calls.get(), 3);
        assert_eq!(result, Err(TestError::Transient(2)));
        assert_eq!(start.elapsed(), ms(1400));
    }

    #[tokio::test(start_paused = true)]
    async fn retry_if_stops_on_non_retryable_error_after_one_call() {
        let backoff = plain().max_retries(10).build().unwrap();
        let start = Instant::now();
        let calls = Cell::new(0u32);
        let checked = Cell::new(0u32);
        let result: Result<(), TestError> = retry_if(
            &backoff,
            |attempt| {
                calls.set(calls.get() + 1);
                async move { Err(TestError::Fatal(attempt)) }
            },
            |err| {
                checked.set(checked.get() + 1);
                matches!(err, TestError::Transient(_))
            },
        )
        .await;
        assert_eq!(result, Err(TestError::Fatal(0)));
        assert_eq!(calls.get(), 1);
        assert_eq!(checked.get(), 1);
        assert_eq!(start.elapsed(), Duration::ZERO, "must not sleep");
    }

    #[tokio::test(start_paused = true)]
    async fn retry_if_retries_transient_then_stops_on_fatal() {
        let backoff = plain().max_retries(10).build().unwrap();
        let start = Instant::now();
        let calls = Cell::new(0u32);
        let result: Result<(), TestError> = retry_if(
            &backoff,
            |attempt| {
                calls.set(calls.get() + 1);
                async move {
                    if attempt < 2 {
                        Err(TestError::Transient(attempt))
                    } else {
                        Err(TestError::Fatal(attempt))
                    }
                }
            },
            |err| matches!(err, TestError::Transient(_)),
        )
        .await;
        assert_eq!(result, Err(TestError::Fatal(2)));
        assert_eq!(calls.get(), 3);
        assert_eq!(start.elapsed(), ms(300));
    }

    #[tokio::test(start_paused = true)]
    async fn retry_if_returns_last_error_when_exhausted() {
        let backoff = plain().max_retries(2).build().unwrap();
        let calls = Cell::new(0u32);
        let result: Result<(), TestError> = retry_if(
            &backoff,
            |attempt| {
                calls.set(calls.get() + 1);
                async move { Err(TestError::Transient(attempt)) }
            },
            |_| true,
        )
        .await;
        assert_eq!(result, Err(TestError::Transient(2)));
        assert_eq!(calls.get(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn retry_if_does_not_consult_predicate_on_success() {
        let backoff = plain().max_retries(3).build().unwrap();
        let checked = Cell::new(0u32);
        let result: Result<u32, TestError> = retry_if(
            &backoff,
            |attempt| async move {
                if attempt == 0 {
                    Err(TestError::Transient(0))
                } else {
                    Ok(attempt)
                }
            },
            |_| {
                checked.set(checked.get() + 1);
                true
            },
        )
        .await;
        assert_eq!(result, Ok(1));
        assert_eq!(checked.get(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn jittered_sleeps_stay_within_bounds() {
        let backoff = plain().jitter(0.5).max_retries(4).build().unwrap();
        let start = Instant::now();
        let times = RefCell::new(Vec::new());
        let _: Result<(), TestError> = retry(&backoff, |attempt| {
            times.borrow_mut().push(start.elapsed());
            async move { Err(TestError::Transient(attempt)) }
        })
        .await;
        let times = times.into_inner();
        assert_eq!(times.len(), 5);
        for (i, pair) in times.windows(2).enumerate() {
            let slept = pair[1] - pair[0];
            let upper = backoff.base_delay(i as u32);
            // Allow for the timer's millisecond granularity.
            assert!(
                slept + ms(1) >= upper / 2 && slept <= upper + ms(1),
                "retry {i}: slept {slept:?}, base {upper:?}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn each_call_gets_a_fresh_schedule() {
        let backoff = plain().max_retries(2).build().unwrap();
        for _ in 0..3 {
            let calls = Cell::new(0u32);
            let _: Result<(), TestError> = retry(&backoff, |a| {
                calls.set(calls.get() + 1);
                async move { Err(TestError::Transient(a)) }
            })
            .await;
            assert_eq!(calls.get(), 3);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn op_can_mutate_captured_state() {
        let backoff = plain().max_retries(5).build().unwrap();
        let mut log = Vec::new();
        let result: Result<usize, TestError> = retry(&backoff, |attempt| {
            log.push(attempt);
            let len = log.len();
            async move {
                if len < 3 {
                    Err(TestError::Transient(attempt))
                } else {
                    Ok(len)
                }
            }
        })
        .await;
        assert_eq!(result, Ok(3));
        assert_eq!(log, vec![0, 1, 2]);
    }

    #[test]
    fn futures_are_send_when_inputs_are() {
        fn assert_send<T: Send>(_: &T) {}
        let backoff = Backoff::default();
        let fut = retry(&backoff, |_| async { Ok::<(), String>(()) });
        assert_send(&fut);
        let fut = retry_if(
            &backoff,
            |_| async { Err::<(), String>("x".into()) },
            |e: &String| e.is_empty(),
        );
        assert_send(&fut);
    }

    #[test]
    fn works_on_a_plain_current_thread_runtime() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let backoff = Backoff::builder()
            .initial(ms(1))
            .max(ms(2))
            .max_retries(3)
            .build()
            .unwrap();
        let result: Result<u32, u32> = rt.block_on(retry(&backoff, |attempt| async move {
            if attempt == 3 {
                Ok(attempt)
            } else {
                Err(attempt)
            }
        }));
        assert_eq!(result, Ok(3));
    }
}
