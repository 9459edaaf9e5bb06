//! Path 9: `POST /action` over HTTP. The echo example serving Omni's
//! connector contract (`echo http --listen 127.0.0.1:0`, a child process),
//! against a plain axum server with the one route, decoding the same body
//! into a struct with serde_json (`raw-http-action`, a child process too).
//! The client is the same for both: reqwest, 64 tasks each sending requests
//! back to back over keep-alive connections.

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::CONTENT_TYPE;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::time::Instant;

use crate::report::{Report, Runs, Target};
use crate::stats::{Run, cpu_us};
use crate::{Opts, binaries};

const PATH: &str = "9 http action";

/// The request every call sends.
const BODY: &str = r#"{"action":"echo","params":{"text":"hello"}}"#;

/// Concurrent callers, each one request at a time.
const WORKERS: usize = 64;

/// A side's round stops here whatever happens (the calls made so far count).
const ROUND_LIMIT: Duration = Duration::from_secs(30);

/// A server under test: a child process killed when dropped, and its
/// `/action` URL.
struct Server {
    _child: Child,
    pid: u32,
    name: &'static str,
    url: Arc<str>,
    /// The first answer's body, checked; every later answer must equal it.
    answer: Bytes,
}

/// The address in a `listening on http://ADDR ...` log line: the first
/// whitespace-delimited token after `listening on `.
fn listening_address(line: &str) -> Option<&str> {
    let (_, rest) = line.split_once("listening on ")?;
    rest.split_whitespace().next()
}

impl Server {
    /// Starts `program args` and waits (10 s at most) for the line that
    /// logs its address on stderr; the rest of stderr is forwarded.
    async fn start(name: &'static str, program: &Path, args: &[&str]) -> Server {
        let mut child = Command::new(program)
            .args(args)
            // The address is an info line of the target `spoke::http`.
            .env("RUST_LOG", "info")
            .env_remove("CONNECTOR_MANAGER_URL")
            .env_remove("SPOKE_HTTP_TOKEN")
            .env_remove("SPOKE_MAX_IN_FLIGHT")
            .env_remove("ECHO_PREFIX")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
        let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
        let base = tokio::time::timeout(Duration::from_secs(10), async {
            while let Some(line) = lines.next_line().await.expect("the child's stderr") {
                if let Some(addr) = listening_address(&line) {
                    return addr.to_owned();
                }
                eprintln!("  [{name}] {line}");
            }
            panic!("{name} ended before it logged its address")
        })
        .await
        .unwrap_or_else(|_| panic!("{name} did not log its address within 10 s"));
        // Drained to the end, so that the child never waits on a full pipe.
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                eprintln!("  [{name}] {line}");
            }
        });
        let url: Arc<str> = format!("{base}/action").into();
        let answer = check_first(&client(), &url, name).await;
        Server {
            pid: child.id().expect("the child's pid"),
            _child: child,
            name,
            url,
            answer,
        }
    }
}

/// A measured round and the CPU time it cost the server and this process
/// (the client), in microseconds.
struct Measured {
    run: Run,
    server_cpu: f64,
    client_cpu: f64,
}

/// [`round`], with the CPU time of the server and of this process.
async fn measured(server: &Server, client: &reqwest::Client, calls: u64) -> Measured {
    let pid = server.pid.to_string();
    let (server_at, client_at) = (cpu_us(&pid), cpu_us("self"));
    let run = round(server, client, calls).await;
    Measured {
        server_cpu: cpu_us(&pid) - server_at,
        client_cpu: cpu_us("self") - client_at,
        run,
    }
}

/// The client both sides are called with.
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(WORKERS)
        .build()
        .expect("an HTTP client")
}

/// One `POST /action`: the answer's status and body.
async fn post(client: &reqwest::Client, url: &str) -> Result<(u16, Bytes), reqwest::Error> {
    let response = client
        .post(url)
        .header(CONTENT_TYPE, "application/json")
        .body(BODY)
        .send()
        .await?;
    let status = response.status().as_u16();
    Ok((status, response.bytes().await?))
}

/// The first request: 200 and `{"status":"success","result":"hello"}`.
async fn check_first(client: &reqwest::Client, url: &str, name: &str) -> Bytes {
    let (status, body) = post(client, url)
        .await
        .unwrap_or_else(|e| panic!("{name}: the first POST /action failed: {e}"));
    let text = String::from_utf8_lossy(&body);
    assert_eq!(status, 200, "{name}: the first POST /action: {text}");
    let value: serde_json::Value = serde_json::from_slice(&body)
        .unwrap_or_else(|e| panic!("{name}: the first answer is not JSON ({e}): {text}"));
    assert_eq!(
        value,
        serde_json::json!({"status": "success", "result": "hello"}),
        "{name}: the first answer"
    );
    body
}

/// `calls` requests from [`WORKERS`] tasks, each sending its next as soon
/// as its last is answered, over `client`'s keep-alive connections; stopped
/// after [`ROUND_LIMIT`] (the run then counts the calls answered).
async fn round(server: &Server, client: &reqwest::Client, calls: u64) -> Run {
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + ROUND_LIMIT;
    let tasks: Vec<_> = (0..WORKERS)
        .map(|_| {
            let (next, client) = (Arc::clone(&next), client.clone());
            let (url, answer) = (Arc::clone(&server.url), server.answer.clone());
            tokio::spawn(async move {
                let mut latencies: Vec<Duration> = Vec::new();
                let limit = tokio::time::sleep_until(deadline);
                tokio::pin!(limit);
                loop {
                    if next.fetch_add(1, Ordering::Relaxed) >= calls {
                        return latencies;
                    }
                    let at = Instant::now();
                    tokio::select! {
                        biased;
                        () = &mut limit => return latencies,
                        result = post(&client, &url) => match result {
                            Ok((200, body)) if body == answer => latencies.push(at.elapsed()),
                            Ok((status, body)) => panic!(
                                "POST {url}: {status} {}",
                                String::from_utf8_lossy(&body)
                            ),
                            Err(e) => panic!("POST {url}: {e}"),
                        },
                    }
                }
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(calls as usize);
    for task in tasks {
        latencies.extend(task.await.expect("a caller panicked"));
    }
    let elapsed = started.elapsed();
    Run::of_round(server.name, calls, ROUND_LIMIT, elapsed, latencies)
}

pub async fn run(opts: &Opts, report: &mut Report) {
    eprintln!("{PATH}");
    let echo = binaries::example("echo");
    let raw = binaries::bench_bin("raw-http-action");
    let spoke = Server::start("echo http", &echo, &["http", "--listen", "127.0.0.1:0"]).await;
    let baseline = Server::start("raw-http-action", &raw, &[]).await;
    let (spoke_client, raw_client) = (client(), client());
    let calls = opts.calls(WORKERS);
    let warm_up = if opts.quick { 200 } else { 1_000 };
    round(&spoke, &spoke_client, warm_up).await;
    round(&baseline, &raw_client, warm_up).await;
    let (mut spoke_rounds, mut raw_rounds): (Vec<Measured>, Vec<Measured>) =
        (Vec::new(), Vec::new());
    for i in 0..opts.rounds {
        // Which goes first alternates, so neither always follows the other.
        if i % 2 == 1 {
            spoke_rounds.push(measured(&spoke, &spoke_client, calls).await);
        }
        if !crate::spoke_only() {
            raw_rounds.push(measured(&baseline, &raw_client, calls).await);
        }
        if i % 2 == 0 {
            spoke_rounds.push(measured(&spoke, &spoke_client, calls).await);
        }
    }
    // CPU per request over all rounds: (server, client) in microseconds.
    let per_request = |rounds: &[Measured]| {
        let answered: u64 = rounds.iter().map(|m| m.run.calls).sum();
        let server: f64 = rounds.iter().map(|m| m.server_cpu).sum();
        let client: f64 = rounds.iter().map(|m| m.client_cpu).sum();
        (server / answered as f64, client / answered as f64)
    };
    let (spoke_cpu, spoke_client_cpu) = per_request(&spoke_rounds);
    let (raw_cpu, raw_client_cpu) = per_request(&raw_rounds);
    let spoke_runs: Vec<Run> = spoke_rounds.into_iter().map(|m| m.run).collect();
    let raw_runs: Vec<Run> = raw_rounds.into_iter().map(|m| m.run).collect();
    let case = format!("echo `hello`, {WORKERS} in flight");
    report.add_runs(
        PATH,
        &case,
        Runs {
            throughput: Some(Target::RatioAtLeast { ratio: 0.8 }),
            p99: Some(Target::RatioAtMost { ratio: 1.5 }),
            note: format!(
                "`echo http` (a child process), POST /action {BODY}, {calls} requests per round \
                 from {WORKERS} reqwest tasks over keep-alive, median of {} rounds; baseline: \
                 `raw-http-action`, a child serving the one route with plain axum and serde_json",
                opts.rounds
            ),
            ..Runs::new(&spoke_runs, &raw_runs, "req/s")
        },
    );
    report
        .add(PATH, &case, "server cpu per request", "us", spoke_cpu)
        .baseline(raw_cpu)
        .note(format!(
            "user + system CPU time of the server process (/proc/<pid>/stat, clock-tick \
             resolution) over all measured rounds, divided by the requests answered; the client \
             (this process) used {spoke_client_cpu:.1} us per request against Spoke and \
             {raw_client_cpu:.1} us against the baseline"
        ));
    eprintln!(
        "  client (this process) cpu per request: {spoke_client_cpu:.1} us against echo http, \
         {raw_client_cpu:.1} us against raw-http-action"
    );
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_address_is_the_token_after_listening_on() {
        let line = "2026-01-01T00:00:00.000000Z  INFO spoke::http: listening on \
                    http://127.0.0.1:40123 connector=\"echo\"";
        assert_eq!(
            super::listening_address(line),
            Some("http://127.0.0.1:40123")
        );
        assert_eq!(
            super::listening_address("listening on http://127.0.0.1:1"),
            Some("http://127.0.0.1:1")
        );
        assert_eq!(super::listening_address("starting"), None);
    }
}
