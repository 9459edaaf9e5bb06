//! A connector instance's identity: its Ed25519 key, and the signed
//! assertions that prove it to the hub (see "Trust." in
//! `proto/spoke/v1/spoke.proto`).
//!
//! **Where the key lives.** `SPOKE_KEY_PATH` when set (a mounted key: the
//! file must exist), else `~/.spoke/keys/<connector>_<instance>.pem` (home
//! from `HOME`), generated on first use. In that file name every character
//! of the connector name and of the instance id outside `[A-Za-z0-9._-]` is
//! replaced by `_` (see [`file_name_part`]), so ids with `/` or spaces are
//! fine; two ids that differ only in such characters share a key file.
//!
//! **The file.** PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`), mode 0600. A new
//! one is written to a temporary file created with mode 0600 in the same
//! directory, synced, then linked into place (never replacing a file another
//! process created meanwhile: that one wins and is loaded), inside
//! `~/.spoke/keys` created with mode 0700. As ssh does for its keys, a key
//! file that its group or others may access is refused: `chmod 600` it (or
//! mount it with mode 0400).
//!
//! **What is sent.** Every Register carries [`Credentials`]: the 32-byte
//! public key, a fresh [`Assertion`] (tenant, connector, instance id, issued
//! now, expiring [`ASSERTION_LIFETIME`] later, [`NONCE_BYTES`] random bytes)
//! encoded with prost, and the Ed25519 signature of [`SIGNING_CONTEXT`]
//! followed by those bytes. The private key never leaves the process and is
//! in no `Debug` output or log line; the key's [`fingerprint`] (the same the
//! hub's `spoke pending` shows) is what gets logged.
//!
//! **Checking.** [`verify`] is what a hub does first with a Register's
//! credentials: the signature over the assertion, under the public key sent.
//! The rest (the time window, replayed nonces, whether the key is the one
//! recorded for the instance) needs the hub's clock and store.
//!
//! ```
//! use spoke::grpc::identity::{InstanceKey, verify};
//!
//! let key = InstanceKey::generate()?;
//! let credentials = key.credentials("", "echo", "echo-1", "")?;
//! let verified = verify(&credentials)?;
//! assert_eq!(verified.assertion.instance_id, "echo-1");
//! assert_eq!(verified.fingerprint(), key.fingerprint());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};
use spoke_proto::prost::Message;
use spoke_proto::v1::{Assertion, Credentials};
use zeroize::Zeroizing;

/// The key as PKCS#8 v1 PEM (RFC 5958 `OneAsymmetricKey` without the
/// optional public key, as RFC 8410 writes Ed25519 keys): the form OpenSSL
/// 3.0, Python's `cryptography` and ssh-keygen read. (`to_pkcs8_pem` writes
/// v2, with the public key, which they refuse.)
fn pkcs8_v1_pem(signing: &SigningKey) -> Result<Zeroizing<String>, ed25519_dalek::pkcs8::Error> {
    ed25519_dalek::pkcs8::KeypairBytes {
        secret_key: signing.to_bytes(),
        public_key: None,
    }
    .to_pkcs8_pem(LineEnding::LF)
}

/// What the signature covers before the encoded assertion.
pub const SIGNING_CONTEXT: &[u8] = b"spoke.v1.Assertion\n";
/// How long an assertion is valid after it is issued.
pub const ASSERTION_LIFETIME: Duration = Duration::from_secs(60);
/// Random bytes in each assertion's nonce.
pub const NONCE_BYTES: usize = 16;
/// The shortest nonce [`verify`] accepts.
pub const MIN_NONCE_BYTES: usize = 16;
/// The longest nonce [`verify`] accepts.
pub const MAX_NONCE_BYTES: usize = 64;
/// The variable naming a mounted key file.
pub const KEY_PATH_VAR: &str = "SPOKE_KEY_PATH";

/// The first 16 hex digits of the SHA-256 of a public key: how people (and
/// `spoke pending`) tell keys apart.
///
/// ```
/// let fp = spoke::grpc::identity::fingerprint(&[0u8; 32]);
/// assert_eq!(fp, "66687aadf862bd77");
/// ```
pub fn fingerprint(public_key: &[u8]) -> String {
    let digest = Sha256::digest(public_key);
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// One part of a key file name: every character outside `[A-Za-z0-9._-]`
/// becomes `_`, and an empty part or one made only of dots becomes `_` too
/// (so no part can be `.` or `..`).
///
/// ```
/// use spoke::grpc::identity::file_name_part;
/// assert_eq!(file_name_part("eu/west 1"), "eu_west_1");
/// assert_eq!(file_name_part("files-2.a_b"), "files-2.a_b");
/// assert_eq!(file_name_part(".."), "_");
/// ```
pub fn file_name_part(text: &str) -> String {
    let mapped: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if mapped.chars().all(|c| c == '.') {
        "_".to_owned()
    } else {
        mapped
    }
}

/// `<home>/.spoke/keys/<connector>_<instance>.pem`, each part through
/// [`file_name_part`].
pub fn default_key_path(home: &Path, connector: &str, instance_id: &str) -> PathBuf {
    home.join(".spoke").join("keys").join(format!(
        "{}_{}.pem",
        file_name_part(connector),
        file_name_part(instance_id)
    ))
}

/// A problem with the instance key; start-up fails with it (exit code 2).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} `{path}`: {message}", path = path.display())]
pub struct KeyError {
    /// Which key: "instance key", or "SPOKE_KEY_PATH" for a mounted one.
    pub what: String,
    /// The key file.
    pub path: PathBuf,
    /// What is wrong.
    pub message: String,
}

impl KeyError {
    fn new(what: &str, path: &Path, message: impl Into<String>) -> KeyError {
        KeyError {
            what: what.to_owned(),
            path: path.to_owned(),
            message: message.into(),
        }
    }
}

/// A key that could not be made, or an assertion that could not be signed
/// (the system's random source failed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot make an instance key or assertion: {0}")]
pub struct RandomError(String);

fn random_bytes<const N: usize>() -> Result<[u8; N], RandomError> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(|e| RandomError(e.to_string()))?;
    Ok(bytes)
}

fn unix_ms(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// An instance's Ed25519 key pair. `Debug` shows the fingerprint, never the
/// private key.
pub struct InstanceKey {
    signing: SigningKey,
    path: Option<PathBuf>,
}

impl fmt::Debug for InstanceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InstanceKey")
            .field("fingerprint", &self.fingerprint())
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl InstanceKey {
    /// A new random key, kept in memory only.
    pub fn generate() -> Result<InstanceKey, RandomError> {
        Ok(InstanceKey {
            signing: SigningKey::from_bytes(&random_bytes::<32>()?),
            path: None,
        })
    }

    /// Reads a key file that must exist (a mounted key, `SPOKE_KEY_PATH`):
    /// PKCS#8 PEM, accessible to its owner only.
    pub fn load(path: &Path) -> Result<InstanceKey, KeyError> {
        InstanceKey::read(KEY_PATH_VAR, path)
    }

    /// Reads the key at `path`, or makes one there when there is no file
    /// (see the [module docs](self) for how); the flag says whether it was
    /// made now.
    pub fn load_or_generate(path: &Path) -> Result<(InstanceKey, bool), KeyError> {
        const WHAT: &str = "instance key";
        match std::fs::symlink_metadata(path) {
            Ok(_) => return InstanceKey::read(WHAT, path).map(|k| (k, false)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(KeyError::new(WHAT, path, format!("cannot inspect: {e}"))),
        }
        let key = InstanceKey::generate().map_err(|e| KeyError::new(WHAT, path, e.to_string()))?;
        let pem = pkcs8_v1_pem(&key.signing)
            .map_err(|e| KeyError::new(WHAT, path, format!("cannot encode the new key: {e}")))?;
        match write_new_file(path, pem.as_bytes()) {
            Ok(true) => Ok((
                InstanceKey {
                    path: Some(path.to_owned()),
                    ..key
                },
                true,
            )),
            // Another process made it first: theirs is the key.
            Ok(false) => InstanceKey::read(WHAT, path).map(|k| (k, false)),
            Err(e) => Err(KeyError::new(WHAT, path, e)),
        }
    }

    fn read(what: &str, path: &Path) -> Result<InstanceKey, KeyError> {
        let fail = |message: String| KeyError::new(what, path, message);
        let metadata = std::fs::metadata(path).map_err(|e| fail(format!("cannot read: {e}")))?;
        if !metadata.is_file() {
            return Err(fail("not a file".to_owned()));
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = metadata.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(fail(format!(
                    "its group or others may access it (mode {mode:04o}); a private key must be \
                     accessible to its owner only: run `chmod 600 {}`",
                    path.display()
                )));
            }
        }
        let text = std::fs::read_to_string(path).map_err(|e| fail(format!("cannot read: {e}")))?;
        let text = Zeroizing::new(text);
        // PKCS#8 v1 (what Spoke writes) and v2 (with the public key, what
        // Spoke wrote before; OpenSSL 3.0 cannot read it) both load.
        let signing = SigningKey::from_pkcs8_pem(&text).map_err(|e| {
            fail(format!(
                "not an Ed25519 private key in PKCS#8 PEM (-----BEGIN PRIVATE KEY-----): {e}"
            ))
        })?;
        Ok(InstanceKey {
            signing,
            path: Some(path.to_owned()),
        })
    }

    /// The 32-byte public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.signing.verifying_key().to_bytes()
    }

    /// The public key's [`fingerprint`].
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.public_key())
    }

    /// The file the key was read from or written to; `None` for a key made
    /// in memory.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Fresh credentials for one Register: a new assertion (issued now,
    /// expiring [`ASSERTION_LIFETIME`] later, a new random nonce) signed
    /// with this key, and `registration_token` (empty for none).
    pub fn credentials(
        &self,
        tenant: &str,
        connector: &str,
        instance_id: &str,
        registration_token: &str,
    ) -> Result<Credentials, RandomError> {
        let now = SystemTime::now();
        let assertion = Assertion {
            tenant: tenant.to_owned(),
            connector: connector.to_owned(),
            instance_id: instance_id.to_owned(),
            issued_at_unix_ms: unix_ms(now),
            expires_at_unix_ms: unix_ms(now + ASSERTION_LIFETIME),
            nonce: random_bytes::<NONCE_BYTES>()?.to_vec().into(),
        };
        Ok(self.sign(&assertion, registration_token))
    }

    /// Credentials for exactly this assertion (tests of the hub use it to
    /// make expired or replayed ones).
    pub fn sign(&self, assertion: &Assertion, registration_token: &str) -> Credentials {
        let encoded = assertion.encode_to_vec();
        let signature = self.signing.sign(&signed_bytes(&encoded));
        Credentials {
            public_key: self.public_key().to_vec().into(),
            assertion: encoded.into(),
            signature: signature.to_bytes().to_vec().into(),
            registration_token: registration_token.to_owned(),
        }
    }
}

/// [`SIGNING_CONTEXT`] followed by the encoded assertion.
fn signed_bytes(assertion: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(SIGNING_CONTEXT.len() + assertion.len());
    message.extend_from_slice(SIGNING_CONTEXT);
    message.extend_from_slice(assertion);
    message
}

/// Writes `contents` to a new file at `path` (mode 0600, in a directory
/// made with mode 0700 if missing) through a synced temporary file in the
/// same directory. `Ok(false)` when a file appeared at `path` meanwhile (it
/// is left alone).
fn write_new_file(path: &Path, contents: &[u8]) -> Result<bool, String> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder
        .create(dir)
        .map_err(|e| format!("cannot create the directory {}: {e}", dir.display()))?;
    let name = path
        .file_name()
        .map_or_else(|| "key".to_owned(), |n| n.to_string_lossy().into_owned());
    let suffix: [u8; 6] = random_bytes().map_err(|e| e.to_string())?;
    let suffix: String = suffix.iter().map(|b| format!("{b:02x}")).collect();
    let temp = dir.join(format!(".{name}.{}.{suffix}.tmp", std::process::id()));
    let result = write_temp_then_link(&temp, path, contents);
    let _ = std::fs::remove_file(&temp);
    result
}

fn write_temp_then_link(temp: &Path, path: &Path, contents: &[u8]) -> Result<bool, String> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(temp)
        .map_err(|e| format!("cannot create {}: {e}", temp.display()))?;
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .map_err(|e| format!("cannot write {}: {e}", temp.display()))?;
    drop(file);
    // A hard link puts the file in place atomically and, unlike a rename,
    // never replaces one that another process put there first.
    match std::fs::hard_link(temp, path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(false),
        // A file system without hard links: rename, which is atomic too.
        Err(_) => std::fs::rename(temp, path)
            .map_err(|e| format!("cannot move the new key into place: {e}"))?,
    }
    if let Some(dir) = path.parent()
        && let Ok(dir) = std::fs::File::open(dir)
    {
        let _ = dir.sync_all();
    }
    Ok(true)
}

/// Where `serve` gets the instance's key.
#[derive(Debug, Clone, Default)]
pub enum KeySource {
    /// `~/.spoke/keys/<connector>_<instance>.pem` (home from `HOME`),
    /// generated on first use.
    #[default]
    Default,
    /// A key file that must exist, as `SPOKE_KEY_PATH` names one.
    File(PathBuf),
    /// A key already in memory (embedders, tests).
    Loaded(Arc<InstanceKey>),
}

impl KeySource {
    /// Loads (or, for [`KeySource::Default`], makes) the key of this
    /// instance, logging its fingerprint at info.
    pub fn load(&self, connector: &str, instance_id: &str) -> Result<Arc<InstanceKey>, KeyError> {
        let key = match self {
            KeySource::Loaded(key) => return Ok(Arc::clone(key)),
            KeySource::File(path) => InstanceKey::load(path)?,
            KeySource::Default => {
                let Some(home) = std::env::var_os("HOME").filter(|h| !h.is_empty()) else {
                    return Err(KeyError::new(
                        "instance key",
                        &default_key_path(Path::new("~"), connector, instance_id),
                        "HOME is not set, so there is no ~/.spoke/keys; set HOME, or SPOKE_KEY_PATH to a key file",
                    ));
                };
                let path = default_key_path(Path::new(&home), connector, instance_id);
                let (key, created) = InstanceKey::load_or_generate(&path)?;
                if created {
                    tracing::info!(
                        path = %path.display(),
                        fingerprint = %key.fingerprint(),
                        "generated a new instance key"
                    );
                    return Ok(Arc::new(key));
                }
                key
            }
        };
        tracing::info!(
            path = %key.path().map_or_else(String::new, |p| p.display().to_string()),
            fingerprint = %key.fingerprint(),
            "loaded the instance key"
        );
        Ok(Arc::new(key))
    }
}

/// Credentials whose signature checks out: the public key and the assertion
/// it signed.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedAssertion {
    /// The Ed25519 public key that signed it.
    pub public_key: [u8; 32],
    /// The decoded assertion.
    pub assertion: Assertion,
}

impl VerifiedAssertion {
    /// The public key's [`fingerprint`].
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.public_key)
    }
}

/// Why [`verify`] refused credentials. The hub answers each with
/// UNAUTHENTICATED.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// `public_key` is not 32 bytes, or not a valid Ed25519 point.
    #[error("the public key is not an Ed25519 public key ({len} bytes; 32 expected)")]
    BadPublicKey {
        /// Its length.
        len: usize,
    },
    /// `signature` is not 64 bytes.
    #[error("the signature is {len} bytes; an Ed25519 signature is 64")]
    BadSignatureLength {
        /// Its length.
        len: usize,
    },
    /// The signature does not verify under the public key.
    #[error("the assertion's signature does not verify under the public key sent")]
    SignatureMismatch,
    /// The signed bytes are not an encoded Assertion.
    #[error("the assertion is not an encoded spoke.v1.Assertion: {0}")]
    Undecodable(String),
    /// The nonce is shorter or longer than allowed.
    #[error(
        "the assertion's nonce is {len} bytes; {MIN_NONCE_BYTES} to {MAX_NONCE_BYTES} expected"
    )]
    BadNonce {
        /// Its length.
        len: usize,
    },
}

/// Checks that `credentials.signature` is the Ed25519 signature, under
/// `credentials.public_key`, of [`SIGNING_CONTEXT`] followed by
/// `credentials.assertion` (strict verification: no weak keys, no
/// malleable signatures), then decodes the assertion and checks its nonce
/// is 16 to 64 bytes.
///
/// What it does not check, since it needs the hub's clock and store: that
/// the assertion names the Register's tenant, connector and instance, its
/// time window, that its nonce was not seen before, and that the key is the
/// one recorded for the instance.
pub fn verify(credentials: &Credentials) -> Result<VerifiedAssertion, VerifyError> {
    let key = &credentials.public_key;
    let public_key: [u8; 32] = key[..]
        .try_into()
        .map_err(|_| VerifyError::BadPublicKey { len: key.len() })?;
    let verifying = VerifyingKey::from_bytes(&public_key)
        .map_err(|_| VerifyError::BadPublicKey { len: key.len() })?;
    let signature = Signature::from_slice(&credentials.signature).map_err(|_| {
        VerifyError::BadSignatureLength {
            len: credentials.signature.len(),
        }
    })?;
    verifying
        .verify_strict(&signed_bytes(&credentials.assertion), &signature)
        .map_err(|_| VerifyError::SignatureMismatch)?;
    let assertion = Assertion::decode(&credentials.assertion[..])
        .map_err(|e| VerifyError::Undecodable(e.to_string()))?;
    if !(MIN_NONCE_BYTES..=MAX_NONCE_BYTES).contains(&assertion.nonce.len()) {
        return Err(VerifyError::BadNonce {
            len: assertion.nonce.len(),
        });
    }
    Ok(VerifiedAssertion {
        public_key,
        assertion,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn credentials(key: &InstanceKey) -> Credentials {
        key.credentials("acme", "echo", "echo-1", "").unwrap()
    }

    #[test]
    fn a_signed_assertion_verifies_and_decodes() {
        let key = InstanceKey::generate().unwrap();
        let before = unix_ms(SystemTime::now());
        let c = key.credentials("acme", "echo", "echo/1", "tok").unwrap();
        let after = unix_ms(SystemTime::now());
        assert_eq!(c.public_key.len(), 32);
        assert_eq!(c.signature.len(), 64);
        assert_eq!(c.registration_token, "tok");
        let v = verify(&c).unwrap();
        assert_eq!(v.public_key, key.public_key());
        let a = &v.assertion;
        assert_eq!(
            (
                a.tenant.as_str(),
                a.connector.as_str(),
                a.instance_id.as_str()
            ),
            ("acme", "echo", "echo/1")
        );
        assert!((before..=after).contains(&a.issued_at_unix_ms));
        assert_eq!(a.expires_at_unix_ms - a.issued_at_unix_ms, 60_000);
        assert_eq!(a.nonce.len(), NONCE_BYTES);
        // The signature covers the context and the bytes exactly as sent.
        let mut message = b"spoke.v1.Assertion\n".to_vec();
        message.extend_from_slice(&c.assertion);
        let verifying = VerifyingKey::from_bytes(&key.public_key()).unwrap();
        let sig = Signature::from_slice(&c.signature).unwrap();
        assert!(verifying.verify_strict(&message, &sig).is_ok());
    }

    #[test]
    fn every_assertion_is_fresh() {
        let key = InstanceKey::generate().unwrap();
        let (a, b) = (credentials(&key), credentials(&key));
        let (a, b) = (verify(&a).unwrap(), verify(&b).unwrap());
        assert_ne!(a.assertion.nonce, b.assertion.nonce);
    }

    #[test]
    fn a_tampered_assertion_is_refused() {
        let key = InstanceKey::generate().unwrap();
        let mut c = credentials(&key);
        let mut assertion = Assertion::decode(&c.assertion[..]).unwrap();
        assertion.instance_id = "someone-else".into();
        c.assertion = assertion.encode_to_vec().into();
        assert_eq!(verify(&c), Err(VerifyError::SignatureMismatch));
        // One flipped bit anywhere in the signed bytes is enough.
        let mut c = credentials(&key);
        let mut bytes = c.assertion.to_vec();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        c.assertion = bytes.into();
        assert_eq!(verify(&c), Err(VerifyError::SignatureMismatch));
    }

    #[test]
    fn a_signature_by_another_key_is_refused() {
        let (key, other) = (
            InstanceKey::generate().unwrap(),
            InstanceKey::generate().unwrap(),
        );
        let mut c = credentials(&key);
        c.public_key = other.public_key().to_vec().into();
        assert_eq!(verify(&c), Err(VerifyError::SignatureMismatch));
        let mut c = credentials(&key);
        c.signature = credentials(&other).signature;
        assert_eq!(verify(&c), Err(VerifyError::SignatureMismatch));
    }

    #[test]
    fn truncated_or_missing_keys_and_signatures_are_refused() {
        let key = InstanceKey::generate().unwrap();
        let mut c = credentials(&key);
        c.signature = c.signature.slice(..63);
        assert_eq!(verify(&c), Err(VerifyError::BadSignatureLength { len: 63 }));
        let mut c = credentials(&key);
        c.public_key = c.public_key.slice(..31);
        assert_eq!(verify(&c), Err(VerifyError::BadPublicKey { len: 31 }));
        assert_eq!(
            verify(&Credentials::default()),
            Err(VerifyError::BadPublicKey { len: 0 })
        );
        let mut c = credentials(&key);
        c.signature = Default::default();
        assert!(verify(&c).unwrap_err().to_string().contains("64"),);
    }

    #[test]
    fn signed_garbage_and_short_nonces_are_refused() {
        let key = InstanceKey::generate().unwrap();
        let mut c = credentials(&key);
        let garbage = vec![0xff; 10];
        let signature = key.signing.sign(&signed_bytes(&garbage));
        c.assertion = garbage.into();
        c.signature = signature.to_bytes().to_vec().into();
        assert!(matches!(verify(&c), Err(VerifyError::Undecodable(_))));
        let short = Assertion {
            nonce: vec![1; 8].into(),
            ..Default::default()
        };
        assert_eq!(
            verify(&key.sign(&short, "")),
            Err(VerifyError::BadNonce { len: 8 })
        );
    }

    #[test]
    fn debug_shows_the_fingerprint_never_the_private_key() {
        let key = InstanceKey::generate().unwrap();
        let secret = key.signing.to_bytes();
        let mut shown = format!("{key:?}");
        shown.push_str(&format!(" {:?}", KeySource::Loaded(Arc::new(key))));
        let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
        assert!(!shown.contains(&hex), "{shown}");
        assert!(!shown.contains(&format!("{secret:?}")), "{shown}");
        assert!(shown.contains("fingerprint"), "{shown}");
    }

    #[test]
    fn the_fingerprint_is_16_hex_digits_of_sha256() {
        let fp = fingerprint(b"abc");
        assert_eq!(fp, "ba7816bf8f01cfea");
        let key = InstanceKey::generate().unwrap();
        assert_eq!(key.fingerprint(), fingerprint(&key.public_key()));
    }

    #[test]
    fn key_file_names_keep_only_safe_characters() {
        let path = default_key_path(Path::new("/home/u"), "files", "eu/west 1:ä");
        assert_eq!(path, Path::new("/home/u/.spoke/keys/files_eu_west_1__.pem"));
        assert_eq!(file_name_part(""), "_");
        assert_eq!(file_name_part("."), "_");
        assert_eq!(file_name_part("a..b"), "a..b");
    }

    #[cfg(unix)]
    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[cfg(unix)]
    #[test]
    fn a_new_key_is_written_0600_in_a_0700_directory_and_read_back() {
        let home = tempfile::tempdir().unwrap();
        let path = default_key_path(home.path(), "echo", "echo-1");
        let (key, created) = InstanceKey::load_or_generate(&path).unwrap();
        assert!(created);
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("-----BEGIN PRIVATE KEY-----"), "{text}");
        // No temporary file is left behind.
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [path.file_name().unwrap()]);
        let (again, created) = InstanceKey::load_or_generate(&path).unwrap();
        assert!(!created);
        assert_eq!(again.public_key(), key.public_key());
        assert_eq!(
            InstanceKey::load(&path).unwrap().public_key(),
            key.public_key()
        );
    }

    #[cfg(unix)]
    #[test]
    fn a_key_file_others_may_read_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.pem");
        InstanceKey::load_or_generate(&path).unwrap();
        for bad in [0o644, 0o640, 0o604, 0o660] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(bad)).unwrap();
            let err = InstanceKey::load(&path).unwrap_err();
            assert!(err.to_string().contains("chmod 600"), "{err}");
            assert!(err.to_string().contains(&format!("{bad:04o}")), "{err}");
            assert!(InstanceKey::load_or_generate(&path).is_err());
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).unwrap();
        assert!(InstanceKey::load(&path).is_ok());
    }

    #[test]
    fn missing_and_malformed_key_files_name_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("none.pem");
        let err = InstanceKey::load(&missing).unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("SPOKE_KEY_PATH `"), "{text}");
        assert!(text.contains(&missing.display().to_string()), "{text}");
        assert!(text.contains("cannot read"), "{text}");
        let bad = dir.path().join("bad.pem");
        std::fs::write(
            &bad,
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        )
        .unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&bad, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        let err = InstanceKey::load(&bad).unwrap_err();
        assert!(err.to_string().contains("PKCS#8 PEM"), "{err}");
        assert!(err.to_string().contains("bad.pem"), "{err}");
        let err = InstanceKey::load(dir.path()).unwrap_err();
        assert!(err.to_string().contains("not a file"), "{err}");
    }

    #[test]
    fn new_key_files_are_pkcs8_v1_and_v2_files_still_load() {
        use ed25519_dalek::pkcs8::PrivateKeyInfo;
        use ed25519_dalek::pkcs8::spki::der::Decode;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys").join("v1.pem");
        let (key, created) = InstanceKey::load_or_generate(&path).unwrap();
        assert!(created);
        let text = std::fs::read_to_string(&path).unwrap();
        let (label, der) =
            ed25519_dalek::pkcs8::spki::der::pem::decode_vec(text.as_bytes()).unwrap();
        assert_eq!(label, "PRIVATE KEY");
        let info = PrivateKeyInfo::from_der(&der).unwrap();
        assert!(info.public_key.is_none(), "a v1 key carries no public key");
        assert_eq!(
            InstanceKey::read("k", &path).unwrap().public_key(),
            key.public_key()
        );
        // A key written by an earlier Spoke (v2, with the public key).
        let old = dir.path().join("keys").join("v2.pem");
        let v2 = key.signing.to_pkcs8_pem(LineEnding::LF).unwrap();
        assert_eq!(write_new_file(&old, v2.as_bytes()), Ok(true));
        let (text_v1, text_v2) = (text, std::fs::read_to_string(&old).unwrap());
        assert_ne!(text_v1, text_v2, "the two forms differ");
        let (loaded, created) = InstanceKey::load_or_generate(&old).unwrap();
        assert!(!created);
        assert_eq!(loaded.public_key(), key.public_key());
    }

    #[test]
    fn a_key_file_made_by_another_process_first_wins() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys").join("k.pem");
        let theirs = InstanceKey::generate().unwrap();
        let pem = theirs.signing.to_pkcs8_pem(LineEnding::LF).unwrap();
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        // Linking fails when the file exists: the new key is discarded.
        assert_eq!(write_new_file(&path, pem.as_bytes()), Ok(true));
        assert_eq!(write_new_file(&path, b"other"), Ok(false));
        #[cfg(unix)]
        assert_eq!(mode(&path), 0o600);
        let (loaded, created) = InstanceKey::load_or_generate(&path).unwrap();
        assert!(!created);
        assert_eq!(loaded.public_key(), theirs.public_key());
    }
}
