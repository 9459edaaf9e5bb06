//! The command line every connector binary gets from `spoke::main()`.
//!
//! ```text
//! <bin> [serve]                  attach to a Spoke hub and serve calls (the default)
//! <bin> stdio                    serve the stdio sidecar protocol on stdin/stdout
//! <bin> http [--listen ADDR]     serve Omni's connector contract over HTTP
//! <bin> mcp [--http ADDR]        serve the actions as MCP tools, over stdio or Streamable HTTP
//! <bin> describe                 print the manifest and LibreFang's `fields` form as JSON (also: --describe)
//! <bin> call <action> [JSON|-]   run one action in-process, print its output
//! <bin> resolve <op> <value>     resolve a search operator's value
//! <bin> check [--no-init]        validate the config, report every problem, run the init hook
//! <bin> actions                  list actions, search operators and syncs
//! <bin> sync [NAME] [--mode M] [--source ID] [--state FILE] [--out FILE|-]
//!                                run a sync in-process: documents as JSON lines, checkpoints in FILE
//! ```
//!
//! Exit codes: 0 success, 1 the action returned an error or the sync run
//! failed or was cancelled (`stdio`: stdout or stdin failed), 2 usage, config or start-up error (including an
//! unusable instance key or `SPOKE_TLS_CA`; under `stdio` the message is
//! also written to stdout as a LibreFang `error` frame), 4 (`serve`) the hub
//! refused this instance: an administrator rejected or revoked it.
//!
//! `serve` reads the `SPOKE_*` variables described in
//! [`hub_env`](crate::grpc::env) (hub URL and TLS, instance identity and key,
//! registration token, tenant, `max_in_flight`, shutdown grace); a bad value
//! is a usage error. It runs
//! until SIGINT/SIGTERM or a Drain from the hub, then finishes in-flight work,
//! says Goodbye and exits 0; see [`serve`](crate::grpc::serve).
//!
//! `stdio` serves the Spoke stdio protocol (which includes LibreFang's
//! sidecar protocol) until `shutdown` or the end of stdin, then exits 0; see
//! [`stdio`](crate::stdio) for the protocol and its `SPOKE_*` variables.

use std::io::{Read, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::config::ConfigSource;
use crate::instance::Instance;
use crate::registry::{ConnectorType, Registry, RegistryError};

mod call;
pub mod payload_flags;
pub mod replace_file;
mod sync;

/// Exit code when an action returned an error.
pub const EXIT_ACTION_ERROR: u8 = 1;
/// Exit code for usage, configuration and start-up errors.
pub const EXIT_USAGE: u8 = 2;
/// Exit code of `serve` when the hub refused this instance (an
/// administrator rejected or revoked it): restarting will not help until
/// it is approved again.
pub const EXIT_REFUSED: u8 = 4;

#[derive(Debug, Parser)]
#[command(about = "A Spoke connector.", disable_help_subcommand = true)]
struct Cli {
    /// Which connector to run, when this binary registers several.
    #[arg(long, global = true, value_name = "NAME")]
    connector: Option<String>,
    /// Read the configuration from this JSON file (`-` for stdin) instead of the environment.
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<String>,
    /// Print the manifest and LibreFang's `fields` form, and exit (same as
    /// `describe`). Also accepted after a command (`stdio --describe`), as
    /// hosts that append it to a sidecar's arguments send it.
    #[arg(long, global = true)]
    describe: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Attach to a Spoke hub and serve its calls (the default command).
    ///
    /// Needs the `grpc` feature.
    ///
    /// Runs until SIGINT/SIGTERM or a Drain from the hub, then finishes
    /// in-flight calls and exits 0. Configured by SPOKE_HUB_URL (default
    /// http://127.0.0.1:7700; https:// for TLS), SPOKE_TLS_CA (a PEM CA
    /// bundle; default the system's roots), SPOKE_KEY_PATH (default
    /// ~/.spoke/keys/<connector>_<instance>.pem, made on first use),
    /// SPOKE_REGISTRATION_TOKEN, SPOKE_INSTANCE_ID, SPOKE_DISPLAY_NAME,
    /// SPOKE_TAGS (comma-separated), `SPOKE_METADATA_<KEY>`, SPOKE_TENANT,
    /// SPOKE_MAX_IN_FLIGHT (default 64) and SPOKE_SHUTDOWN_GRACE (default 10s).
    ///
    /// Exits 2 on a bad setting or key file, and 4 when the hub refuses
    /// this instance (rejected or revoked by an administrator).
    #[cfg_attr(not(feature = "grpc"), command(hide = true))]
    Serve,
    /// Serve the stdio sidecar protocol: JSON lines on stdin and stdout.
    ///
    /// For hosts that run the connector as a child process: the Spoke hub's
    /// supervisor, or LibreFang as a channel sidecar. Runs until a `shutdown`
    /// frame or the end of stdin, finishes in-flight work and exits 0.
    /// Configured by SPOKE_STDIO_MAX_LINE (default 64 MiB), SPOKE_ACCOUNT_ID
    /// (default the connector's name), SPOKE_MAX_IN_FLIGHT (default 64) and
    /// SPOKE_SHUTDOWN_GRACE (default 10s). When it cannot start, it writes
    /// the reason as a LibreFang `error` frame and exits 2.
    #[cfg_attr(not(feature = "stdio"), command(hide = true))]
    Stdio {
        /// The longest input line, in bytes; longer lines are skipped with an
        /// error frame. Overrides SPOKE_STDIO_MAX_LINE.
        #[arg(long, value_name = "BYTES", value_parser = clap::value_parser!(u64).range(1..))]
        max_line_bytes: Option<u64>,
    },
    /// Serve Omni's connector contract over HTTP, for Omni's connector-manager.
    ///
    /// Needs the `http` feature.
    ///
    /// Listens on 127.0.0.1:$PORT (or --listen ADDR, e.g. 0.0.0.0:8080 in a
    /// container). With CONNECTOR_MANAGER_URL and CONNECTOR_HOST_NAME it
    /// registers with the manager at once and every 30 s, and runs the
    /// syncs it asks for. Each source's config and credentials configure an
    /// instance of its own. Also reads SPOKE_HTTP_TOKEN (bearer token every
    /// route but /health requires), SPOKE_MANAGER_TOKEN, SPOKE_HTTP_MAX_BODY
    /// (default 16 MiB), SPOKE_HTTP_PUBLIC_URL, SPOKE_HTTP_REGISTER_EVERY,
    /// SPOKE_HTTP_HEARTBEAT, SPOKE_HTTP_CALLBACK_TIMEOUT, SPOKE_MAX_IN_FLIGHT
    /// and SPOKE_SHUTDOWN_GRACE. Runs until SIGINT/SIGTERM. Exits 2 on a bad
    /// setting, an address it cannot bind, or a manifest the manager would
    /// refuse.
    #[cfg_attr(not(feature = "http"), command(hide = true))]
    Http {
        /// The address to listen on (default 127.0.0.1:$PORT).
        #[arg(long, value_name = "ADDR")]
        listen: Option<std::net::SocketAddr>,
    },
    /// Serve the actions as MCP tools for AI agents, over stdio (or
    /// Streamable HTTP with --http).
    ///
    /// Needs the `mcp` feature.
    ///
    /// Over stdio, stdout carries protocol frames only (logs go to stderr)
    /// and the local user is an administrator (sees and calls `admin_only`
    /// and `hidden` tools) unless --no-admin. Over HTTP the endpoint is
    /// http://ADDR/mcp; SPOKE_MCP_TOKEN makes every request need
    /// `Authorization: Bearer <token>`, SPOKE_MCP_ADMIN_TOKEN is a token of
    /// administrators, and an address beyond loopback needs one of them.
    /// Also reads SPOKE_MCP_ALLOWED_HOSTS, SPOKE_MCP_MAX_BODY (default 4 MiB),
    /// SPOKE_MCP_TIMEOUT and SPOKE_MAX_IN_FLIGHT. Runs until the client
    /// leaves (stdio) or SIGINT/SIGTERM. Exits 2 on a bad setting or an
    /// address it cannot bind.
    #[cfg_attr(not(feature = "mcp"), command(hide = true))]
    Mcp {
        /// Serve Streamable HTTP on this address (e.g. 127.0.0.1:8931)
        /// instead of stdio.
        #[arg(long, value_name = "ADDR")]
        http: Option<std::net::SocketAddr>,
        /// Over stdio, the local user is not an administrator.
        #[arg(long)]
        no_admin: bool,
    },
    /// Serve as a NATS micro service: calls spread over every instance.
    ///
    /// Needs the `nats` feature.
    ///
    /// Connects to SPOKE_NATS_URL (default nats://127.0.0.1:4222; user and
    /// password or a token in the URL, SPOKE_NATS_CREDS for a creds file,
    /// SPOKE_TLS_CA for TLS) and answers each action on
    /// spoke.<tenant>.<connector>.<action> in queue group `q`, each search
    /// operator on ...operator.<operator>, the manifest on ...describe, the
    /// same under ...instance.<id>. for this instance alone, and
    /// $SRV.PING/INFO/STATS. Also reads SPOKE_TENANT, SPOKE_INSTANCE_ID,
    /// SPOKE_DISPLAY_NAME, SPOKE_TAGS, SPOKE_NATS_TIMEOUT,
    /// SPOKE_MAX_IN_FLIGHT and SPOKE_SHUTDOWN_GRACE. Runs until
    /// SIGINT/SIGTERM, then drains. Exits 2 on a bad setting or a name that
    /// cannot be a subject token, 1 when NATS cannot be reached.
    #[cfg_attr(not(feature = "nats"), command(hide = true))]
    Nats,
    /// Print the connector's manifest (config schema, actions, schemas) and
    /// LibreFang's `fields` form as one JSON object.
    Describe,
    /// Run one action in-process and print its output (JSON unless asked
    /// otherwise).
    ///
    /// The input and output may be in any encoding the action takes and
    /// gives (its `input_encodings` and `output_encodings` in `describe`):
    /// `call rows --output-encoding msgpack --output-file rows.mpk`. A
    /// binary output is never printed to a terminal: name a file, or pipe.
    Call(call::CallArgs),
    /// Resolve a search operator's value, e.g. `resolve ext rs`, and print the result as JSON.
    Resolve {
        /// The operator's name.
        operator: String,
        /// The value typed after `operator:`.
        value: String,
        /// Give up after this long, e.g. `30s`, `500ms`.
        #[arg(long, value_parser = crate::duration::parse)]
        timeout: Option<Duration>,
    },
    /// Validate the configuration, report every problem, and run the init hook.
    ///
    /// Once the configuration loads, the connector is built and its init
    /// hook run, as at start-up: "config ok" means the connector can start.
    /// A failing (or panicking) init hook is reported as at start-up, with
    /// exit code 2. The init hook may reach outside systems; --no-init
    /// checks the configuration alone.
    Check {
        /// Check the configuration only; do not build the connector or run its init hook.
        #[arg(long)]
        no_init: bool,
        /// Run the init hook (the default; kept for scripts that ask for it).
        #[arg(long, hide = true, conflicts_with = "no_init")]
        init: bool,
    },
    /// Run a sync in-process: its documents as JSON lines on stdout (or
    /// --out), its checkpoints in --state, so the next run resumes.
    ///
    /// With --state FILE, an interrupted run (killed, failed, cancelled) is
    /// resumed in its mode from its last durable checkpoint, and a
    /// completed one is followed by an incremental run when the sync has
    /// that mode. Ctrl-C cancels the run and keeps the last durable
    /// checkpoint. Exits 0 when the run completed, 1 when it failed or was
    /// cancelled, 2 on a usage or config error.
    Sync(sync::SyncArgs),
    /// List actions, search operators and syncs.
    Actions {
        /// Include hidden actions.
        #[arg(long)]
        all: bool,
    },
}

/// Runs the connector binary's command line. Call it from `main`:
///
/// ```no_run
/// fn main() -> std::process::ExitCode {
///     spoke::main()
/// }
/// ```
pub fn main() -> ExitCode {
    // Under `stdio`, a host reads stdout: a failure to start is said there
    // too, from the first argument on.
    let stdio_args = cfg!(feature = "stdio") && std::env::args().skip(1).any(|a| a == "stdio");
    // Built before the arguments are parsed, so that `--help` can name the
    // connector(s); `run` reports a registry that does not build.
    let registry = Registry::from_inventory();
    let parsed = Cli::command()
        .about(about(registry.as_ref().ok()))
        .after_help(transports_compiled_in())
        .try_get_matches()
        .and_then(|matches| Cli::from_arg_matches(&matches));
    let cli = match parsed {
        Ok(cli) => cli,
        Err(e) => {
            #[cfg(feature = "stdio")]
            if stdio_args && e.use_stderr() {
                write_error_frame(e.to_string().trim().trim_start_matches("error: "));
            }
            e.exit()
        }
    };
    // `serve` is a long-running service: its session log lines are info.
    let serving = !cli.describe
        && matches!(
            cli.command,
            None | Some(
                Command::Serve
                    | Command::Stdio { .. }
                    | Command::Http { .. }
                    | Command::Mcp { .. }
                    | Command::Nats
            )
        );
    crate::logging::init(if serving { "info" } else { "warn" });
    // `stdio` runs on one thread (stdin and stdout have a thread each, plain
    // `fn` actions the blocking pool): a sidecar stays small and starts
    // fast. The rest use a worker per core.
    let mut builder = if !cli.describe && matches!(cli.command, Some(Command::Stdio { .. })) {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            let message = format!("cannot start the async runtime: {e}");
            #[cfg(feature = "stdio")]
            if stdio_args && !cli.describe {
                return fail_on_wire(&message);
            }
            let _ = stdio_args;
            return fail(EXIT_USAGE, format_args!("{message}"));
        }
    };
    let code = runtime.block_on(run(cli, registry));
    // An abandoned plain-`fn` action (deadline, cancellation) may still be
    // running on the blocking pool; it must not hold the process open.
    runtime.shutdown_timeout(Duration::from_millis(100));
    code
}

/// The first paragraph of `--help`: the connector this binary runs, with
/// its description; with several, each of them on a line of its own.
fn about(registry: Option<&Registry>) -> String {
    const GENERIC: &str = "A Spoke connector.";
    let Some(registry) = registry else {
        return GENERIC.to_owned();
    };
    match registry.connectors() {
        [] => GENERIC.to_owned(),
        [only] => {
            let r = only.registration();
            let mut text = format!(
                "Spoke connector `{}` ({} {})",
                r.name, r.display_name, r.version
            );
            match r.description.trim() {
                "" => text.push('.'),
                description => {
                    text.push_str(": ");
                    text.push_str(description);
                }
            }
            text
        }
        several => {
            let width = several.iter().map(|c| c.name().len()).max().unwrap_or(0);
            let mut text = format!(
                "A binary with {} Spoke connectors; pick one with --connector NAME:",
                several.len()
            );
            for c in several {
                let line = format!(
                    "\n  {:width$}  {}",
                    c.name(),
                    first_line(c.registration().description.trim())
                );
                text.push_str(line.trim_end());
            }
            text
        }
    }
}

fn fail(code: u8, message: std::fmt::Arguments<'_>) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(code)
}

/// The transports this binary was built with, for `--help`.
fn transports_compiled_in() -> String {
    let mut on = Vec::new();
    let mut off = Vec::new();
    for (feature, compiled, what) in TRANSPORTS {
        if compiled {
            on.push(format!("{feature} (`{what}`)"));
        } else {
            off.push(feature);
        }
    }
    let mut text = format!(
        "Transports compiled in: {}.",
        if on.is_empty() {
            "none".to_owned()
        } else {
            on.join(", ")
        }
    );
    if !off.is_empty() {
        text.push_str(&format!(
            " Not compiled in: {} (enable the cargo feature of that name on `spoke`).",
            off.join(", ")
        ));
    }
    text
}

/// Each transport: its cargo feature, whether it is compiled in, its command.
const TRANSPORTS: [(&str, bool, &str); 5] = [
    ("grpc", cfg!(feature = "grpc"), "serve"),
    ("stdio", cfg!(feature = "stdio"), "stdio"),
    ("http", cfg!(feature = "http"), "http"),
    ("mcp", cfg!(feature = "mcp"), "mcp"),
    ("nats", cfg!(feature = "nats"), "nats"),
];

/// A command whose transport is not compiled in: a usage error naming the
/// feature to enable.
#[cfg(any(
    not(feature = "grpc"),
    not(feature = "stdio"),
    not(feature = "http"),
    not(feature = "mcp"),
    not(feature = "nats")
))]
fn not_compiled_in(command: &str, feature: &str) -> ExitCode {
    fail(
        EXIT_USAGE,
        format_args!(
            "`{command}` is not available: this connector was built without the `{feature}` \
             feature; enable it (`spoke = {{ version = \"...\", features = [\"{feature}\"] }}`) \
             and rebuild. {}",
            transports_compiled_in()
        ),
    )
}

/// A start-up failure of `stdio`: the message on stderr, and also as the one
/// LibreFang `error` frame on stdout, so the host's "last error" names the
/// cause rather than a bare exit code.
#[cfg(feature = "stdio")]
fn fail_on_wire(message: &str) -> ExitCode {
    write_error_frame(message);
    fail(EXIT_USAGE, format_args!("{message}"))
}

/// Writes `message` to stdout as one LibreFang `error` frame.
#[cfg(feature = "stdio")]
fn write_error_frame(message: &str) {
    let line = crate::stdio::output::line_of(&crate::stdio::librefang::error(message));
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(line.as_bytes()).and_then(|()| out.flush()) {
        tracing::debug!(error = %e, "cannot write the error frame to stdout");
    }
}

/// A connector that could not start: its error with the values of its
/// secret fields masked (should connector code have put one in a message).
fn start_failed(
    ty: &ConnectorType,
    source: &ConfigSource,
    error: &crate::connector::StartError,
) -> String {
    let secrets = source.secret_values(ty.registration().config_fields);
    crate::config::mask_secrets(&error.to_string(), &secrets)
}

async fn run(cli: Cli, registry: Result<Registry, RegistryError>) -> ExitCode {
    // Under `stdio`, a host reads stdout: a failure to start is said there too.
    let on_wire = !cli.describe && matches!(cli.command, Some(Command::Stdio { .. }));
    let usage = |message: String| {
        #[cfg(feature = "stdio")]
        if on_wire {
            return fail_on_wire(&message);
        }
        let _ = on_wire;
        fail(EXIT_USAGE, format_args!("{message}"))
    };
    let registry = match registry {
        Ok(r) => r,
        Err(e) => return usage(e.to_string()),
    };
    if registry.is_empty() {
        tracing::warn!(
            "no connector is registered in this binary: either none is declared with #[connector], \
             or `inventory` does not support this target (register by hand with Registry::builder(); see the README)"
        );
    }
    let ty = match pick(&registry, cli.connector.as_deref()) {
        Ok(ty) => ty,
        Err(message) => return usage(message),
    };
    let command = match (cli.describe, cli.command) {
        (true, _) | (false, Some(Command::Describe)) => return describe(&ty),
        (false, Some(command)) => command,
        (false, None) => {
            if cfg!(feature = "grpc") {
                Command::Serve
            } else {
                return fail(
                    EXIT_USAGE,
                    format_args!(
                        "no command given, and the default one, `serve`, needs the `grpc` \
                         feature; see --help. {}",
                        transports_compiled_in()
                    ),
                );
            }
        }
    };
    let source = match config_source(cli.config.as_deref()) {
        Ok(s) => s,
        Err(message) => return usage(message),
    };
    match command {
        Command::Serve => serve(ty, source).await,
        Command::Stdio { max_line_bytes } => stdio(ty, source, max_line_bytes).await,
        Command::Http { listen } => http(ty, listen).await,
        Command::Mcp { http, no_admin } => mcp(ty, source, http, no_admin).await,
        Command::Nats => nats(ty, source).await,
        Command::Describe => describe(&ty),
        Command::Actions { all } => actions(&ty, all),
        Command::Sync(args) => sync::sync(ty, source, args).await,
        Command::Check { no_init, .. } => check(&ty, &source, !no_init).await,
        Command::Call(args) => call::call(ty, source, args).await,
        Command::Resolve {
            operator,
            value,
            timeout,
        } => call::resolve(ty, source, &operator, &value, timeout).await,
    }
}

fn pick(registry: &Registry, wanted: Option<&str>) -> Result<Arc<ConnectorType>, String> {
    let names = registry.names().join(", ");
    match (wanted, registry.connectors()) {
        (Some(name), _) => registry.get(name).cloned().ok_or_else(|| {
            let hint = crate::suggest::did_you_mean(name, registry.names())
                .map(|s| format!(" (did you mean `{s}`?)"))
                .unwrap_or_default();
            format!("no connector named `{name}`{hint}; this binary has: {names}")
        }),
        (None, [only]) => Ok(only.clone()),
        (None, []) => Err("no connector is registered in this binary".into()),
        (None, _) => Err(format!(
            "this binary has several connectors ({names}); pick one with --connector NAME"
        )),
    }
}

/// The config: the JSON object in the file at `path` (`-`: stdin), or the
/// environment; an error names the file and says what is wrong with it.
pub(crate) fn config_source(path: Option<&str>) -> Result<ConfigSource, String> {
    let Some(path) = path else {
        return Ok(ConfigSource::from_env());
    };
    let text = read_arg_file(path).map_err(|e| format!("cannot read config file `{path}`: {e}"))?;
    let value: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| format!("config file `{path}` is not valid JSON: {e}"))?;
    ConfigSource::from_json(value).map_err(|e| format!("config file `{path}`: {e}"))
}

fn read_arg_file(path: &str) -> std::io::Result<String> {
    if path == "-" {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s)?;
        Ok(s)
    } else {
        std::fs::read_to_string(path)
    }
}

fn print_json(value: &impl serde::Serialize) -> ExitCode {
    let mut out = std::io::stdout().lock();
    match serde_json::to_writer_pretty(&mut out, value).map(|()| writeln!(out)) {
        Ok(Ok(())) => ExitCode::SUCCESS,
        _ => ExitCode::from(EXIT_USAGE),
    }
}

/// The manifest, plus LibreFang's `fields` form when `stdio` is compiled in.
fn describe(ty: &ConnectorType) -> ExitCode {
    #[cfg(feature = "stdio")]
    return print_json(&crate::stdio::describe_form::describe(ty));
    #[cfg(not(feature = "stdio"))]
    return print_json(ty.manifest());
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}

fn actions(ty: &ConnectorType, all: bool) -> ExitCode {
    let mut out = String::new();
    let shown: Vec<_> = ty.actions().iter().filter(|a| all || !a.hidden).collect();
    let width = shown
        .iter()
        .map(|a| a.name.len())
        .chain(ty.operators().iter().map(|o| o.operator.len()))
        .chain(ty.syncs().iter().map(|s| s.name.len()))
        .max()
        .unwrap_or(0);
    out.push_str("actions:\n");
    if shown.is_empty() {
        out.push_str("  (none)\n");
    }
    for a in shown {
        let mut flags = vec![a.mode.as_str()];
        if a.admin_only {
            flags.push("admin");
        }
        if a.hidden {
            flags.push("hidden");
        }
        out.push_str(&format!(
            "  {:width$}  {:12}  {}\n",
            a.name,
            flags.join(","),
            first_line(a.description)
        ));
    }
    if !ty.operators().is_empty() {
        out.push_str("search operators:\n");
        for o in ty.operators() {
            out.push_str(&format!(
                "  {:width$}  {:12}  {} (attribute `{}`)\n",
                o.operator,
                o.value_type.as_str(),
                first_line(o.description),
                o.attribute_key
            ));
        }
    }
    if !ty.syncs().is_empty() {
        out.push_str("syncs:\n");
        for s in ty.syncs() {
            let modes: Vec<&str> = s.modes.iter().map(|m| m.as_str()).collect();
            out.push_str(&format!(
                "  {:width$}  {:12}  {}\n",
                s.name,
                modes.join(","),
                first_line(s.description)
            ));
        }
    }
    print!("{out}");
    ExitCode::SUCCESS
}

/// `check`: every config problem at once; then, with `init`, the connector
/// is built and its init hook run, as at start-up (a failure is reported
/// exactly as `serve` or `call` would). The report is printed only when all
/// of it passed, so "config ok" means the connector can start.
async fn check(ty: &Arc<ConnectorType>, source: &ConfigSource, init: bool) -> ExitCode {
    let fields = ty.registration().config_fields;
    // Starting loads the config too (with the same errors): load it once.
    let checked = if init {
        Instance::start(Arc::clone(ty), source.clone())
            .await
            .map(drop)
            .map_err(|e| start_failed(ty, source, &e))
    } else {
        (ty.registration().check_config)(source).map_err(|e| e.to_string())
    };
    if let Err(message) = checked {
        return fail(EXIT_USAGE, format_args!("{message}"));
    }
    let mut report = format!(
        "config ok: connector `{}`, {} field(s)\n",
        ty.name(),
        fields.len()
    );
    for f in fields {
        let state = match source {
            ConfigSource::Env(vars) if vars.contains_key(f.env) => "set",
            ConfigSource::Json(map) if map.contains_key(f.key) => "set",
            _ if f.required => "missing",
            _ => "default",
        };
        let secret = if f.secret { " (secret)" } else { "" };
        report.push_str(&format!("  {:20} {:28} {state}{secret}\n", f.key, f.env));
    }
    if init {
        report.push_str("init ok\n");
    }
    print!("{report}");
    ExitCode::SUCCESS
}

/// Starts the connector for a command, or says why it cannot (exit 2).
async fn start_instance(
    ty: &Arc<ConnectorType>,
    source: &ConfigSource,
) -> Result<Instance, ExitCode> {
    Instance::start(Arc::clone(ty), source.clone())
        .await
        .map_err(|e| fail(EXIT_USAGE, format_args!("{}", start_failed(ty, source, &e))))
}

/// Attaches to the hub named by the `SPOKE_*` variables and serves until
/// a signal or a Drain.
#[cfg(not(feature = "grpc"))]
async fn serve(_: Arc<ConnectorType>, _: ConfigSource) -> ExitCode {
    not_compiled_in("serve", "grpc")
}

/// Attaches to the hub named by the `SPOKE_*` variables and serves until
/// a signal or a Drain.
#[cfg(feature = "grpc")]
async fn serve(ty: Arc<ConnectorType>, source: ConfigSource) -> ExitCode {
    let options = match crate::grpc::serve::AttachOptions::from_env(ty.manifest()) {
        Ok(o) => o,
        Err(e) => return fail(EXIT_USAGE, format_args!("{e}")),
    };
    let instance = match start_instance(&ty, &source).await {
        Ok(i) => i,
        Err(code) => return code,
    };
    match crate::grpc::serve::run(instance, options).await {
        Ok(outcome) => {
            tracing::info!(?outcome, "serve stopped");
            ExitCode::SUCCESS
        }
        Err(e @ crate::grpc::serve::ServeError::Refused { .. }) => {
            fail(EXIT_REFUSED, format_args!("{e}"))
        }
        Err(e) => fail(EXIT_USAGE, format_args!("{e}")),
    }
}

/// Serves Omni's connector contract over HTTP.
#[cfg(not(feature = "http"))]
async fn http(_: Arc<ConnectorType>, _: Option<std::net::SocketAddr>) -> ExitCode {
    not_compiled_in("http", "http")
}

/// Serves Omni's connector contract over HTTP until a signal. Each
/// source's config comes with its requests; `--config` does not apply.
#[cfg(feature = "http")]
async fn http(ty: Arc<ConnectorType>, listen: Option<std::net::SocketAddr>) -> ExitCode {
    let options = match crate::http::HttpOptions::from_env(listen) {
        Ok(o) => o,
        Err(e) => return fail(EXIT_USAGE, format_args!("{e}")),
    };
    match crate::http::serve::run(ty, options).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(EXIT_USAGE, format_args!("{e}")),
    }
}

/// Serves the actions as MCP tools.
#[cfg(not(feature = "mcp"))]
async fn mcp(
    _: Arc<ConnectorType>,
    _: ConfigSource,
    _: Option<std::net::SocketAddr>,
    _: bool,
) -> ExitCode {
    not_compiled_in("mcp", "mcp")
}

/// Serves the actions as MCP tools, over stdio or Streamable HTTP, until
/// the client leaves (stdio) or a signal.
#[cfg(feature = "mcp")]
async fn mcp(
    ty: Arc<ConnectorType>,
    source: ConfigSource,
    http: Option<std::net::SocketAddr>,
    no_admin: bool,
) -> ExitCode {
    let options = match crate::mcp::McpOptions::from_env(http, no_admin) {
        Ok(o) => o,
        Err(e) => return fail(EXIT_USAGE, format_args!("{e}")),
    };
    let instance = match start_instance(&ty, &source).await {
        Ok(i) => i,
        Err(code) => return code,
    };
    match crate::mcp::serve::run(instance, options).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(EXIT_USAGE, format_args!("{e}")),
    }
}

/// Serves the actions as a NATS micro service.
#[cfg(not(feature = "nats"))]
async fn nats(_: Arc<ConnectorType>, _: ConfigSource) -> ExitCode {
    not_compiled_in("nats", "nats")
}

/// Serves the actions and search operators as a NATS micro service until a
/// signal, then drains.
#[cfg(feature = "nats")]
async fn nats(ty: Arc<ConnectorType>, source: ConfigSource) -> ExitCode {
    let options = match crate::nats::NatsOptions::from_env(ty.name()) {
        Ok(o) => o,
        Err(e) => return fail(EXIT_USAGE, format_args!("{e}")),
    };
    let instance = match start_instance(&ty, &source).await {
        Ok(i) => i,
        Err(code) => return code,
    };
    match crate::nats::serve::run(instance, options).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(
            e @ (crate::nats::NatsServeError::Connect(_) | crate::nats::NatsServeError::Store(_)),
        ) => fail(1, format_args!("{e}")),
        Err(e) => fail(EXIT_USAGE, format_args!("{e}")),
    }
}

/// Serves the stdio protocol on this process's stdin and stdout.
#[cfg(not(feature = "stdio"))]
async fn stdio(_: Arc<ConnectorType>, _: ConfigSource, _: Option<u64>) -> ExitCode {
    not_compiled_in("stdio", "stdio")
}

/// Serves the stdio protocol on this process's stdin and stdout.
#[cfg(feature = "stdio")]
async fn stdio(
    ty: Arc<ConnectorType>,
    source: ConfigSource,
    max_line_bytes: Option<u64>,
) -> ExitCode {
    let mut options = match crate::stdio::StdioOptions::from_env() {
        Ok(o) => o,
        Err(e) => return fail_on_wire(&e.to_string()),
    };
    if let Some(limit) = max_line_bytes {
        options.max_line_bytes = usize::try_from(limit).unwrap_or(usize::MAX);
    }
    let instance = match Instance::start(Arc::clone(&ty), source.clone()).await {
        Ok(i) => i,
        Err(e) => return fail_on_wire(&start_failed(&ty, &source, &e)),
    };
    let pipes = crate::stdio::threads::stdout()
        .and_then(|output| Ok((crate::stdio::threads::stdin()?, output)));
    let (input, output) = match pipes {
        Ok(pipes) => pipes,
        Err(e) => {
            write_error_frame(&format!(
                "cannot start the threads that serve stdin and stdout: {e}"
            ));
            return fail(
                EXIT_ACTION_ERROR,
                format_args!("cannot start the threads that serve stdin and stdout: {e}"),
            );
        }
    };
    match crate::stdio::run(instance, input, output, options).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(EXIT_ACTION_ERROR, format_args!("{e}")),
    }
}
