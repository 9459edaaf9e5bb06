//! The `SPOKE_*` variables every transport reads, and how a bad value is
//! reported.
//!
//! | Variable | Meaning | Default |
//! |---|---|---|
//! | `SPOKE_MAX_IN_FLIGHT` | how many invocations run at once, a positive whole number | `64` |
//! | `SPOKE_SHUTDOWN_GRACE` | how long running invocations may take to finish on shutdown, e.g. `30s`, `500ms`, `1m` | `10s` |
//!
//! Each transport adds its own (`SPOKE_HUB_URL`, `SPOKE_STDIO_MAX_LINE`,
//! ...). A variable set to the empty string counts as unset; a value that
//! does not parse is an [`EnvError`] naming the variable, which the command
//! line reports as a usage error (exit code 2).

use std::time::Duration;

/// `SPOKE_MAX_IN_FLIGHT`: invocations run at once.
pub const MAX_IN_FLIGHT: &str = "SPOKE_MAX_IN_FLIGHT";
/// `SPOKE_SHUTDOWN_GRACE`: how long running invocations get on shutdown.
pub const SHUTDOWN_GRACE: &str = "SPOKE_SHUTDOWN_GRACE";

/// `SPOKE_TENANT`: the tenant an instance serves (its store keeps each
/// tenant's keys apart; on NATS, its subjects).
pub const TENANT: &str = "SPOKE_TENANT";

/// The tenant of an instance that names none.
pub const DEFAULT_TENANT: &str = "default";

/// The default of `SPOKE_MAX_IN_FLIGHT`.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 64;
/// The default of `SPOKE_SHUTDOWN_GRACE`.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// A `SPOKE_*` variable whose value is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{variable}: {message}")]
pub struct EnvError {
    /// The variable, e.g. `SPOKE_MAX_IN_FLIGHT`.
    pub variable: String,
    /// What is wrong with its value.
    pub message: String,
}

impl EnvError {
    /// A bad value of `variable`, and why.
    pub fn new(variable: impl Into<String>, message: impl Into<String>) -> Self {
        EnvError {
            variable: variable.into(),
            message: message.into(),
        }
    }
}

/// The values of those of `names` that are set in this process's
/// environment, in that order; a value that is not UTF-8 is an error.
pub fn read(names: &[&'static str]) -> Result<Vec<(&'static str, String)>, EnvError> {
    let mut vars = Vec::new();
    for &name in names {
        match std::env::var(name) {
            Ok(value) => vars.push((name, value)),
            Err(std::env::VarError::NotPresent) => {}
            Err(std::env::VarError::NotUnicode(_)) => {
                return Err(EnvError::new(name, "the value is not valid UTF-8"));
            }
        }
    }
    Ok(vars)
}

/// The value of `name` among `vars`, trimmed; a value that is empty (or
/// only spaces) counts as unset.
///
/// ```
/// use spoke::env::value;
/// let vars = [("SPOKE_A", " x "), ("SPOKE_B", " ")];
/// assert_eq!(value(&vars, "SPOKE_A"), Some("x"));
/// assert_eq!(value(&vars, "SPOKE_B"), None);
/// ```
pub fn value<'a>(vars: &[(&str, &'a str)], name: &str) -> Option<&'a str> {
    vars.iter()
        .find(|(k, v)| *k == name && !v.trim().is_empty())
        .map(|(_, v)| v.trim())
}

/// A comma-separated list such as `SPOKE_TAGS`: entries trimmed, empty
/// ones dropped.
///
/// ```
/// assert_eq!(spoke::env::list(" eu, blue ,,"), ["eu", "blue"]);
/// ```
pub fn list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect()
}

/// A positive whole number, e.g. `SPOKE_MAX_IN_FLIGHT`.
///
/// ```
/// use spoke::env::{positive, EnvError};
/// assert_eq!(positive::<usize>("SPOKE_MAX_IN_FLIGHT", " 8 "), Ok(8));
/// let err = positive::<u32>("SPOKE_MAX_IN_FLIGHT", "0").unwrap_err();
/// assert_eq!(err.to_string(), "SPOKE_MAX_IN_FLIGHT: expected a positive whole number, got `0`");
/// ```
pub fn positive<T>(name: &str, value: &str) -> Result<T, EnvError>
where
    T: std::str::FromStr + PartialOrd + From<u8>,
{
    match value.trim().parse::<T>() {
        Ok(n) if n > T::from(0) => Ok(n),
        _ => Err(EnvError::new(
            name,
            format!("expected a positive whole number, got `{value}`"),
        )),
    }
}

/// A duration such as `30s`, `500ms` or `1m` (see [`duration`](crate::duration)).
pub fn duration(name: &str, value: &str) -> Result<Duration, EnvError> {
    crate::duration::parse(value).map_err(|e| EnvError::new(name, e))
}
