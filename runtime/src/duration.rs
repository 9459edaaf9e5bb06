//! Human durations: `250ms`, `30s`, `5m`, `1h`, `1m30s`.

use std::time::Duration;

/// Parses a duration such as `250ms`, `30s`, `5m`, `2h` or `1m30s`.
///
/// ```
/// use std::time::Duration;
/// assert_eq!(spoke::duration::parse("1m30s"), Ok(Duration::from_secs(90)));
/// assert!(spoke::duration::parse("10 parsecs").is_err());
/// ```
pub fn parse(text: &str) -> Result<Duration, String> {
    let s = text.trim();
    if s.is_empty() {
        return Err("empty duration; expected e.g. `30s`, `250ms`, `5m`".into());
    }
    let mut total: u128 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!(
                "invalid duration `{text}`: expected a number at `{rest}`"
            ));
        }
        let n: u128 = rest[..digits]
            .parse()
            .map_err(|_| format!("invalid duration `{text}`: number too large"))?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let nanos_per: u128 = match unit {
            "ns" => 1,
            "us" | "µs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60 * 1_000_000_000,
            "h" => 3_600 * 1_000_000_000,
            "d" => 86_400 * 1_000_000_000,
            "" => {
                return Err(format!(
                    "invalid duration `{text}`: missing unit after {n} (use ms, s, m or h)"
                ));
            }
            other => {
                return Err(format!(
                    "invalid duration `{text}`: unknown unit `{other}` (use ms, s, m or h)"
                ));
            }
        };
        total = n
            .checked_mul(nanos_per)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| format!("invalid duration `{text}`: too large"))?;
    }
    let secs = u64::try_from(total / 1_000_000_000)
        .map_err(|_| format!("invalid duration `{text}`: too large"))?;
    Ok(Duration::new(secs, (total % 1_000_000_000) as u32))
}

/// Writes a duration the way [`parse`] reads it, largest units first:
/// `1h30m`, `250ms`, `1s500ms`, `0s`.
///
/// ```
/// use std::time::Duration;
/// use spoke::duration::{format, parse};
/// assert_eq!(format(Duration::from_secs(5400)), "1h30m");
/// assert_eq!(format(Duration::from_millis(1500)), "1s500ms");
/// let d = Duration::new(3_723, 4_005_006);
/// assert_eq!(parse(&format(d)), Ok(d));
/// ```
pub fn format(duration: Duration) -> String {
    const UNITS: [(&str, u128); 6] = [
        ("h", 3_600_000_000_000),
        ("m", 60_000_000_000),
        ("s", 1_000_000_000),
        ("ms", 1_000_000),
        ("us", 1_000),
        ("ns", 1),
    ];
    let mut rest = duration.as_nanos();
    if rest == 0 {
        return "0s".to_owned();
    }
    let mut text = String::new();
    for (unit, nanos) in UNITS {
        let n = rest / nanos;
        if n > 0 {
            text.push_str(&n.to_string());
            text.push_str(unit);
            rest -= n * nanos;
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_compounds() {
        assert_eq!(parse("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse("1m30s"), Ok(Duration::from_secs(90)));
        assert!(parse("30").unwrap_err().contains("missing unit"));
        assert!(parse("3x").unwrap_err().contains("unknown unit `x`"));
        assert!(parse("").is_err());
    }

    #[test]
    fn formats_what_it_parses() {
        for (d, text) in [
            (Duration::ZERO, "0s"),
            (Duration::from_millis(250), "250ms"),
            (Duration::from_secs(5), "5s"),
            (Duration::from_secs(90), "1m30s"),
            (Duration::from_secs(7200), "2h"),
            (Duration::from_micros(1_500), "1ms500us"),
            (Duration::from_secs(100 * 3600), "100h"),
        ] {
            assert_eq!(format(d), text);
            assert_eq!(parse(text), Ok(d), "{text}");
        }
    }
}
