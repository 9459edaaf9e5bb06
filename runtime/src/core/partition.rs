//! Work partitioning: which of a connector's live instances owns a key,
//! so that instances sharing work (polling accounts, syncing sources,
//! refreshing caches) each take their share and no key is done twice.
//!
//! [`Context::partition`](crate::context::Context::partition) gives an
//! action the [`Partition`] of its instance. Served on NATS, the members
//! are the connector's instances (of the same tenant) in the status
//! bucket, as they come and go; anywhere else there is one member, this
//! instance, which owns every key.
//!
//! # The hash
//!
//! Ownership is rendezvous hashing (highest random weight) with a fixed
//! hash, so that every instance, whatever it was built with, agrees:
//!
//! - `h(bytes)` is 64-bit FNV-1a (offset basis `0xcbf29ce484222325`, prime
//!   `0x100000001b3`);
//! - the score of instance `i` for key `k` is `fmix64(h(k) ^ h(i))`, where
//!   `fmix64` is MurmurHash3's 64-bit finaliser;
//! - the owner is the instance with the highest score; equal scores go to
//!   the greater id (bytewise).
//!
//! An instance that leaves gives up only the keys it owned, each to the
//! instance that scored second for it; one that joins takes only the keys
//! it now scores highest for (about 1/N of them); no other key moves.
//!
//! Membership is eventually consistent: for a moment after a change two
//! instances may each believe they own a key. Work keyed this way should
//! be idempotent, or fenced (a compare-and-swap on a checkpoint).

use std::sync::Arc;

use tokio::sync::watch;

/// The id of an instance that shares its work with no other.
pub const LOCAL: &str = "local";

/// 64-bit FNV-1a of `bytes`.
///
/// ```
/// assert_eq!(spoke::partition::fnv1a64(b""), 0xcbf29ce484222325);
/// assert_eq!(spoke::partition::fnv1a64(b"a"), 0xaf63dc4c8601ec8c);
/// ```
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// MurmurHash3's 64-bit finaliser.
///
/// ```
/// assert_eq!(spoke::partition::fmix64(0), 0);
/// assert_eq!(spoke::partition::fmix64(1), 0xb456bcfc34c2cb2c);
/// ```
pub fn fmix64(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

/// Instance `instance`'s score for `key`.
pub fn score(key: &str, instance: &str) -> u64 {
    fmix64(fnv1a64(key.as_bytes()) ^ fnv1a64(instance.as_bytes()))
}

/// Which of `instances` owns `key`; `None` when there are none.
///
/// ```
/// use spoke::partition::owner;
/// let members = ["files-a", "files-b", "files-c"];
/// let first = owner("account-42", &members).unwrap();
/// // Remove an instance that does not own the key: the owner stays.
/// let rest: Vec<&str> = members.iter().copied().filter(|m| *m != first).collect();
/// let others: Vec<&str> = members.iter().copied().filter(|m| *m != rest[0]).collect();
/// assert_eq!(owner("account-42", &others), Some(first));
/// ```
pub fn owner<'a, S: AsRef<str>>(key: &str, instances: &'a [S]) -> Option<&'a str> {
    let k = fnv1a64(key.as_bytes());
    instances
        .iter()
        .map(AsRef::as_ref)
        .max_by_key(|i| (fmix64(k ^ fnv1a64(i.as_bytes())), *i))
}

/// The members at one moment: the live instances' ids, sorted, and how
/// many times they have changed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Members {
    /// The ids, sorted, each once.
    pub instances: Arc<[String]>,
    /// 0 for the first view, then one more for each change.
    pub epoch: u64,
}

impl Members {
    /// A view of `instances` (sorted and deduplicated here) at `epoch`.
    pub fn new(instances: impl IntoIterator<Item = String>, epoch: u64) -> Members {
        let mut ids: Vec<String> = instances.into_iter().collect();
        ids.sort();
        ids.dedup();
        Members {
            instances: ids.into(),
            epoch,
        }
    }
}

/// One instance's view of which keys are its own. Cheap to clone; every
/// clone follows the same membership.
///
/// ```
/// use spoke::partition::Partition;
/// let solo = Partition::solo("local");
/// assert!(solo.owns("anything"));
/// assert_eq!(solo.instances(), ["local"]);
/// ```
#[derive(Debug, Clone)]
pub struct Partition {
    me: Arc<str>,
    members: watch::Receiver<Members>,
}

impl Partition {
    /// A partition of one: `me` owns every key, for ever.
    pub fn solo(me: impl Into<String>) -> Partition {
        let me: String = me.into();
        let (tx, rx) = watch::channel(Members::new([me.clone()], 0));
        // Nothing will change: the receiver keeps the last value.
        drop(tx);
        Partition {
            me: me.into(),
            members: rx,
        }
    }

    /// `me`'s view of the members a transport sends on `members` (it keeps
    /// the sender and sends each change).
    pub fn follow(me: impl Into<String>, members: watch::Receiver<Members>) -> Partition {
        Partition {
            me: me.into().into(),
            members,
        }
    }

    /// This instance's id.
    pub fn me(&self) -> &str {
        &self.me
    }

    /// The members as they are now. This instance is always one of them:
    /// until the others have heard of it, it owns its share already.
    pub fn members(&self) -> Members {
        let now = self.members.borrow().clone();
        if now.instances.iter().any(|i| **i == *self.me) {
            return now;
        }
        let epoch = now.epoch;
        Members::new(
            now.instances.iter().cloned().chain([self.me.to_string()]),
            epoch,
        )
    }

    /// The live instances' ids, sorted.
    pub fn instances(&self) -> Vec<String> {
        self.members().instances.to_vec()
    }

    /// The instance that owns `key`.
    pub fn owner(&self, key: &str) -> String {
        let members = self.members();
        owner(key, &members.instances)
            .unwrap_or(&self.me)
            .to_owned()
    }

    /// Whether this instance owns `key`.
    pub fn owns(&self, key: &str) -> bool {
        owner(key, &self.members().instances).is_none_or(|o| o == &*self.me)
    }

    /// Waits for the members to change, and returns them; `None` when
    /// they never will again (a partition of one, or the transport
    /// stopped).
    pub async fn changed(&mut self) -> Option<Members> {
        self.members.changed().await.ok()?;
        self.members.borrow_and_update();
        Some(self.members())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("inst-{i}")).collect()
    }

    #[test]
    fn shares_are_even_and_only_a_leavers_keys_move() {
        let five = ids(5);
        let keys: Vec<String> = (0..20_000).map(|k| format!("key-{k}")).collect();
        let owners: Vec<&str> = keys.iter().map(|k| owner(k, &five).unwrap()).collect();
        for member in &five {
            let n = owners.iter().filter(|o| **o == member).count();
            assert!((3_600..=4_400).contains(&n), "{member} owns {n} of 20,000");
        }
        let four: Vec<String> = five.iter().filter(|m| *m != "inst-2").cloned().collect();
        for (key, before) in keys.iter().zip(&owners) {
            let after = owner(key, &four).unwrap();
            if *before == "inst-2" {
                assert_ne!(after, "inst-2");
            } else {
                assert_eq!(after, *before, "{key} moved though its owner stayed");
            }
        }
        let mut six = five.clone();
        six.push("inst-5".into());
        let moved = keys
            .iter()
            .zip(&owners)
            .filter(|(key, before)| {
                let after = owner(key, &six).unwrap();
                assert!(
                    after == **before || after == "inst-5",
                    "{key} moved elsewhere"
                );
                after != **before
            })
            .count();
        assert!(
            (2_800..=3_900).contains(&moved),
            "{moved} keys moved to a 6th"
        );
    }

    #[tokio::test]
    async fn a_partition_follows_its_members_and_counts_itself() {
        let (tx, rx) = watch::channel(Members::new(["b".to_owned()], 0));
        let mut p = Partition::follow("a", rx);
        assert_eq!(p.instances(), ["a", "b"]);
        let mine = (0..100)
            .map(|k| k.to_string())
            .filter(|k| p.owns(k))
            .count();
        assert!((30..=70).contains(&mine), "{mine}");
        tx.send(Members::new(["a".to_owned()], 1)).unwrap();
        let now = p.changed().await.unwrap();
        assert_eq!(now.epoch, 1);
        assert!((0..100).all(|k| p.owns(&k.to_string())));
        drop(tx);
        assert_eq!(p.changed().await, None);
        assert_eq!(Partition::solo("x").clone().changed().await, None);
    }
}
