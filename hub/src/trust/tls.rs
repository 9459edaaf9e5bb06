//! The hub listener's TLS identity (`--tls-cert`, `--tls-key`): reading the
//! PEM files with errors that name the file and what is wrong; and how the
//! hub's own sidecar bridges check that identity when they dial the hub
//! (the certificate itself as the only CA, the name in it as the server
//! name).

use std::path::Path;

use tonic::transport::{Identity, ServerTlsConfig};

use crate::config::TlsFiles;

/// Reads the certificate chain and key into a server TLS configuration.
pub(crate) fn server_config(files: &TlsFiles) -> Result<ServerTlsConfig, String> {
    let cert = read_pem(&files.cert, "--tls-cert", "CERTIFICATE")?;
    let key = read_pem(&files.key, "--tls-key", "PRIVATE KEY")?;
    Ok(ServerTlsConfig::new().identity(Identity::from_pem(cert, key)))
}

/// How a sidecar bridge dials this hub over TLS: trusting the hub's own
/// certificate, checking the first DNS name in it (or, with only IP
/// addresses in it, the address dialed).
pub(crate) fn bridge_tls(files: &TlsFiles) -> Result<spoke_runtime::grpc::tls::HubTls, String> {
    let cert = read_pem(&files.cert, "--tls-cert", "CERTIFICATE")?;
    Ok(spoke_runtime::grpc::tls::HubTls {
        server_name: dns_name(&cert),
        ca_pem: Some(cert),
    })
}

/// The first DNS subject alternative name of the first certificate in `pem`.
fn dns_name(pem: &[u8]) -> Option<String> {
    use x509_parser::extensions::GeneralName;
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem).ok()?;
    let cert = pem.parse_x509().ok()?;
    let names = cert.subject_alternative_name().ok()??;
    names
        .value
        .general_names
        .iter()
        .find_map(|name| match name {
            GeneralName::DNSName(dns) => Some((*dns).to_owned()),
            _ => None,
        })
}

fn read_pem(path: &Path, flag: &str, label: &str) -> Result<Vec<u8>, String> {
    let bytes = std::fs::read(path)
        .map_err(|e| format!("{flag} {}: cannot read it: {e}", path.display()))?;
    let text = String::from_utf8_lossy(&bytes);
    let found = text
        .lines()
        .any(|line| line.starts_with("-----BEGIN ") && line.contains(label));
    if !found {
        return Err(format!(
            "{flag} {}: no PEM `{label}` block in it; expected a PEM file (-----BEGIN {label}-----)",
            path.display()
        ));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bridge_checks_the_name_in_the_hubs_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let made = rcgen::generate_simple_self_signed(vec!["hub.internal".to_owned()]).unwrap();
        let files = TlsFiles {
            cert: dir.path().join("cert.pem"),
            key: dir.path().join("key.pem"),
        };
        std::fs::write(&files.cert, made.cert.pem()).unwrap();
        let tls = bridge_tls(&files).unwrap();
        assert_eq!(tls.server_name.as_deref(), Some("hub.internal"));
        assert_eq!(tls.ca_pem.as_deref(), Some(made.cert.pem().as_bytes()));
    }

    #[test]
    fn missing_and_bad_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let files = TlsFiles {
            cert: dir.path().join("nope.pem"),
            key: dir.path().join("key.pem"),
        };
        let err = server_config(&files).unwrap_err();
        assert!(
            err.starts_with("--tls-cert") && err.contains("nope.pem"),
            "{err}"
        );
        std::fs::write(&files.key, "not pem").unwrap();
        std::fs::write(dir.path().join("nope.pem"), "-----BEGIN CERTIFICATE-----\n").unwrap();
        let err = server_config(&files).unwrap_err();
        assert!(
            err.starts_with("--tls-key") && err.contains("PRIVATE KEY"),
            "{err}"
        );
    }
}
