//! What every part of the hub names things with, and imports nothing of the
//! hub: request ids (unique per hub: `<hub start, unix ms>-<counter>`),
//! session ids and tokens from the operating system's random source, the
//! clock in Unix milliseconds, and the default tenant.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// The tenant "" stands for.
pub const DEFAULT_TENANT: &str = "default";

/// Hands out request ids. The start time keeps ids of a restarted hub apart
/// from the ids of its previous run, which a resuming connector may still
/// answer.
#[derive(Debug)]
pub(crate) struct RequestIds {
    prefix: u64,
    counter: AtomicU64,
}

impl RequestIds {
    /// Ids prefixed with the current time.
    pub(crate) fn new() -> Self {
        RequestIds {
            prefix: unix_ms(),
            counter: AtomicU64::new(0),
        }
    }

    /// The next id.
    pub(crate) fn next(&self) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed) + 1;
        format!("{}-{n}", self.prefix)
    }
}

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub(crate) fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// A fresh session token: 128 random bits as 32 lowercase hex digits.
/// Whoever holds it can resume the session, so it comes from the operating
/// system's random source.
pub(crate) fn new_token() -> String {
    hex(&random_bytes::<16>())
}

/// A fresh session id: 64 random bits as 16 hex digits, prefixed `s-`.
/// Unlike the token it is not a secret; it names the session in listings.
pub(crate) fn new_session_id() -> String {
    format!("s-{}", hex(&random_bytes::<8>()))
}

pub(crate) fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    if let Err(err) = getrandom::fill(&mut bytes) {
        // Never expected on supported platforms; fall back to the standard
        // library's randomly keyed hasher rather than failing a registration.
        tracing::warn!("the OS random source failed ({err}); using a weaker fallback");
        static SALT: AtomicU64 = AtomicU64::new(0);
        for chunk in bytes.chunks_mut(8) {
            let mut hasher = RandomState::new().build_hasher();
            hasher.write_u64(SALT.fetch_add(1, Ordering::Relaxed));
            hasher.write_u128(std::time::UNIX_EPOCH.elapsed().map_or(0, |d| d.as_nanos()));
            let word = hasher.finish().to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
    }
    bytes
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_prefixed() {
        let ids = RequestIds::new();
        let a = ids.next();
        let b = ids.next();
        assert_ne!(a, b);
        assert!(a.ends_with("-1"), "{a}");
        assert_eq!(a.split('-').next(), b.split('-').next());
    }

    #[test]
    fn tokens_are_128_bit_hex_and_distinct() {
        let a = new_token();
        let b = new_token();
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
        assert!(new_session_id().starts_with("s-"));
        assert_eq!(new_session_id().len(), 18);
    }
}
