//! Syncs written with `#[sync]`, run through the test kit
//! (`TestConnector::sync` into a `MemorySink`): typed checkpoints both
//! ways, the next run from the sink's checkpoint, a migration, a sync that
//! ignores its cancellation, a panicking one, two starts of one sync, a
//! sink that fails and is retried.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use serde_json::json;
use spoke::prelude::*;
use spoke::sync::{Document, MemorySink, StoredCheckpoint, SyncMode, SyncRequest, SyncStatus};
use spoke::testing::TestConnector;

/// Where `pages` got to.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
struct Cursor {
    /// The next page to read.
    page: u32,
}

/// A wiki of `pages` pages.
#[connector(name = "wiki")]
pub struct Wiki {
    /// How many pages the wiki has.
    #[config_field(default = 5)]
    pages: u32,
    /// How many times `stubborn` ran.
    runs: AtomicU32,
}

#[connector]
impl Wiki {
    /// Every page from the checkpoint on, a checkpoint after each.
    #[sync(modes = "full, incremental", sweep, version = 2, migrate = Self::upgrade)]
    async fn pages(&self, ctx: &SyncContext<Cursor>) -> Result<(), ActionError> {
        let mut cursor = ctx.last_checkpoint().cloned().unwrap_or_default();
        while cursor.page < self.pages {
            ctx.count_scanned(1);
            let id = format!("page-{}", cursor.page);
            ctx.created(Document::new(&id).title(&id)).await?;
            cursor.page += 1;
            ctx.checkpoint(&cursor).await?;
        }
        Ok(())
    }

    /// Never returns, and ignores its cancellation.
    #[sync]
    async fn stubborn(&self, ctx: &SyncContext) {
        self.runs.fetch_add(1, Ordering::SeqCst);
        let _ = ctx.created(Document::new("only")).await;
        loop {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
    }

    /// Falls over.
    #[sync]
    async fn falls(&self, _ctx: &SyncContext) -> Result<(), ActionError> {
        panic!("the wiki is on fire")
    }
}

impl Wiki {
    /// Version 1 counted pages done, from 1.
    fn upgrade(from: u32, old: serde_json::Value) -> Result<Cursor, String> {
        match (from, old["done"].as_u64()) {
            (1, Some(done)) => Ok(Cursor { page: done as u32 }),
            _ => Err(format!("cannot read a version-{from} checkpoint: {old}")),
        }
    }
}

async fn wiki() -> TestConnector<Wiki> {
    TestConnector::<Wiki>::start(json!({}))
        .await
        .unwrap()
        .with_cancel_grace(Duration::from_millis(200))
}

#[tokio::test]
async fn the_next_run_goes_on_from_the_checkpoint_the_sink_holds() {
    let t = wiki().await;
    let sink = MemorySink::new();
    let first = t.sync(SyncRequest::new("pages"), &sink).await.unwrap();
    assert_eq!(first.status, SyncStatus::Completed, "{first:?}");
    assert_eq!(first.run.mode, SyncMode::Full);
    assert_eq!(sink.documents().len(), 5);
    assert_eq!(
        sink.checkpoint("pages", ""),
        Some(StoredCheckpoint::new(2, json!({"page": 5})))
    );
    let second = t.sync(SyncRequest::new("pages"), &sink).await.unwrap();
    assert_eq!(second.run.mode, SyncMode::Incremental);
    assert_eq!(second.counters.emitted, 0, "nothing after page 5");
    // A given checkpoint, version 1: migrated.
    let from_old = t
        .sync(
            SyncRequest::new("pages")
                .mode(SyncMode::Full)
                .resume()
                .checkpoint(StoredCheckpoint::new(1, json!({"done": 3}))),
            &MemorySink::new(),
        )
        .await
        .unwrap();
    assert!(from_old.run.is_resume);
    assert_eq!(from_old.counters.emitted, 2, "pages 3 and 4");
    // One the migration cannot read: the run does not start.
    let err = t
        .sync(
            SyncRequest::new("pages").checkpoint(StoredCheckpoint::new(1, json!({"pages": 3}))),
            &MemorySink::new(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::FailedPrecondition);
    assert!(
        err.message().starts_with("the `migrate` fn of sync `pages` could not bring its checkpoint from version 1 to 2: cannot read a version-1 checkpoint"),
        "{err}"
    );
}

#[tokio::test]
async fn a_complete_full_run_sweeps_pages_that_are_gone() {
    let sink = MemorySink::new();
    let five = wiki().await;
    five.sync(SyncRequest::new("pages"), &sink).await.unwrap();
    let three = TestConnector::<Wiki>::start(json!({"pages": 3}))
        .await
        .unwrap();
    let outcome = three
        .sync(
            SyncRequest::new("pages")
                .mode(SyncMode::Full)
                .checkpoint(StoredCheckpoint::new(2, json!({"page": 0}))),
            &sink,
        )
        .await
        .unwrap();
    assert_eq!(outcome.swept, 2);
    let ids: Vec<String> = sink.documents().into_keys().collect();
    assert_eq!(ids, ["page-0", "page-1", "page-2"]);
}

#[tokio::test(start_paused = true)]
async fn a_failing_sink_is_retried_and_loses_nothing() {
    let t = wiki().await;
    let sink = MemorySink::new();
    sink.fail_next_deliveries(3);
    let outcome = t.sync(SyncRequest::new("pages"), &sink).await.unwrap();
    assert_eq!(outcome.status, SyncStatus::Completed);
    assert_eq!(sink.failed_deliveries(), 3);
    assert_eq!(sink.documents().len(), 5);
    assert_eq!(sink.checkpoints().len(), 5);
}

#[tokio::test]
async fn a_second_start_is_refused_and_a_cancel_frees_the_slot_within_the_grace() {
    let t = wiki().await;
    let sink = Arc::new(MemorySink::new());
    let run = t
        .instance()
        .start_sync(SyncRequest::new("stubborn").run_id("r-7"), sink.clone())
        .unwrap();
    let err = t
        .instance()
        .start_sync(SyncRequest::new("stubborn"), sink.clone())
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::FailedPrecondition);
    assert!(
        err.message().contains("already running as run r-7"),
        "{err}"
    );
    let cancelled = std::time::Instant::now();
    run.cancel();
    let outcome = run.outcome().await;
    assert_eq!(outcome.status, SyncStatus::Cancelled);
    // The grace is 200 ms; the bound leaves room for a busy machine.
    assert!(
        cancelled.elapsed() < Duration::from_secs(3),
        "{:?}",
        cancelled.elapsed()
    );
    let again = t
        .instance()
        .start_sync(SyncRequest::new("stubborn"), sink)
        .unwrap();
    again.cancel();
    again.outcome().await;
    assert_eq!(t.connector().runs.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_panicking_sync_fails_its_run_and_the_connector_goes_on() {
    let t = wiki().await;
    let outcome = t
        .sync(SyncRequest::new("falls"), &MemorySink::new())
        .await
        .unwrap();
    assert_eq!(outcome.status, SyncStatus::Failed);
    let error = outcome.error.unwrap();
    assert_eq!(
        (error.code(), error.message()),
        (ErrorCode::Panicked, "the wiki is on fire")
    );
    let next = t
        .sync(SyncRequest::new("pages"), &MemorySink::new())
        .await
        .unwrap();
    assert_eq!(next.status, SyncStatus::Completed);
}

#[test]
fn the_manifest_describes_each_sync() {
    spoke::testing::check_manifest().unwrap();
    let registry = spoke::Registry::from_inventory().unwrap();
    let manifest = registry.get("wiki").unwrap().manifest();
    let pages = manifest.syncs.iter().find(|s| s.name == "pages").unwrap();
    assert_eq!(
        pages.description,
        "Every page from the checkpoint on, a checkpoint after each."
    );
    assert_eq!(pages.checkpoint_version, 2);
    assert_eq!(pages.sweep_modes, [SyncMode::Full]);
    assert_eq!(
        pages.checkpoint_schema["properties"]["page"]["type"],
        "integer"
    );
}
