//! The hub's settings: where it listens, how often it checks on connectors,
//! how long it waits for a lost connector to come back.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The address `spoke hub` listens on unless `--listen` says otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7700";
/// The default heartbeat interval.
pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(5);
/// The longest default resume window.
pub const MAX_DEFAULT_RESUME_WINDOW: Duration = Duration::from_secs(2);
/// The default time connectors get to finish their work when the hub shuts down.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// How a hub runs.
///
/// [`HubConfig::new`] makes an open hub: no auth (any instance is approved,
/// clients need no token) and plain HTTP/2 without TLS. That is for tests
/// and for embedding a hub in a process that guards its own listener; turn
/// auth on with [`HubConfig::with_auth`] and TLS with [`HubConfig::with_tls`]
/// (`spoke hub` does both unless told `--no-auth` / `--insecure`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubConfig {
    /// The address to listen on; port 0 picks a free port.
    pub listen: SocketAddr,
    /// How often each side sends `Ping`; a peer silent for two intervals is dropped.
    pub heartbeat_interval: Duration,
    /// How long the session and in-flight calls of an instance whose stream
    /// ended are kept for it to resume.
    pub resume_window: Duration,
    /// On shutdown, how long the calls in flight get to be answered before
    /// the hub says Goodbye to their connectors (which then reconnect, to
    /// the hub's successor) and fails what is left.
    pub shutdown_grace: Duration,
    /// With auth: the data directory holding the store (`hub.db`) and the
    /// operator token; `None`: no auth.
    pub data_dir: Option<PathBuf>,
    /// Without auth: where the store of sync checkpoints (`syncs.db`) is
    /// kept (`--data` with `--no-auth`); with auth it is in `data_dir`.
    /// `None` with neither: checkpoints are kept in memory only.
    pub syncs_dir: Option<PathBuf>,
    /// The listener's certificate and key (PEM files); `None`: no TLS.
    pub tls: Option<TlsFiles>,
    /// How connections, and the request bytes they hold, are bounded.
    pub connections: ConnectionLimits,
    /// With auth: how instances pending approval, and the Attach streams
    /// each peer address opens, are bounded.
    pub registrations: RegistrationLimits,
    /// Also serve every connector's actions as MCP tools over Streamable
    /// HTTP at `http://<this>/mcp` (`spoke hub --mcp ADDR`); `None`: not.
    pub mcp: Option<SocketAddr>,
    /// Also serve the attached connectors on NATS, and reach connectors
    /// with no instance here over NATS (`spoke hub --nats URL`); `None`: not.
    pub nats: Option<spoke_runtime::nats::NatsConnect>,
}

/// How a hub with auth bounds registrations: the instances pending an
/// administrator's approval (per tenant, overall, and how long one that is
/// not attached is kept) and the rate at which one peer address may open
/// Attach streams (`spoke hub --max-pending-per-tenant`, `--max-pending`,
/// `--pending-expiry`, `--register-burst`, `--register-rate`). A hub
/// without auth keeps no pending instances and applies none of them.
///
/// ```
/// use std::time::Duration;
/// use spoke_hub::config::RegistrationLimits;
///
/// let limits = RegistrationLimits {
///     max_pending_per_tenant: 10,
///     ..RegistrationLimits::default()
/// };
/// assert_eq!(limits.max_pending, 1000);
/// assert_eq!(limits.pending_expiry, Duration::from_secs(7 * 24 * 3600));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrationLimits {
    /// The most instances pending approval in one tenant; a new instance
    /// beyond it is refused with RESOURCE_EXHAUSTED (0: every new instance
    /// needs a registration token).
    pub max_pending_per_tenant: usize,
    /// The most instances pending approval in all tenants together.
    pub max_pending: usize,
    /// How long after it was first seen a pending instance is forgotten,
    /// once it is not attached.
    pub pending_expiry: Duration,
    /// How many Attach streams one peer address (an IPv4 address, or an
    /// IPv6 /64) may open in a burst (0 counts as 1).
    pub register_burst: u32,
    /// How many Attach streams per second one peer address may open after
    /// its burst; 0: no rate limit.
    pub register_rate: u32,
}

impl Default for RegistrationLimits {
    fn default() -> Self {
        RegistrationLimits {
            max_pending_per_tenant: 100,
            max_pending: 1000,
            pending_expiry: Duration::from_secs(7 * 24 * 3600),
            register_burst: 20,
            register_rate: 5,
        }
    }
}

/// How the hub bounds its connections and the request bytes they hold,
/// before any credential is seen (`spoke hub --max-connections`,
/// `--handshake-timeout`, `--idle-timeout`, `--keepalive`,
/// `--keepalive-timeout`, `--connection-budget`, `--request-budget`).
///
/// ```
/// use std::time::Duration;
/// use spoke_hub::config::ConnectionLimits;
///
/// let limits = ConnectionLimits {
///     idle_timeout: Duration::from_secs(60),
///     ..ConnectionLimits::default()
/// };
/// assert_eq!(limits.max_connections, 1024);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// The most connections open at once; a connection accepted beyond it
    /// is closed at once (and counted in a warning).
    pub max_connections: usize,
    /// How long a new connection has, from the moment it is accepted, to
    /// open its first request: the TLS and HTTP/2 handshakes included.
    pub handshake_timeout: Duration,
    /// How long a connection with no request open is kept. An attached
    /// connector always has one open (its Attach stream).
    pub idle_timeout: Duration,
    /// How often the hub sends an HTTP/2 PING on each connection.
    pub keepalive_interval: Duration,
    /// How long a PING may go unanswered before the connection is closed
    /// (a healthy peer's HTTP/2 stack answers at once).
    pub keepalive_timeout: Duration,
    /// The most bytes of request messages one connection may have on their
    /// way in (received, not yet whole) at once.
    pub connection_budget: usize,
    /// The most such bytes over all connections.
    pub request_budget: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            max_connections: 1024,
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(300),
            keepalive_interval: Duration::from_secs(30),
            keepalive_timeout: Duration::from_secs(20),
            connection_budget: 32 * 1024 * 1024,
            request_budget: 256 * 1024 * 1024,
        }
    }
}

/// The PEM files of the hub's TLS identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain.
    pub cert: PathBuf,
    /// The private key.
    pub key: PathBuf,
}

impl HubConfig {
    /// A configuration with the default heartbeat interval, resume window and
    /// shutdown grace.
    pub fn new(listen: SocketAddr) -> Self {
        HubConfig {
            listen,
            heartbeat_interval: DEFAULT_HEARTBEAT_INTERVAL,
            resume_window: default_resume_window(DEFAULT_HEARTBEAT_INTERVAL),
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            data_dir: None,
            syncs_dir: None,
            tls: None,
            connections: ConnectionLimits::default(),
            registrations: RegistrationLimits::default(),
            mcp: None,
            nats: None,
        }
    }

    /// Also serves the hub's actions as MCP tools at `http://<addr>/mcp`
    /// (callers present client tokens; without auth, only on loopback).
    pub fn with_mcp(mut self, addr: SocketAddr) -> Self {
        self.mcp = Some(addr);
        self
    }

    /// Also serves the attached connectors on NATS and reaches the
    /// connectors it has no instance of there (`spoke hub --nats URL`).
    pub fn with_nats(mut self, connect: spoke_runtime::nats::NatsConnect) -> Self {
        self.nats = Some(connect);
        self
    }

    /// Turns auth on, with the store and operator token in `data_dir`.
    pub fn with_auth(mut self, data_dir: impl Into<PathBuf>) -> Self {
        self.data_dir = Some(data_dir.into());
        self
    }

    /// Serves TLS with the certificate chain and key in these PEM files.
    pub fn with_tls(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.tls = Some(TlsFiles {
            cert: cert.into(),
            key: key.into(),
        });
        self
    }

    /// How long a peer may stay silent before it is considered dead: two
    /// heartbeat intervals.
    pub fn liveness_timeout(&self) -> Duration {
        self.heartbeat_interval.saturating_mul(2)
    }
}

/// The data directory when `--data` is not given: `$XDG_DATA_HOME/spoke`,
/// else `~/.local/share/spoke`; `None` if neither variable is set.
pub fn default_data_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return Some(Path::new(&dir).join("spoke"));
    }
    let home = std::env::var_os("HOME").filter(|h| !h.is_empty())?;
    Some(Path::new(&home).join(".local/share/spoke"))
}

/// The file the operator token is written to.
pub fn operator_token_path(data_dir: &Path) -> PathBuf {
    data_dir.join("operator.token")
}

/// The resume window when none is given: one heartbeat interval, at most 2 s.
pub fn default_resume_window(heartbeat_interval: Duration) -> Duration {
    heartbeat_interval.min(MAX_DEFAULT_RESUME_WINDOW)
}

/// Checks a heartbeat interval: more than zero and at most `u32::MAX`
/// milliseconds (it travels as `Registered.heartbeat_interval_ms`).
pub fn check_heartbeat_interval(interval: Duration) -> Result<Duration, String> {
    if interval < Duration::from_millis(1) {
        return Err("the heartbeat interval must be at least 1ms".into());
    }
    if interval.as_millis() > u128::from(u32::MAX) {
        return Err(format!(
            "the heartbeat interval must be at most {}ms",
            u32::MAX
        ));
    }
    Ok(interval)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resume_window_defaults_to_one_interval_capped_at_two_seconds() {
        assert_eq!(
            default_resume_window(Duration::from_millis(200)),
            Duration::from_millis(200)
        );
        assert_eq!(
            default_resume_window(Duration::from_secs(5)),
            Duration::from_secs(2)
        );
    }

    #[test]
    fn heartbeat_interval_bounds() {
        assert!(check_heartbeat_interval(Duration::ZERO).is_err());
        assert!(check_heartbeat_interval(Duration::from_millis(1)).is_ok());
        assert!(check_heartbeat_interval(Duration::from_secs(u64::MAX / 4)).is_err());
    }
}
