//! The instance key files Spoke writes are read by the standard tools: the
//! OpenSSL 3 command line and Python's `cryptography` (PyPI), which both
//! refuse the PKCS#8 v2 form Spoke wrote before. Each tool must find the
//! same public key Spoke signs with. (`.ci/run` installs both.)

use std::process::Command;

use spoke::InstanceKey;

fn new_key() -> (tempfile::TempDir, std::path::PathBuf, InstanceKey) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys").join("echo_e1.pem");
    let (key, created) = InstanceKey::load_or_generate(&path).unwrap();
    assert!(created);
    (dir, path, key)
}

/// Runs `tool` with `args` and the key file last; its stdout, or the test
/// fails with what the tool said.
fn read_with(tool: &str, args: &[&str], path: &std::path::Path) -> Vec<u8> {
    let out = Command::new(tool)
        .args(args)
        .arg(path)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {tool} (.ci/run installs it): {e}"));
    assert!(
        out.status.success(),
        "{tool} refused the key: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[test]
fn openssl_reads_the_key_and_finds_its_public_key() {
    let (_dir, path, key) = new_key();
    let der = read_with(
        "openssl",
        &["pkey", "-pubout", "-outform", "DER", "-in"],
        &path,
    );
    // SubjectPublicKeyInfo for Ed25519: a 12-byte header, then the key.
    assert_eq!(der.len(), 44, "{der:?}");
    assert_eq!(der[12..], key.public_key());
}

#[test]
fn python_cryptography_reads_the_key_and_finds_its_public_key() {
    let (_dir, path, key) = new_key();
    let script = "import sys\n\
from cryptography.hazmat.primitives import serialization as s\n\
k = s.load_pem_private_key(open(sys.argv[1], 'rb').read(), None)\n\
print(k.public_key().public_bytes(s.Encoding.Raw, s.PublicFormat.Raw).hex())\n";
    let out = read_with("python3", &["-c", script], &path);
    let hex: String = key
        .public_key()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(String::from_utf8_lossy(&out).trim(), hex);
}
