//! [`SyncMode`]: how much of the outside system a run walks.

use serde::{Deserialize, Serialize};

/// How much of the outside system a sync run walks.
///
/// ```
/// use spoke::sync::SyncMode;
/// assert_eq!(SyncMode::parse("incremental"), Some(SyncMode::Incremental));
/// assert_eq!(SyncMode::Full.as_str(), "full");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncMode {
    /// Everything, from the start (or from the checkpoint of an
    /// interrupted full run).
    Full,
    /// Only what changed since the last checkpoint.
    Incremental,
    /// A long-running watch that emits changes as they happen.
    Realtime,
}

impl SyncMode {
    /// Every mode, in declaration order.
    pub const ALL: [SyncMode; 3] = [SyncMode::Full, SyncMode::Incremental, SyncMode::Realtime];

    /// `"full"`, `"incremental"` or `"realtime"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            SyncMode::Full => "full",
            SyncMode::Incremental => "incremental",
            SyncMode::Realtime => "realtime",
        }
    }

    /// The mode with this name.
    pub fn parse(name: &str) -> Option<SyncMode> {
        SyncMode::ALL.into_iter().find(|m| m.as_str() == name)
    }

    /// When a run in this mode flushes its buffered events (Omni's
    /// figures): full 500 events or 300 s, incremental 100 or 60 s,
    /// realtime every event.
    pub const fn flush_policy(self) -> FlushPolicy {
        match self {
            SyncMode::Full => FlushPolicy {
                max_events: 500,
                max_age: std::time::Duration::from_secs(300),
            },
            SyncMode::Incremental => FlushPolicy {
                max_events: 100,
                max_age: std::time::Duration::from_secs(60),
            },
            SyncMode::Realtime => FlushPolicy {
                max_events: 1,
                max_age: std::time::Duration::ZERO,
            },
        }
    }
}

impl std::fmt::Display for SyncMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// When buffered events are flushed to the sink: once `max_events` wait,
/// or once the oldest has waited `max_age` (a timer flushes an idle
/// buffer; no new event is needed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlushPolicy {
    /// Flush when this many events wait (at least 1).
    pub max_events: usize,
    /// Flush when the oldest waiting event is this old.
    pub max_age: std::time::Duration,
}

/// The variable that sets how many buffered events make a flush, for every
/// mode but realtime.
pub const FLUSH_EVENTS_VAR: &str = "SPOKE_SYNC_FLUSH_EVENTS";
/// The variable that sets how old the oldest buffered event may get before
/// a flush, for every mode but realtime.
pub const FLUSH_AGE_VAR: &str = "SPOKE_SYNC_FLUSH_AGE";

impl FlushPolicy {
    /// The policy of `mode` ([`SyncMode::flush_policy`]), with what
    /// `SPOKE_SYNC_FLUSH_EVENTS` (a positive count) and
    /// `SPOKE_SYNC_FLUSH_AGE` (a duration such as `5s`) set instead, for
    /// full and incremental runs (a realtime run flushes every event). A
    /// value that does not parse is an error naming the variable.
    ///
    /// ```
    /// use spoke::sync::{FlushPolicy, SyncMode};
    /// let policy = FlushPolicy::from_vars(SyncMode::Full, None, Some("2s")).unwrap();
    /// assert_eq!(policy.max_events, 500);
    /// assert_eq!(policy.max_age, std::time::Duration::from_secs(2));
    /// assert!(FlushPolicy::from_vars(SyncMode::Full, Some("0"), None).is_err());
    /// ```
    pub fn from_vars(
        mode: SyncMode,
        events: Option<&str>,
        age: Option<&str>,
    ) -> Result<FlushPolicy, crate::env::EnvError> {
        let mut policy = mode.flush_policy();
        if mode == SyncMode::Realtime {
            return Ok(policy);
        }
        if let Some(events) = events {
            policy.max_events = crate::env::positive(FLUSH_EVENTS_VAR, events)?;
        }
        if let Some(age) = age {
            policy.max_age = crate::env::duration(FLUSH_AGE_VAR, age)?;
        }
        Ok(policy)
    }

    /// [`FlushPolicy::from_vars`] with the process's variables.
    pub fn from_env(mode: SyncMode) -> Result<FlushPolicy, crate::env::EnvError> {
        let var = |name| {
            std::env::var(name)
                .ok()
                .filter(|v: &String| !v.trim().is_empty())
        };
        Self::from_vars(
            mode,
            var(FLUSH_EVENTS_VAR).as_deref(),
            var(FLUSH_AGE_VAR).as_deref(),
        )
    }
}
