//! Sessions: opaque ids and tokens, and the resume window that keeps a lost
//! instance's session (and its in-flight calls) for a while.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::registry::InstanceKey;
use crate::state::HubState;

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

/// After the resume window, ends the session of an instance whose stream
/// (`generation`) ended, unless it resumed in the meantime.
pub(crate) fn expire_after_window(state: &Arc<HubState>, key: InstanceKey, generation: u64) {
    let window = state.config.resume_window;
    let state = Arc::clone(state);
    tokio::spawn(async move {
        tokio::time::sleep(window).await;
        state.expire(&key, generation);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

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
