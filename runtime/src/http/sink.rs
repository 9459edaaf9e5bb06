//! [`OmniSink`]: a sync run's events and checkpoints sent to Omni's
//! connector-manager.
//!
//! - a batch is one `POST /sdk/events/batch` of Omni `ConnectorEvent`s; a
//!   document's text is stored first (`POST /sdk/content`) for its
//!   `content_id`. A batch the manager refused for a while (transport
//!   error, 429, 5xx) is sent again whole by the runtime's retry, with the
//!   content ids it already got, so no text is stored twice and no event
//!   is lost; a batch the manager took (2xx) is never sent again;
//! - the run's counters go along as `scanned` / `updated` increments
//!   (best effort: a lost increment is added to the next);
//! - a checkpoint is `PUT /sdk/sync/{id}/checkpoint`, after every batch
//!   before it was taken, as `{"version": N, "checkpoint": ...}`.
//!
//! Omni's `ConnectorEvent` from a Spoke [`SyncEvent`]:
//!
//! | Spoke | Omni |
//! |---|---|
//! | `document_created` / `document_updated` | the same `type`, `document_id` = id, `content_id` of the stored text (of the title for a document whose content is a reference, the reference in `metadata.extra.content_ref`), `metadata` (title, author, times, MIME type, size as a string, URL, path, extra), `permissions` (created: not public and nobody listed when the sync gives none), `attributes` |
//! | `document_deleted` | `document_deleted` |
//! | `group_membership` | `group_membership_sync` (`group_email`, `group_name`, `member_emails`) |

use std::collections::HashMap;

use reqwest::Method;
use serde_json::{Map, Value, json};
use tokio::sync::Mutex;

use super::manager::{ManagerClient, ManagerError};
use crate::sync::{
    Batch, Content, Document, SinkError, SinkFuture, StoredCheckpoint, SyncEvent, SyncRunInfo,
    SyncSink,
};

/// Sends one run's events and checkpoints to the manager.
#[derive(Debug)]
pub struct OmniSink {
    client: ManagerClient,
    run_id: String,
    source_id: String,
    state: Mutex<SinkState>,
}

#[derive(Debug, Default)]
struct SinkState {
    /// Content ids of the batch being sent, by (document id, text): kept
    /// while a send fails, so a retry does not store the text again.
    content_ids: HashMap<(String, String), String>,
    /// Counters the manager has been told.
    told_scanned: u64,
    told_updated: u64,
    /// Whether this run stored a checkpoint.
    saved_checkpoint: bool,
}

impl OmniSink {
    /// A sink for run `run_id` of source `source_id`.
    pub fn new(client: ManagerClient, run_id: &str, source_id: &str) -> Self {
        OmniSink {
            client,
            run_id: run_id.to_owned(),
            source_id: source_id.to_owned(),
            state: Mutex::default(),
        }
    }

    /// Whether the run stored a checkpoint.
    pub async fn saved_checkpoint(&self) -> bool {
        self.state.lock().await.saved_checkpoint
    }

    async fn send(&self, batch: &Batch) -> Result<(), ManagerError> {
        let mut state = self.state.lock().await;
        let mut events = Vec::with_capacity(batch.events.len());
        for event in &batch.events {
            let content_id = match event {
                SyncEvent::DocumentCreated(doc) | SyncEvent::DocumentUpdated(doc) => {
                    let text = stored_text(doc);
                    let key = (doc.id.clone(), text.to_owned());
                    match state.content_ids.get(&key) {
                        Some(id) => Some(id.clone()),
                        None => {
                            let id = self.store_content(text).await?;
                            state.content_ids.insert(key, id.clone());
                            Some(id)
                        }
                    }
                }
                _ => None,
            };
            events.push(omni_event(
                event,
                &self.run_id,
                &self.source_id,
                content_id.as_deref(),
            ));
        }
        let body = json!({
            "sync_run_id": self.run_id,
            "source_id": self.source_id,
            "events": events,
        });
        let bytes = serde_json::to_vec(&body).unwrap_or_default();
        self.client
            .call_once(Method::POST, "/sdk/events/batch", Some(&bytes))
            .await?;
        // Taken: never sent again.
        state.content_ids.clear();
        let scanned = batch.counters.scanned.saturating_sub(state.told_scanned);
        let updated = batch.counters.updated.saturating_sub(state.told_updated);
        for (what, count) in [("scanned", scanned), ("updated", updated)] {
            if count == 0 {
                continue;
            }
            let count = i32::try_from(count).unwrap_or(i32::MAX);
            let body = serde_json::to_vec(&json!({ "count": count })).unwrap_or_default();
            let path = format!("/sdk/sync/{}/{what}", self.run_id);
            match self
                .client
                .call_once(Method::POST, &path, Some(&body))
                .await
            {
                Ok(_) if what == "scanned" => state.told_scanned += count as u64,
                Ok(_) => state.told_updated += count as u64,
                Err(e) => {
                    tracing::debug!(target: "spoke::http", run_id = %self.run_id, "{e}; the count goes with the next batch")
                }
            }
        }
        Ok(())
    }

    async fn store_content(&self, text: &str) -> Result<String, ManagerError> {
        let body = serde_json::to_vec(&json!({
            "sync_run_id": self.run_id,
            "content": text,
            "content_type": "text/plain",
        }))
        .unwrap_or_default();
        let answer = self
            .client
            .call_once(Method::POST, "/sdk/content", Some(&body))
            .await?;
        match answer.get("content_id").and_then(Value::as_str) {
            Some(id) => Ok(id.to_owned()),
            None => Err(ManagerError {
                message: "POST /sdk/content: the answer has no `content_id`".into(),
                status: Some(200),
                retryable: false,
            }),
        }
    }
}

fn sink_error(e: ManagerError) -> SinkError {
    if e.retryable {
        SinkError::retryable(e.message)
    } else {
        SinkError::fatal(e.message)
    }
}

impl SyncSink for OmniSink {
    fn deliver<'a>(&'a self, _run: &'a SyncRunInfo, batch: &'a Batch) -> SinkFuture<'a, ()> {
        Box::pin(async move { self.send(batch).await.map_err(sink_error) })
    }

    fn save_checkpoint<'a>(
        &'a self,
        _run: &'a SyncRunInfo,
        checkpoint: &'a StoredCheckpoint,
    ) -> SinkFuture<'a, ()> {
        Box::pin(async move {
            let body = serde_json::to_vec(checkpoint).unwrap_or_default();
            let path = format!("/sdk/sync/{}/checkpoint", self.run_id);
            self.client
                .call_once(Method::PUT, &path, Some(&body))
                .await
                .map_err(sink_error)?;
            self.state.lock().await.saved_checkpoint = true;
            Ok(())
        })
    }
}

/// The text stored for a document: its text, or its title (else its id)
/// when its content is a reference or missing.
fn stored_text(doc: &Document) -> &str {
    match &doc.content {
        Some(Content::Text(text)) => text,
        _ => doc.title.as_deref().unwrap_or(&doc.id),
    }
}

/// Omni's `ConnectorEvent` for `event` (see the [module docs](self)).
pub fn omni_event(
    event: &SyncEvent,
    run_id: &str,
    source_id: &str,
    content_id: Option<&str>,
) -> Value {
    let mut out = match event {
        SyncEvent::DocumentCreated(doc) | SyncEvent::DocumentUpdated(doc) => {
            let created = matches!(event, SyncEvent::DocumentCreated(_));
            let permissions = match (&doc.permissions, created) {
                (Some(p), _) => json!({"public": p.public, "users": p.users, "groups": p.groups}),
                (None, true) => json!({"public": false, "users": [], "groups": []}),
                (None, false) => Value::Null,
            };
            let attributes = if doc.attributes.is_empty() {
                Value::Null
            } else {
                json!(doc.attributes)
            };
            json!({
                "type": if created { "document_created" } else { "document_updated" },
                "document_id": doc.id,
                "content_id": content_id,
                "metadata": metadata(doc),
                "permissions": permissions,
                "attributes": attributes,
            })
        }
        SyncEvent::DocumentDeleted { id } => json!({
            "type": "document_deleted",
            "document_id": id,
        }),
        SyncEvent::GroupMembership(group) => json!({
            "type": "group_membership_sync",
            "group_email": group.group,
            "group_name": group.name,
            "member_emails": group.members,
        }),
    };
    out["sync_run_id"] = Value::from(run_id);
    out["source_id"] = Value::from(source_id);
    out
}

fn metadata(doc: &Document) -> Value {
    let m = &doc.metadata;
    let mut extra: Map<String, Value> = m.extra.clone().into_iter().collect();
    if let Some(Content::Reference(reference)) = &doc.content {
        extra.insert("content_ref".into(), Value::String(reference.clone()));
    }
    json!({
        "title": doc.title,
        "author": m.author,
        "created_at": m.created_at.map(|t| t.to_string()),
        "updated_at": m.updated_at.map(|t| t.to_string()),
        "content_type": null,
        "mime_type": m.mime_type,
        "size": m.size.map(|s| s.to_string()),
        "url": m.url,
        "path": m.path,
        "extra": if extra.is_empty() { Value::Null } else { Value::Object(extra) },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::{GroupMembership, Permissions, Timestamp};

    #[test]
    fn documents_map_onto_omnis_connector_events() {
        let doc = Document::new("a.md")
            .title("A")
            .text("hi")
            .size(2)
            .updated_at(Timestamp::from_unix_seconds(60).unwrap())
            .attribute("ext", "md");
        let created = omni_event(
            &SyncEvent::DocumentCreated(doc.clone()),
            "r",
            "s",
            Some("c1"),
        );
        assert_eq!(
            created,
            json!({"type": "document_created", "sync_run_id": "r", "source_id": "s",
                "document_id": "a.md", "content_id": "c1",
                "metadata": {"title": "A", "author": null, "created_at": null,
                    "updated_at": "1970-01-01T00:01:00Z", "content_type": null, "mime_type": null,
                    "size": "2", "url": null, "path": null, "extra": null},
                "permissions": {"public": false, "users": [], "groups": []},
                "attributes": {"ext": "md"}})
        );
        let updated = omni_event(&SyncEvent::DocumentUpdated(doc), "r", "s", Some("c1"));
        assert_eq!(updated["permissions"], Value::Null);
        let public = Document::new("b")
            .content_ref("files:b")
            .permissions(Permissions::public());
        let event = omni_event(&SyncEvent::DocumentCreated(public.clone()), "r", "s", None);
        assert_eq!(event["permissions"]["public"], true);
        assert_eq!(event["metadata"]["extra"]["content_ref"], "files:b");
        assert_eq!(stored_text(&public), "b");
    }

    #[test]
    fn deletions_and_groups_map_too() {
        let deleted = omni_event(
            &SyncEvent::DocumentDeleted { id: "x".into() },
            "r",
            "s",
            None,
        );
        assert_eq!(
            deleted,
            json!({"type": "document_deleted", "document_id": "x", "sync_run_id": "r", "source_id": "s"})
        );
        let group = omni_event(
            &SyncEvent::GroupMembership(GroupMembership {
                group: "eng@example.com".into(),
                name: None,
                members: vec!["ana@example.com".into()],
            }),
            "r",
            "s",
            None,
        );
        assert_eq!(group["type"], "group_membership_sync");
        assert_eq!(group["member_emails"], json!(["ana@example.com"]));
        assert_eq!(group["group_name"], Value::Null);
    }
}
