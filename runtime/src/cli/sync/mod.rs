//! `<bin> sync [NAME] [--mode M] [--source ID] [--state FILE] [--out FILE|-]`:
//! one run of a sync, in-process. Documents go out as JSON lines (stdout
//! or `--out`); with `--state`, the last durable checkpoint and the last
//! run are kept in that file, so the next run resumes an interrupted one,
//! or goes on incrementally after a completed one. A progress line goes to
//! stderr when it is a terminal; Ctrl-C cancels the run, keeping the last
//! durable checkpoint. Exit 0 when the run completed, 1 when it failed or
//! was cancelled, 2 on a usage or config error.

mod sink;
pub(crate) mod state;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use self::sink::{CliSink, Output};
use self::state::{LastRun, State};
use super::{EXIT_ACTION_ERROR, EXIT_USAGE, fail};
use crate::config::ConfigSource;
use crate::error::ErrorCode;
use crate::registry::ConnectorType;
use crate::sync::{SyncMode, SyncOutcome, SyncRequest, SyncRun, SyncStatus, Timestamp};

/// The arguments of `sync`.
#[derive(Debug, clap::Args)]
pub(crate) struct SyncArgs {
    /// The sync to run; may be left out when the connector has one.
    name: Option<String>,
    /// full, incremental or realtime. Default: resume an interrupted run in
    /// its mode; else incremental after a completed run when the sync has
    /// it; else its first mode.
    #[arg(long, value_parser = parse_mode)]
    mode: Option<SyncMode>,
    /// The source to sync (passed to the sync as `ctx.source_id()`).
    #[arg(long, default_value = "", value_name = "ID")]
    source: String,
    /// Keep the checkpoint and the last run in this file, and resume from it.
    #[arg(long, value_name = "FILE")]
    state: Option<PathBuf>,
    /// Write the documents as JSON lines to this file (`-`: stdout, the default).
    #[arg(long, value_name = "FILE")]
    out: Option<String>,
    /// Give up after this long, e.g. `10m`.
    #[arg(long, value_parser = crate::duration::parse)]
    timeout: Option<Duration>,
}

fn parse_mode(text: &str) -> Result<SyncMode, String> {
    SyncMode::parse(text).ok_or_else(|| {
        format!("`{text}` is not a sync mode; expected full, incremental or realtime")
    })
}

/// Runs `sync`.
pub(crate) async fn sync(ty: Arc<ConnectorType>, source: ConfigSource, args: SyncArgs) -> ExitCode {
    let def = match crate::sync::start::find_def(&ty, args.name.as_deref()) {
        Ok(def) => def,
        Err(e) => return fail(EXIT_USAGE, format_args!("{}", e.message())),
    };
    let state = match &args.state {
        None => None,
        Some(path) => match State::open(path, ty.name()) {
            Ok(state) => Some(state),
            Err(message) => return fail(EXIT_USAGE, format_args!("{message}")),
        },
    };
    let entry = state
        .as_ref()
        .and_then(|s| s.entry(def.name, &args.source))
        .cloned();
    // A run that did not complete (killed: still `running`) is resumed.
    let interrupted = entry
        .as_ref()
        .and_then(|e| e.last_run.as_ref())
        .filter(|r| r.status != SyncStatus::Completed.as_str())
        .map(|r| r.mode);
    let mut request = SyncRequest {
        sync: Some(def.name.to_owned()),
        source_id: args.source.clone(),
        ..SyncRequest::default()
    }
    .after(
        args.mode,
        interrupted,
        entry.as_ref().and_then(|e| e.checkpoint.clone()),
        entry.as_ref().and_then(|e| e.completed.clone()),
    );
    let is_resume = request.is_resume;
    // Opened once the state is locked (a second run must not truncate the
    // first one's output); a resume appends to what the interrupted run
    // delivered.
    let output = match Output::open(args.out.as_deref(), is_resume) {
        Ok(o) => o,
        Err(message) => return fail(EXIT_USAGE, format_args!("{message}")),
    };
    let journal = match &state {
        Some(state) if !def.sweep.is_empty() => match state.journal(def.name, &args.source) {
            Ok(journal) => Some(journal),
            Err(e) => {
                return fail(
                    EXIT_USAGE,
                    format_args!("cannot read the id journal of the state file: {e}"),
                );
            }
        },
        _ => None,
    };

    let instance = match super::start_instance(&ty, &source).await {
        Ok(i) => i,
        Err(code) => return code,
    };
    let sink = Arc::new(CliSink::new(output, state, journal));
    request.deadline = args.timeout.map(|t| tokio::time::Instant::now() + t);
    // The state stays locked from the start until the run is recorded as
    // running, so no checkpoint of the run can come before that record.
    let mut state = sink.state();
    let run =
        match instance.start_sync(request, Arc::clone(&sink) as Arc<dyn crate::sync::SyncSink>) {
            Ok(run) => run,
            Err(e) => {
                let code = match e.code() {
                    ErrorCode::NotFound | ErrorCode::InvalidInput => EXIT_USAGE,
                    _ => EXIT_ACTION_ERROR,
                };
                return fail(code, format_args!("{}", e.message()));
            }
        };
    let started_at = Timestamp::now();
    let info = run.info().clone();
    let recorded = state.as_mut().map(|state| {
        let last = LastRun {
            run_id: info.run_id.clone(),
            mode: info.mode,
            status: "running".to_owned(),
            started_at,
            finished_at: None,
        };
        state.save_run(&info.sync, &info.source_id, last, false)
    });
    drop(state);
    if let Some(Err(e)) = recorded {
        run.cancel();
        let _ = run.outcome().await;
        return fail(EXIT_USAGE, format_args!("cannot write the state file: {e}"));
    }
    if info.is_resume {
        eprintln!(
            "resuming the interrupted {} run of sync `{}` from its last checkpoint",
            info.mode, info.sync
        );
    }
    let outcome = watch(run).await;

    if let Some(mut state) = sink.state() {
        let last = LastRun {
            run_id: info.run_id.clone(),
            mode: info.mode,
            status: outcome.status.as_str().to_owned(),
            started_at,
            finished_at: Some(Timestamp::now()),
        };
        let completed = outcome.status == SyncStatus::Completed;
        if let Err(e) = state.save_run(&info.sync, &info.source_id, last, completed) {
            eprintln!("warning: cannot record the end of the run in the state file: {e}");
        }
    }
    if outcome.status == SyncStatus::Completed
        && let Err(e) = sink.compact_journal()
    {
        eprintln!("warning: cannot compact the id journal: {e}");
    }
    report(&outcome)
}

/// Waits for the run, cancelling it on Ctrl-C, with a progress line on
/// stderr when it is a terminal.
async fn watch(run: SyncRun) -> SyncOutcome {
    let cancel = run.cancellation();
    let on_ctrl_c = tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("\ncancelling; the last durable checkpoint is kept");
            cancel.cancel();
        }
    });
    let progress = std::io::stderr().is_terminal().then(|| {
        let name = run.info().sync.clone();
        let progress = run.progress();
        tokio::spawn(async move {
            let started = tokio::time::Instant::now();
            let mut tick = tokio::time::interval(Duration::from_millis(250));
            loop {
                tick.tick().await;
                let c = progress.counters();
                let secs = started.elapsed().as_secs_f64();
                eprint!(
                    "\r\x1b[K{name}: {} emitted, {} delivered, {} failed, {:.0}/s, {secs:.1}s",
                    c.emitted,
                    c.delivered,
                    c.failed,
                    c.delivered as f64 / secs.max(0.001)
                );
            }
        })
    });
    let outcome = run.outcome().await;
    on_ctrl_c.abort();
    if let Some(progress) = progress {
        progress.abort();
        eprint!("\r\x1b[K");
    }
    outcome
}

/// The summary on stderr, and the exit code.
fn report(outcome: &SyncOutcome) -> ExitCode {
    let c = &outcome.counters;
    let mut line = format!(
        "sync `{}` {} after {:.1}s: {} emitted",
        outcome.run.sync,
        outcome.status.as_str(),
        outcome.elapsed_ms as f64 / 1000.0,
        c.emitted
    );
    if c.deleted > 0 {
        line.push_str(&format!(
            " ({} deleted, {} by the sweep)",
            c.deleted, outcome.swept
        ));
    }
    line.push_str(&format!(
        ", {} delivered, {} scanned, {} failed",
        c.delivered, c.scanned, c.failed
    ));
    eprintln!("{line}");
    for failure in &outcome.failures {
        eprintln!("failed item {}: {}", failure.id, failure.error);
    }
    match &outcome.error {
        None => ExitCode::SUCCESS,
        Some(e) => {
            eprintln!("error[{}]: {}", e.code(), e.message());
            ExitCode::from(EXIT_ACTION_ERROR)
        }
    }
}
