//! Path 6: hub scale. The real hub binary (`spoke hub`, a child process)
//! with 1,000 simulated connectors attached from this process, each a raw
//! tonic `ConnectorHub.Attach` stream on its own TCP connection: the hub's
//! memory per attached instance, and the throughput of calls routed
//! round-robin over all of them, against the same load on a second hub
//! process of the same binary with one simulated instance.

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use futures_util::StreamExt;
use spoke_proto::v1::connector_hub_client::ConnectorHubClient;
use spoke_proto::v1::hub_client::HubClient;
use spoke_proto::v1::{
    ConnectorFrame, Encoding, HubFrame, InstanceInfo, InvokeRequest, ListConnectorsRequest, Pong,
    Register, connector_frame, hub_frame, instance_result, result,
};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};

use crate::end_to_end::{client, invoke};
use crate::payload::echo_input;
use crate::report::{Report, Runs, Target};
use crate::stats::Run;
use crate::window::closed_loop;
use crate::{Opts, binaries, echo};

const PATH: &str = "6 hub scale";

/// Callers at once in the routing measurement.
const CALLERS: usize = 64;

/// The longest any single wait (a hub starting, an instance attaching) may take.
const WAIT: Duration = Duration::from_secs(20);

/// The manifest the simulated connectors register: the benchmarks' own echo
/// connector's (one read action, `echo`), exactly as the SDK builds it.
pub async fn echo_manifest_json() -> String {
    let instance = echo::instance().await;
    serde_json::to_string(instance.manifest()).expect("the echo manifest as JSON")
}

/// A simulated connector: a raw tonic Attach stream on its own connection
/// that answers each Ping with a Pong and each Invoke with a Result echoing
/// the input bytes as they came. Dropping it closes the stream.
pub struct Sim {
    task: JoinHandle<()>,
    _channel: Channel,
}

impl Drop for Sim {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Attaches a simulated connector with this instance id to the hub at
/// `url` on a connection of its own; returns once the hub has answered
/// `Registered`.
pub async fn attach(url: &str, manifest_json: &str, id: &str) -> Result<Sim, String> {
    let channel = Endpoint::from_shared(url.to_owned())
        .map_err(|e| format!("bad url {url}: {e}"))?
        .tcp_nodelay(true)
        .connect()
        .await
        .map_err(|e| format!("connect to {url}: {e}"))?;
    let mut hub = ConnectorHubClient::new(channel.clone())
        .max_decoding_message_size(spoke_proto::MAX_MESSAGE_BYTES);
    let (tx, rx) = mpsc::channel::<ConnectorFrame>(256);
    let register = Register {
        manifest_json: manifest_json.to_owned(),
        protocol_version: spoke_proto::PROTOCOL_VERSION,
        sdk_version: "spoke-bench-sim/0".into(),
        tenant: String::new(),
        instance: Some(InstanceInfo {
            id: id.to_owned(),
            display_name: id.to_owned(),
            ..Default::default()
        }),
        session_token: String::new(),
        credentials: None,
        max_in_flight: 64,
    };
    tx.send(frame(connector_frame::Frame::Register(register)))
        .await
        .map_err(|_| "the outgoing stream closed".to_owned())?;
    let mut inbound = hub
        .attach(ReceiverStream::new(rx))
        .await
        .map_err(|s| format!("attach {id}: {s}"))?
        .into_inner();
    match inbound.message().await {
        Ok(Some(HubFrame {
            frame: Some(hub_frame::Frame::Registered(_)),
        })) => {}
        other => return Err(format!("{id}: expected Registered, got {other:?}")),
    }
    let task = tokio::spawn(async move {
        while let Ok(Some(message)) = inbound.message().await {
            let reply = match message.frame {
                Some(hub_frame::Frame::Ping(ping)) => {
                    connector_frame::Frame::Pong(Pong { nonce: ping.nonce })
                }
                Some(hub_frame::Frame::Invoke(invoke)) => {
                    connector_frame::Frame::Result(spoke_proto::v1::Result {
                        request_id: invoke.request_id,
                        outcome: Some(result::Outcome::Payload(invoke.payload)),
                        encoding: Encoding::Json.into(),
                        duration_us: 0,
                        chunked: false,
                    })
                }
                Some(hub_frame::Frame::Goodbye(_)) => return,
                _ => continue,
            };
            if tx.send(frame(reply)).await.is_err() {
                return;
            }
        }
    });
    Ok(Sim {
        task,
        _channel: channel,
    })
}

fn frame(frame: connector_frame::Frame) -> ConnectorFrame {
    ConnectorFrame { frame: Some(frame) }
}

/// How many instances of `connector` the hub lists as ready, and whether
/// `id` is one of them.
pub async fn ready(
    hub: &mut HubClient<Channel>,
    connector: &str,
    id: Option<&str>,
) -> (usize, bool) {
    let Ok(response) = hub.list_connectors(ListConnectorsRequest {}).await else {
        return (0, false);
    };
    let mut count = 0;
    let mut found = false;
    for summary in response.into_inner().connectors {
        if summary.name != connector {
            continue;
        }
        for instance in summary.instances {
            if instance.state == "ready" {
                count += 1;
                found |= id.is_some_and(|id| instance.info.as_ref().is_some_and(|i| i.id == id));
            }
        }
    }
    (count, found)
}

/// A `spoke hub` child process, killed and reaped when dropped.
struct HubProcess {
    child: Child,
    url: String,
    addr: std::net::SocketAddr,
}

impl HubProcess {
    fn start(log_name: &str) -> HubProcess {
        let program = binaries::hub();
        // The hub logs one line per call as a running hub does, into a file
        // beside the build (for a look when something fails).
        let log_path = binaries::profile_dir().join(format!("{log_name}.log"));
        let log = std::fs::File::create(&log_path)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", log_path.display()));
        let mut child = Command::new(&program)
            .args([
                "hub",
                "--listen",
                "127.0.0.1:0",
                "--heartbeat-interval",
                "30s",
                "--insecure",
                "--no-auth",
            ])
            .env("RUST_LOG", "info")
            .env_remove("SPOKE_HUB_URL")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
        let stdout = child.stdout.take().expect("stdout");
        let (line_tx, line_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = line_tx.send(line);
            }
            // Keep draining so the hub never blocks on a full pipe.
            for _ in lines {}
        });
        let mut hub = HubProcess {
            child,
            url: String::new(),
            addr: "127.0.0.1:0".parse().unwrap(),
        };
        let line = line_rx.recv_timeout(WAIT).unwrap_or_else(|_| {
            panic!(
                "the hub printed no listening line within {WAIT:?}; see {}",
                log_path.display()
            )
        });
        let url = line
            .strip_prefix("spoke hub listening on ")
            .unwrap_or_else(|| panic!("unexpected first line from the hub: {line:?}"));
        hub.url = url.to_owned();
        hub.addr = url
            .strip_prefix("http://")
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no address in {line:?}"));
        hub
    }

    /// The hub's resident set size (VmRSS), in KiB.
    fn rss_kib(&self) -> f64 {
        rss_kib(self.child.id())
    }
}

impl HubProcess {
    /// CPU time the hub has used (user + system), in microseconds.
    fn cpu_us(&self) -> f64 {
        crate::stats::cpu_us(&self.child.id().to_string())
    }
}

impl Drop for HubProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A process's VmRSS in KiB, from /proc/<pid>/status.
fn rss_kib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("cannot read /proc/{pid}/status: {e}"));
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no VmRSS in /proc/{pid}/status"))
}

/// Raises the soft limit on open files to at least `need` (up to the hard
/// limit); children inherit it. Returns the soft limit in force.
fn raise_fd_limit(need: u64) -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit through a valid pointer.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        eprintln!(
            "  warning: getrlimit(RLIMIT_NOFILE) failed: {}",
            std::io::Error::last_os_error()
        );
        return 0;
    }
    if limit.rlim_cur >= need {
        return limit.rlim_cur;
    }
    let wanted = need.min(limit.rlim_max);
    let raised = libc::rlimit {
        rlim_cur: wanted,
        rlim_max: limit.rlim_max,
    };
    // SAFETY: setrlimit reads one rlimit through a valid pointer.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
        eprintln!(
            "  warning: cannot raise the open-files limit from {} to {wanted}: {}",
            limit.rlim_cur,
            std::io::Error::last_os_error()
        );
        return limit.rlim_cur;
    }
    eprintln!(
        "  raised the open-files soft limit from {} to {wanted}",
        limit.rlim_cur
    );
    if wanted < need {
        eprintln!(
            "  warning: the hard limit {} is below the {need} needed",
            limit.rlim_max
        );
    }
    wanted
}

/// Attaches `ids` to the hub, 64 at a time, and waits until the hub lists
/// `expect_ready` ready echo instances.
async fn attach_all(
    hub: &HubProcess,
    manifest: &str,
    ids: Vec<String>,
    expect_ready: usize,
) -> Vec<Sim> {
    let sims: Vec<Sim> = futures_util::stream::iter(ids)
        .map(|id| {
            let (url, manifest) = (hub.url.clone(), manifest.to_owned());
            async move {
                tokio::time::timeout(WAIT, attach(&url, &manifest, &id))
                    .await
                    .unwrap_or_else(|_| Err(format!("{id}: no Registered within {WAIT:?}")))
                    .unwrap_or_else(|e| panic!("a simulated connector: {e}"))
            }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    let mut list = client(hub.addr).await;
    let started = Instant::now();
    loop {
        let (count, _) = ready(&mut list, "echo", None).await;
        if count == expect_ready {
            return sims;
        }
        assert!(
            started.elapsed() < WAIT,
            "the hub lists {count} ready instances, not {expect_ready}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Calls `echo` `calls` times one after the other; how many distinct
/// instances answered.
async fn distinct_instances(hub: &mut HubClient<Channel>, calls: usize) -> usize {
    let mut seen = HashSet::new();
    for _ in 0..calls {
        let response = hub
            .invoke(InvokeRequest {
                connector: "echo".into(),
                action: "echo".into(),
                payload: echo_input(64).into(),
                ..Default::default()
            })
            .await
            .expect("a call through the hub")
            .into_inner();
        let result = response.results.into_iter().next().expect("a result");
        assert!(
            matches!(result.outcome, Some(instance_result::Outcome::Payload(_))),
            "{:?}",
            result.outcome
        );
        seen.insert(result.instance_id);
    }
    seen.len()
}

pub async fn run(opts: &Opts, report: &mut Report) {
    eprintln!("{PATH}");
    let count: usize = if opts.quick { 100 } else { 1000 };
    let calls = opts.calls(CALLERS);
    let rounds = opts.rounds;
    // Per process: one socket per instance, plus the runtime's and the
    // callers' descriptors.
    let fd_limit = raise_fd_limit(count as u64 + 1024);
    let manifest = echo_manifest_json().await;

    // The hub under test, with one warm-up instance first.
    let big = HubProcess::start("bench-hub-scale");
    let mut sims = attach_all(&big, &manifest, vec!["sim-warmup".to_owned()], 1).await;
    let mut big_client = client(big.addr).await;
    invoke(&mut big_client, echo_input(64))
        .await
        .expect("a call through the hub");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_before = big.rss_kib();
    let attaching = Instant::now();
    let ids: Vec<String> = (0..count).map(|i| format!("sim-{i}")).collect();
    sims.extend(attach_all(&big, &manifest, ids, count + 1).await);
    let attach_time = attaching.elapsed();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_after = big.rss_kib();

    // The baseline hub: a fresh process of the same binary, one instance.
    let small = HubProcess::start("bench-hub-scale-one");
    let solo = attach_all(&small, &manifest, vec!["solo".to_owned()], 1).await;
    let small_client = client(small.addr).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let small_rss = small.rss_kib();

    // Round-robin really spreads the calls over every instance.
    let distinct = distinct_instances(&mut big_client, count + 1).await;
    assert!(
        distinct * 10 >= (count + 1) * 9,
        "{} sequential calls reached only {distinct} distinct instances",
        count + 1
    );

    let call_through = |hub: HubClient<Channel>| {
        let payload = echo_input(64);
        move |_id: u64| {
            let (mut hub, payload) = (hub.clone(), payload.clone());
            async move {
                invoke(&mut hub, payload)
                    .await
                    .expect("a call through the hub")
            }
        }
    };
    let big_call = call_through(big_client.clone());
    let small_call = call_through(small_client.clone());
    let routing = Instant::now();
    closed_loop(calls / 4 + 1, CALLERS, big_call.clone()).await;
    closed_loop(calls / 4 + 1, CALLERS, small_call.clone()).await;
    let (mut big_runs, mut small_runs): (Vec<Run>, Vec<Run>) = (Vec::new(), Vec::new());
    // The hubs' CPU time per call, over all rounds.
    let (mut big_cpu, mut small_cpu) = (0.0, 0.0);
    for _ in 0..rounds {
        let at = small.cpu_us();
        small_runs.push(closed_loop(calls, CALLERS, small_call.clone()).await);
        small_cpu += small.cpu_us() - at;
        let at = big.cpu_us();
        big_runs.push(closed_loop(calls, CALLERS, big_call.clone()).await);
        big_cpu += big.cpu_us() - at;
    }
    let all_calls = (calls * rounds as u64) as f64;
    let routing_time = routing.elapsed();
    let rss_loaded = big.rss_kib();

    let case = format!("{count} instances");
    let per_instance = (rss_after - rss_before) / count as f64;
    report
        .add(PATH, &case, "hub rss per instance", "KiB", per_instance)
        .target(Target::AtMost { value: 64.0 })
        .note(format!(
            "(VmRSS after {count} more instances attached and 1 s settled - VmRSS with one warm-up \
             instance) / {count}; {:.1} -> {:.1} MiB; each instance a raw tonic Attach stream on its \
             own TCP connection from the harness; attaching took {:.2} s (64 at a time); \
             open-files limit {fd_limit}",
            rss_before / 1024.0,
            rss_after / 1024.0,
            attach_time.as_secs_f64()
        ));
    report
        .add(PATH, &case, "hub rss", "MiB", rss_after / 1024.0)
        .baseline(small_rss / 1024.0)
        .note(format!(
            "VmRSS of `spoke hub` with {} instances attached and idle; baseline: a fresh hub process \
             with 1; after the routing runs: {:.1} MiB",
            count + 1,
            rss_loaded / 1024.0
        ));
    let routed = format!("{case}, {CALLERS} in flight");
    report.add_runs(
        PATH,
        &routed,
        Runs {
            note: format!(
            "Hub.Invoke `echo` (64 B) round-robin over {} simulated instances ({distinct} distinct \
             answered {} sequential calls); baseline: a second hub process of the same binary with \
             ONE simulated instance, rounds interleaved; {calls} calls a round, median of {rounds}, \
             one client connection each; the simulated connectors and the callers share this \
             process; {:.1} s in all",
            count + 1,
            count + 1,
            routing_time.as_secs_f64()),
            ..Runs::new(&big_runs, &small_runs, "calls/s")
        },
    );
    report
        .add(PATH, &routed, "hub cpu per call", "us", big_cpu / all_calls)
        .baseline(small_cpu / all_calls)
        .note(
            "user + system CPU time of the hub process (/proc/<pid>/stat, clock-tick \
             resolution) over all measured rounds, divided by their calls",
        );

    // Close the streams first, then kill and reap both hubs.
    drop((sims, solo, big_client, small_client));
    drop((big, small));
}
