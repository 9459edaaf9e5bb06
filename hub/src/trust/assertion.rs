//! Checking an instance's proof of its key (`Register.credentials`), per the
//! "Trust." contract of `proto/spoke/v1/spoke.proto`: an Ed25519 signature
//! over `"spoke.v1.Assertion\n"` and the encoded `Assertion` (checked by
//! the SDK's own `spoke_runtime::grpc::identity::verify`, so both sides share one
//! reading of the contract), whose tenant, connector and instance id match
//! the Register's, inside its time window (60 s of clock skew, at most
//! 300 s long), with a nonce not seen before from that key.
//!
//! The replay cache lives in memory: each entry is kept until its
//! assertion expires (plus the skew), and the cache holds at most
//! [`MAX_NONCES`] entries. A hub restart forgets it; that is acceptable
//! because an assertion is valid for at most 300 s (+60 s skew) after it
//! was issued and a replay only re-opens a stream for the key's own
//! instance, which the instance's approval (kept in the store) still
//! governs: a restarted hub is exposed to a replay of an assertion
//! captured in the few minutes before the restart, never later.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use spoke_proto::v1::Credentials;
/// Allowed clock difference between connector and hub, in milliseconds.
pub const SKEW_MS: u64 = 60_000;
/// The longest an assertion may be valid, in milliseconds.
pub const MAX_LIFETIME_MS: u64 = 300_000;
/// The most nonces remembered at once.
pub const MAX_NONCES: usize = 100_000;

/// Who the Register says it is.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Claim<'a> {
    /// The tenant ("" already mapped to "default").
    pub(crate) tenant: &'a str,
    /// The connector (the manifest's name).
    pub(crate) connector: &'a str,
    /// The instance id.
    pub(crate) instance_id: &'a str,
}

/// A checked proof: the key that signed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Proven {
    /// The Ed25519 public key, 32 bytes.
    pub(crate) public_key: [u8; 32],
}

/// A nonce as seen: the key that signed it and its bytes.
type NonceKey = ([u8; 32], Vec<u8>);

/// The nonces seen recently, by (public key, nonce), with the time each
/// may be forgotten.
#[derive(Debug, Default)]
pub(crate) struct ReplayCache {
    seen: Mutex<HashMap<NonceKey, u64>>,
}

impl ReplayCache {
    /// Records the nonce; the error says it was seen before (a replay) or
    /// the cache is full of live entries.
    fn remember(
        &self,
        key: [u8; 32],
        nonce: &[u8],
        forget_at: u64,
        now: u64,
    ) -> Result<(), String> {
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        if seen.len() >= MAX_NONCES {
            seen.retain(|_, at| *at > now);
            if seen.len() >= MAX_NONCES {
                return Err("the hub's replay cache is full; try again in a minute".to_owned());
            }
        }
        match seen.entry((key, nonce.to_vec())) {
            std::collections::hash_map::Entry::Occupied(mut e) if *e.get() > now => {
                e.insert((*e.get()).max(forget_at));
                Err("the assertion's nonce was used before: a replayed assertion".to_owned())
            }
            std::collections::hash_map::Entry::Occupied(mut e) => {
                e.insert(forget_at);
                Ok(())
            }
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(forget_at);
                Ok(())
            }
        }
    }
}

/// Checks `credentials` for `claim` at `now_ms`; the error says why it is
/// refused (the stream ends UNAUTHENTICATED).
pub(crate) fn verify(
    credentials: Option<&Credentials>,
    claim: Claim<'_>,
    now_ms: u64,
    replays: &ReplayCache,
) -> Result<Proven, String> {
    let credentials = credentials.ok_or(
        "Register.credentials is missing: this hub requires each instance to prove its key (see the \"Trust.\" section of spoke.proto)",
    )?;
    let verified = spoke_runtime::grpc::identity::verify(credentials).map_err(|e| e.to_string())?;
    let (key_bytes, assertion) = (verified.public_key, verified.assertion);
    let tenant = if assertion.tenant.is_empty() {
        crate::ids::DEFAULT_TENANT
    } else {
        assertion.tenant.as_str()
    };
    if tenant != claim.tenant
        || assertion.connector != claim.connector
        || assertion.instance_id != claim.instance_id
    {
        return Err(format!(
            "the assertion is for instance `{}` of connector `{}` in tenant `{tenant}`, not for the one registering",
            assertion.instance_id, assertion.connector
        ));
    }
    let (issued, expires) = (assertion.issued_at_unix_ms, assertion.expires_at_unix_ms);
    if issued > now_ms.saturating_add(SKEW_MS) {
        return Err(format!(
            "the assertion is issued {} ms in the future (more than the 60 s of clock skew allowed)",
            issued - now_ms
        ));
    }
    if expires.saturating_add(SKEW_MS) < now_ms {
        return Err(format!(
            "the assertion expired {} ms ago: an expired assertion",
            now_ms - expires
        ));
    }
    if expires < issued || expires - issued > MAX_LIFETIME_MS {
        return Err(format!(
            "the assertion is valid for {} ms; at most 300000 ms are allowed",
            expires.saturating_sub(issued)
        ));
    }
    replays.remember(
        key_bytes,
        &assertion.nonce,
        expires.saturating_add(SKEW_MS),
        now_ms,
    )?;
    Ok(Proven {
        public_key: key_bytes,
    })
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::{Signer, SigningKey};
    use spoke_proto::prost::Message;
    use spoke_proto::v1::Assertion;

    use super::*;
    use spoke_runtime::grpc::identity::SIGNING_CONTEXT;

    const NOW: u64 = 1_800_000_000_000;

    fn key(n: u8) -> SigningKey {
        SigningKey::from_bytes(&[n; 32])
    }

    fn creds(key: &SigningKey, a: &Assertion) -> Credentials {
        let bytes = a.encode_to_vec();
        let mut signed = SIGNING_CONTEXT.to_vec();
        signed.extend_from_slice(&bytes);
        Credentials {
            public_key: key.verifying_key().to_bytes().to_vec().into(),
            assertion: bytes.into(),
            signature: key.sign(&signed).to_bytes().to_vec().into(),
            registration_token: String::new(),
        }
    }

    fn assertion(nonce: u8) -> Assertion {
        Assertion {
            tenant: String::new(),
            connector: "echo".into(),
            instance_id: "e1".into(),
            issued_at_unix_ms: NOW,
            expires_at_unix_ms: NOW + 60_000,
            nonce: vec![nonce; 16].into(),
        }
    }

    const CLAIM: Claim<'static> = Claim {
        tenant: "default",
        connector: "echo",
        instance_id: "e1",
    };

    #[test]
    fn accepts_a_good_assertion_once() {
        let cache = ReplayCache::default();
        let c = creds(&key(1), &assertion(1));
        assert!(verify(Some(&c), CLAIM, NOW, &cache).is_ok());
        let err = verify(Some(&c), CLAIM, NOW + 1, &cache).unwrap_err();
        assert!(err.contains("replayed"), "{err}");
        // Another nonce is fine.
        assert!(verify(Some(&creds(&key(1), &assertion(2))), CLAIM, NOW, &cache).is_ok());
    }

    #[test]
    fn refuses_bad_proofs_with_the_reason() {
        let cache = ReplayCache::default();
        assert!(
            verify(None, CLAIM, NOW, &cache)
                .unwrap_err()
                .contains("credentials is missing")
        );
        let mut c = creds(&key(1), &assertion(3));
        c.public_key = key(2).verifying_key().to_bytes().to_vec().into();
        assert!(
            verify(Some(&c), CLAIM, NOW, &cache)
                .unwrap_err()
                .contains("does not verify")
        );
        let err = verify(
            Some(&creds(&key(1), &assertion(4))),
            CLAIM,
            NOW + 200_000,
            &cache,
        )
        .unwrap_err();
        assert!(err.contains("expired"), "{err}");
        let mut long = assertion(5);
        long.expires_at_unix_ms = NOW + 301_000;
        assert!(
            verify(Some(&creds(&key(1), &long)), CLAIM, NOW, &cache)
                .unwrap_err()
                .contains("at most 300000")
        );
        let mut future = assertion(6);
        future.issued_at_unix_ms = NOW + 61_000;
        future.expires_at_unix_ms = NOW + 62_000;
        assert!(
            verify(Some(&creds(&key(1), &future)), CLAIM, NOW, &cache)
                .unwrap_err()
                .contains("future")
        );
        let mut other = assertion(7);
        other.instance_id = "e2".into();
        assert!(
            verify(Some(&creds(&key(1), &other)), CLAIM, NOW, &cache)
                .unwrap_err()
                .contains("not for the one registering")
        );
        let mut short = assertion(8);
        short.nonce = vec![1; 8].into();
        assert!(
            verify(Some(&creds(&key(1), &short)), CLAIM, NOW, &cache)
                .unwrap_err()
                .contains("16 to 64")
        );
        // Within the skew, an assertion just past its expiry still passes.
        assert!(
            verify(
                Some(&creds(&key(1), &assertion(9))),
                CLAIM,
                NOW + 110_000,
                &cache
            )
            .is_ok()
        );
    }
}
