//! [`Conformance`]: the connector's own binary, through every transport
//! compiled into it, with the same calls; the same results and error codes
//! everywhere.
//!
//! Each transport is a [`Leg`]: how to run one call through it and read
//! back the answer as a [`Answer`]. A transport that lands (NATS next)
//! adds its leg to [`legs`] with the `--help` name it is listed
//! under, and every connector's conformance test covers it from then on;
//! a transport that needs a server the test provides (the hub, NATS) is a
//! leg the test asks for ([`Conformance::hub`], `Conformance::nats`).

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// One call of a conformance run.
#[derive(Debug, Clone, PartialEq)]
pub enum Case {
    /// An action with its JSON input.
    Action {
        /// The action.
        action: String,
        /// Its input.
        input: Value,
    },
    /// A search operator with its value.
    Resolve {
        /// The operator.
        operator: String,
        /// The value.
        value: String,
    },
}

impl std::fmt::Display for Case {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Case::Action { action, input } => write!(f, "call {action} {input}"),
            Case::Resolve { operator, value } => write!(f, "resolve {operator} {value:?}"),
        }
    }
}

/// What one transport answered to one call: the output, or the error code.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// The output, as JSON.
    Output(Value),
    /// The error's code (`not_found`, `invalid_input`, ...).
    Error(String),
}

/// How one transport runs one call against the binary (a fresh instance per
/// call, so every transport sees the same state).
pub trait Leg {
    /// The transport's name, as the binary's `--help` lists it
    /// (`Transports compiled in: ...`); `in-process` for `call`/`resolve`.
    fn name(&self) -> &'static str;
    /// Runs `case` and reads the answer; `Err` when the transport itself
    /// failed (no answer, a malformed one, the process died).
    fn answer(&self, run: &Conformance, case: &Case) -> Result<Answer, String>;
    /// Whether the transport carries `case` at all (Omni's HTTP contract
    /// has no route to resolve a search operator). Default: every case.
    fn carries(&self, case: &Case) -> bool {
        let _ = case;
        true
    }
}

/// The binary's own `call` and `resolve` commands.
struct InProcess;

impl Leg for InProcess {
    fn name(&self) -> &'static str {
        "in-process"
    }

    fn answer(&self, run: &Conformance, case: &Case) -> Result<Answer, String> {
        let mut command = run.command();
        match case {
            Case::Action { action, input } => command.args(["call", action, &input.to_string()]),
            Case::Resolve { operator, value } => command.args(["resolve", operator, value]),
        };
        let (status, stdout, stderr) = run.finish(command.stdin(Stdio::null()), None)?;
        answer_of(status, &stdout, &stderr)
    }
}

/// The stdio sidecar protocol: one `invoke` frame on stdin, its `result`
/// frame on stdout.
struct StdioLeg;

impl Leg for StdioLeg {
    fn name(&self) -> &'static str {
        "stdio"
    }

    fn answer(&self, run: &Conformance, case: &Case) -> Result<Answer, String> {
        let frame = match case {
            Case::Action { action, input } => json!({"method": "invoke",
                "params": {"id": "c1", "action": action, "input": input}}),
            Case::Resolve { operator, value } => json!({"method": "resolve",
                "params": {"id": "c1", "operator": operator, "value": value}}),
        };
        let mut command = run.command();
        command.arg("stdio");
        let (_, stdout, stderr) = run.finish(&mut command, Some(format!("{frame}\n")))?;
        let result = stdout
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .find(|f| f["method"] == "result" && f["params"]["id"] == "c1")
            .ok_or_else(|| format!("no result frame; stdout: {stdout} stderr: {stderr}"))?;
        let params = &result["params"];
        match (params.get("output"), params["error"]["code"].as_str()) {
            (_, Some(code)) => Ok(Answer::Error(code.to_owned())),
            (Some(output), None) => Ok(Answer::Output(output.clone())),
            (None, None) => Err(format!(
                "a result frame with neither output nor error: {result}"
            )),
        }
    }
}

/// MCP over stdio, the stateless revision: `tools/list` then `tools/call`
/// as raw JSON lines to the binary's `mcp`; the result compared through
/// `structuredContent` (unwrapped where the tool's `_meta` says the value
/// is wrapped). MCP has no search operator resolution.
struct McpLeg;

impl Leg for McpLeg {
    fn name(&self) -> &'static str {
        "mcp"
    }

    fn carries(&self, case: &Case) -> bool {
        matches!(case, Case::Action { .. })
    }

    fn answer(&self, run: &Conformance, case: &Case) -> Result<Answer, String> {
        let Case::Action { action, input } = case else {
            return Err("MCP carries no search operator resolution".into());
        };
        let meta = json!({
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": {},
            "io.modelcontextprotocol/clientInfo": {"name": "spoke-conformance", "version": "1"},
        });
        let list = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list",
            "params": {"_meta": meta}});
        let call = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
            "params": {"_meta": meta, "name": action, "arguments": input}});
        let mut command = run.command();
        command.arg("mcp");
        let (_, stdout, stderr) = run.finish(&mut command, Some(format!("{list}\n{call}\n")))?;
        let frames: Vec<Value> = stdout
            .lines()
            .map(|line| {
                serde_json::from_str(line)
                    .map_err(|e| format!("stdout carried a line that is no JSON ({e}): {line}"))
            })
            .collect::<Result<_, _>>()?;
        let answer = |id: u64| {
            frames.iter().find(|f| f["id"] == id).ok_or_else(|| {
                format!("no answer to request {id}; stdout: {stdout} stderr: {stderr}")
            })
        };
        let tools = answer(1)?;
        let answered = answer(2)?;
        if let Some(error) = answered.get("error") {
            // An unknown tool: the protocol's invalid params, as `not_found`.
            return match error["code"].as_i64() {
                Some(-32602) => Ok(Answer::Error("not_found".into())),
                _ => Err(format!("a protocol error: {error}")),
            };
        }
        let result = &answered["result"];
        if result["isError"] == true {
            let text = result["content"][0]["text"].as_str().unwrap_or_default();
            return text
                .strip_prefix("error[")
                .and_then(|rest| rest.split_once(']'))
                .map(|(code, _)| Answer::Error(code.to_owned()))
                .ok_or_else(|| format!("an error result with no `error[code]`: {result}"));
        }
        let wrapped = tools["result"]["tools"]
            .as_array()
            .and_then(|tools| tools.iter().find(|t| t["name"] == action.as_str()))
            .is_some_and(|t| t["_meta"]["spoke/output"] == "wrapped");
        let value = result
            .get("structuredContent")
            .ok_or_else(|| format!("a result with no structuredContent: {result}"))?;
        Ok(Answer::Output(if wrapped {
            value["result"].clone()
        } else {
            value.clone()
        }))
    }
}

/// Omni's HTTP contract: for each call, the binary's `http` on a free
/// loopback port, sent `POST /action` (search operators are declarative
/// there: it carries no resolution).
struct HttpLeg;

impl Leg for HttpLeg {
    fn name(&self) -> &'static str {
        "http"
    }

    fn carries(&self, case: &Case) -> bool {
        matches!(case, Case::Action { .. })
    }

    fn answer(&self, run: &Conformance, case: &Case) -> Result<Answer, String> {
        let Case::Action { action, input } = case else {
            return Err("HTTP carries no search operator resolution".into());
        };
        let mut command = run.command();
        command
            .args(["http", "--listen", "127.0.0.1:0"])
            .env("RUST_LOG", "spoke::http=info,warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        let mut child = command
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", display(&run.binary)))?;
        let (tx, rx) = std::sync::mpsc::channel();
        let stderr = child.stderr.take();
        std::thread::spawn(move || {
            let mut log = String::new();
            let mut sent = false;
            for line in BufReader::new(stderr?).lines().map_while(Result::ok) {
                let addr = line
                    .split("listening on http://")
                    .nth(1)
                    .and_then(|rest| rest.split_whitespace().next());
                if let (false, Some(addr)) = (sent, addr) {
                    sent = tx.send(Ok(addr.to_owned())).is_ok();
                } else if !sent {
                    log.push_str(&line);
                    log.push('\n');
                }
            }
            if !sent {
                let _ = tx.send(Err(log));
            }
            Some(())
        });
        let answer = match rx.recv_timeout(run.timeout) {
            Ok(Ok(addr)) => {
                let body = json!({"action": action, "params": input}).to_string();
                post_action(&addr, &body, run.timeout)
            }
            Ok(Err(log)) => Err(format!("`http` did not listen: {log}")),
            Err(_) => Err(format!("`http` did not listen within {:?}", run.timeout)),
        };
        let _ = child.kill();
        let _ = child.wait();
        answer
    }
}

/// `POST /action` to `addr` over one HTTP/1.1 connection; the answer's
/// `result`, or the code of its error.
fn post_action(addr: &str, body: &str, timeout: Duration) -> Result<Answer, String> {
    let mut stream =
        std::net::TcpStream::connect(addr).map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    let _ = stream.set_read_timeout(Some(timeout));
    let request = format!(
        "POST /action HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("sending the request: {e}"))?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .map_err(|e| format!("reading the answer: {e}"))?;
    let (head, text) = response
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("not an HTTP answer: {response}"))?;
    let status = head.split_whitespace().nth(1).unwrap_or_default();
    let answer: Value =
        serde_json::from_str(text).map_err(|e| format!("the body is not JSON ({e}): {text}"))?;
    match (status, answer["details"]["code"].as_str()) {
        ("200", _) => Ok(Answer::Output(answer["result"].clone())),
        (_, Some(code)) => Ok(Answer::Error(code.to_owned())),
        _ => Err(format!("HTTP {status} without an error code: {answer}")),
    }
}

/// The Spoke hub: for each call, the binary's `serve` attached (as a fresh
/// instance) to a `spoke hub` on loopback, called with `spoke call`. Added
/// by [`Conformance::hub`] with the path of the `spoke` binary.
struct HubLeg {
    spoke: PathBuf,
    state: std::sync::Mutex<Option<HubState>>,
}

/// The hub of a run, and the directory its processes use as `HOME` (keys,
/// data), removed when the run ends.
struct HubState {
    hub: Child,
    url: String,
    home: PathBuf,
    connector: String,
    calls: u32,
}

impl Drop for HubState {
    fn drop(&mut self) {
        let _ = self.hub.kill();
        let _ = self.hub.wait();
        let _ = std::fs::remove_dir_all(&self.home);
    }
}

impl HubLeg {
    fn start(&self, run: &Conformance) -> Result<HubState, String> {
        static RUNS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let home =
            std::env::temp_dir().join(format!("spoke-conformance-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&home)
            .map_err(|e| format!("cannot make {}: {e}", display(&home)))?;
        let connector = run.connector_name()?;
        let mut hub = clean_command(&self.spoke)
            .args(["hub", "--listen", "127.0.0.1:0", "--insecure", "--no-auth"])
            .env("HOME", &home)
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", display(&self.spoke)))?;
        // Its first line says where it listens.
        let (tx, rx) = std::sync::mpsc::channel();
        let stdout = hub.stdout.take();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout?).lines();
            let _ = tx.send(lines.next()?.ok()?);
            lines.for_each(drop);
            Some(())
        });
        let line = rx.recv_timeout(run.timeout);
        let url = line.ok().and_then(|l| {
            l.strip_prefix("spoke hub listening on ")
                .map(|u| u.trim().to_owned())
        });
        match url {
            Some(url) => Ok(HubState {
                hub,
                url,
                home,
                connector,
                calls: 0,
            }),
            None => {
                let _ = hub.kill();
                let _ = hub.wait();
                Err("the hub did not say where it listens".into())
            }
        }
    }

    fn spoke(&self, state: &HubState) -> Command {
        let mut command = clean_command(&self.spoke);
        command
            .env("HOME", &state.home)
            .env("SPOKE_HUB_URL", &state.url)
            .stdin(Stdio::null());
        command
    }

    /// Waits until the hub lists `instance` as ready.
    fn wait_ready(
        &self,
        run: &Conformance,
        state: &HubState,
        instance: &str,
    ) -> Result<(), String> {
        let until = Instant::now() + run.timeout;
        loop {
            let (_, ls, _) = run.finish(self.spoke(state).args(["ls", "--json"]), None)?;
            let ready = serde_json::from_str::<Value>(&ls).ok().is_some_and(|ls| {
                let connectors = ls.get("connectors").unwrap_or(&ls);
                connectors.as_array().into_iter().flatten().any(|c| {
                    c["instances"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|i| i["id"] == instance && i["state"] == "ready")
                })
            });
            if ready {
                return Ok(());
            }
            if Instant::now() > until {
                return Err(format!(
                    "instance {instance} was not ready within {:?}; ls: {ls}",
                    run.timeout
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Leg for HubLeg {
    fn name(&self) -> &'static str {
        "hub"
    }

    fn answer(&self, run: &Conformance, case: &Case) -> Result<Answer, String> {
        let mut guard = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if guard.is_none() {
            *guard = Some(self.start(run)?);
        }
        let Some(state) = guard.as_mut() else {
            unreachable!("the hub was just started")
        };
        state.calls += 1;
        let instance = format!("conformance-{}", state.calls);
        let mut serve = run.command();
        serve
            .arg("serve")
            .env("HOME", &state.home)
            .env("SPOKE_HUB_URL", &state.url)
            .env("SPOKE_INSTANCE_ID", &instance)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut connector = serve
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", display(&run.binary)))?;
        let answer = self.wait_ready(run, state, &instance).and_then(|()| {
            let mut call = self.spoke(state);
            call.args(["call", &state.connector]);
            match case {
                Case::Action { action, input } => call.args([action.clone(), input.to_string()]),
                Case::Resolve { operator, value } => call.args([
                    operator.clone(),
                    json!({"value": value}).to_string(),
                    "--operator".into(),
                ]),
            };
            call.args(["--instance", &instance, "--timeout"])
                .arg(format!("{}ms", run.timeout.as_millis()));
            let (status, stdout, stderr) = run.finish(&mut call, None)?;
            answer_of(status, &stdout, &stderr)
        });
        let _ = connector.kill();
        let _ = connector.wait();
        answer
    }
}

/// A CLI's answer: exit 0 and JSON on stdout, or an `error[code]` line on
/// stderr (exit 1 for an action's error; `spoke call` exits 3 for an error
/// the hub answers itself, such as an unknown action: the code is what
/// callers act on, so it is what is compared).
fn answer_of(status: Option<i32>, stdout: &str, stderr: &str) -> Result<Answer, String> {
    let coded = || {
        stderr
            .lines()
            .find_map(|line| line.strip_prefix("error[")?.split_once(']'))
            .map(|(code, _)| Answer::Error(code.to_owned()))
    };
    match status {
        Some(0) => serde_json::from_str(stdout)
            .map(Answer::Output)
            .map_err(|e| format!("stdout is not JSON ({e}): {stdout}")),
        Some(1 | 3) => coded().ok_or_else(|| format!("no `error[code]` line: {stderr}")),
        other => Err(format!("exit {other:?}: {stderr}")),
    }
}

/// Every leg Spoke knows, with the `--help` name of the transport it needs
/// (`None`: always there).
pub fn legs() -> Vec<(Option<&'static str>, Box<dyn Leg>)> {
    vec![
        (None, Box::new(InProcess)),
        (Some("stdio"), Box::new(StdioLeg)),
        (Some("http"), Box::new(HttpLeg)),
        (Some("mcp"), Box::new(McpLeg)),
    ]
}

/// Runs a connector binary through every transport compiled into it with
/// the same calls, and checks that every transport gives the same output
/// (or the same error code) for each.
///
/// ```no_run
/// // tests/conformance.rs of a connector crate whose binary is `tickets`:
/// use serde_json::json;
/// // In a test of the crate whose binary is `tickets`, the path is
/// // `env!("CARGO_BIN_EXE_tickets")`.
/// let report = spoke::testing::Conformance::new("target/debug/tickets")
///     .env("TICKETS_PATH", ":memory:")
///     .call("create", json!({"title": "Printer on fire"}))
///     .call("get", json!({"id": 99}))
///     .call("create", json!({"title": 7}))
///     .resolve("title", "printer")
///     .hub("target/debug/spoke") // optional: through the Spoke hub too
///     .run()
///     .unwrap();
/// assert_eq!(report.transports, ["in-process", "stdio", "http", "mcp", "hub"]);
/// ```
pub struct Conformance {
    binary: PathBuf,
    env: Vec<(String, String)>,
    cases: Vec<Case>,
    timeout: Duration,
    extra: Vec<Box<dyn Leg>>,
    hub: Option<PathBuf>,
    #[cfg(feature = "nats")]
    nats: Option<String>,
}

impl std::fmt::Debug for Conformance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conformance")
            .field("binary", &self.binary)
            .field("cases", &self.cases)
            .finish_non_exhaustive()
    }
}

/// What a passing run covered.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// The transports each call went through.
    pub transports: Vec<&'static str>,
    /// Each call with the one answer every transport gave.
    pub answers: Vec<(Case, Answer)>,
}

impl Conformance {
    /// A run of `binary` (in a test: `env!("CARGO_BIN_EXE_<name>")`).
    pub fn new(binary: impl Into<PathBuf>) -> Self {
        Conformance {
            binary: binary.into(),
            env: Vec::new(),
            cases: Vec::new(),
            timeout: Duration::from_secs(30),
            extra: Vec::new(),
            hub: None,
            #[cfg(feature = "nats")]
            nats: None,
        }
    }

    /// Also runs every call through the `nats` transport (feature `nats`
    /// of `spoke`, beside `testing`), on the NATS server at `url` (one the
    /// test started, e.g. `nats-server -a 127.0.0.1 -p -1`): each call
    /// starts `<bin> nats` in a tenant of its own and calls it with
    /// Spoke's NATS client.
    #[cfg(feature = "nats")]
    pub fn nats(mut self, url: impl Into<String>) -> Self {
        self.nats = Some(url.into());
        self
    }

    /// Also runs every call through the Spoke hub (when the binary has the
    /// `grpc` transport): `spoke` is the path of the hub's binary (package
    /// `spoke-hub`). The hub listens on loopback without TLS or auth, in a
    /// temporary `HOME` removed at the end; each call attaches a fresh
    /// instance and calls it with `spoke call --instance`.
    pub fn hub(mut self, spoke: impl Into<PathBuf>) -> Self {
        self.hub = Some(spoke.into());
        self
    }

    /// Adds a leg of your own (a host you serve the connector to, a proxy
    /// in front of it): its answers must match the transports' too.
    pub fn leg(mut self, leg: impl Leg + 'static) -> Self {
        self.extra.push(Box::new(leg));
        self
    }

    /// A config variable for every run (the process environment is not passed on).
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Adds a call of `action` with `input`.
    pub fn call(mut self, action: impl Into<String>, input: Value) -> Self {
        self.cases.push(Case::Action {
            action: action.into(),
            input,
        });
        self
    }

    /// Adds a resolution of `operator`'s `value`.
    pub fn resolve(mut self, operator: impl Into<String>, value: impl Into<String>) -> Self {
        self.cases.push(Case::Resolve {
            operator: operator.into(),
            value: value.into(),
        });
        self
    }

    /// How long one call through one transport may take (30 s by default);
    /// past it the process is killed and the run fails.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The transports the binary lists in its `--help`.
    pub fn compiled_transports(&self) -> Result<Vec<String>, String> {
        let mut command = self.command();
        command.arg("--help");
        let (_, stdout, stderr) = self.finish(command.stdin(Stdio::null()), None)?;
        let line = stdout
            .lines()
            .find_map(|l| l.strip_prefix("Transports compiled in:"))
            .ok_or_else(|| format!("`--help` lists no transports: {stdout}{stderr}"))?;
        // `... Not compiled in: grpc, http (...)` follows on the same line.
        let line = line.split("Not compiled in:").next().unwrap_or_default();
        Ok(line
            .split(',')
            .filter_map(|t| t.split_whitespace().next())
            .map(|t| t.trim_end_matches('.').to_owned())
            .filter(|t| t != "none")
            .collect())
    }

    /// Runs every call through every leg the binary has; `Err` names the
    /// call and the transports that disagree, or a transport that failed.
    pub fn run(&self) -> Result<Report, String> {
        let compiled = self.compiled_transports()?;
        let mut known: Vec<Box<dyn Leg>> = legs()
            .into_iter()
            .filter(|(needs, _)| needs.is_none_or(|t| compiled.iter().any(|c| c == t)))
            .map(|(_, leg)| leg)
            .collect();
        if let Some(spoke) = &self.hub {
            if !compiled.iter().any(|t| t == "grpc") {
                return Err(format!(
                    "a hub leg was asked for, but {} has no `grpc` transport (`serve`)",
                    display(&self.binary)
                ));
            }
            known.push(Box::new(HubLeg {
                spoke: spoke.clone(),
                state: std::sync::Mutex::new(None),
            }));
        }
        #[cfg(feature = "nats")]
        if let Some(url) = &self.nats {
            if !compiled.iter().any(|t| t == "nats") {
                return Err(format!(
                    "a NATS leg was asked for, but {} has no `nats` transport",
                    display(&self.binary)
                ));
            }
            known.push(Box::new(super::nats_leg::NatsLeg {
                url: url.clone(),
                connector: self.connector_name()?,
            }));
        }
        let legs: Vec<&dyn Leg> = known
            .iter()
            .chain(&self.extra)
            .map(|leg| leg.as_ref())
            .collect();
        let mut answers = Vec::new();
        let mut problems = Vec::new();
        for case in &self.cases {
            let mut seen: Vec<(&'static str, Answer)> = Vec::new();
            for leg in legs.iter().filter(|leg| leg.carries(case)) {
                match leg.answer(self, case) {
                    Ok(answer) => seen.push((leg.name(), answer)),
                    Err(why) => problems.push(format!("`{case}` through {}: {why}", leg.name())),
                }
            }
            if let Some((_, first)) = seen.first() {
                if seen.iter().any(|(_, a)| a != first) {
                    let each: Vec<String> = seen
                        .iter()
                        .map(|(leg, answer)| format!("{leg}: {answer:?}"))
                        .collect();
                    problems.push(format!(
                        "`{case}` answered differently: {}",
                        each.join("; ")
                    ));
                } else {
                    answers.push((case.clone(), first.clone()));
                }
            }
        }
        if problems.is_empty() {
            Ok(Report {
                transports: legs.iter().map(|l| l.name()).collect(),
                answers,
            })
        } else {
            Err(format!(
                "{} conformance problem(s):\n  - {}",
                problems.len(),
                problems.join("\n  - ")
            ))
        }
    }

    /// How long one call through one transport may take.
    pub fn call_timeout(&self) -> Duration {
        self.timeout
    }

    /// The connector's name, from the binary's `describe`.
    pub fn connector_name(&self) -> Result<String, String> {
        let mut describe = self.command();
        describe.arg("describe");
        let (_, manifest, stderr) = self.finish(describe.stdin(Stdio::null()), None)?;
        serde_json::from_str::<Value>(&manifest)
            .ok()
            .and_then(|m| m["name"].as_str().map(str::to_owned))
            .ok_or_else(|| format!("`describe` printed no manifest: {manifest}{stderr}"))
    }

    /// A command for the binary with the run's environment only (and
    /// `PATH`), its stdout and stderr piped: for a [`Leg`] to start.
    pub fn command(&self) -> Command {
        let mut command = clean_command(&self.binary);
        command.envs(self.env.iter().map(|(k, v)| (k, v)));
        command
    }

    /// Runs `command` to its end (bounded by the run's timeout: past it the
    /// process is killed), writing `stdin` then closing it; returns the exit
    /// code, stdout and stderr. For a [`Leg`].
    pub fn finish(
        &self,
        command: &mut Command,
        stdin: Option<String>,
    ) -> Result<(Option<i32>, String, String), String> {
        if stdin.is_some() {
            command.stdin(Stdio::piped());
        }
        let mut child = command
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", display(&self.binary)))?;
        if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
            let _ = pipe.write_all(text.as_bytes());
        }
        let stdout = drain(child.stdout.take());
        let stderr = drain(child.stderr.take());
        let status = wait(&mut child, self.timeout)?;
        Ok((status, join(stdout), join(stderr)))
    }
}

/// `program` with an empty environment but `PATH`, stdout and stderr piped.
fn clean_command(program: &Path) -> Command {
    let mut command = Command::new(program);
    command
        .env_clear()
        .envs(std::env::var_os("PATH").map(|p| ("PATH", p)))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

fn display(path: &Path) -> String {
    path.display().to_string()
}

fn drain(pipe: Option<impl Read + Send + 'static>) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(pipe) = pipe {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                text.push_str(&line);
                text.push('\n');
            }
        }
        text
    })
}

fn join(reader: std::thread::JoinHandle<String>) -> String {
    reader.join().unwrap_or_default()
}

fn wait(child: &mut Child, timeout: Duration) -> Result<Option<i32>, String> {
    let until = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Ok(status.code()),
            Ok(None) if Instant::now() < until => std::thread::sleep(Duration::from_millis(5)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("no answer within {timeout:?}; killed"));
            }
            Err(e) => return Err(format!("cannot wait for the process: {e}")),
        }
    }
}
