//! `spoke-bench`: Spoke's paths against baselines run in the same process
//! and the same run, in release mode. Prints a table of the figures with
//! their ratios and targets, and writes them as JSON.
//!
//! ```text
//! cargo run --release -p spoke-benches --bin spoke-bench -- [--quick] [--only 1,2,..] [--json FILE]
//! ```
//!
//! Paths (see BENCHMARKS.md): 1 dispatch over the Attach stream, 2 end to
//! end through the hub, 3 stdio, 4 in-process call, 5 cold start, 6 hub
//! scale, 7 compile cost and transport features, 8 sync throughput, 9 HTTP
//! `POST /action`, 10 MCP `tools/call` over stdio, 11 action calls over NATS,
//! 12 a table of rows through the hub in each payload encoding.

mod attach_dispatch;
mod baseline;
mod binaries;
mod cold_start;
mod compile_cost;
mod driver;
mod echo;
mod end_to_end;
mod http_action;
mod hub_scale;
mod in_process;
mod listen;
mod mcp_stdio;
mod nats_calls;
mod payload;
mod report;
mod stats;
mod stdio_pipes;
mod sync_throughput;
mod table_rows;
mod transport_features;
mod window;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::ExitCode;

use report::Report;

/// How much to measure.
#[derive(Debug, Clone)]
pub struct Opts {
    /// A short run (for smoke tests and quick looks): fewer calls and rounds.
    pub quick: bool,
    /// Measured rounds per case (the median is reported).
    pub rounds: usize,
}

impl Opts {
    /// Calls per round with `in_flight` calls at once: enough for a round
    /// to last a few hundred milliseconds.
    pub fn calls(&self, in_flight: usize) -> u64 {
        let base = if in_flight > 1 { 20_000 } else { 4_000 };
        if self.quick { base / 20 } else { base }
    }
}

/// `SPOKE_BENCH_SPOKE_ONLY=1`: skip the baselines' measured rounds, for
/// profiling Spoke's side alone (the ratios are then meaningless).
pub fn spoke_only() -> bool {
    std::env::var_os("SPOKE_BENCH_SPOKE_ONLY").is_some()
}

const USAGE: &str = "usage: spoke-bench [--quick] [--rounds N] [--only 1,2,...] [--json FILE]";

fn main() -> ExitCode {
    let mut opts = Opts {
        quick: false,
        rounds: 7,
    };
    let mut only: BTreeSet<u32> = (1..=12).collect();
    let mut json: Option<PathBuf> = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => {
                opts.quick = true;
                opts.rounds = 2;
            }
            "--rounds" => match args.next().and_then(|n| n.parse().ok()) {
                Some(n) if n > 0 => opts.rounds = n,
                _ => return usage("--rounds needs a positive number"),
            },
            "--only" => {
                let Some(list) = args.next() else {
                    return usage("--only needs a list of paths, e.g. 1,3");
                };
                let parsed: Result<BTreeSet<u32>, _> =
                    list.split(',').map(|p| p.trim().parse::<u32>()).collect();
                match parsed {
                    Ok(set) if !set.is_empty() && set.iter().all(|p| (1..=12).contains(p)) => {
                        only = set;
                    }
                    _ => return usage(&format!("--only {list}: paths are numbers from 1 to 12")),
                }
            }
            "--json" => match args.next() {
                Some(path) => json = Some(PathBuf::from(path)),
                None => return usage("--json needs a file"),
            },
            "-h" | "--help" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            other => return usage(&format!("unknown argument `{other}`")),
        }
    }
    if !binaries::is_release() {
        eprintln!("warning: this is not a release build; the figures mean little");
    }
    // A running hub logs one line per call: so does this one, into a sink
    // (to stderr with SPOKE_BENCH_LOG=1, for looking into a problem).
    let to_stderr = std::env::var_os("SPOKE_BENCH_LOG").is_some();
    let subscriber = tracing_subscriber::fmt().with_max_level(tracing::Level::INFO);
    if to_stderr {
        subscriber.with_writer(std::io::stderr).init();
    } else {
        subscriber.with_writer(std::io::sink).init();
    }

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let mut report = Report {
        machine: machine(),
        figures: Vec::new(),
    };
    runtime.block_on(async {
        for path in &only {
            match path {
                1 => attach_dispatch::run(&opts, &mut report).await,
                2 => end_to_end::run(&opts, &mut report).await,
                3 => stdio_pipes::run(&opts, &mut report).await,
                4 => in_process::run(&opts, &mut report).await,
                5 => cold_start::run(&opts, &mut report).await,
                6 => hub_scale::run(&opts, &mut report).await,
                7 => {
                    compile_cost::run(&opts, &mut report).await;
                    transport_features::run(&opts, &mut report).await;
                }
                8 => sync_throughput::run(&opts, &mut report).await,
                9 => http_action::run(&opts, &mut report).await,
                10 => mcp_stdio::run(&opts, &mut report).await,
                11 => nats_calls::run(&opts, &mut report).await,
                12 => table_rows::run(&opts, &mut report).await,
                _ => eprintln!("path {path}: not built yet"),
            }
        }
    });
    println!("{}", report.table());
    if let Some(path) = json {
        let text = serde_json::to_string_pretty(&report).expect("the report as JSON");
        if let Err(e) = std::fs::write(&path, text + "\n") {
            eprintln!("error: cannot write {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
        eprintln!("figures written to {}", path.display());
    }
    ExitCode::SUCCESS
}

fn usage(problem: &str) -> ExitCode {
    eprintln!("error: {problem}\n{USAGE}");
    ExitCode::from(2)
}

/// Where the figures come from: kernel, CPUs, profile.
fn machine() -> String {
    let uname = std::process::Command::new("uname")
        .arg("-srm")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let cpus = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    let profile = if binaries::is_release() {
        "release"
    } else {
        "debug"
    };
    format!("{uname}, {cpus} CPUs, {profile} build")
}
