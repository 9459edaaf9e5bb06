//! Dialing the hub, over TLS when its URL is `https://`: the one place every
//! client of the hub (connectors' `serve`, the `spoke` command line, the
//! hub's sidecar bridge) makes its [`Endpoint`].
//!
//! - `https://host:port`: TLS (rustls, ring). The hub's certificate is
//!   checked against the CA certificates of [`HubTls::ca_pem`] when set
//!   (`SPOKE_TLS_CA`, a PEM bundle), else against the system's roots. The
//!   name checked is the URL's host, or [`HubTls::server_name`].
//! - `http://host:port`: plain text, as before; to a host other than
//!   loopback (`localhost`, `127.0.0.0/8`, `::1`) it logs a warning once per
//!   process ("talking to the hub without TLS").
//!
//! A failed connection reads as what went wrong, e.g. `TLS handshake with
//! https://127.0.0.1:7443 failed: invalid peer certificate: UnknownIssuer`
//! (see [`connect_error`]).
//!
//! ```
//! use std::time::Duration;
//! use spoke::grpc::tls::{HubTls, hub_endpoint};
//!
//! let endpoint = hub_endpoint("http://127.0.0.1:7700", &HubTls::default(), Duration::from_secs(5))?;
//! assert_eq!(endpoint.uri().port_u16(), Some(7700));
//! assert!(hub_endpoint("ftp://hub", &HubTls::default(), Duration::from_secs(5)).is_err());
//! # Ok::<(), String>(())
//! ```

use std::net::IpAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Uri};

use crate::env::EnvError;

/// `SPOKE_TLS_CA`: a PEM file of the CA certificates that sign the hub's
/// certificate (instead of the system's roots).
pub const TLS_CA: &str = "SPOKE_TLS_CA";

/// How clients check the hub's TLS certificate. The default trusts the
/// system's roots and checks the URL's host name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HubTls {
    /// PEM certificates to trust instead of the system's roots: a CA bundle,
    /// or the hub's own certificate (the sidecar bridge dials its own hub
    /// this way).
    pub ca_pem: Option<Vec<u8>>,
    /// The name the certificate must carry, when not the URL's host (e.g.
    /// dialing 127.0.0.1 with a certificate for `hub.example.com`).
    pub server_name: Option<String>,
}

impl HubTls {
    /// Reads `SPOKE_TLS_CA` from this process's environment (unset or
    /// empty: the system's roots).
    pub fn from_env() -> Result<HubTls, EnvError> {
        match std::env::var_os(TLS_CA) {
            None => Ok(HubTls::default()),
            Some(value) if value.is_empty() => Ok(HubTls::default()),
            Some(value) => match value.into_string() {
                Ok(path) => HubTls::from_ca_file(TLS_CA, Path::new(&path)),
                Err(_) => Err(EnvError::new(TLS_CA, "the value is not valid UTF-8")),
            },
        }
    }

    /// Trusts the PEM certificates in the file at `path`, which `variable`
    /// named; a missing file, or one without a usable certificate, is an
    /// error naming both.
    pub fn from_ca_file(variable: &str, path: &Path) -> Result<HubTls, EnvError> {
        let pem = std::fs::read(path).map_err(|e| {
            EnvError::new(variable, format!("cannot read `{}`: {e}", path.display()))
        })?;
        check_ca_pem(&pem)
            .map_err(|e| EnvError::new(variable, format!("`{}`: {e}", path.display())))?;
        Ok(HubTls {
            ca_pem: Some(pem),
            server_name: None,
        })
    }
}

/// Checks that `pem` holds at least one certificate usable as a trust
/// anchor, and nothing broken.
fn check_ca_pem(pem: &[u8]) -> Result<(), String> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for (n, cert) in CertificateDer::pem_slice_iter(pem).enumerate() {
        let cert = cert.map_err(|e| format!("not a PEM certificate bundle: {e}"))?;
        roots
            .add(cert)
            .map_err(|e| format!("certificate {} is not usable as a CA: {e}", n + 1))?;
    }
    if roots.is_empty() {
        return Err("no certificate in it (expected -----BEGIN CERTIFICATE----- blocks)".into());
    }
    Ok(())
}

/// Checks a hub URL: `http://` or `https://` with a host.
pub(crate) fn check_hub_url(url: &str) -> Result<Uri, String> {
    let uri: Uri = url
        .parse()
        .map_err(|e: tonic::codegen::http::uri::InvalidUri| e.to_string())?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => return Err("expected http://host:port or https://host:port".into()),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err("no host; expected http://host:port or https://host:port".into());
    }
    Ok(uri)
}

/// Whether a URL host is this machine.
fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Makes the endpoint for the hub at `url` (`http://` or `https://`), with
/// TLS set up from `tls` for `https://`, and `connect_timeout` for the TCP
/// connection and the TLS handshake. Errors say what is wrong with the URL
/// or the trusted certificates.
pub fn hub_endpoint(
    url: &str,
    tls: &HubTls,
    connect_timeout: Duration,
) -> Result<Endpoint, String> {
    let uri = check_hub_url(url)?;
    let endpoint = Endpoint::from(uri.clone())
        .connect_timeout(connect_timeout)
        .tcp_nodelay(true)
        .max_frame_size(spoke_proto::MAX_FRAME_BYTES);
    if uri.scheme_str() == Some("http") {
        if !uri.host().is_some_and(is_loopback) {
            static WARNED: AtomicBool = AtomicBool::new(false);
            if !WARNED.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    hub = %url,
                    "talking to the hub without TLS: tokens and calls cross the network in the clear; use https://"
                );
            }
        }
        return Ok(endpoint);
    }
    let mut config = ClientTlsConfig::new().timeout(connect_timeout);
    match &tls.ca_pem {
        Some(pem) => {
            check_ca_pem(pem)?;
            config = config.ca_certificate(Certificate::from_pem(pem));
        }
        None => config = config.with_native_roots(),
    }
    if let Some(name) = &tls.server_name {
        config = config.domain_name(name.clone());
    }
    endpoint.tls_config(config).map_err(|e| {
        let text = crate::logging::error_chain(&e);
        if text.contains("no native certs") {
            format!(
                "no trusted root certificates found on this system; set {TLS_CA} to the PEM file of the CA that signs the hub's certificate"
            )
        } else {
            format!("cannot set up TLS: {text}")
        }
    })
}

/// What a failed connection to the hub at `url` reads as: `TLS handshake
/// with <url> failed: <why>` when TLS failed (an untrusted or mismatched
/// certificate, a hub that does not speak TLS), else `cannot connect to the
/// hub at <url>: <error and its sources>`.
pub fn connect_error(url: &str, error: &(dyn std::error::Error + 'static)) -> String {
    let mut next = Some(error);
    while let Some(e) = next {
        let tls = e.downcast_ref::<rustls::Error>().or_else(|| {
            e.downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        });
        if let Some(tls) = tls {
            let hint = match tls {
                rustls::Error::InvalidMessage(_) | rustls::Error::InappropriateMessage { .. } => {
                    " (does the hub serve TLS on that port?)"
                }
                _ => "",
            };
            return format!("TLS handshake with {url} failed: {tls}{hint}");
        }
        next = e.source();
    }
    format!(
        "cannot connect to the hub at {url}: {}",
        crate::logging::error_chain(error)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Duration = Duration::from_secs(1);

    #[test]
    fn hub_urls_are_http_or_https_with_a_host() {
        let plain = HubTls::default();
        assert!(hub_endpoint("http://127.0.0.1:7700", &plain, T).is_ok());
        assert!(hub_endpoint("http://hub.internal", &plain, T).is_ok());
        for bad in [
            "ftp://hub",
            "not a url",
            "127.0.0.1:7700",
            "http://",
            "https://",
        ] {
            let err = hub_endpoint(bad, &plain, T).unwrap_err();
            assert!(!err.is_empty(), "{bad}");
        }
        assert!(check_hub_url("https://hub.example.com:7443").is_ok());
    }

    #[test]
    fn https_with_a_ca_that_is_not_pem_is_refused_clearly() {
        let tls = HubTls {
            ca_pem: Some(b"hello".to_vec()),
            server_name: None,
        };
        let err = hub_endpoint("https://127.0.0.1:7443", &tls, T).unwrap_err();
        assert!(err.contains("no certificate"), "{err}");
        let tls = HubTls {
            ca_pem: Some(
                b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".to_vec(),
            ),
            server_name: None,
        };
        let err = hub_endpoint("https://127.0.0.1:7443", &tls, T).unwrap_err();
        assert!(err.contains("not usable as a CA"), "{err}");
    }

    #[test]
    fn a_ca_file_that_is_missing_or_broken_names_the_variable_and_path() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("ca.pem");
        let err = HubTls::from_ca_file(TLS_CA, &missing).unwrap_err();
        assert_eq!(err.variable, TLS_CA);
        assert!(
            err.to_string().starts_with("SPOKE_TLS_CA: cannot read `"),
            "{err}"
        );
        assert!(
            err.message.contains(&missing.display().to_string()),
            "{err}"
        );
        std::fs::write(&missing, "not a certificate").unwrap();
        let err = HubTls::from_ca_file(TLS_CA, &missing).unwrap_err();
        assert!(err.message.contains("no certificate"), "{err}");
        assert!(err.message.contains("ca.pem"), "{err}");
    }

    #[test]
    fn loopback_hosts() {
        for host in ["localhost", "LOCALHOST", "127.0.0.1", "127.1.2.3", "[::1]"] {
            assert!(is_loopback(host), "{host}");
        }
        for host in ["hub", "10.0.0.1", "[::2]", "localhost.example.com"] {
            assert!(!is_loopback(host), "{host}");
        }
    }

    #[test]
    fn connect_errors_without_tls_name_the_url_and_the_cause() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let text = connect_error("http://127.0.0.1:1", &io);
        assert_eq!(
            text,
            "cannot connect to the hub at http://127.0.0.1:1: refused"
        );
        let tls = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        );
        let text = connect_error("https://127.0.0.1:7443", &tls);
        assert_eq!(
            text,
            "TLS handshake with https://127.0.0.1:7443 failed: invalid peer certificate: UnknownIssuer"
        );
    }
}
