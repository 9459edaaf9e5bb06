//! The keys of the hub's own sidecar bridges: with auth on, each supervised
//! sidecar attaches with an Ed25519 key kept in `<data>/keys/sidecar_<name>.pem`
//! (the SDK's key file: PKCS#8 PEM, mode 0600, made on first use), and the
//! hub trusts those keys: the bridge's instance is recorded approved when
//! it attaches (its connector name is known only then, from the sidecar's
//! `ready`).

use std::path::{Path, PathBuf};

use spoke_proto::v1::Credentials;
use spoke_runtime::grpc::identity::{InstanceKey, file_name_part};

/// The key file of sidecar `name` under `data_dir`.
pub(crate) fn key_path(data_dir: &Path, name: &str) -> PathBuf {
    data_dir
        .join("keys")
        .join(format!("sidecar_{}.pem", file_name_part(name)))
}

/// Reads the key at `path`, or makes one there.
pub(crate) fn load_or_create(path: &Path) -> Result<InstanceKey, String> {
    InstanceKey::load_or_generate(path)
        .map(|(key, _)| key)
        .map_err(|e| format!("the key of a supervised sidecar: {e}"))
}

/// Fresh credentials of `instance_id` of `connector` in the default tenant.
pub(crate) fn credentials(
    key: &InstanceKey,
    connector: &str,
    instance_id: &str,
) -> Result<Credentials, String> {
    key.credentials("", connector, instance_id, "")
        .map_err(|e| format!("cannot sign the bridge's assertion: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::unix_ms;
    use crate::trust::assertion::{Claim, ReplayCache, verify};

    #[test]
    fn a_key_is_made_once_and_its_credentials_verify() {
        let dir = tempfile::tempdir().unwrap();
        let path = key_path(dir.path(), "echo");
        let a = load_or_create(&path).unwrap();
        let b = load_or_create(&path).unwrap();
        assert_eq!(a.public_key(), b.public_key());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let creds = credentials(&a, "echo", "e1").unwrap();
        let claim = Claim {
            tenant: "default",
            connector: "echo",
            instance_id: "e1",
        };
        assert!(verify(Some(&creds), claim, unix_ms(), &ReplayCache::default()).is_ok());
    }
}
