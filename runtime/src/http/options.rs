//! [`HttpOptions`]: where `<bin> http` listens, the connector-manager it
//! registers with, its tokens and limits, from the environment.
//!
//! | Variable | Meaning | Default |
//! |---|---|---|
//! | `PORT` | the port to listen on, on 127.0.0.1 (`--listen ADDR` instead: any address, e.g. `0.0.0.0:8080` in a container) | required unless `--listen` |
//! | `CONNECTOR_MANAGER_URL` | Omni's connector-manager, e.g. `http://connector-manager:8090` | none: no registration, no syncs |
//! | `CONNECTOR_HOST_NAME` | the host name the manager reaches this connector at; the manifest's `connector_url` is `http://<host>:<port>` | required with `CONNECTOR_MANAGER_URL` |
//! | `SPOKE_HTTP_PUBLIC_URL` | the `connector_url` to advertise instead (e.g. `https://...` behind a proxy) | |
//! | `SPOKE_HTTP_TOKEN` | every route but `/health` requires `Authorization: Bearer <token>` | none: no check |
//! | `SPOKE_MANAGER_TOKEN` | sent as `Authorization: Bearer <token>` on every call to the manager | none |
//! | `SPOKE_HTTP_MAX_BODY` | the largest request body, in bytes (413 beyond) | 16 MiB |
//! | `SPOKE_HTTP_REGISTER_EVERY` | how often the manifest is registered again | `30s` |
//! | `SPOKE_HTTP_HEARTBEAT` | how often a running sync tells the manager it is alive | `30s` |
//! | `SPOKE_HTTP_CALLBACK_TIMEOUT` | the timeout of one call to the manager (connecting: at most 5 s) | `30s` |
//!
//! It also reads `SPOKE_MAX_IN_FLIGHT` and `SPOKE_SHUTDOWN_GRACE`
//! ([`crate::env`]). A variable set to the empty string counts as unset; a
//! bad value is an [`EnvError`] naming it.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use crate::env::{self, EnvError};
use crate::secret::Secret;

/// `PORT`.
pub const PORT: &str = "PORT";
/// `CONNECTOR_MANAGER_URL`.
pub const MANAGER_URL: &str = "CONNECTOR_MANAGER_URL";
/// `CONNECTOR_HOST_NAME`.
pub const HOST_NAME: &str = "CONNECTOR_HOST_NAME";
/// `SPOKE_HTTP_PUBLIC_URL`.
pub const PUBLIC_URL: &str = "SPOKE_HTTP_PUBLIC_URL";
/// `SPOKE_HTTP_TOKEN`.
pub const TOKEN: &str = "SPOKE_HTTP_TOKEN";
/// `SPOKE_MANAGER_TOKEN`.
pub const MANAGER_TOKEN: &str = "SPOKE_MANAGER_TOKEN";
/// `SPOKE_HTTP_MAX_BODY`.
pub const MAX_BODY: &str = "SPOKE_HTTP_MAX_BODY";
/// `SPOKE_HTTP_REGISTER_EVERY`.
pub const REGISTER_EVERY: &str = "SPOKE_HTTP_REGISTER_EVERY";
/// `SPOKE_HTTP_HEARTBEAT`.
pub const HEARTBEAT: &str = "SPOKE_HTTP_HEARTBEAT";
/// `SPOKE_HTTP_CALLBACK_TIMEOUT`.
pub const CALLBACK_TIMEOUT: &str = "SPOKE_HTTP_CALLBACK_TIMEOUT";

/// The default largest request body: 16 MiB.
pub const DEFAULT_MAX_BODY: usize = 16 << 20;

/// How `<bin> http` serves.
#[derive(Debug, Clone)]
pub struct HttpOptions {
    /// Where to listen.
    pub listen: SocketAddr,
    /// The connector-manager to register with and call back, if any.
    pub manager: Option<ManagerOptions>,
    /// The bearer token every route but `/health` requires.
    pub token: Option<Secret<String>>,
    /// The largest request body, in bytes.
    pub max_body: usize,
    /// How many actions run at once (more wait).
    pub max_in_flight: usize,
    /// How long running work gets at shutdown.
    pub shutdown_grace: Duration,
    /// How often a running sync heartbeats.
    pub heartbeat_every: Duration,
}

/// The connector-manager: where it is and how this connector is reached.
#[derive(Debug, Clone)]
pub struct ManagerOptions {
    /// Its base URL, without a trailing `/`.
    pub url: String,
    /// How it reaches this connector: `http://<host>` (the port is the
    /// bound one), or a whole URL (`SPOKE_HTTP_PUBLIC_URL`).
    pub advertise: Advertise,
    /// The token sent on every call to it.
    pub token: Option<Secret<String>>,
    /// How often the manifest is registered again.
    pub register_every: Duration,
    /// The timeout of one call.
    pub timeout: Duration,
}

/// The `connector_url` a connector registers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Advertise {
    /// `http://<host>:<bound port>`.
    Host(String),
    /// This URL as it is.
    Url(String),
}

impl Advertise {
    /// The URL, given the port the listener got.
    pub fn url(&self, port: u16) -> String {
        match self {
            Advertise::Host(host) => format!("http://{host}:{port}"),
            Advertise::Url(url) => url.trim_end_matches('/').to_owned(),
        }
    }
}

impl HttpOptions {
    /// The options from the process's variables; `listen` (`--listen`)
    /// overrides `PORT`.
    pub fn from_env(listen: Option<SocketAddr>) -> Result<HttpOptions, EnvError> {
        let vars: Vec<(&'static str, String)> = env::read(&[
            PORT,
            MANAGER_URL,
            HOST_NAME,
            PUBLIC_URL,
            TOKEN,
            MANAGER_TOKEN,
            MAX_BODY,
            REGISTER_EVERY,
            HEARTBEAT,
            CALLBACK_TIMEOUT,
            env::MAX_IN_FLIGHT,
            env::SHUTDOWN_GRACE,
        ])?
        .into_iter()
        .filter(|(_, v)| !v.trim().is_empty())
        .collect();
        Self::from_vars(listen, vars.iter().map(|(k, v)| (*k, v.as_str())))
    }

    /// The options from the given variables (tests, embedding hosts).
    ///
    /// ```
    /// use spoke::http::HttpOptions;
    /// let options = HttpOptions::from_vars(None, [("PORT", "8080")]).unwrap();
    /// assert_eq!(options.listen.to_string(), "127.0.0.1:8080");
    /// assert!(options.manager.is_none());
    /// let err = HttpOptions::from_vars(None, [("PORT", "8080"), ("CONNECTOR_MANAGER_URL", "http://m:1")]).unwrap_err();
    /// assert_eq!(err.variable, "CONNECTOR_HOST_NAME");
    /// ```
    pub fn from_vars<'a>(
        listen: Option<SocketAddr>,
        vars: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<HttpOptions, EnvError> {
        let vars: Vec<(&str, &str)> = vars.into_iter().collect();
        let get = |name: &str| env::value(&vars, name);
        let listen = match (listen, get(PORT)) {
            (Some(addr), _) => addr,
            (None, Some(port)) => SocketAddr::new(
                IpAddr::V4(Ipv4Addr::LOCALHOST),
                port.parse::<u16>().map_err(|_| {
                    EnvError::new(PORT, format!("expected a port number, got `{port}`"))
                })?,
            ),
            (None, None) => {
                return Err(EnvError::new(
                    PORT,
                    "not set: set PORT (listens on 127.0.0.1:PORT) or pass --listen ADDR",
                ));
            }
        };
        let duration = |name: &str, default: Duration| match get(name) {
            Some(v) => env::duration(name, v),
            None => Ok(default),
        };
        let manager = match (get(MANAGER_URL), get(HOST_NAME), get(PUBLIC_URL)) {
            (None, None, None) => None,
            (None, _, _) => {
                let set = if get(HOST_NAME).is_some() {
                    HOST_NAME
                } else {
                    PUBLIC_URL
                };
                return Err(EnvError::new(
                    MANAGER_URL,
                    format!(
                        "not set, but {set} is: set both to register with Omni's connector-manager, or neither"
                    ),
                ));
            }
            (Some(url), host, public) => {
                let url = url.trim_end_matches('/');
                check_http_url(MANAGER_URL, url)?;
                let advertise = match (public, host) {
                    (Some(public), _) => {
                        check_http_url(PUBLIC_URL, public)?;
                        Advertise::Url(public.to_owned())
                    }
                    (None, Some(host)) => Advertise::Host(host.to_owned()),
                    (None, None) => {
                        return Err(EnvError::new(
                            HOST_NAME,
                            format!(
                                "not set, but {MANAGER_URL} is: set it to the host name the connector-manager reaches this connector at (e.g. the compose service name)"
                            ),
                        ));
                    }
                };
                Some(ManagerOptions {
                    url: url.to_owned(),
                    advertise,
                    token: get(MANAGER_TOKEN).map(|t| Secret::new(t.to_owned())),
                    register_every: duration(REGISTER_EVERY, Duration::from_secs(30))?,
                    timeout: duration(CALLBACK_TIMEOUT, Duration::from_secs(30))?,
                })
            }
        };
        Ok(HttpOptions {
            listen,
            manager,
            token: get(TOKEN).map(|t| Secret::new(t.to_owned())),
            max_body: match get(MAX_BODY) {
                Some(v) => env::positive(MAX_BODY, v)?,
                None => DEFAULT_MAX_BODY,
            },
            max_in_flight: match get(env::MAX_IN_FLIGHT) {
                Some(v) => env::positive(env::MAX_IN_FLIGHT, v)?,
                None => env::DEFAULT_MAX_IN_FLIGHT,
            },
            shutdown_grace: duration(env::SHUTDOWN_GRACE, env::DEFAULT_SHUTDOWN_GRACE)?,
            heartbeat_every: duration(HEARTBEAT, Duration::from_secs(30))?,
        })
    }
}

fn check_http_url(name: &str, url: &str) -> Result<(), EnvError> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"));
    match rest {
        Some(host) if !host.is_empty() => Ok(()),
        _ => Err(EnvError::new(
            name,
            format!("expected an http:// or https:// URL, got `{url}`"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_defaults_to_loopback_and_the_flag_wins() {
        let o = HttpOptions::from_vars(None, [("PORT", "9000")]).unwrap();
        assert_eq!(o.listen, "127.0.0.1:9000".parse().unwrap());
        let o =
            HttpOptions::from_vars(Some("0.0.0.0:1".parse().unwrap()), [("PORT", "9000")]).unwrap();
        assert_eq!(o.listen, "0.0.0.0:1".parse().unwrap());
        let err = HttpOptions::from_vars(None, []).unwrap_err();
        assert_eq!(err.variable, "PORT");
        let err = HttpOptions::from_vars(None, [("PORT", "http")]).unwrap_err();
        assert!(err.message.contains("`http`"), "{err}");
    }

    #[test]
    fn the_manager_needs_both_variables_and_a_url() {
        let both = [
            ("PORT", "1"),
            ("CONNECTOR_MANAGER_URL", "http://m:2/"),
            ("CONNECTOR_HOST_NAME", "files"),
        ];
        let m = HttpOptions::from_vars(None, both).unwrap().manager.unwrap();
        assert_eq!(m.url, "http://m:2");
        assert_eq!(m.advertise.url(7), "http://files:7");
        let err = HttpOptions::from_vars(None, [("PORT", "1"), ("CONNECTOR_HOST_NAME", "x")])
            .unwrap_err();
        assert_eq!(err.variable, "CONNECTOR_MANAGER_URL");
        let err = HttpOptions::from_vars(
            None,
            [
                ("PORT", "1"),
                ("CONNECTOR_MANAGER_URL", "m:2"),
                ("CONNECTOR_HOST_NAME", "x"),
            ],
        )
        .unwrap_err();
        assert!(err.message.contains("http://"), "{err}");
        let public = [
            ("PORT", "1"),
            ("CONNECTOR_MANAGER_URL", "http://m:2"),
            ("SPOKE_HTTP_PUBLIC_URL", "https://files.example.com/"),
        ];
        let m = HttpOptions::from_vars(None, public)
            .unwrap()
            .manager
            .unwrap();
        assert_eq!(m.advertise.url(7), "https://files.example.com");
    }

    #[test]
    fn limits_and_durations_parse_or_name_the_variable() {
        let o =
            HttpOptions::from_vars(None, [("PORT", "1"), ("SPOKE_HTTP_MAX_BODY", "1024")]).unwrap();
        assert_eq!(o.max_body, 1024);
        assert_eq!(o.heartbeat_every, Duration::from_secs(30));
        let err = HttpOptions::from_vars(None, [("PORT", "1"), ("SPOKE_HTTP_HEARTBEAT", "soon")])
            .unwrap_err();
        assert_eq!(err.variable, "SPOKE_HTTP_HEARTBEAT");
    }
}
