//! The hub listener's TLS identity (`--tls-cert`, `--tls-key`): reading the
//! PEM files with errors that name the file and what is wrong.

use std::path::Path;

use tonic::transport::{Identity, ServerTlsConfig};

use crate::config::TlsFiles;

/// Reads the certificate chain and key into a server TLS configuration.
pub(crate) fn server_config(files: &TlsFiles) -> Result<ServerTlsConfig, String> {
    let cert = read_pem(&files.cert, "--tls-cert", "CERTIFICATE")?;
    let key = read_pem(&files.key, "--tls-key", "PRIVATE KEY")?;
    Ok(ServerTlsConfig::new().identity(Identity::from_pem(cert, key)))
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
