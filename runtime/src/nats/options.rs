//! [`NatsOptions`]: how `<bin> nats` connects and serves, from the
//! environment.
//!
//! | Variable | Meaning | Default |
//! |---|---|---|
//! | `SPOKE_NATS_URL` | the NATS server(s), comma-separated; `nats://user:password@host:port` or `nats://token@host:port` for those kinds of credentials, `tls://` for TLS | `nats://127.0.0.1:4222` |
//! | `SPOKE_NATS_CREDS` | a credentials file (a user JWT and its NKey seed), as `nsc` writes | none |
//! | `SPOKE_TLS_CA` | a PEM file of the CA certificates that sign the server's; TLS is then required | the system's roots for `tls://` |
//! | `SPOKE_TENANT` | the tenant this instance serves: the second token of its subjects | `default` |
//! | `SPOKE_INSTANCE_ID` | this instance's id, unique among the connector's instances: its own subjects and its `$SRV` id | `<connector>-<16 random hex digits>` |
//! | `SPOKE_DISPLAY_NAME` | a human-friendly name for this instance | the connector's display name |
//! | `SPOKE_TAGS` | comma-separated tags | none |
//! | `SPOKE_NATS_TIMEOUT` | the longest a call may run when its caller gives no `Spoke-Timeout` (a caller's longer one is cut to it too) | none |
//! | `SPOKE_NATS_STATUS_EVERY` | how often the instance puts its status in the `spoke_status` bucket ([`super::status`]), which keeps it three periods; `off`: never | `30s` |
//!
//! It also reads `SPOKE_MAX_IN_FLIGHT` and `SPOKE_SHUTDOWN_GRACE`
//! ([`crate::env`]). The tenant and the instance id become subject tokens,
//! so they are checked here: `[A-Za-z0-9_-]+`. The URL may hold a password
//! or a token: it is never logged as given (see [`redacted`]).

use std::path::PathBuf;
use std::time::Duration;

use super::subjects::{DEFAULT_TENANT, check_token};
use crate::env::{self, EnvError};
use crate::secret::Secret;

/// `SPOKE_NATS_URL`.
pub const URL: &str = "SPOKE_NATS_URL";
/// `SPOKE_NATS_CREDS`.
pub const CREDS: &str = "SPOKE_NATS_CREDS";
/// `SPOKE_TLS_CA`.
pub const TLS_CA: &str = "SPOKE_TLS_CA";
pub use crate::env::TENANT;
/// `SPOKE_INSTANCE_ID`.
pub const INSTANCE_ID: &str = "SPOKE_INSTANCE_ID";
/// `SPOKE_DISPLAY_NAME`.
pub const DISPLAY_NAME: &str = "SPOKE_DISPLAY_NAME";
/// `SPOKE_TAGS`.
pub const TAGS: &str = "SPOKE_TAGS";
/// `SPOKE_NATS_TIMEOUT`.
pub const TIMEOUT: &str = "SPOKE_NATS_TIMEOUT";
/// `SPOKE_NATS_STATUS_EVERY`.
pub const STATUS_EVERY: &str = "SPOKE_NATS_STATUS_EVERY";

/// How often an instance puts its status when `SPOKE_NATS_STATUS_EVERY`
/// is not set.
pub const DEFAULT_STATUS_EVERY: Duration = Duration::from_secs(30);

/// The server when `SPOKE_NATS_URL` is not set.
pub const DEFAULT_URL: &str = "nats://127.0.0.1:4222";

/// Where and how to connect: the part a client shares with a server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatsConnect {
    /// The server URLs (they may carry credentials).
    pub url: Secret<String>,
    /// A credentials file.
    pub creds: Option<PathBuf>,
    /// A PEM file of CA certificates; TLS required when set.
    pub tls_ca: Option<PathBuf>,
}

impl NatsConnect {
    /// The connection a client makes: to `url` (or `SPOKE_NATS_URL`, or
    /// [`DEFAULT_URL`]), with `SPOKE_NATS_CREDS` and `SPOKE_TLS_CA` from this
    /// process's environment.
    pub fn from_env(url: Option<&str>) -> Result<NatsConnect, EnvError> {
        let vars = env::read(&[URL, CREDS, TLS_CA])?;
        let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let mut connect = Self::from_vars(&vars)?;
        if let Some(url) = url {
            connect.url = Secret::new(url.to_owned());
        }
        Ok(connect)
    }

    fn from_vars(vars: &[(&str, &str)]) -> Result<NatsConnect, EnvError> {
        let get = |name: &str| env::value(vars, name);
        let file = |name: &'static str| -> Result<Option<PathBuf>, EnvError> {
            let Some(path) = get(name) else {
                return Ok(None);
            };
            let path = PathBuf::from(path);
            if !path.is_file() {
                return Err(EnvError::new(
                    name,
                    format!("{} is not a readable file", path.display()),
                ));
            }
            Ok(Some(path))
        };
        Ok(NatsConnect {
            url: Secret::new(get(URL).unwrap_or(DEFAULT_URL).to_owned()),
            creds: file(CREDS)?,
            tls_ca: file(TLS_CA)?,
        })
    }

    /// `url` with no file credentials and the system's roots.
    pub fn url(url: impl Into<String>) -> NatsConnect {
        NatsConnect {
            url: Secret::new(url.into()),
            creds: None,
            tls_ca: None,
        }
    }
}

/// How `<bin> nats` serves.
#[derive(Debug, Clone)]
pub struct NatsOptions {
    /// The connection.
    pub connect: NatsConnect,
    /// The tenant served (never empty).
    pub tenant: String,
    /// This instance's id.
    pub instance_id: String,
    /// Its display name; `None`: the connector's.
    pub display_name: Option<String>,
    /// Its tags.
    pub tags: Vec<String>,
    /// The longest a call may run.
    pub timeout: Option<Duration>,
    /// How often the instance puts its status; `None`: never.
    pub status_every: Option<Duration>,
    /// How many calls run at once (more wait).
    pub max_in_flight: usize,
    /// How long calls under way get to finish on SIGTERM.
    pub shutdown_grace: Duration,
}

impl NatsOptions {
    /// The options from this process's variables, for connector `connector`.
    pub fn from_env(connector: &str) -> Result<NatsOptions, EnvError> {
        let vars = env::read(&[
            URL,
            CREDS,
            TLS_CA,
            TENANT,
            INSTANCE_ID,
            DISPLAY_NAME,
            TAGS,
            TIMEOUT,
            STATUS_EVERY,
            env::MAX_IN_FLIGHT,
            env::SHUTDOWN_GRACE,
        ])?;
        Self::from_vars(connector, vars.iter().map(|(k, v)| (*k, v.as_str())))
    }

    /// The options from the given variables (tests, embedding hosts).
    ///
    /// ```
    /// use spoke::nats::NatsOptions;
    /// let o = NatsOptions::from_vars("echo", [("SPOKE_TENANT", "acme")]).unwrap();
    /// assert_eq!(o.tenant, "acme");
    /// assert!(o.instance_id.starts_with("echo-"));
    /// let err = NatsOptions::from_vars("echo", [("SPOKE_INSTANCE_ID", "a.b")]).unwrap_err();
    /// assert_eq!(err.variable, "SPOKE_INSTANCE_ID");
    /// ```
    pub fn from_vars<'a>(
        connector: &str,
        vars: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<NatsOptions, EnvError> {
        let vars: Vec<(&str, &str)> = vars.into_iter().collect();
        let get = |name: &str| env::value(&vars, name);
        let token = |name: &'static str, kind: &'static str, value: &str| {
            check_token(kind, value).map_err(|e| EnvError::new(name, e.to_string()))
        };
        let tenant = get(TENANT).unwrap_or(DEFAULT_TENANT).to_owned();
        token(TENANT, "tenant", &tenant)?;
        let instance_id = match get(INSTANCE_ID) {
            Some(id) => id.to_owned(),
            None => format!("{connector}-{:016x}", fastrand::u64(..)),
        };
        token(INSTANCE_ID, "instance id", &instance_id)?;
        Ok(NatsOptions {
            connect: NatsConnect::from_vars(&vars)?,
            tenant,
            instance_id,
            display_name: get(DISPLAY_NAME).map(str::to_owned),
            tags: get(TAGS).map(env::list).unwrap_or_default(),
            timeout: get(TIMEOUT)
                .map(|v| env::duration(TIMEOUT, v))
                .transpose()?,
            status_every: match get(STATUS_EVERY) {
                None => Some(DEFAULT_STATUS_EVERY),
                Some("off") => None,
                Some(v) => match env::duration(STATUS_EVERY, v)? {
                    every if every < Duration::from_secs(1) => {
                        return Err(EnvError::new(
                            STATUS_EVERY,
                            format!("`{v}` is under a second: give 1s or more, or `off`"),
                        ));
                    }
                    every => Some(every),
                },
            },
            max_in_flight: match get(env::MAX_IN_FLIGHT) {
                Some(v) => env::positive(env::MAX_IN_FLIGHT, v)?,
                None => env::DEFAULT_MAX_IN_FLIGHT,
            },
            shutdown_grace: match get(env::SHUTDOWN_GRACE) {
                Some(v) => env::duration(env::SHUTDOWN_GRACE, v)?,
                None => env::DEFAULT_SHUTDOWN_GRACE,
            },
        })
    }
}

/// The server URLs with any credentials in them replaced by `***`, for
/// logs and errors.
///
/// ```
/// use spoke::nats::options::redacted;
/// assert_eq!(redacted("nats://me:pw@127.0.0.1:4222"), "nats://***@127.0.0.1:4222");
/// assert_eq!(redacted("nats://a:1, tls://tok@b:2"), "nats://a:1,tls://***@b:2");
/// ```
pub fn redacted(urls: &str) -> String {
    urls.split(',')
        .map(|url| {
            let url = url.trim();
            let (scheme, rest) = match url.split_once("://") {
                Some((scheme, rest)) => (Some(scheme), rest),
                None => (None, url),
            };
            let rest = match rest.rsplit_once('@') {
                Some((_, host)) => format!("***@{host}"),
                None => rest.to_owned(),
            };
            match scheme {
                Some(scheme) => format!("{scheme}://{rest}"),
                None => rest,
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings() {
        let o = NatsOptions::from_vars(
            "files",
            [
                (URL, "nats://u:p@127.0.0.1:1"),
                (INSTANCE_ID, "files-a"),
                (TAGS, " eu, ,blue"),
                (TIMEOUT, "2s"),
                (env::MAX_IN_FLIGHT, "3"),
            ],
        )
        .unwrap();
        assert_eq!(o.tenant, "default");
        assert_eq!(o.instance_id, "files-a");
        assert_eq!(o.tags, ["eu", "blue"]);
        assert_eq!(o.timeout, Some(Duration::from_secs(2)));
        assert_eq!(o.max_in_flight, 3);
        assert_eq!(o.status_every, Some(DEFAULT_STATUS_EVERY));
        let off = NatsOptions::from_vars("files", [(STATUS_EVERY, "off")]).unwrap();
        assert_eq!(off.status_every, None);
        let err = NatsOptions::from_vars("files", [(STATUS_EVERY, "200ms")]).unwrap_err();
        assert_eq!(err.variable, STATUS_EVERY);
        assert_eq!(o.connect.url.expose(), "nats://u:p@127.0.0.1:1");
        assert!(!format!("{o:?}").contains("u:p"), "the URL is a secret");
        let err = NatsOptions::from_vars("files", [(TENANT, "a b")]).unwrap_err();
        assert!(err.message.contains("`a b`"), "{err}");
        let err = NatsOptions::from_vars("files", [(CREDS, "/nonexistent/x.creds")]).unwrap_err();
        assert_eq!(err.variable, CREDS);
    }
}
