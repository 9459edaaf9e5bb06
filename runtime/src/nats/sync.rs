//! Syncs over NATS: a request on `spoke.<tenant>.<connector>.sync.<name>`
//! starts a run on the instance that takes it; its events go to a subject
//! the caller names, and its checkpoints to JetStream KV, so that any
//! instance can resume a run another one started.
//!
//! The request's body:
//!
//! ```json
//! {"events": "my.inbox.sync-1", "source_id": "", "mode": "full", "durable": false, "timeout_ms": 600000}
//! ```
//!
//! (only `events` is required). The answer comes when the run has
//! started: `{"run_id", "instance", "sync", "source_id", "mode",
//! "is_resume"}`. Then every event of the run is a message on `events`
//! (its JSON, as `<bin> sync` writes a line, with a `Spoke-Run-Id`
//! header), and the last one has the header `Spoke-Sync-End: completed`
//! (or `failed`, `cancelled`) and the run's outcome as its body. With
//! `"durable": true` the events are published through JetStream and each
//! batch is acknowledged by the stream that captures `events` before the
//! checkpoint after it is stored; otherwise they are plain NATS messages,
//! flushed before each checkpoint (at most once: a receiver that was not
//! listening misses them). Cancel a run by publishing to
//! `spoke.<tenant>.<connector>.cancel.<run id>`.
//!
//! The state of each sync and source (its last checkpoint, the checkpoint
//! of its last completed run, its last run) is one key of the KV bucket
//! `spoke_<connector>_syncs`, `<tenant>.<sync>.none` or
//! `<tenant>.<sync>.s.<source id>`. Every write to it is a
//! compare-and-swap on the revision the run last wrote: a run starts by
//! claiming the key; an instance that finds a run `running` there refuses
//! to start another while the instance running it is live (in the status
//! bucket), and resumes it from its last checkpoint once it is not; an
//! instance whose run was taken over that way finds its next checkpoint
//! refused, and its run fails rather than overwrite the newer one. A run
//! under way when its instance drains (SIGTERM) ends `interrupted`, and the
//! next request (to any instance) resumes it too.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::{self, kv};
use async_nats::{Client, HeaderMap};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::status;
use crate::error::ActionError;
use crate::instance::Instance;
use crate::sync::{
    Batch, SinkError, SinkFuture, StoredCheckpoint, SyncMode, SyncOutcome, SyncRequest,
    SyncRunInfo, SyncSink, SyncStatus,
};

/// The status of a run whose instance stopped (drained) before it ended.
pub const INTERRUPTED: &str = "interrupted";

/// The KV bucket of a connector's sync states.
///
/// ```
/// assert_eq!(spoke::nats::sync::bucket_name("files"), "spoke_files_syncs");
/// ```
pub fn bucket_name(connector: &str) -> String {
    format!("spoke_{connector}_syncs")
}

/// The key of one sync and source, for one tenant.
///
/// ```
/// use spoke::nats::sync::state_key;
/// assert_eq!(state_key("acme", "files", ""), "acme.files.none");
/// assert_eq!(state_key("acme", "files", "drive-1"), "acme.files.s.drive-1");
/// ```
pub fn state_key(tenant: &str, sync: &str, source_id: &str) -> String {
    if source_id.is_empty() {
        format!("{tenant}.{sync}.none")
    } else {
        format!("{tenant}.{sync}.s.{source_id}")
    }
}

/// What the bucket holds for one sync and source.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SyncState {
    /// The last durable checkpoint: where an interrupted run resumes.
    #[serde(default)]
    pub checkpoint: Option<StoredCheckpoint>,
    /// The checkpoint as the last completed run left it: where a run that
    /// is not a resume starts.
    #[serde(default)]
    pub completed: Option<StoredCheckpoint>,
    /// The last run.
    #[serde(default)]
    pub last_run: Option<RunRecord>,
}

/// A run, as the state records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// Its id.
    pub run_id: String,
    /// Its mode.
    pub mode: SyncMode,
    /// `running`, `completed`, `failed`, `cancelled` or `interrupted` (its
    /// instance drained; the next request resumes it).
    pub status: String,
    /// The instance that runs (or ran) it.
    pub instance: String,
    /// When it started (RFC 3339).
    pub started_at: String,
    /// When it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    /// Why it did not complete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The body of a sync request (the server reads it, Spoke's client,
/// [`start_sync`](super::client::start_sync), writes it).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncAsk {
    /// The subject the run's events go to.
    pub events: String,
    /// The source, for a sync that keeps a checkpoint per source.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub source_id: String,
    /// The mode (the default: as `<bin> sync` decides).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<SyncMode>,
    /// Events through JetStream, acknowledged (a stream must capture
    /// `events`), rather than plain messages.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub durable: bool,
    /// How long the run may take, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
}

/// The header on each event of a run, naming it.
pub const RUN_ID_HEADER: &str = "Spoke-Run-Id";
/// The header on a run's last message: how it ended.
pub const SYNC_END_HEADER: &str = "Spoke-Sync-End";

/// What serving syncs on NATS needs.
pub struct SyncHost {
    /// Cancelled when the instance drains: its runs end `interrupted`, and
    /// the next request resumes them.
    draining: CancellationToken,
    client: Client,
    js: jetstream::Context,
    kv: kv::Store,
    tenant: String,
    connector: String,
    me: String,
}

fn unavailable(what: impl std::fmt::Display) -> ActionError {
    ActionError::unavailable(format!("the sync state (NATS KV): {what}"))
}

fn now() -> String {
    jiff::Timestamp::now().to_string()
}

/// Checks that `subject` is one a message can be published to.
fn check_subject(subject: &str) -> Result<(), ActionError> {
    let bad = |why: &str| {
        Err(ActionError::invalid_input(format!(
            "`events` must be a subject to publish to: `{subject}` {why}"
        ))
        .with_details(json!({ "path": "$.events" })))
    };
    if subject.is_empty() {
        return bad("is empty");
    }
    if subject.len() > 1024 {
        return bad("is longer than 1024 bytes");
    }
    for token in subject.split('.') {
        if token.is_empty() {
            return bad("has an empty token");
        }
        if token == "*" || token == ">" {
            return bad("has a wildcard");
        }
        if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return bad("has white space");
        }
    }
    Ok(())
}

impl SyncHost {
    /// Opens (creating it when it does not exist) the connector's sync
    /// state bucket; runs end `interrupted` once `draining` is cancelled.
    pub async fn open(
        client: Client,
        tenant: &str,
        connector: &str,
        me: &str,
        draining: CancellationToken,
    ) -> Result<SyncHost, crate::store::StoreError> {
        let js = jetstream::new(client.clone());
        let name = bucket_name(connector);
        let kv = js
            .create_or_update_key_value(kv::Config {
                bucket: name.clone(),
                description: format!("Spoke: the sync states of connector {connector}"),
                history: 1,
                ..Default::default()
            })
            .await
            .map_err(|e| {
                crate::store::StoreError::new(
                    crate::store::StoreErrorKind::Unavailable,
                    format!("cannot create or update {name} (syncs need JetStream): {e}"),
                )
            })?;
        Ok(SyncHost {
            draining,
            client,
            js,
            kv,
            tenant: tenant.to_owned(),
            connector: connector.to_owned(),
            me: me.to_owned(),
        })
    }

    /// The state of `key` and its revision (0: none).
    async fn read(&self, key: &str) -> Result<(SyncState, u64), ActionError> {
        let entry = self.kv.entry(key).await.map_err(unavailable)?;
        match entry {
            Some(e) if e.operation == kv::Operation::Put => {
                let state = serde_json::from_slice(&e.value).map_err(|err| {
                    ActionError::internal(format!(
                        "the sync state at `{key}` in {} is not a sync state: {err}",
                        bucket_name(&self.connector)
                    ))
                })?;
                Ok((state, e.revision))
            }
            Some(e) => Ok((SyncState::default(), e.revision)),
            None => Ok((SyncState::default(), 0)),
        }
    }

    /// Whether instance `id` is live: in the status bucket.
    async fn is_live(&self, id: &str) -> bool {
        let Ok(Some(bucket)) = status::existing(&self.js).await else {
            return false;
        };
        let key = status::key(&self.tenant, &self.connector, id);
        matches!(bucket.get(key.as_str()).await, Ok(Some(_)))
    }

    /// Starts the run `body` asks for, of sync `name`; its answer. The
    /// run goes on in `tracker`, cancellable through `cancels` by its id.
    pub async fn start(
        self: &Arc<Self>,
        instance: &Instance,
        name: &str,
        body: &[u8],
        cancels: &Arc<Mutex<HashMap<String, CancellationToken>>>,
        tracker: &TaskTracker,
    ) -> Result<Bytes, ActionError> {
        let ask: SyncAsk = serde_json::from_slice(if body.is_empty() { b"{}" } else { body })
            .map_err(|e| {
                ActionError::invalid_input(format!(
                    "a sync request is {{\"events\": \"<subject>\", \"source_id\": \"...\", \"mode\": \"full\", \"durable\": false, \"timeout_ms\": 600000}} (only `events` required): {e}"
                ))
            })?;
        check_subject(&ask.events)?;
        let ty = instance.connector_type();
        let Some(def) = ty.sync(name) else {
            let names: Vec<&str> = ty.syncs().iter().map(|s| s.name).collect();
            return Err(crate::instance::unknown_name(
                ty.name(),
                "sync",
                name,
                &names,
            ));
        };
        let key = state_key(&self.tenant, def.name, &ask.source_id);
        crate::store::check_key(&key)
            .map_err(|e| ActionError::invalid_input(format!("source_id: {e}")))?;
        let (mut state, revision) = self.read(&key).await?;
        let interrupted = match &state.last_run {
            Some(run) if run.status == INTERRUPTED => Some(run.mode),
            Some(run) if run.status == "running" => {
                if run.instance == self.me || self.is_live(&run.instance).await {
                    return Err(ActionError::failed_precondition(format!(
                        "sync `{}` of source `{}` is already running as run {} at instance {}; cancel it (publish to spoke.{}.{}.cancel.{}) or wait for it to end",
                        def.name, ask.source_id, run.run_id, run.instance,
                        self.tenant, self.connector, run.run_id
                    ))
                    .with_details(json!({ "running_run_id": run.run_id, "instance": run.instance })));
                }
                Some(run.mode)
            }
            _ => None,
        };
        let run_id = format!("run-{:016x}", fastrand::u64(..));
        let request = SyncRequest {
            sync: Some(def.name.to_owned()),
            run_id: Some(run_id.clone()),
            source_id: ask.source_id.clone(),
            deadline: ask
                .timeout_ms
                .map(|ms| tokio::time::Instant::now() + Duration::from_millis(ms)),
            ..SyncRequest::default()
        }
        .after(
            ask.mode,
            interrupted,
            state.checkpoint.clone(),
            state.completed.clone(),
        );
        let previous = state.last_run.take();
        state.last_run = Some(RunRecord {
            run_id: run_id.clone(),
            mode: request.mode.unwrap_or(SyncMode::Full),
            status: "running".to_owned(),
            instance: self.me.clone(),
            started_at: now(),
            finished_at: None,
            error: None,
        });
        let claimed = self.write(&key, &state, revision).await.map_err(|e| {
            if e.0 {
                ActionError::failed_precondition(format!(
                    "another instance started sync `{}` of source `{}` at the same moment; ask again",
                    def.name, ask.source_id
                ))
            } else {
                unavailable(e.1)
            }
        })?;
        let sink = Arc::new(NatsSink {
            host: Arc::clone(self),
            events: ask.events.clone(),
            durable: ask.durable,
            key: key.clone(),
            state: Mutex::new((state, claimed)),
        });
        let run = match instance.start_sync(request, sink.clone() as Arc<dyn SyncSink>) {
            Ok(run) => run,
            Err(e) => {
                // Give the key back as it was, so the refusal blocks nothing.
                let (mut state, revision) = sink.snapshot();
                state.last_run = previous;
                if let Err(write) = self.write(&key, &state, revision).await {
                    tracing::warn!(target: "spoke::nats", "{key}: undoing the claim: {}", write.1);
                }
                return Err(e);
            }
        };
        let info = run.info().clone();
        // The record says the mode the runtime chose.
        sink.record(|r| r.mode = info.mode);
        cancels
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(run_id.clone(), run.cancellation());
        tracing::info!(
            target: "spoke::nats",
            run = %run_id,
            "sync `{}` of source `{}` started ({}{}), events to {}",
            info.sync,
            info.source_id,
            info.mode,
            if info.is_resume { ", resumed" } else { "" },
            ask.events
        );
        let (cancels, host) = (Arc::clone(cancels), Arc::clone(self));
        tracker.spawn(async move {
            let outcome = run.outcome().await;
            cancels
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&outcome.run.run_id);
            sink.finish(&outcome).await;
            host.announce_end(&sink.events, sink.durable, &outcome)
                .await;
        });
        let answer = json!({
            "run_id": info.run_id,
            "instance": self.me,
            "sync": info.sync,
            "source_id": info.source_id,
            "mode": info.mode,
            "is_resume": info.is_resume,
        });
        Ok(Bytes::from(answer.to_string()))
    }

    /// Writes `state` at `key` if it is at `revision` (0: absent); the new
    /// revision, or (whether it was a conflict, why).
    async fn write(
        &self,
        key: &str,
        state: &SyncState,
        revision: u64,
    ) -> Result<u64, (bool, String)> {
        let body = Bytes::from(serde_json::to_vec(state).map_err(|e| (false, e.to_string()))?);
        if revision == 0 {
            self.kv.create(key, body).await.map_err(|e| {
                (
                    matches!(e.kind(), kv::CreateErrorKind::AlreadyExists),
                    e.to_string(),
                )
            })
        } else {
            self.kv.update(key, body, revision).await.map_err(|e| {
                (
                    matches!(e.kind(), kv::UpdateErrorKind::WrongLastRevision),
                    e.to_string(),
                )
            })
        }
    }

    /// The last message of a run: its outcome, with `Spoke-Sync-End`.
    async fn announce_end(&self, events: &str, durable: bool, outcome: &SyncOutcome) {
        let mut headers = HeaderMap::new();
        headers.insert(RUN_ID_HEADER, outcome.run.run_id.as_str());
        headers.insert(SYNC_END_HEADER, outcome.status.as_str());
        let body = Bytes::from(serde_json::to_vec(outcome).unwrap_or_default());
        let sent = if durable {
            match self
                .js
                .publish_with_headers(events.to_owned(), headers, body)
                .await
            {
                Ok(ack) => ack.await.map(|_| ()).map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            }
        } else {
            match self
                .client
                .publish_with_headers(events.to_owned(), headers, body)
                .await
            {
                Ok(()) => self.client.flush().await.map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            }
        };
        if let Err(e) = sent {
            tracing::warn!(target: "spoke::nats", run = %outcome.run.run_id, "announcing the end of the run on {events}: {e}");
        }
    }
}

/// The sink of one run: events to the caller's subject, checkpoints to KV.
struct NatsSink {
    host: Arc<SyncHost>,
    events: String,
    durable: bool,
    key: String,
    /// The state as this run last wrote it, and its revision.
    state: Mutex<(SyncState, u64)>,
}

impl NatsSink {
    fn snapshot(&self) -> (SyncState, u64) {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn record(&self, change: impl FnOnce(&mut RunRecord)) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(run) = state.0.last_run.as_mut() {
            change(run);
        }
    }

    /// Writes `change`d state, fenced on the revision this run last wrote.
    async fn save(&self, change: impl FnOnce(&mut SyncState)) -> Result<(), SinkError> {
        let (mut state, revision) = self.snapshot();
        change(&mut state);
        match self.host.write(&self.key, &state, revision).await {
            Ok(revision) => {
                *self.state.lock().unwrap_or_else(|e| e.into_inner()) = (state, revision);
                Ok(())
            }
            Err((true, _)) => Err(SinkError::fatal(format!(
                "another instance took this sync over (the state at `{}` changed since this run wrote it): stopping rather than overwrite its checkpoint",
                self.key
            ))),
            Err((false, e)) => Err(SinkError::retryable(format!("storing the checkpoint: {e}"))),
        }
    }

    /// Records how the run ended: `interrupted` when its instance drained
    /// (the next request resumes it).
    async fn finish(&self, outcome: &SyncOutcome) {
        let completed = outcome.status == SyncStatus::Completed;
        let interrupted =
            outcome.status == SyncStatus::Cancelled && self.host.draining.is_cancelled();
        let saved = self
            .save(|state| {
                if completed {
                    state.completed = state.checkpoint.clone();
                }
                if let Some(run) = state.last_run.as_mut() {
                    run.status = if interrupted {
                        INTERRUPTED.to_owned()
                    } else {
                        outcome.status.as_str().to_owned()
                    };
                    run.finished_at = Some(now());
                    run.error = outcome.error.as_ref().map(|e| e.message().to_owned());
                }
            })
            .await;
        if let Err(e) = saved {
            tracing::warn!(target: "spoke::nats", run = %outcome.run.run_id, "recording the end of the run: {e}");
        }
    }
}

impl SyncSink for NatsSink {
    fn deliver<'a>(&'a self, run: &'a SyncRunInfo, batch: &'a Batch) -> SinkFuture<'a, ()> {
        Box::pin(async move {
            let mut line = Vec::new();
            let mut acks = Vec::new();
            for event in &batch.events {
                line.clear();
                event
                    .write_json_line(&mut line)
                    .map_err(|e| SinkError::fatal(format!("encoding an event: {e}")))?;
                line.pop();
                let mut headers = HeaderMap::new();
                headers.insert(RUN_ID_HEADER, run.run_id.as_str());
                let payload = Bytes::copy_from_slice(&line);
                if self.durable {
                    let ack = self
                        .host
                        .js
                        .publish_with_headers(self.events.clone(), headers, payload)
                        .await
                        .map_err(|e| SinkError::retryable(format!("publishing an event: {e}")))?;
                    acks.push(ack);
                } else {
                    self.host
                        .client
                        .publish_with_headers(self.events.clone(), headers, payload)
                        .await
                        .map_err(|e| SinkError::retryable(format!("publishing an event: {e}")))?;
                }
            }
            for ack in acks {
                ack.await.map_err(|e| {
                    SinkError::retryable(format!(
                        "no stream acknowledged an event on {}: {e}",
                        self.events
                    ))
                })?;
            }
            if !self.durable {
                self.host
                    .client
                    .flush()
                    .await
                    .map_err(|e| SinkError::retryable(format!("flushing events: {e}")))?;
            }
            Ok(())
        })
    }

    fn save_checkpoint<'a>(
        &'a self,
        _run: &'a SyncRunInfo,
        checkpoint: &'a StoredCheckpoint,
    ) -> SinkFuture<'a, ()> {
        Box::pin(self.save(|state| state.checkpoint = Some(checkpoint.clone())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_subjects_are_checked() {
        assert!(check_subject("inbox.sync.1").is_ok());
        for bad in ["", "a..b", "a.*", "a.>", "a b"] {
            let err = check_subject(bad).unwrap_err();
            assert_eq!(err.code(), crate::error::ErrorCode::InvalidInput, "{bad}");
        }
    }
}
