//! How `serve` attaches to a hub: the instance's identity, the hub's
//! address and TLS, its key, limits and retry delays. [`AttachOptions`] is
//! built with [`AttachOptions::new`] or read from the `SPOKE_*` variables
//! ([`AttachOptions::from_env`], see [`env`](crate::grpc::env)).

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::backoff::Backoff;
use crate::grpc::identity::KeySource;
use crate::grpc::outbox::DEFAULT_CAPACITY;
use crate::grpc::tls::HubTls;
use crate::manifest::Manifest;
use crate::secret::Secret;

/// The hub `serve` dials when `SPOKE_HUB_URL` is not set.
pub const DEFAULT_HUB_URL: &str = "http://127.0.0.1:7700";
/// Invocations run at once when `SPOKE_MAX_IN_FLIGHT` is not set.
pub const DEFAULT_MAX_IN_FLIGHT: u32 = crate::env::DEFAULT_MAX_IN_FLIGHT as u32;
/// How long running calls may take to finish on shutdown, when `SPOKE_SHUTDOWN_GRACE` is not set.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = crate::env::DEFAULT_SHUTDOWN_GRACE;

/// Who this connector instance is, as shown to the hub and its clients.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InstanceIdentity {
    /// Unique among the connector's instances, and stable across restarts
    /// (the hub resumes sessions by it and its token).
    pub id: String,
    /// A human-friendly name; clients may route by it.
    pub display_name: String,
    /// Free-form tags; clients may broadcast to every instance with a tag.
    pub tags: Vec<String>,
    /// Free-form key-value metadata.
    pub metadata: BTreeMap<String, String>,
}

/// How [`run`](crate::grpc::serve::run) attaches to a hub. [`AttachOptions::new`] gives the defaults;
/// [`AttachOptions::from_env`] reads the `SPOKE_*` variables.
#[derive(Debug, Clone)]
pub struct AttachOptions {
    /// The hub's gRPC address, `https://host:port` or `http://host:port`.
    pub hub_url: String,
    /// How an `https://` hub's certificate is checked.
    pub tls: HubTls,
    /// Where the instance's key comes from.
    pub key: KeySource,
    /// A one-time registration token that approves this instance; sent
    /// until the hub first registers it ACTIVE. `Debug` shows `[redacted]`.
    pub registration_token: Option<Secret<String>>,
    /// This instance's identity.
    pub instance: InstanceIdentity,
    /// The tenant the instance serves; empty for none.
    pub tenant: String,
    /// How many invocations run at once (at least 1).
    pub max_in_flight: u32,
    /// On shutdown or Drain, how long running invocations may take to finish.
    pub shutdown_grace: Duration,
    /// The delays between attach attempts.
    pub backoff: Backoff,
    /// The delays between attach attempts after the hub did not accept the
    /// registration: the instance's proof (UNAUTHENTICATED), too many
    /// registrations or pending instances (RESOURCE_EXHAUSTED), a Register
    /// it cannot take (INVALID_ARGUMENT).
    pub auth_backoff: Backoff,
    /// How many undelivered results the outbox keeps (the oldest is dropped beyond).
    pub outbox_capacity: usize,
    /// How long to wait for the TCP connection, and then for Registered.
    pub connect_timeout: Duration,
}

impl AttachOptions {
    /// The defaults for a connector: hub [`DEFAULT_HUB_URL`] (the system's
    /// TLS roots for `https://`), the key in `~/.spoke/keys`
    /// ([`KeySource::Default`]), no registration token, instance id
    /// `<connector name>-<unix millis>` (not stable across restarts: set one
    /// so a restarted instance takes its own place again), the manifest's display name, no tags,
    /// metadata or tenant, [`DEFAULT_MAX_IN_FLIGHT`],
    /// [`DEFAULT_SHUTDOWN_GRACE`], [`default_backoff`] (200 ms to 1 s with
    /// jitter), [`default_auth_backoff`] (1 s to 30 s), an outbox of 10,000
    /// results and a 5 s connect timeout.
    pub fn new(manifest: &Manifest) -> Self {
        AttachOptions {
            hub_url: DEFAULT_HUB_URL.to_owned(),
            tls: HubTls::default(),
            key: KeySource::Default,
            registration_token: None,
            instance: InstanceIdentity {
                id: generated_instance_id(&manifest.name),
                display_name: manifest.display_name.clone(),
                tags: Vec::new(),
                metadata: BTreeMap::new(),
            },
            tenant: String::new(),
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            backoff: default_backoff(),
            auth_backoff: default_auth_backoff(),
            outbox_capacity: DEFAULT_CAPACITY,
            connect_timeout: Duration::from_secs(5),
        }
    }
}

/// `<name>-<unix millis>`.
pub(crate) fn generated_instance_id(name: &str) -> String {
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    format!("{name}-{millis}")
}

/// Attach backoff: 200 ms doubling to at most 1 s, jitter 0.2 (each delay
/// is 80 to 100 % of its step), forever.
///
/// The cap is low on purpose: reconnecting costs a refused TCP connection
/// per second while the hub is away, and it bounds the time from the hub's
/// return to this connector's re-registration to about a second, however
/// long the hub was down.
///
/// ```
/// use std::time::Duration;
/// let backoff = spoke::grpc::serve::default_backoff();
/// assert_eq!(backoff.initial(), Duration::from_millis(200));
/// assert_eq!(backoff.max(), Duration::from_secs(1));
/// assert!(backoff.schedule().take(50).all(|d| d <= Duration::from_secs(1)));
/// ```
pub fn default_backoff() -> Backoff {
    Backoff::builder()
        .initial(Duration::from_millis(200))
        .max(Duration::from_secs(1))
        .jitter(0.2)
        .build()
        .unwrap_or_default()
}

/// Attach backoff after the hub refused the instance's proof
/// (UNAUTHENTICATED): 1 s doubling to at most 30 s, jitter 0.2, forever.
/// Slow, since retrying helps only once something changes (a clock is
/// fixed, an administrator acts), and each attempt is logged as an error.
///
/// ```
/// use std::time::Duration;
/// let backoff = spoke::grpc::serve::default_auth_backoff();
/// assert_eq!(backoff.max(), Duration::from_secs(30));
/// ```
pub fn default_auth_backoff() -> Backoff {
    Backoff::builder()
        .initial(Duration::from_secs(1))
        .max(Duration::from_secs(30))
        .jitter(0.2)
        .build()
        .unwrap_or_default()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn the_auth_backoff_is_slow_and_capped_at_30s() {
        let b = default_auth_backoff();
        assert_eq!(b.initial(), Duration::from_secs(1));
        assert_eq!(b.max(), Duration::from_secs(30));
        assert_eq!(AttachOptions::new(&manifest()).auth_backoff, b);
        let delays: Vec<Duration> = b.schedule().take(40).collect();
        assert!(
            delays.iter().all(|d| *d <= Duration::from_secs(30)),
            "{delays:?}"
        );
        assert!(delays[10..].iter().all(|d| *d >= Duration::from_secs(24)));
    }

    #[test]
    fn the_default_backoff_is_200ms_to_1s_with_jitter() {
        let b = default_backoff();
        assert_eq!(b.initial(), Duration::from_millis(200));
        assert_eq!(b.max(), Duration::from_secs(1));
        assert!((b.jitter() - 0.2).abs() < f64::EPSILON);
        assert_eq!(AttachOptions::new(&manifest()).backoff, b);
        // However many attempts failed, the next one is at most 1 s away.
        let delays: Vec<Duration> = b.schedule().take(40).collect();
        assert!(
            delays.iter().all(|d| *d <= Duration::from_secs(1)),
            "{delays:?}"
        );
        assert!(
            delays[10..]
                .iter()
                .all(|d| *d >= Duration::from_millis(800)),
            "{delays:?}"
        );
    }

    /// A minimal manifest, for tests of attach options.
    pub(crate) fn manifest() -> Manifest {
        serde_json::from_value(serde_json::json!({
            "spoke": 1, "name": "echo", "version": "1.0.0", "display_name": "Echo",
            "description": "", "config": {}, "actions": [], "search_operators": [],
            "capabilities": []
        }))
        .unwrap()
    }
}
