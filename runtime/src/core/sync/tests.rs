//! The run's guarantees, with syncs written by hand (the `#[sync]` macro
//! generates the same start fns): checkpoints after durable flushes,
//! retries, age flushes, cancellation, panics, error budgets, sweeps and
//! checkpoint versions.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::time::Instant;

use super::*;
use crate::config::{ConfigErrors, ConfigSource};
use crate::connector::{
    ActionSet, AnyConnector, BuildFuture, ConnectorRegistration, SyncDef, SyncFuture,
};
use crate::error::ErrorCode;
use crate::instance::Instance;
use crate::registry::Registry;

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
struct Cursor {
    done: usize,
}

fn build(_: ConfigSource) -> BuildFuture {
    Box::pin(async { Ok(Arc::new(()) as AnyConnector) })
}

fn check(_: &ConfigSource) -> Result<(), ConfigErrors> {
    Ok(())
}

fn cursor_schema() -> schemars::Schema {
    schemars::schema_for!(Cursor)
}

/// Emits a document per id of its source (`"a,b,c"`), a checkpoint after
/// each; a resumed or incremental run skips the ones its checkpoint covers.
fn docs(_: AnyConnector, start: SyncStart) -> Result<SyncFuture, CheckpointError> {
    let ctx = start.context::<Cursor>(None)?;
    Ok(Box::pin(async move {
        let ids: Vec<String> = ctx.source_id().split(',').map(str::to_owned).collect();
        let from = ctx.last_checkpoint().map_or(0, |c| c.done);
        for (n, id) in ids.iter().enumerate().skip(from) {
            ctx.count_scanned(1);
            ctx.created(Document::new(id.as_str()).text(id.as_str()))
                .await?;
            ctx.checkpoint(&Cursor { done: n + 1 }).await?;
        }
        // `c` marks `x` as unchanged, for the sweep.
        if ids.iter().any(|i| i == "c") {
            ctx.mark_seen("x");
        }
        Ok(())
    }))
}

/// Ignores its cancellation token.
fn stubborn(_: AnyConnector, start: SyncStart) -> Result<SyncFuture, CheckpointError> {
    let ctx = start.context::<()>(None)?;
    Ok(Box::pin(async move {
        ctx.created(Document::new("only")).await?;
        loop {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
    }))
}

fn panics(_: AnyConnector, start: SyncStart) -> Result<SyncFuture, CheckpointError> {
    let _ctx = start.context::<()>(None)?;
    Ok(Box::pin(async move { panic!("the walk fell over") }))
}

/// Ten items, the first `source_id` of them failing.
fn flaky(_: AnyConnector, start: SyncStart) -> Result<SyncFuture, CheckpointError> {
    let ctx = start.context::<()>(None)?;
    Ok(Box::pin(async move {
        let failing: usize = ctx.source_id().parse().unwrap_or(0);
        for n in 0..10 {
            ctx.count_scanned(1);
            if n < failing {
                ctx.fail_item(format!("item-{n}"), "unreadable");
            } else {
                ctx.created(Document::new(format!("item-{n}"))).await?;
            }
        }
        Ok(())
    }))
}

/// Gives up on a flush that takes too long, then stores a checkpoint.
fn impatient(_: AnyConnector, start: SyncStart) -> Result<SyncFuture, CheckpointError> {
    let ctx = start.context::<Cursor>(None)?;
    Ok(Box::pin(async move {
        ctx.created(Document::new("a")).await?;
        ctx.created(Document::new("b")).await?;
        let _ = tokio::time::timeout(Duration::from_secs(1), ctx.flush()).await;
        ctx.checkpoint(&Cursor { done: 2 }).await
    }))
}

/// One event, then a long quiet spell.
fn trickle(_: AnyConnector, start: SyncStart) -> Result<SyncFuture, CheckpointError> {
    let ctx = start.context::<()>(None)?;
    Ok(Box::pin(async move {
        ctx.created(Document::new("early")).await?;
        tokio::time::sleep(Duration::from_secs(400)).await;
        Ok(())
    }))
}

/// Checkpoint version 2; version 1 was `{"pages": n}`.
fn versioned(_: AnyConnector, start: SyncStart) -> Result<SyncFuture, CheckpointError> {
    let migrate: MigrateFn<Cursor> = |from, old| {
        assert_eq!(from, 1);
        let pages = old["pages"].as_u64().ok_or("no `pages`")?;
        Ok(Cursor {
            done: pages as usize * 10,
        })
    };
    let ctx = start.context::<Cursor>(Some(migrate))?;
    Ok(Box::pin(async move {
        let done = ctx.last_checkpoint().map_or(0, |c| c.done);
        ctx.checkpoint(&Cursor { done: done + 1 }).await
    }))
}

macro_rules! sync_def {
    ($name:literal, $start:ident, modes = $modes:expr, budget = $budget:expr, sweep = $sweep:expr, version = $version:expr) => {
        SyncDef {
            name: $name,
            description: $name,
            modes: $modes,
            source_type: None,
            checkpoint_version: $version,
            migrates: $version > 1,
            error_budget: $budget,
            sweep: if $sweep { FULL } else { &[] },
            checkpoint_schema: cursor_schema,
            extra_schema: None,
            attributes_schema: None,
            start: $start,
            location: concat!(file!(), ":", line!()),
        }
    };
}

const FULL_INC: &[SyncMode] = &[SyncMode::Full, SyncMode::Incremental];
const FULL: &[SyncMode] = &[SyncMode::Full];

static SYNCS: [SyncDef; 7] = [
    sync_def!(
        "impatient",
        impatient,
        modes = FULL,
        budget = 0.0,
        sweep = false,
        version = 1
    ),
    sync_def!(
        "docs",
        docs,
        modes = FULL_INC,
        budget = 0.0,
        sweep = true,
        version = 1
    ),
    sync_def!(
        "stubborn",
        stubborn,
        modes = FULL,
        budget = 0.0,
        sweep = false,
        version = 1
    ),
    sync_def!(
        "panics",
        panics,
        modes = FULL,
        budget = 0.0,
        sweep = false,
        version = 1
    ),
    sync_def!(
        "flaky",
        flaky,
        modes = FULL,
        budget = 0.2,
        sweep = true,
        version = 1
    ),
    sync_def!(
        "trickle",
        trickle,
        modes = FULL,
        budget = 0.0,
        sweep = false,
        version = 1
    ),
    sync_def!(
        "versioned",
        versioned,
        modes = FULL,
        budget = 0.0,
        sweep = false,
        version = 2
    ),
];

static WALKER: ConnectorRegistration = ConnectorRegistration {
    name: "walker",
    version: "1.0.0",
    display_name: "Walker",
    description: "Walks things.",
    source_types: &[],
    config_fields: &[],
    buckets: &[],
    build,
    check_config: check,
    location: concat!(file!(), ":", line!()),
};

static WALKER_SYNCS: ActionSet = ActionSet {
    connector: "walker",
    actions: &[],
    operators: &[],
    producers: &[],
    syncs: &SYNCS,
};

const GRACE: Duration = Duration::from_millis(300);

async fn walker() -> Instance {
    let registry = Registry::builder()
        .connector(&WALKER)
        .action_set(&WALKER_SYNCS)
        .build()
        .expect("a valid registry");
    let ty = Arc::clone(registry.get("walker").unwrap());
    Instance::start(ty, ConfigSource::from_vars::<&str, &str>([]))
        .await
        .unwrap()
        .with_cancel_grace(GRACE)
}

async fn run(instance: &Instance, request: SyncRequest, sink: &MemorySink) -> SyncOutcome {
    instance
        .start_sync(request, Arc::new(sink.clone()))
        .expect("the run starts")
        .outcome()
        .await
}

fn ids(sink: &MemorySink) -> Vec<String> {
    sink.documents().into_keys().collect()
}

/// Records the order of deliveries, checkpoints and settles; refuses to
/// settle when told to.
#[derive(Default)]
struct OrderSink {
    log: Mutex<Vec<String>>,
    refuse_settle: bool,
}

impl SyncSink for OrderSink {
    fn deliver<'a>(&'a self, _: &'a SyncRunInfo, batch: &'a Batch) -> SinkFuture<'a, ()> {
        let mut log = self.log.lock().unwrap();
        for event in &batch.events {
            log.push(format!("event {}", event.document_id().unwrap_or("-")));
        }
        Box::pin(std::future::ready(Ok(())))
    }

    fn save_checkpoint<'a>(
        &'a self,
        _: &'a SyncRunInfo,
        checkpoint: &'a StoredCheckpoint,
    ) -> SinkFuture<'a, ()> {
        self.log
            .lock()
            .unwrap()
            .push(format!("checkpoint {}", checkpoint.checkpoint["done"]));
        Box::pin(std::future::ready(Ok(())))
    }

    fn settle<'a>(&'a self, _: &'a SyncRunInfo) -> SinkFuture<'a, ()> {
        self.log.lock().unwrap().push("settle".to_owned());
        Box::pin(std::future::ready(if self.refuse_settle {
            Err(SinkError::fatal("the last batch was refused"))
        } else {
            Ok(())
        }))
    }
}

#[tokio::test]
async fn a_checkpoint_is_stored_only_after_the_events_before_it() {
    let instance = walker().await;
    let sink = Arc::new(OrderSink::default());
    let outcome = instance
        .start_sync(
            SyncRequest::new("docs").source("a,b"),
            Arc::clone(&sink) as Arc<dyn SyncSink>,
        )
        .unwrap()
        .outcome()
        .await;
    assert_eq!(outcome.status, SyncStatus::Completed, "{outcome:?}");
    assert_eq!(
        *sink.log.lock().unwrap(),
        [
            "event a",
            "checkpoint 1",
            "event b",
            "checkpoint 2",
            "settle"
        ]
    );
    assert_eq!(outcome.counters.delivered, 2);
    assert_eq!(outcome.counters.scanned, 2);
}

#[tokio::test]
async fn the_next_run_resumes_from_the_last_checkpoint() {
    let instance = walker().await;
    let sink = MemorySink::new();
    let first = run(&instance, SyncRequest::new("docs").source("a,b,c"), &sink).await;
    assert_eq!(first.run.mode, SyncMode::Full);
    let checkpoint = sink.checkpoint("docs", "a,b,c").unwrap();
    assert_eq!(checkpoint, StoredCheckpoint::new(1, json!({"done": 3})));
    // With a checkpoint and no mode, the run is incremental.
    let sink2 = MemorySink::new();
    let second = run(
        &instance,
        SyncRequest::new("docs")
            .source("a,b,c,d")
            .checkpoint(checkpoint),
        &sink2,
    )
    .await;
    assert_eq!(second.run.mode, SyncMode::Incremental);
    assert_eq!(ids(&sink2), ["d"], "only what came after the checkpoint");
}

#[tokio::test(start_paused = true)]
async fn a_failing_sink_is_retried_and_nothing_is_lost() {
    let instance = walker().await;
    let sink = MemorySink::new();
    sink.fail_next_deliveries(4);
    let outcome = run(&instance, SyncRequest::new("docs").source("a,b,c"), &sink).await;
    assert_eq!(outcome.status, SyncStatus::Completed, "{outcome:?}");
    assert_eq!(sink.failed_deliveries(), 4);
    assert_eq!(ids(&sink), ["a", "b", "c"]);
    assert_eq!(sink.checkpoints().len(), 3);
}

#[tokio::test]
async fn a_sink_that_refuses_for_good_fails_the_run_without_a_checkpoint() {
    let instance = walker().await;
    let sink = MemorySink::new();
    sink.fail_for_good("disk gone");
    let outcome = run(&instance, SyncRequest::new("docs").source("a"), &sink).await;
    assert_eq!(outcome.status, SyncStatus::Failed);
    let error = outcome.error.unwrap();
    assert_eq!(error.code(), ErrorCode::Unavailable);
    assert!(error.message().contains("disk gone"), "{error}");
    assert!(sink.checkpoints().is_empty());
}

#[tokio::test(start_paused = true)]
async fn an_idle_buffer_is_flushed_by_age_alone() {
    let instance = walker().await;
    let sink = MemorySink::new();
    let started = Instant::now();
    let run = instance
        .start_sync(SyncRequest::new("trickle"), Arc::new(sink.clone()))
        .unwrap();
    // Full mode: 500 events or 300 s. One event, then nothing.
    tokio::time::sleep(Duration::from_secs(299)).await;
    assert_eq!(sink.batches(), 0, "not yet 300 s old");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(sink.batches(), 1, "flushed at 300 s with no new event");
    assert_eq!(ids(&sink), ["early"]);
    let outcome = run.outcome().await;
    assert_eq!(outcome.status, SyncStatus::Completed);
    assert!(started.elapsed() >= Duration::from_secs(400));
}

#[tokio::test(start_paused = true)]
async fn a_cancel_frees_the_slot_within_the_grace_even_when_ignored() {
    let instance = walker().await;
    let sink = MemorySink::new();
    let run = instance
        .start_sync(
            SyncRequest::new("stubborn").run_id("r-1"),
            Arc::new(sink.clone()),
        )
        .unwrap();
    tokio::time::sleep(Duration::from_millis(10)).await;
    let again = instance
        .start_sync(SyncRequest::new("stubborn"), Arc::new(sink.clone()))
        .unwrap_err();
    assert_eq!(again.code(), ErrorCode::FailedPrecondition);
    assert!(
        again.message().contains("already running as run r-1"),
        "{again}"
    );
    assert_eq!(again.details().unwrap()["running_run_id"], "r-1");
    assert_eq!(instance.running_syncs().len(), 1);

    let cancelled_at = Instant::now();
    assert!(instance.cancel_sync("r-1"));
    let outcome = run.outcome().await;
    assert_eq!(outcome.status, SyncStatus::Cancelled);
    assert!(cancelled_at.elapsed() <= GRACE + Duration::from_millis(5));
    assert!(instance.running_syncs().is_empty(), "the slot is free");
    // The buffered event was dropped, not delivered: no checkpoint covers it.
    assert_eq!(sink.batches(), 0);
    let next = instance
        .start_sync(SyncRequest::new("stubborn"), Arc::new(sink.clone()))
        .unwrap();
    next.cancel();
    assert_eq!(next.outcome().await.status, SyncStatus::Cancelled);
    assert!(!instance.cancel_sync("r-unknown"));
}

#[tokio::test]
async fn a_panicking_sync_fails_its_run_and_frees_its_slot() {
    let instance = walker().await;
    let sink = MemorySink::new();
    let outcome = run(&instance, SyncRequest::new("panics"), &sink).await;
    assert_eq!(outcome.status, SyncStatus::Failed);
    let error = outcome.error.unwrap();
    assert_eq!(error.code(), ErrorCode::Panicked);
    assert_eq!(error.message(), "the walk fell over");
    assert!(instance.running_syncs().is_empty());
}

#[tokio::test]
async fn failed_items_within_the_budget_complete_and_beyond_it_fail() {
    let instance = walker().await;
    let within = run(
        &instance,
        SyncRequest::new("flaky").source("2"),
        &MemorySink::new(),
    )
    .await;
    assert_eq!(within.status, SyncStatus::Completed, "{within:?}");
    assert_eq!(within.counters.failed, 2);
    assert_eq!(
        within.failures,
        [
            ItemFailure {
                id: "item-0".into(),
                error: "unreadable".into()
            },
            ItemFailure {
                id: "item-1".into(),
                error: "unreadable".into()
            },
        ]
    );
    let beyond = run(
        &instance,
        SyncRequest::new("flaky").source("3"),
        &MemorySink::new(),
    )
    .await;
    assert_eq!(beyond.status, SyncStatus::Failed);
    let error = beyond.error.unwrap();
    assert_eq!(error.code(), ErrorCode::FailedPrecondition);
    assert!(
        error.message().starts_with(
            "3 of 10 items failed (30.0%), over the error budget of 20.0% of sync `flaky`: item-0: unreadable"
        ),
        "{error}"
    );
}

#[tokio::test]
async fn a_complete_full_run_sweeps_what_it_did_not_see() {
    let instance = walker().await;
    let sink = MemorySink::new();
    run(&instance, SyncRequest::new("docs").source("a,b,c,x"), &sink).await;
    assert_eq!(ids(&sink), ["a", "b", "c", "x"]);
    // `b` is gone; `x` is unchanged (marked, not emitted).
    let outcome = run(
        &instance,
        SyncRequest::new("docs").source("a,c").mode(SyncMode::Full),
        &sink,
    )
    .await;
    assert_eq!(outcome.status, SyncStatus::Completed);
    assert_eq!(outcome.swept, 1);
    assert_eq!(ids(&sink), ["a", "c", "x"]);
    assert_eq!(
        sink.events().last(),
        Some(&SyncEvent::DocumentDeleted { id: "b".into() })
    );
    // Neither an incremental nor a resumed full run sweeps.
    let incremental = run(
        &instance,
        SyncRequest::new("docs")
            .source("a")
            .mode(SyncMode::Incremental),
        &sink,
    )
    .await;
    assert_eq!(incremental.swept, 0);
    let resumed = run(
        &instance,
        SyncRequest::new("docs")
            .source("a")
            .mode(SyncMode::Full)
            .resume()
            .checkpoint(StoredCheckpoint::new(1, json!({"done": 0}))),
        &sink,
    )
    .await;
    assert_eq!(resumed.swept, 0);
    assert_eq!(ids(&sink), ["a", "c", "x"]);
}

#[tokio::test]
async fn a_failed_run_never_sweeps() {
    let instance = walker().await;
    let sink = MemorySink::new();
    run(&instance, SyncRequest::new("docs").source("a,b"), &sink).await;
    sink.fail_for_good("gone");
    let failed = run(
        &instance,
        SyncRequest::new("docs").source("a").mode(SyncMode::Full),
        &sink,
    )
    .await;
    assert_eq!(failed.status, SyncStatus::Failed);
    assert_eq!(failed.swept, 0);
    assert_eq!(ids(&sink), ["a", "b"]);
}

#[tokio::test]
async fn a_checkpoint_of_an_old_shape_is_refused_or_migrated() {
    let instance = walker().await;
    let sink = MemorySink::new();
    let bad = StoredCheckpoint::new(1, json!({"done": "three"}));
    let err = instance
        .start_sync(
            SyncRequest::new("docs").checkpoint(bad),
            Arc::new(sink.clone()),
        )
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::FailedPrecondition);
    assert!(
        err.message()
            .starts_with("the stored checkpoint of sync `docs` no longer decodes at `$.done`"),
        "{err}"
    );
    assert_eq!(err.details().unwrap()["path"], "$.done");
    assert!(instance.running_syncs().is_empty(), "the run did not start");

    let old = StoredCheckpoint::new(1, json!({"pages": 2}));
    let outcome = run(
        &instance,
        SyncRequest::new("versioned").checkpoint(old),
        &sink,
    )
    .await;
    assert_eq!(outcome.status, SyncStatus::Completed, "{outcome:?}");
    assert_eq!(
        sink.checkpoint("versioned", ""),
        Some(StoredCheckpoint::new(2, json!({"done": 21})))
    );
}

#[tokio::test]
async fn unknown_syncs_and_modes_are_refused_naming_what_exists() {
    let instance = walker().await;
    let sink: Arc<dyn SyncSink> = Arc::new(MemorySink::new());
    let err = instance
        .start_sync(SyncRequest::new("dcos"), Arc::clone(&sink))
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::NotFound);
    assert!(err.message().contains("did you mean `docs`?"), "{err}");
    let err = instance
        .start_sync(
            SyncRequest::new("docs").mode(SyncMode::Realtime),
            Arc::clone(&sink),
        )
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidInput);
    assert_eq!(
        err.message(),
        "sync `docs` has no realtime mode; its modes: full, incremental"
    );
    let err = instance
        .start_sync(SyncRequest::default(), sink)
        .unwrap_err();
    assert!(
        err.message().contains("has several syncs; name one"),
        "{err}"
    );
}

#[tokio::test]
async fn the_manifest_lists_syncs_with_their_checkpoint_schema() {
    let instance = walker().await;
    let manifest = instance.manifest();
    assert!(manifest.capabilities.iter().any(|c| c == "syncs"));
    let docs = manifest.syncs.iter().find(|s| s.name == "docs").unwrap();
    assert_eq!(docs.modes, [SyncMode::Full, SyncMode::Incremental]);
    assert_eq!(docs.sweep_modes, [SyncMode::Full]);
    assert_eq!(
        docs.checkpoint_schema["properties"]["done"]["type"],
        "integer"
    );
    let json = serde_json::to_value(manifest).unwrap();
    assert_eq!(json["syncs"][0]["modes"], json!(["full", "incremental"]));
}

#[tokio::test(start_paused = true)]
async fn a_run_past_its_deadline_fails_and_frees_its_slot() {
    let instance = walker().await;
    let started = Instant::now();
    let request = SyncRequest {
        deadline: Some(started + Duration::from_secs(2)),
        ..SyncRequest::new("stubborn")
    };
    let outcome = run(&instance, request, &MemorySink::new()).await;
    assert_eq!(outcome.status, SyncStatus::Failed);
    assert_eq!(outcome.error.unwrap().code(), ErrorCode::DeadlineExceeded);
    assert!(started.elapsed() <= Duration::from_secs(2) + GRACE + Duration::from_millis(5));
    assert!(instance.running_syncs().is_empty());
}

static BAD_SYNCS: [SyncDef; 1] = [SyncDef {
    name: "bad",
    description: "",
    modes: FULL,
    source_type: None,
    checkpoint_version: 1,
    migrates: false,
    error_budget: 0.0,
    sweep: &[SyncMode::Incremental],
    checkpoint_schema: cursor_schema,
    extra_schema: None,
    attributes_schema: None,
    start: docs,
    location: "bad.rs:1",
}];

static BAD_SET: ActionSet = ActionSet {
    connector: "walker",
    actions: &[],
    operators: &[],
    producers: &[],
    syncs: &BAD_SYNCS,
};

#[test]
fn a_hand_written_sync_that_contradicts_itself_is_refused_at_start_up() {
    let err = Registry::builder()
        .connector(&WALKER)
        .action_set(&BAD_SET)
        .build()
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "sync `bad` of connector `walker` (at bad.rs:1): it sweeps in the `incremental` mode, which it does not have or which never walks everything"
    );
}

fn string_schema() -> schemars::Schema {
    crate::schema::output_schema_for::<String>()
}

static FLAT_SYNCS: [SyncDef; 1] = [SyncDef {
    name: "flat",
    description: "",
    modes: FULL,
    source_type: None,
    checkpoint_version: 1,
    migrates: false,
    error_budget: 0.0,
    sweep: &[],
    checkpoint_schema: cursor_schema,
    extra_schema: None,
    attributes_schema: Some(string_schema),
    start: docs,
    location: "flat.rs:1",
}];

static FLAT_SET: ActionSet = ActionSet {
    connector: "walker",
    actions: &[],
    operators: &[],
    producers: &[],
    syncs: &FLAT_SYNCS,
};

#[test]
fn document_fields_that_are_not_an_object_are_refused_at_start_up() {
    let err = Registry::builder()
        .connector(&WALKER)
        .action_set(&FLAT_SET)
        .build()
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "sync `flat` of connector `walker` (at flat.rs:1): its `attributes` type is not a struct or a map: a document's attributes are named fields, so the type must serialize as a JSON object"
    );
}

/// Its first delivery never ends; later ones are recorded.
#[derive(Default)]
struct StallsOnce {
    stalled: std::sync::atomic::AtomicBool,
    order: OrderSink,
}

impl SyncSink for StallsOnce {
    fn deliver<'a>(&'a self, run: &'a SyncRunInfo, batch: &'a Batch) -> SinkFuture<'a, ()> {
        if !self.stalled.swap(true, std::sync::atomic::Ordering::SeqCst) {
            return Box::pin(std::future::pending());
        }
        self.order.deliver(run, batch)
    }

    fn save_checkpoint<'a>(
        &'a self,
        run: &'a SyncRunInfo,
        checkpoint: &'a StoredCheckpoint,
    ) -> SinkFuture<'a, ()> {
        self.order.save_checkpoint(run, checkpoint)
    }
}

#[tokio::test(start_paused = true)]
async fn a_flush_given_up_on_keeps_its_events_for_the_next_one() {
    let instance = walker().await;
    let sink = Arc::new(StallsOnce::default());
    let outcome = instance
        .start_sync(
            SyncRequest::new("impatient"),
            Arc::clone(&sink) as Arc<dyn SyncSink>,
        )
        .unwrap()
        .outcome()
        .await;
    assert_eq!(outcome.status, SyncStatus::Completed, "{outcome:?}");
    assert_eq!(
        *sink.order.log.lock().unwrap(),
        ["event a", "event b", "checkpoint 2"],
        "the abandoned batch went out before the checkpoint"
    );
}

#[tokio::test]
async fn an_item_that_failed_is_not_swept_as_deleted() {
    let instance = walker().await;
    let sink = MemorySink::new();
    let all = run(&instance, SyncRequest::new("flaky").source("0"), &sink).await;
    assert_eq!(all.counters.emitted, 10);
    let two_failed = run(&instance, SyncRequest::new("flaky").source("2"), &sink).await;
    assert_eq!(two_failed.status, SyncStatus::Completed, "{two_failed:?}");
    assert_eq!(
        two_failed.swept, 0,
        "item-0 and item-1 could not be read, not gone"
    );
    assert_eq!(sink.documents().len(), 10);
}

#[tokio::test]
async fn a_run_completes_only_once_its_sink_settled_every_batch() {
    let instance = walker().await;
    let sink = Arc::new(OrderSink::default());
    let outcome = instance
        .start_sync(
            SyncRequest::new("docs").source("a,b"),
            Arc::clone(&sink) as Arc<dyn SyncSink>,
        )
        .unwrap()
        .outcome()
        .await;
    assert_eq!(outcome.status, SyncStatus::Completed, "{outcome:?}");
    let log = sink.log.lock().unwrap().clone();
    assert_eq!(log.last().map(String::as_str), Some("settle"), "{log:?}");
    assert_eq!(log.iter().filter(|l| *l == "settle").count(), 1, "{log:?}");

    let refusing = Arc::new(OrderSink {
        refuse_settle: true,
        ..OrderSink::default()
    });
    let outcome = instance
        .start_sync(
            SyncRequest::new("docs").source("a,b"),
            Arc::clone(&refusing) as Arc<dyn SyncSink>,
        )
        .unwrap()
        .outcome()
        .await;
    assert_eq!(outcome.status, SyncStatus::Failed, "{outcome:?}");
    assert!(
        outcome
            .error
            .unwrap()
            .message()
            .contains("the last batch was refused")
    );
}
