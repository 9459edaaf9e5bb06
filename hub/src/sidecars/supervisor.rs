//! The sidecar supervisor (`spoke hub --sidecars FILE.toml`): one task per
//! sidecar runs it ([`bridge`]), restarts it
//! with backoff when it exits, and stops restarting it after `max_failures`
//! consecutive failures (the circuit breaker). Sidecars that are not
//! attached (starting, restarting or broken) are listed by `ListConnectors`
//! from the shared [`StatusMap`] (in [`status`](crate::sidecars::status)).

use std::net::SocketAddr;
use std::time::Duration;

use spoke_runtime::backoff::{Backoff, BackoffSchedule};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::sidecars::bridge::{self, RunContext};
use crate::sidecars::config::SidecarSpec;
use crate::sidecars::status::{SidecarStatus, StatusMap};

/// Uptime after which a sidecar's restart schedule and failure count reset.
const HEALTHY_UPTIME: Duration = Duration::from_secs(60);

/// The running supervisor.
pub(crate) struct Supervisor {
    stopping: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl Supervisor {
    /// Starts supervising `specs`; the sidecars attach to the hub at `hub`.
    pub(crate) fn start(
        specs: Vec<SidecarSpec>,
        hub: SocketAddr,
        grace: Duration,
        statuses: StatusMap,
        keys: &std::collections::HashMap<
            String,
            std::sync::Arc<spoke_runtime::grpc::identity::InstanceKey>,
        >,
        tls: Option<std::sync::Arc<spoke_runtime::grpc::tls::HubTls>>,
    ) -> Supervisor {
        let stopping = CancellationToken::new();
        let hub = loopback(hub);
        let mut tasks = Vec::new();
        for spec in specs {
            statuses.lock().insert(
                spec.name.clone(),
                SidecarStatus {
                    connector: spec.name.clone(),
                    state: "starting",
                    last_error: None,
                },
            );
            let ctx = RunContext {
                hub,
                grace,
                stopping: stopping.clone(),
                statuses: statuses.clone(),
                key: keys.get(&spec.name).cloned(),
                tls: tls.clone(),
            };
            tasks.push(tokio::spawn(supervise(spec, ctx)));
        }
        Supervisor { stopping, tasks }
    }

    /// Asks every sidecar to shut down (`shutdown`, then a kill after the
    /// grace) and waits for them, at most `limit`.
    pub(crate) async fn stop(self, limit: Duration) {
        self.stopping.cancel();
        let all = futures_util::future::join_all(self.tasks);
        if tokio::time::timeout(limit, all).await.is_err() {
            tracing::warn!("some sidecars did not stop within {limit:?}");
        }
    }
}

/// The address to dial for a listen address: the unspecified address
/// becomes loopback.
fn loopback(addr: SocketAddr) -> SocketAddr {
    let mut addr = addr;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    addr
}

/// The restart policy: 500 ms doubling to 30 s, jitter 0.2.
fn restart_backoff() -> Backoff {
    Backoff::builder()
        .initial(Duration::from_millis(500))
        .max(Duration::from_secs(30))
        .jitter(0.2)
        .build()
        .unwrap_or_default()
}

/// What to do after a sidecar exited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decision {
    /// Start it again after this delay.
    Restart(Duration),
    /// The breaker tripped: `failures` consecutive failures.
    GiveUp { failures: u32 },
}

/// The restart policy of one sidecar: exponential backoff with jitter, a
/// count of consecutive failures that trips the breaker at `max_failures`,
/// and both reset by a run that lasted [`HEALTHY_UPTIME`].
#[derive(Debug)]
struct RestartPolicy {
    schedule: BackoffSchedule,
    failures: u32,
    max_failures: u32,
}

impl RestartPolicy {
    fn new(max_failures: u32) -> RestartPolicy {
        RestartPolicy {
            schedule: restart_backoff().schedule(),
            failures: 0,
            max_failures,
        }
    }

    /// Counts a run that lasted `uptime` and ended on its own.
    fn on_exit(&mut self, uptime: Duration) -> Decision {
        if uptime >= HEALTHY_UPTIME {
            self.failures = 0;
            self.schedule.reset();
        }
        self.failures += 1;
        if self.failures >= self.max_failures {
            return Decision::GiveUp {
                failures: self.failures,
            };
        }
        Decision::Restart(
            self.schedule
                .next_delay()
                .unwrap_or(self.schedule.backoff().max()),
        )
    }
}

async fn supervise(spec: SidecarSpec, ctx: RunContext) {
    let name = spec.name.clone();
    let mut policy = RestartPolicy::new(spec.max_failures);
    loop {
        ctx.statuses.update(&name, |s| s.state = "starting");
        let outcome = bridge::run_once(&spec, &ctx).await;
        if ctx.stopping.is_cancelled() {
            ctx.statuses.update(&name, |s| s.state = "stopped");
            return;
        }
        ctx.statuses
            .update(&name, |s| s.last_error = Some(outcome.cause.clone()));
        let delay = match policy.on_exit(outcome.uptime) {
            Decision::GiveUp { failures } => {
                tracing::error!(
                    sidecar = %name,
                    "sidecar failed {failures} times in a row; not restarting it (last: {})",
                    outcome.cause
                );
                ctx.statuses.update(&name, |s| s.state = "broken");
                return;
            }
            Decision::Restart(delay) => delay,
        };
        tracing::warn!(
            sidecar = %name,
            "sidecar failed ({}/{}): {}; restarting it in {delay:?}",
            policy.failures, spec.max_failures, outcome.cause
        );
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = ctx.stopping.cancelled() => {
                ctx.statuses.update(&name, |s| s.state = "stopped");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn restart_delay(d: Decision) -> Duration {
        match d {
            Decision::Restart(delay) => delay,
            Decision::GiveUp { failures } => panic!("gave up after {failures}"),
        }
    }

    #[test]
    fn restarts_back_off_then_the_breaker_trips() {
        let mut policy = RestartPolicy::new(4);
        let short = Duration::from_secs(1);
        let first = restart_delay(policy.on_exit(short));
        assert!(
            (Duration::from_millis(400)..=Duration::from_millis(500)).contains(&first),
            "{first:?}"
        );
        let second = restart_delay(policy.on_exit(short));
        assert!(
            (Duration::from_millis(800)..=Duration::from_millis(1000)).contains(&second),
            "{second:?}"
        );
        restart_delay(policy.on_exit(short));
        assert_eq!(policy.on_exit(short), Decision::GiveUp { failures: 4 });
    }

    #[test]
    fn a_healthy_run_resets_the_count_and_the_delay() {
        let mut policy = RestartPolicy::new(3);
        restart_delay(policy.on_exit(Duration::ZERO));
        restart_delay(policy.on_exit(Duration::ZERO));
        // Two failures so far; a minute up forgets them.
        let delay = restart_delay(policy.on_exit(HEALTHY_UPTIME));
        assert!(delay <= Duration::from_millis(500), "{delay:?}");
        assert_eq!(policy.failures, 1);
        restart_delay(policy.on_exit(Duration::ZERO));
        assert_eq!(
            policy.on_exit(Duration::ZERO),
            Decision::GiveUp { failures: 3 }
        );
    }

    #[test]
    fn the_delay_is_capped_at_thirty_seconds() {
        let mut policy = RestartPolicy::new(u32::MAX);
        let mut last = Duration::ZERO;
        for _ in 0..20 {
            last = restart_delay(policy.on_exit(Duration::ZERO));
        }
        assert!(last <= Duration::from_secs(30), "{last:?}");
        assert!(last >= Duration::from_secs(24), "{last:?}");
    }

    #[test]
    fn unspecified_addresses_become_loopback() {
        let addr: SocketAddr = "0.0.0.0:7700".parse().unwrap();
        assert_eq!(loopback(addr), "127.0.0.1:7700".parse().unwrap());
        let addr: SocketAddr = "[::]:7700".parse().unwrap();
        assert_eq!(loopback(addr), "[::1]:7700".parse().unwrap());
        let addr: SocketAddr = "10.0.0.1:1".parse().unwrap();
        assert_eq!(loopback(addr), addr);
    }
}
