//! Where every instance says it is alive: the JetStream KV bucket
//! `spoke_status`, one key per instance, `<tenant>.<connector>.<instance
//! id>`, holding its [`InstanceStatus`] as JSON.
//!
//! Each instance puts its status when it starts, every
//! `SPOKE_NATS_STATUS_EVERY` (30 s by default) and when it changes (calls
//! start or end, it begins to drain), at most once a second. Each put has
//! a per-message TTL of three periods (`Nats-TTL`, NATS 2.11 and later),
//! so an instance that dies without a word is gone from the bucket within
//! that TTL, and watchers see it go (the server writes a delete marker);
//! an instance that stops deletes its key. `spoke ls --nats URL` reads the
//! bucket ([`list`]); the work partitioner watches it ([`watch`]).
//!
//! The bucket keeps one value per key (history 1): what it holds is what
//! the instances said last, and nothing older.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::{self, kv};
use futures_util::{Stream, StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// The bucket's name.
pub const BUCKET: &str = "spoke_status";

/// How long the server keeps the marker of an expired key, so that
/// watchers see the instance go.
pub const MARKER_TTL: Duration = Duration::from_secs(1);

/// The least time between two puts of one instance's status.
pub const DEBOUNCE: Duration = Duration::from_secs(1);

/// What one instance says of itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceStatus {
    /// Its tenant.
    pub tenant: String,
    /// Its connector's name.
    pub connector: String,
    /// Its id: the last token of its key, and its `$SRV` id.
    pub instance_id: String,
    /// A name for people.
    pub display_name: String,
    /// The connector's version.
    pub version: String,
    /// The Spoke SDK it was built with.
    pub sdk_version: String,
    /// Its tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// `serving`, or `draining` once it has been told to stop.
    pub state: String,
    /// Calls running now.
    pub in_flight: u64,
    /// Calls answered since it started.
    pub requests: u64,
    /// Of those, errors.
    pub errors: u64,
    /// When it started (RFC 3339, UTC).
    pub started: String,
    /// When this status was put (RFC 3339, UTC).
    pub updated: String,
    /// How long the bucket keeps this status without another put.
    pub ttl_seconds: u64,
}

/// The key of an instance's status.
///
/// ```
/// assert_eq!(spoke::nats::status::key("acme", "files", "files-1"), "acme.files.files-1");
/// ```
pub fn key(tenant: &str, connector: &str, instance_id: &str) -> String {
    format!("{tenant}.{connector}.{instance_id}")
}

/// Why the status bucket could not be used.
#[derive(Debug, thiserror::Error)]
#[error("the status bucket `{BUCKET}`: {0}")]
pub struct StatusError(String);

impl StatusError {
    fn new(what: impl std::fmt::Display) -> StatusError {
        StatusError(what.to_string())
    }
}

/// The TTL of a status put every `every`: three periods, in whole
/// seconds, at least two.
pub fn ttl_for(every: Duration) -> Duration {
    Duration::from_secs((every.as_secs_f64() * 3.0).ceil().max(2.0) as u64)
}

/// Opens the bucket, creating it when it does not exist (every instance
/// asks for the same configuration, so none undoes another's).
pub async fn open(js: &jetstream::Context) -> Result<kv::Store, StatusError> {
    js.create_or_update_key_value(kv::Config {
        bucket: BUCKET.to_owned(),
        description:
            "Spoke: the live instances of every connector (key <tenant>.<connector>.<instance id>)"
                .to_owned(),
        history: 1,
        limit_markers: Some(MARKER_TTL),
        ..Default::default()
    })
    .await
    .map_err(|e| {
        StatusError::new(format!(
            "{e} (it needs JetStream, and NATS 2.11 or later for per-key TTLs)"
        ))
    })
}

/// Opens the bucket if it exists; `None` when nobody has made it yet.
pub async fn existing(js: &jetstream::Context) -> Result<Option<kv::Store>, StatusError> {
    use jetstream::context::GetStreamErrorKind;
    match js.get_stream(format!("KV_{BUCKET}")).await {
        Err(e) => match e.kind() {
            GetStreamErrorKind::JetStream(e)
                if e.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND =>
            {
                Ok(None)
            }
            _ => Err(StatusError::new(e)),
        },
        Ok(_) => js
            .get_key_value(BUCKET)
            .await
            .map(Some)
            .map_err(StatusError::new),
    }
}

/// Puts `status` with its TTL, waiting for the server's acknowledgement.
pub async fn put(js: &jetstream::Context, status: &InstanceStatus) -> Result<(), StatusError> {
    let mut headers = HeaderMap::new();
    headers.insert("Nats-TTL", status.ttl_seconds.to_string().as_str());
    let subject = format!(
        "$KV.{BUCKET}.{}",
        key(&status.tenant, &status.connector, &status.instance_id)
    );
    let body = serde_json::to_vec(status).map_err(StatusError::new)?;
    js.publish_with_headers(subject, headers, body.into())
        .await
        .map_err(StatusError::new)?
        .await
        .map_err(StatusError::new)?;
    Ok(())
}

/// The live instances of `tenant` (every tenant when `None`), sorted by
/// connector and id; none when the bucket does not exist yet.
pub async fn list(
    js: &jetstream::Context,
    tenant: Option<&str>,
) -> Result<Vec<InstanceStatus>, StatusError> {
    let Some(store) = existing(js).await? else {
        return Ok(Vec::new());
    };
    let prefix = tenant.map(|t| format!("{t}."));
    let keys: Vec<String> = store
        .keys()
        .await
        .map_err(StatusError::new)?
        .try_collect()
        .await
        .map_err(StatusError::new)?;
    let mut out = Vec::new();
    for key in keys {
        if prefix
            .as_ref()
            .is_some_and(|p| !key.starts_with(p.as_str()))
        {
            continue;
        }
        // A key that expired since it was listed is simply not there.
        let Some(value) = store.get(key.as_str()).await.map_err(StatusError::new)? else {
            continue;
        };
        match serde_json::from_slice::<InstanceStatus>(&value) {
            Ok(status) => out.push(status),
            Err(e) => tracing::warn!(
                target: "spoke::nats",
                "{BUCKET}: `{key}` does not hold an instance's status: {e}"
            ),
        }
    }
    out.sort_by(|a, b| {
        (&a.tenant, &a.connector, &a.instance_id).cmp(&(&b.tenant, &b.connector, &b.instance_id))
    });
    Ok(out)
}

/// A change to the instances of one connector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// An instance put its status (it joined, or is still there).
    Up(Box<InstanceStatus>),
    /// An instance left, or expired.
    Gone(String),
}

/// The instances of `connector` (of `tenant`) as they come and go: first
/// one [`Change::Up`] for each live one, then every change. The stream
/// ends when the watch does (the caller watches again).
pub async fn watch(
    store: &kv::Store,
    tenant: &str,
    connector: &str,
) -> Result<impl Stream<Item = Result<Change, StatusError>> + use<>, StatusError> {
    let entries = store
        .watch_with_history(format!("{tenant}.{connector}.*"))
        .await
        .map_err(StatusError::new)?;
    let prefix = format!("{tenant}.{connector}.");
    Ok(entries.map(move |entry| {
        let entry = entry.map_err(StatusError::new)?;
        let id = entry
            .key
            .strip_prefix(prefix.as_str())
            .unwrap_or(&entry.key)
            .to_owned();
        Ok(match entry.operation {
            kv::Operation::Put => match serde_json::from_slice::<InstanceStatus>(&entry.value) {
                Ok(status) => Change::Up(Box::new(status)),
                Err(_) => Change::Gone(id),
            },
            kv::Operation::Delete | kv::Operation::Purge => Change::Gone(id),
        })
    }))
}

/// Puts one instance's status now, every period, and when told it
/// changed (at most once per [`DEBOUNCE`]), until stopped; then deletes
/// it.
#[derive(Clone)]
pub struct Heartbeat {
    changed: Arc<Notify>,
}

impl Heartbeat {
    /// Starts putting `status()` every `every` with TTL [`ttl_for`]`(every)`,
    /// until `stop`. A failed put is logged and tried again the next
    /// period; so is opening the bucket.
    pub fn spawn(
        js: jetstream::Context,
        every: Duration,
        status: impl Fn() -> InstanceStatus + Send + 'static,
        stop: CancellationToken,
    ) -> (Heartbeat, tokio::task::JoinHandle<()>) {
        let changed = Arc::new(Notify::new());
        let heartbeat = Heartbeat {
            changed: changed.clone(),
        };
        let task = tokio::spawn(async move {
            let mut store = None;
            let mut warned = false;
            loop {
                if store.is_none() {
                    match open(&js).await {
                        Ok(s) => store = Some(s),
                        Err(e) if !warned => {
                            warned = true;
                            tracing::warn!(target: "spoke::nats", "not listed as live: {e}");
                        }
                        Err(_) => {}
                    }
                }
                if store.is_some() {
                    let now = status();
                    if let Err(e) = put(&js, &now).await {
                        tracing::warn!(target: "spoke::nats", "putting this instance's status: {e}");
                    }
                }
                let next = tokio::time::Instant::now() + every;
                tokio::select! {
                    () = stop.cancelled() => break,
                    () = tokio::time::sleep_until(next) => continue,
                    () = changed.notified() => {}
                }
                // A change: put it, but not more than once per DEBOUNCE.
                tokio::select! {
                    () = stop.cancelled() => break,
                    () = tokio::time::sleep(DEBOUNCE) => {}
                }
            }
            if let Some(store) = store {
                let me = status();
                let key = key(&me.tenant, &me.connector, &me.instance_id);
                if let Err(e) = store.delete(key.as_str()).await {
                    tracing::warn!(target: "spoke::nats", "removing this instance's status: {e}");
                }
            }
        });
        (heartbeat, task)
    }

    /// Says the status changed: it is put within [`DEBOUNCE`].
    pub fn changed(&self) {
        self.changed.notify_one();
    }
}

/// The instances grouped by connector, for `spoke ls`.
pub fn by_connector(instances: Vec<InstanceStatus>) -> BTreeMap<String, Vec<InstanceStatus>> {
    let mut out: BTreeMap<String, Vec<InstanceStatus>> = BTreeMap::new();
    for status in instances {
        out.entry(status.connector.clone())
            .or_default()
            .push(status);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ttl_is_three_periods_in_whole_seconds() {
        assert_eq!(ttl_for(Duration::from_secs(30)), Duration::from_secs(90));
        assert_eq!(ttl_for(Duration::from_millis(1500)), Duration::from_secs(5));
        assert_eq!(ttl_for(Duration::from_millis(100)), Duration::from_secs(2));
    }
}
