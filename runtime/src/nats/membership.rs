//! Who shares the work: the live instances of one connector (of one
//! tenant) from the status bucket ([`super::status`]), fed to the
//! [`Partition`] every call's context carries.
//!
//! A task watches the bucket's keys `<tenant>.<connector>.*`: a status put
//! by an instance that is serving makes it a member; a draining one, a
//! deleted key or an expired one (the server's marker) makes it leave.
//! Changes that come together (a burst when the watch starts, several
//! instances starting at once) are gathered for [`SETTLE`] and sent as
//! one new view. When the watch fails, it is made again after a backoff,
//! from a fresh view.

use std::collections::BTreeSet;
use std::time::Duration;

use async_nats::jetstream;
use futures_util::StreamExt;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::status::{self, Change};
use crate::backoff::Backoff;
use crate::partition::{Members, Partition};

/// How long changes are gathered before a new view is sent.
pub const SETTLE: Duration = Duration::from_millis(250);

/// `me`'s partition among the instances of `connector` of `tenant`, kept
/// up to date by a task until `stop`.
pub fn follow(
    js: jetstream::Context,
    tenant: String,
    connector: String,
    me: String,
    stop: CancellationToken,
) -> Partition {
    let (tx, rx) = watch::channel(Members::new([me.clone()], 0));
    tokio::spawn(async move {
        let backoff = Backoff::default();
        let mut schedule = backoff.schedule();
        loop {
            let failed = tokio::select! {
                () = stop.cancelled() => return,
                failed = watch_once(&js, &tenant, &connector, &tx) => failed,
            };
            let wait = schedule.next_delay().unwrap_or(backoff.max());
            tracing::warn!(
                target: "spoke::nats",
                "following the instances of {connector}: {failed}; again in {wait:?}"
            );
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
            }
        }
    });
    Partition::follow(me, rx)
}

/// Watches until the watch fails; returns why.
async fn watch_once(
    js: &jetstream::Context,
    tenant: &str,
    connector: &str,
    tx: &watch::Sender<Members>,
) -> String {
    let store = match status::open(js).await {
        Ok(store) => store,
        Err(e) => return e.to_string(),
    };
    let changes = match status::watch(&store, tenant, connector).await {
        Ok(changes) => changes,
        Err(e) => return e.to_string(),
    };
    let mut changes = std::pin::pin!(changes);
    let mut live = BTreeSet::new();
    loop {
        // One change, then whatever follows within SETTLE.
        let mut first = true;
        let settle = tokio::time::sleep(SETTLE);
        let mut settle = std::pin::pin!(settle);
        loop {
            let next = if first {
                changes.next().await
            } else {
                tokio::select! {
                    () = &mut settle => break,
                    next = changes.next() => next,
                }
            };
            first = false;
            match next {
                None => return "the watch ended".to_owned(),
                Some(Err(e)) => return e.to_string(),
                Some(Ok(Change::Up(s))) if s.state == "serving" => {
                    live.insert(s.instance_id);
                }
                Some(Ok(Change::Up(s))) => {
                    live.remove(&s.instance_id);
                }
                Some(Ok(Change::Gone(id))) => {
                    live.remove(&id);
                }
            }
        }
        tx.send_if_modified(|members| {
            if members.instances.iter().eq(live.iter()) {
                return false;
            }
            *members = Members::new(live.iter().cloned(), members.epoch + 1);
            tracing::info!(
                target: "spoke::nats",
                "the instances of {connector} sharing the work: {}",
                members.instances.join(", ")
            );
            true
        });
    }
}
