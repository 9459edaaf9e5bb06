//! Connecting to NATS as [`NatsConnect`] says: the servers, credentials
//! from the URL or a creds file, TLS with a CA file. Errors name the
//! servers with any credentials in their URLs redacted.

use std::time::Duration;

use async_nats::{Client, ConnectErrorKind, ConnectOptions, ServerAddr};

use super::options::{CREDS, NatsConnect, TLS_CA, URL, redacted};

/// How long the first connection may take before it is an error.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why there is no connection.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConnectError(String);

/// Connects as `settings` say, naming the connection `name` (servers show
/// it in their connection lists).
pub async fn connect(settings: &NatsConnect, name: &str) -> Result<Client, ConnectError> {
    let urls = settings.url.expose();
    let shown = redacted(urls);
    let mut addrs = Vec::new();
    for url in urls.split(',').map(str::trim).filter(|u| !u.is_empty()) {
        match url.parse::<ServerAddr>() {
            Ok(addr) => addrs.push(addr),
            Err(_) => {
                return Err(ConnectError(format!(
                    "{URL}: `{}` is not a NATS server URL (nats://host:port, tls://host:port)",
                    redacted(url)
                )));
            }
        }
    }
    if addrs.is_empty() {
        return Err(ConnectError(format!("{URL}: no server URL given")));
    }
    let mut options = ConnectOptions::new()
        .name(name)
        .connection_timeout(CONNECT_TIMEOUT)
        // A request's own timeout is the caller's deadline, never a default.
        .request_timeout(None);
    if let Some(path) = &settings.creds {
        options = options.credentials_file(path).await.map_err(|e| {
            ConnectError(format!(
                "{CREDS}: {} is not a usable credentials file: {e}",
                path.display()
            ))
        })?;
    }
    if let Some(path) = &settings.tls_ca {
        options = options
            .add_root_certificates(path.clone())
            .require_tls(true);
    }
    options.connect(addrs).await.map_err(|e| {
        let why = match e.kind() {
            ConnectErrorKind::AuthorizationViolation | ConnectErrorKind::Authentication => {
                format!(
                    "the server refused the credentials (from the URL, or {CREDS}): {}",
                    e.kind()
                )
            }
            ConnectErrorKind::Tls => format!("TLS failed (see {TLS_CA}): {e}"),
            _ => e.to_string(),
        };
        ConnectError(format!("cannot connect to NATS at {shown}: {why}"))
    })
}
