//! Call deadlines: the caller's `grpc-timeout` header, counted from the
//! moment the request arrived ([`CallDeadline`]), and how much of it is
//! left when the hub hands an invocation to a connector.

use std::time::Duration;

use tokio::time::Instant;

/// The header a gRPC client sends its deadline in.
pub(crate) const GRPC_TIMEOUT: &str = "grpc-timeout";

/// How much earlier than the caller's deadline the hub gives up, so that its
/// own `DEADLINE_EXCEEDED` reaches the caller before the transport's timeout
/// (which tonic reports as `CANCELLED`) fires: a twentieth of the timeout, at
/// most 25 ms.
pub(crate) fn margin(timeout: Duration) -> Duration {
    (timeout / 20).min(Duration::from_millis(25))
}

/// Parses a `grpc-timeout` value: at most 8 digits followed by one unit,
/// `H` (hours), `M` (minutes), `S` (seconds), `m` (milliseconds), `u`
/// (microseconds) or `n` (nanoseconds).
pub(crate) fn parse_grpc_timeout(value: &str) -> Result<Duration, String> {
    let bad = |why: &str| format!("invalid {GRPC_TIMEOUT} `{value}`: {why}");
    let Some(unit) = value.chars().last() else {
        return Err(bad("empty"));
    };
    let digits = &value[..value.len() - unit.len_utf8()];
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad("expected 1 to 8 digits and a unit"));
    }
    let n: u64 = digits.parse().map_err(|_| bad("not a number"))?;
    Ok(match unit {
        'H' => Duration::from_secs(n * 3600),
        'M' => Duration::from_secs(n * 60),
        'S' => Duration::from_secs(n),
        'm' => Duration::from_millis(n),
        'u' => Duration::from_micros(n),
        'n' => Duration::from_nanos(n),
        _ => return Err(bad("unknown unit (expected H, M, S, m, u or n)")),
    })
}

/// The deadline of a call that arrived at `arrived` with these request
/// headers: `None` without a `grpc-timeout`. A malformed header is ignored
/// (as tonic's transport does) with a debug log line.
pub(crate) fn from_headers(headers: &http::HeaderMap, arrived: Instant) -> Option<Instant> {
    let value = headers.get(GRPC_TIMEOUT)?;
    let parsed = value
        .to_str()
        .map_err(|_| format!("invalid {GRPC_TIMEOUT}: not ASCII"))
        .and_then(parse_grpc_timeout);
    match parsed {
        Ok(timeout) => Some(arrived + timeout.saturating_sub(margin(timeout))),
        Err(err) => {
            tracing::debug!("{err}; treating the call as having no deadline");
            None
        }
    }
}

/// A call's deadline, computed once when its request arrives (before its
/// body is read) and kept in the request's extensions: the hub answers
/// `DEADLINE_EXCEEDED` by it, ahead of tonic's own timer on the same
/// header (which would answer `CANCELLED`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct CallDeadline(pub(crate) Option<Instant>);

/// The deadline of a call: the one fixed when it arrived, else (a request
/// that did not come through the hub's server) from its headers, now.
pub(crate) fn of_request<T>(request: &tonic::Request<T>) -> Option<Instant> {
    match request.extensions().get::<CallDeadline>() {
        Some(CallDeadline(deadline)) => *deadline,
        None => from_headers(request.metadata().as_ref(), Instant::now()),
    }
}

/// What goes into `Invoke.timeout_ms`: the whole milliseconds left until the
/// deadline (at least 1, since 0 means "no deadline"), or 0 without one.
pub(crate) fn timeout_ms(deadline: Option<Instant>) -> u64 {
    match deadline {
        None => 0,
        Some(at) => {
            let left = at.saturating_duration_since(Instant::now());
            u64::try_from(left.as_millis()).unwrap_or(u64::MAX).max(1)
        }
    }
}

/// Completes at `at`, or never when there is none.
pub(crate) async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Runs `future` until the deadline; `None` if the deadline came first.
pub(crate) async fn until<F: Future>(deadline: Option<Instant>, future: F) -> Option<F::Output> {
    match deadline {
        None => Some(future.await),
        Some(at) => tokio::time::timeout_at(at, future).await.ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_unit() {
        assert_eq!(parse_grpc_timeout("2H"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_grpc_timeout("3M"), Ok(Duration::from_secs(180)));
        assert_eq!(parse_grpc_timeout("10S"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_grpc_timeout("250m"), Ok(Duration::from_millis(250)));
        assert_eq!(
            parse_grpc_timeout("99999999u"),
            Ok(Duration::from_micros(99_999_999))
        );
        assert_eq!(parse_grpc_timeout("5n"), Ok(Duration::from_nanos(5)));
    }

    #[test]
    fn rejects_malformed_values() {
        for bad in ["", "S", "10", "123456789S", "10s", "-1S", "1.5S", "10µ"] {
            assert!(parse_grpc_timeout(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(
            parse_grpc_timeout("10x")
                .unwrap_err()
                .contains("unknown unit")
        );
    }

    #[test]
    fn margin_is_small_and_bounded() {
        assert_eq!(
            margin(Duration::from_millis(300)),
            Duration::from_millis(15)
        );
        assert_eq!(margin(Duration::from_secs(10)), Duration::from_millis(25));
        assert_eq!(margin(Duration::ZERO), Duration::ZERO);
    }

    #[tokio::test]
    async fn a_deadline_counts_from_arrival_less_the_margin() {
        let arrived = Instant::now();
        let mut headers = http::HeaderMap::new();
        assert_eq!(from_headers(&headers, arrived), None);
        headers.insert(GRPC_TIMEOUT, "300m".parse().unwrap());
        assert_eq!(
            from_headers(&headers, arrived),
            Some(arrived + Duration::from_millis(285))
        );
        headers.insert(GRPC_TIMEOUT, "soon".parse().unwrap());
        assert_eq!(from_headers(&headers, arrived), None);
        // A request that came through the server keeps the deadline fixed
        // on arrival.
        let mut request = tonic::Request::new(());
        request.extensions_mut().insert(CallDeadline(Some(arrived)));
        assert_eq!(of_request(&request), Some(arrived));
    }

    #[tokio::test]
    async fn timeout_ms_is_never_zero_with_a_deadline() {
        assert_eq!(timeout_ms(None), 0);
        assert_eq!(timeout_ms(Some(Instant::now())), 1);
        let later = Instant::now() + Duration::from_secs(2);
        assert!((1900..=2000).contains(&timeout_ms(Some(later))));
    }
}
