//! The keys of the hub's own sidecar bridges: with auth on, each supervised
//! sidecar attaches with an Ed25519 key kept in `<data>/keys/sidecar_<name>.pem`
//! (PKCS#8 PEM, mode 0600, made on first use), and the hub trusts those
//! keys: the bridge's instance is recorded approved when it attaches (its
//! connector name is known only then, from the sidecar's `ready`).

use std::path::{Path, PathBuf};

use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use ed25519_dalek::{Signer, SigningKey};
use spoke_proto::prost::Message;
use spoke_proto::v1::{Assertion, Credentials};

use crate::request_id::unix_ms;
use crate::trust::SIGNING_CONTEXT;

/// How long a bridge's assertion is valid.
const ASSERTION_LIFETIME_MS: u64 = 120_000;

/// The key file of sidecar `name` under `data_dir`.
pub(crate) fn key_path(data_dir: &Path, name: &str) -> PathBuf {
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    data_dir.join("keys").join(format!("sidecar_{safe}.pem"))
}

/// Reads the key at `path`, or makes one there (directory 0700, file 0600).
pub(crate) fn load_or_create(path: &Path) -> Result<SigningKey, String> {
    if path.exists() {
        let pem = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the sidecar key {}: {e}", path.display()))?;
        return SigningKey::from_pkcs8_pem(&pem).map_err(|e| {
            format!(
                "the sidecar key {} is not a PKCS#8 Ed25519 PEM key: {e}",
                path.display()
            )
        });
    }
    let key = SigningKey::from_bytes(&crate::session::random_bytes::<32>());
    let pem = key
        .to_pkcs8_pem(Default::default())
        .map_err(|e| format!("cannot encode a sidecar key: {e}"))?;
    if let Some(dir) = path.parent() {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            builder.mode(0o700);
        }
        builder
            .create(dir)
            .map_err(|e| format!("cannot make {}: {e}", dir.display()))?;
    }
    crate::server::write_private(path, pem.as_str())
        .map_err(|e| format!("cannot write the sidecar key {}: {e}", path.display()))?;
    Ok(key)
}

/// Fresh credentials of `instance_id` of `connector` in the default tenant.
pub(crate) fn credentials(key: &SigningKey, connector: &str, instance_id: &str) -> Credentials {
    let now = unix_ms();
    let assertion = Assertion {
        tenant: String::new(),
        connector: connector.to_owned(),
        instance_id: instance_id.to_owned(),
        issued_at_unix_ms: now,
        expires_at_unix_ms: now + ASSERTION_LIFETIME_MS,
        nonce: crate::session::random_bytes::<16>().to_vec().into(),
    }
    .encode_to_vec();
    let mut signed = SIGNING_CONTEXT.to_vec();
    signed.extend_from_slice(&assertion);
    Credentials {
        public_key: key.verifying_key().to_bytes().to_vec().into(),
        signature: key.sign(&signed).to_bytes().to_vec().into(),
        assertion: assertion.into(),
        registration_token: String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trust::{Claim, ReplayCache, verify};

    #[test]
    fn a_key_is_made_once_and_its_credentials_verify() {
        let dir = tempfile::tempdir().unwrap();
        let path = key_path(dir.path(), "echo");
        let a = load_or_create(&path).unwrap();
        let b = load_or_create(&path).unwrap();
        assert_eq!(a.to_bytes(), b.to_bytes());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let creds = credentials(&a, "echo", "e1");
        let claim = Claim {
            tenant: "default",
            connector: "echo",
            instance_id: "e1",
        };
        assert!(verify(Some(&creds), claim, unix_ms(), &ReplayCache::default()).is_ok());
    }
}
