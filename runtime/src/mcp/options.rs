//! [`McpOptions`]: how `<bin> mcp` serves, from its flags and the
//! environment.
//!
//! | Variable | Meaning | Default |
//! |---|---|---|
//! | `SPOKE_MCP_TOKEN` | over HTTP, every request needs `Authorization: Bearer <token>` (401 otherwise); its callers are not administrators | none |
//! | `SPOKE_MCP_ADMIN_TOKEN` | over HTTP, a token whose callers are administrators (they see and call `admin_only` and `hidden` tools) | none |
//! | `SPOKE_MCP_ALLOWED_HOSTS` | over HTTP, the `Host` values accepted (comma-separated), against DNS rebinding | `localhost,127.0.0.1,::1` without a token; any with one |
//! | `SPOKE_MCP_MAX_BODY` | over HTTP, the largest request body, in bytes (413 beyond) | 4 MiB |
//! | `SPOKE_MCP_TIMEOUT` | the longest a tool call may run (an action's own shorter `timeout` wins) | none |
//!
//! It also reads `SPOKE_MAX_IN_FLIGHT` ([`crate::env`]). A variable set to
//! the empty string counts as unset; a bad value is an [`EnvError`] naming
//! it.

use std::net::SocketAddr;
use std::time::Duration;

use crate::env::{self, EnvError};
use crate::secret::Secret;

/// `SPOKE_MCP_TOKEN`.
pub const TOKEN: &str = "SPOKE_MCP_TOKEN";
/// `SPOKE_MCP_ADMIN_TOKEN`.
pub const ADMIN_TOKEN: &str = "SPOKE_MCP_ADMIN_TOKEN";
/// `SPOKE_MCP_ALLOWED_HOSTS`.
pub const ALLOWED_HOSTS: &str = "SPOKE_MCP_ALLOWED_HOSTS";
/// `SPOKE_MCP_MAX_BODY`.
pub const MAX_BODY: &str = "SPOKE_MCP_MAX_BODY";
/// `SPOKE_MCP_TIMEOUT`.
pub const TIMEOUT: &str = "SPOKE_MCP_TIMEOUT";

/// The default largest request body over HTTP: 4 MiB.
pub const DEFAULT_MAX_BODY: usize = 4 << 20;

/// How `<bin> mcp` serves.
#[derive(Debug, Clone)]
pub struct McpOptions {
    /// Streamable HTTP on this address; `None`: stdio.
    pub http: Option<SocketAddr>,
    /// Over stdio, whether the local user is an administrator (`--no-admin`
    /// turns it off).
    pub stdio_admin: bool,
    /// The token callers over HTTP must present.
    pub token: Option<Secret<String>>,
    /// The token of administrators over HTTP.
    pub admin_token: Option<Secret<String>>,
    /// The `Host` values accepted over HTTP; empty: any.
    pub allowed_hosts: Vec<String>,
    /// The largest request body over HTTP, in bytes.
    pub max_body: usize,
    /// The longest a call may run.
    pub timeout: Option<Duration>,
    /// How many calls run at once (more wait).
    pub max_in_flight: usize,
}

impl McpOptions {
    /// The options from the flags (`--http ADDR`, `--no-admin`) and the
    /// process's variables.
    pub fn from_env(http: Option<SocketAddr>, no_admin: bool) -> Result<McpOptions, EnvError> {
        let vars: Vec<(&'static str, String)> = env::read(&[
            TOKEN,
            ADMIN_TOKEN,
            ALLOWED_HOSTS,
            MAX_BODY,
            TIMEOUT,
            env::MAX_IN_FLIGHT,
        ])?;
        Self::from_vars(http, no_admin, vars.iter().map(|(k, v)| (*k, v.as_str())))
    }

    /// The options from the given variables (tests, embedding hosts).
    ///
    /// ```
    /// use spoke::mcp::McpOptions;
    /// let options = McpOptions::from_vars(None, false, []).unwrap();
    /// assert!(options.http.is_none() && options.stdio_admin);
    /// let open = "0.0.0.0:8080".parse().ok();
    /// let err = McpOptions::from_vars(open, false, []).unwrap_err();
    /// assert_eq!(err.variable, "SPOKE_MCP_TOKEN");
    /// ```
    pub fn from_vars<'a>(
        http: Option<SocketAddr>,
        no_admin: bool,
        vars: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<McpOptions, EnvError> {
        let vars: Vec<(&str, &str)> = vars.into_iter().collect();
        let get = |name: &str| env::value(&vars, name);
        let token = get(TOKEN).map(|t| Secret::new(t.to_owned()));
        let admin_token = get(ADMIN_TOKEN).map(|t| Secret::new(t.to_owned()));
        if let (Some(t), Some(a)) = (&token, &admin_token)
            && t.expose() == a.expose()
        {
            return Err(EnvError::new(
                ADMIN_TOKEN,
                format!("is the same as {TOKEN}: give administrators a token of their own"),
            ));
        }
        let guarded = token.is_some() || admin_token.is_some();
        if let Some(addr) = http
            && !addr.ip().is_loopback()
            && !guarded
        {
            return Err(EnvError::new(
                TOKEN,
                format!(
                    "not set, but --http {addr} listens beyond this machine: set {TOKEN} (and {ADMIN_TOKEN} for administrators) so that only callers with a token reach the tools"
                ),
            ));
        }
        let allowed_hosts = match get(ALLOWED_HOSTS) {
            Some(list) => list
                .split(',')
                .map(str::trim)
                .filter(|h| !h.is_empty())
                .map(str::to_owned)
                .collect(),
            // A token defeats DNS rebinding (a page cannot learn it); without
            // one, only local names.
            None if guarded => Vec::new(),
            None => ["localhost", "127.0.0.1", "::1"]
                .map(str::to_owned)
                .to_vec(),
        };
        Ok(McpOptions {
            http,
            stdio_admin: !no_admin,
            token,
            admin_token,
            allowed_hosts,
            max_body: match get(MAX_BODY) {
                Some(v) => env::positive(MAX_BODY, v)?,
                None => DEFAULT_MAX_BODY,
            },
            timeout: get(TIMEOUT)
                .map(|v| env::duration(TIMEOUT, v))
                .transpose()?,
            max_in_flight: match get(env::MAX_IN_FLIGHT) {
                Some(v) => env::positive(env::MAX_IN_FLIGHT, v)?,
                None => env::DEFAULT_MAX_IN_FLIGHT,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_and_hosts() {
        let local = "127.0.0.1:0".parse().ok();
        let o = McpOptions::from_vars(local, true, [(TOKEN, "t"), (MAX_BODY, "100")]).unwrap();
        assert!(!o.stdio_admin);
        assert_eq!(o.token.unwrap().expose(), "t");
        assert!(o.allowed_hosts.is_empty());
        assert_eq!(o.max_body, 100);
        let o = McpOptions::from_vars(local, false, [(ALLOWED_HOSTS, "a.example, b")]).unwrap();
        assert_eq!(o.allowed_hosts, ["a.example", "b"]);
        let err =
            McpOptions::from_vars(local, false, [(TOKEN, "x"), (ADMIN_TOKEN, "x")]).unwrap_err();
        assert_eq!(err.variable, ADMIN_TOKEN);
        let err = McpOptions::from_vars(None, false, [(TIMEOUT, "soon")]).unwrap_err();
        assert_eq!(err.variable, TIMEOUT);
        let wide = "0.0.0.0:1".parse().ok();
        assert!(McpOptions::from_vars(wide, false, [(ADMIN_TOKEN, "a")]).is_ok());
    }
}
