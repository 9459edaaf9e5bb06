//! The rate limit on Attach streams per peer address (`spoke hub
//! --register-burst N --register-rate N`), checked before anything of a
//! stream is read, so a flood of registrations costs the hub no signature
//! check, no manifest parsing and no store work.
//!
//! It is [`governor`]'s keyed GCRA: each peer has a bucket of `burst`
//! streams that refills at `rate` a second. A peer is an IPv4 address or an
//! IPv6 /64 (one host, or one site, usually holds a whole /64, so counting
//! its addresses one by one would not limit it at all).
//!
//! Memory is bounded: the table of peers holds at most
//! [`MAX_TRACKED_PEERS`]; peers that arrive while it is full share one
//! bucket, so a flood from very many addresses is still limited (as a
//! whole). Peers whose bucket is full again are dropped from the table, at
//! most once a second, once it is half full.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use governor::clock::{Clock, MonotonicClock, Reference};
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::keyed::{HashMapStateStore, ShrinkableKeyedStateStore};
use governor::state::{InMemoryState, NotKeyed, StateStore};
use governor::{Quota, RateLimiter};

use crate::config::RegistrationLimits;

/// The most peers the limiter tracks one by one (a few MiB at most).
pub(crate) const MAX_TRACKED_PEERS: usize = 65_536;
/// How often, at most, refilled peers are dropped from the table.
const PRUNE_EVERY: Duration = Duration::from_secs(1);
/// How often, at most, refused streams are logged (with a count of the
/// refusals not logged since).
const LOG_EVERY: Duration = Duration::from_secs(1);

/// Whose bucket an Attach stream takes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum PeerKey {
    /// An IPv4 peer (IPv4-mapped IPv6 addresses included).
    V4(Ipv4Addr),
    /// An IPv6 peer: the first 64 bits of its address.
    V6(u64),
    /// A peer whose address the server does not know.
    Unknown,
}

impl PeerKey {
    /// The key of a peer at `addr`.
    pub(crate) fn of(addr: Option<SocketAddr>) -> PeerKey {
        match addr.map(|a| a.ip().to_canonical()) {
            Some(IpAddr::V4(ip)) => PeerKey::V4(ip),
            Some(IpAddr::V6(ip)) => PeerKey::V6((ip.to_bits() >> 64) as u64),
            None => PeerKey::Unknown,
        }
    }
}

impl fmt::Display for PeerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerKey::V4(ip) => write!(f, "address {ip}"),
            PeerKey::V6(prefix) => {
                let ip = std::net::Ipv6Addr::from_bits(u128::from(*prefix) << 64);
                write!(f, "network {ip}/64")
            }
            PeerKey::Unknown => f.write_str("an unknown address"),
        }
    }
}

/// The limiter's states: one per tracked peer, at most `capacity`, and one
/// shared by the peers that come while the table is full.
struct BoundedPeers {
    peers: HashMapStateStore<PeerKey>,
    overflow: InMemoryState,
    capacity: usize,
}

impl StateStore for BoundedPeers {
    type Key = PeerKey;

    fn measure_and_replace<T, F, E>(&self, key: &PeerKey, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        let tracked = {
            let peers = self.peers.lock();
            peers.contains_key(key) || peers.len() < self.capacity
        };
        if tracked {
            self.peers.measure_and_replace(key, f)
        } else {
            self.overflow.measure_and_replace(&NotKeyed::NonKey, f)
        }
    }
}

impl ShrinkableKeyedStateStore<PeerKey> for BoundedPeers {
    fn retain_recent(&self, drop_below: Nanos) {
        self.peers.retain_recent(drop_below);
    }

    fn shrink_to_fit(&self) {
        self.peers.shrink_to_fit();
    }

    fn len(&self) -> usize {
        self.peers.len()
    }

    fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }
}

/// The per-address rate limit on Attach streams.
pub(crate) struct RegisterLimiter<C: Clock = MonotonicClock> {
    limiter: RateLimiter<PeerKey, BoundedPeers, C, NoOpMiddleware<C::Instant>>,
    clock: C,
    burst: u32,
    rate: u32,
    capacity: usize,
    last_prune: Mutex<Option<C::Instant>>,
    /// When a refusal was last logged, and how many were not logged since.
    log: Mutex<(Option<Instant>, u64)>,
}

impl<C: Clock> fmt::Debug for RegisterLimiter<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegisterLimiter")
            .field("burst", &self.burst)
            .field("rate", &self.rate)
            .field("tracked", &self.limiter.len())
            .finish_non_exhaustive()
    }
}

impl RegisterLimiter {
    /// The limiter `limits` ask for; `None` when they turn it off
    /// (`register_rate` 0).
    pub(crate) fn new(limits: &RegistrationLimits) -> Option<Self> {
        Self::with_clock(
            limits.register_burst,
            limits.register_rate,
            MAX_TRACKED_PEERS,
            MonotonicClock,
        )
    }
}

impl<C: Clock + Clone> RegisterLimiter<C> {
    /// `burst` streams at once per peer, refilled at `rate` a second, for
    /// at most `capacity` peers tracked one by one, on `clock`; `None` when
    /// `rate` is 0.
    pub(crate) fn with_clock(burst: u32, rate: u32, capacity: usize, clock: C) -> Option<Self> {
        let per_second = NonZeroU32::new(rate)?;
        let quota = Quota::per_second(per_second)
            .allow_burst(NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN));
        let capacity = capacity.max(1);
        let peers = BoundedPeers {
            peers: HashMapStateStore::default(),
            overflow: InMemoryState::default(),
            capacity,
        };
        Some(RegisterLimiter {
            limiter: RateLimiter::new(quota, peers, clock.clone()),
            clock,
            burst,
            rate,
            capacity,
            last_prune: Mutex::new(None),
            log: Mutex::new((None, 0)),
        })
    }

    /// Takes one Attach stream from `peer`'s bucket; `Err` with how long
    /// until the next one is allowed when the bucket is empty.
    pub(crate) fn check(&self, peer: PeerKey) -> Result<(), Duration> {
        self.prune_if_due();
        self.limiter
            .check_key(&peer)
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }

    /// The refusal a peer gets when its bucket is empty.
    pub(crate) fn refusal(&self, peer: PeerKey, wait: Duration) -> String {
        format!(
            "{peer} opens Attach streams faster than this hub allows ({} at once, then {} a second: \
             spoke hub --register-burst, --register-rate); try again in {}ms",
            self.burst,
            self.rate,
            wait.as_millis().max(1)
        )
    }

    /// Whether to log a refusal now: `Some` with the number of refusals not
    /// logged since the last one, at most once per [`LOG_EVERY`].
    pub(crate) fn log_refusal(&self) -> Option<u64> {
        let mut log = self.log.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        if log.0.is_some_and(|at| now.duration_since(at) < LOG_EVERY) {
            log.1 += 1;
            return None;
        }
        let unlogged = log.1;
        *log = (Some(now), 0);
        Some(unlogged)
    }

    /// How many peers the table tracks one by one.
    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.limiter.len()
    }

    /// Drops the peers whose bucket is full again, when the table is half
    /// full and the last prune is at least [`PRUNE_EVERY`] ago.
    fn prune_if_due(&self) {
        if self.limiter.len() < self.capacity / 2 {
            return;
        }
        let now = self.clock.now();
        {
            let mut last = self
                .last_prune
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if last.is_some_and(|at| Duration::from(now.duration_since(at)) < PRUNE_EVERY) {
                return;
            }
            *last = Some(now);
        }
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use governor::clock::FakeRelativeClock;

    use super::*;

    fn limiter(
        burst: u32,
        rate: u32,
        capacity: usize,
    ) -> (RegisterLimiter<FakeRelativeClock>, FakeRelativeClock) {
        let clock = FakeRelativeClock::default();
        let limiter = RegisterLimiter::with_clock(burst, rate, capacity, clock.clone()).unwrap();
        (limiter, clock)
    }

    fn peer(text: &str) -> PeerKey {
        PeerKey::of(Some(text.parse().unwrap()))
    }

    #[test]
    fn a_peer_gets_its_burst_then_the_rate() {
        let (limiter, clock) = limiter(3, 2, 100);
        let a = peer("10.0.0.1:5000");
        for _ in 0..3 {
            assert_eq!(limiter.check(a), Ok(()));
        }
        let wait = limiter.check(a).unwrap_err();
        assert_eq!(wait, Duration::from_millis(500));
        // Another address has its own bucket.
        assert_eq!(limiter.check(peer("10.0.0.2:5000")), Ok(()));
        clock.advance(Duration::from_millis(500));
        assert_eq!(limiter.check(a), Ok(()));
        assert!(limiter.check(a).is_err());
        let message = limiter.refusal(a, wait);
        assert!(
            message.contains("address 10.0.0.1 opens Attach streams faster")
                && message.contains("3 at once, then 2 a second")
                && message.contains("try again in 500ms"),
            "{message}"
        );
    }

    #[test]
    fn no_rate_is_no_limiter() {
        assert!(RegisterLimiter::with_clock(20, 0, 10, FakeRelativeClock::default()).is_none());
    }

    #[test]
    fn ports_do_not_matter_and_ipv6_counts_by_64_bit_prefix() {
        assert_eq!(peer("10.0.0.1:1"), peer("10.0.0.1:2"));
        assert_eq!(peer("[::ffff:10.0.0.1]:3"), peer("10.0.0.1:4"));
        assert_eq!(
            peer("[2001:db8:1:2::1]:1"),
            peer("[2001:db8:1:2:ffff::9]:2")
        );
        assert_ne!(peer("[2001:db8:1:2::1]:1"), peer("[2001:db8:1:3::1]:1"));
        assert_eq!(
            peer("[2001:db8:1:2::1]:1").to_string(),
            "network 2001:db8:1:2::/64"
        );
        assert_eq!(PeerKey::of(None), PeerKey::Unknown);
    }

    #[test]
    fn the_table_is_bounded_and_peers_beyond_it_share_one_bucket() {
        let (limiter, clock) = limiter(2, 1, 4);
        for n in 0..4 {
            assert_eq!(limiter.check(peer(&format!("10.0.0.{n}:1"))), Ok(()));
        }
        // Over the table's capacity: any number of new addresses, one bucket.
        assert_eq!(limiter.check(peer("10.0.1.1:1")), Ok(()));
        assert_eq!(limiter.check(peer("10.0.1.2:1")), Ok(()));
        assert!(limiter.check(peer("10.0.1.3:1")).is_err());
        assert!(limiter.check(peer("10.0.1.4:1")).is_err());
        assert_eq!(limiter.tracked(), 4);
        // A tracked peer keeps its own bucket meanwhile.
        assert_eq!(limiter.check(peer("10.0.0.0:1")), Ok(()));
        // Once their buckets are full again, tracked peers are dropped and
        // new ones get buckets of their own.
        clock.advance(Duration::from_secs(3));
        assert_eq!(limiter.check(peer("10.0.2.1:1")), Ok(()));
        assert_eq!(limiter.tracked(), 1);
        assert_eq!(limiter.check(peer("10.0.2.1:1")), Ok(()));
        assert!(limiter.check(peer("10.0.2.1:1")).is_err());
    }

    #[test]
    fn refusals_are_logged_at_most_once_a_second_with_a_count() {
        let (limiter, _) = limiter(1, 1, 4);
        assert_eq!(limiter.log_refusal(), Some(0));
        assert_eq!(limiter.log_refusal(), None);
        assert_eq!(limiter.log_refusal(), None);
        let mut log = limiter.log.lock().unwrap();
        log.0 = Some(Instant::now() - LOG_EVERY);
        drop(log);
        assert_eq!(limiter.log_refusal(), Some(2));
    }
}
