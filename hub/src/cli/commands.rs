//! The `spoke` command line's arguments (clap) and [`main`], which runs the
//! command they name.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use spoke_runtime::duration;

use crate::cli::admin_client::{self, ClientTokenOptions, Decision};
use crate::cli::client::{self, CallOptions, EXIT_USAGE, HubTarget, RouteFlag, ShowEvents};
use crate::cli::connection_flags::ConnectionFlags;
use crate::cli::nats_client;
use crate::cli::registration_flags::RegistrationFlags;
use crate::cli::sync_client::{self, SyncOptions};
use crate::config::{self, DEFAULT_LISTEN, HubConfig, TlsFiles};
use crate::{server, sidecars};
use spoke_proto::v1::{CheckpointRef, InstanceRef};

/// The hub URL the client commands use unless told otherwise.
pub const DEFAULT_HUB_URL: &str = "http://127.0.0.1:7700";

#[derive(Debug, Parser)]
#[command(
    name = "spoke",
    version,
    about = "The Spoke hub, and a client for it.",
    disable_help_subcommand = true
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a hub: connectors attach to it, clients call their actions through it.
    Hub(HubArgs),
    /// List connector types and their instances, as JSON (with --nats:
    /// the instances serving on NATS, from their status bucket).
    Ls {
        /// Print a table for people instead of JSON.
        #[arg(long, short = 't', conflicts_with = "json")]
        table: bool,
        /// Print JSON (the default; kept for scripts that ask for it).
        #[arg(long, hide = true)]
        json: bool,
        #[command(flatten)]
        nats: NatsFlags,
        #[command(flatten)]
        hub: HubUrl,
    },
    /// Print a connector's manifest as JSON, without its hidden actions
    /// unless --hidden.
    Describe {
        /// The connector's name.
        connector: String,
        /// Include the connector's hidden actions (only a hub without auth,
        /// or an admin token, shows them).
        #[arg(long, alias = "all")]
        hidden: bool,
        #[command(flatten)]
        nats: NatsFlags,
        #[command(flatten)]
        hub: HubUrl,
    },
    /// Call an action (or resolve a search operator) through the hub.
    Call(CallArgs),
    /// Serve the hub's actions as MCP tools over stdio, for an AI agent
    /// that starts this command (tools `<connector>__<action>`, those the
    /// token may call; the list follows connectors as they attach and leave).
    Mcp {
        /// The longest a tool call may run [default: the action's own
        /// timeout only].
        #[arg(long, value_name = "DURATION", value_parser = parse_timeout)]
        timeout: Option<Duration>,
        #[command(flatten)]
        hub: HubUrl,
    },
    /// List the instances waiting for an administrator's approval (JSON).
    Pending {
        /// Print a table for people instead of JSON.
        #[arg(long, short = 't')]
        table: bool,
        /// How many instances to ask the hub for per page (0: the hub's
        /// default); every page is fetched and printed either way.
        #[arg(long, value_name = "N", default_value_t = 0, hide = true)]
        page_size: u32,
        #[command(flatten)]
        hub: HubUrl,
    },
    /// Approve an instance: it becomes active, live if it is attached.
    Approve(InstanceArgs),
    /// Reject a pending instance: its stream ends, it attaches no more.
    Reject(InstanceArgs),
    /// Revoke an instance: its live session ends, it attaches no more.
    Revoke(InstanceArgs),
    /// Forget an instance (its key and any decision), e.g. after its key was
    /// lost or replaced: its next attach is a new instance pending approval.
    Forget(InstanceArgs),
    /// Registration tokens (one-time approval of a new instance).
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Client tokens (what callers of the hub present).
    #[command(name = "client-token")]
    ClientToken {
        #[command(subcommand)]
        command: ClientTokenCommand,
    },
    /// Run one of a connector's syncs on an instance: its events (JSON lines)
    /// on stdout, its start, progress and end on stderr; or, with --cancel,
    /// cancel a running run.
    Sync(SyncArgs),
    /// List the sync runs going on, then the most recent ended ones (a table).
    Syncs {
        /// Only the runs of this connector.
        #[arg(long, value_name = "NAME")]
        connector: Option<String>,
        /// How many ended runs to list, newest first [default: 20].
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=500))]
        recent: Option<u32>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        hub: HubUrl,
    },
    /// The checkpoint the hub keeps for a sync (where its next run starts).
    Checkpoint {
        #[command(subcommand)]
        command: CheckpointCommand,
    },
}

#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("route").multiple(false))]
struct SyncArgs {
    /// The connector's name.
    #[arg(required_unless_present = "cancel")]
    connector: Option<String>,
    /// The sync [default: the connector's only one].
    sync: Option<String>,
    /// The mode [default: an interrupted run's, resumed; else incremental
    /// after a completed run when the sync has it; else its first mode].
    #[arg(long, value_name = "MODE", value_parser = ["full", "incremental", "realtime"])]
    mode: Option<String>,
    /// The source, for a sync that keeps a checkpoint per source.
    #[arg(long, value_name = "ID")]
    source: Option<String>,
    /// Run it on this instance.
    #[arg(long, value_name = "ID", group = "route")]
    instance: Option<String>,
    /// Run it on an instance with this display name.
    #[arg(long, value_name = "NAME", group = "route", alias = "name")]
    display_name: Option<String>,
    /// How long the run may take [default: no deadline].
    #[arg(long, value_name = "DURATION", value_parser = parse_timeout)]
    timeout: Option<Duration>,
    /// Do not resume an interrupted run: start from the checkpoint of the
    /// last completed one.
    #[arg(long)]
    fresh: bool,
    /// Write the events to this file (created, or truncated) instead of
    /// stdout; `-` is stdout.
    #[arg(long, value_name = "FILE|-")]
    out: Option<PathBuf>,
    /// Also print each checkpoint the hub stores, on stderr.
    #[arg(long, short = 'v')]
    verbose: bool,
    /// Cancel the running run with this id (as `spoke syncs` lists it)
    /// instead of starting one.
    #[arg(
        long,
        value_name = "RUN_ID",
        conflicts_with_all = [
            "connector", "sync", "mode", "source", "instance", "display_name",
            "timeout", "fresh", "out", "verbose",
        ]
    )]
    cancel: Option<String>,
    #[command(flatten)]
    hub: HubUrl,
    #[command(flatten)]
    nats: NatsFlags,
}

#[derive(Debug, Subcommand)]
enum CheckpointCommand {
    /// Print the stored checkpoint, and the last run's, as JSON.
    Get(CheckpointArgs),
    /// Replace the stored checkpoint (checked against the sync's checkpoint
    /// schema); prints it as `get` does.
    Set {
        #[command(flatten)]
        target: CheckpointArgs,
        /// The checkpoint value as JSON, `-` to read it from stdin, or
        /// `@FILE` to read it from FILE.
        #[arg(value_name = "JSON|-|@FILE", allow_hyphen_values = true)]
        value: String,
    },
    /// Forget the stored checkpoint: the next run starts from nothing.
    Reset(CheckpointArgs),
}

#[derive(Debug, Args)]
struct CheckpointArgs {
    /// The connector's name.
    connector: String,
    /// The sync's name.
    sync: String,
    /// The source [default: none].
    #[arg(long, value_name = "ID")]
    source: Option<String>,
    /// The tenant [default: the token's].
    #[arg(long, value_name = "TENANT")]
    tenant: Option<String>,
    #[command(flatten)]
    hub: HubUrl,
}

impl CheckpointArgs {
    /// The checkpoint these arguments name.
    fn target(&self) -> CheckpointRef {
        CheckpointRef {
            connector: self.connector.clone(),
            sync: self.sync.clone(),
            source_id: self.source.clone().unwrap_or_default(),
            tenant: self.tenant.clone().unwrap_or_default(),
        }
    }
}

#[derive(Debug, Args)]
struct InstanceArgs {
    /// The instance id.
    instance: String,
    /// Its connector, when the id alone is ambiguous.
    #[arg(long, value_name = "NAME")]
    connector: Option<String>,
    /// Its tenant, when the id alone is ambiguous.
    #[arg(long, value_name = "TENANT")]
    tenant: Option<String>,
    #[command(flatten)]
    hub: HubUrl,
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Make a one-time registration token (for SPOKE_REGISTRATION_TOKEN);
    /// prints the token alone.
    Create {
        /// The connector it registers.
        #[arg(long, value_name = "NAME")]
        connector: String,
        /// The tenant [default: the token's].
        #[arg(long, value_name = "TENANT", default_value = "")]
        tenant: String,
        /// How long it stays usable [default: 24h].
        #[arg(long, value_name = "DURATION", value_parser = parse_timeout)]
        ttl: Option<Duration>,
        #[command(flatten)]
        hub: HubUrl,
    },
}

#[derive(Debug, Subcommand)]
enum ClientTokenCommand {
    /// List the client tokens (what each grants; never the tokens), as JSON.
    Ls {
        /// Print a table for people instead of JSON.
        #[arg(long, short = 't')]
        table: bool,
        #[command(flatten)]
        hub: HubUrl,
    },
    /// Revoke a client token by its id: it is refused from its next call on.
    Revoke {
        /// The token's id (`c-...`, as `create` and `ls` show it), not the token.
        id: String,
        #[command(flatten)]
        hub: HubUrl,
    },
    /// Make a client token; prints the token alone.
    Create {
        /// The tenant [default: the token's].
        #[arg(long, value_name = "TENANT", default_value = "")]
        tenant: String,
        /// The connectors it may use, comma-separated, or `*` for all.
        #[arg(long, value_name = "a,b|*", value_delimiter = ',', required = true)]
        connectors: Vec<String>,
        /// May call write actions.
        #[arg(long)]
        write: bool,
        /// May call admin-only and hidden actions, and the admin commands.
        #[arg(long)]
        admin: bool,
        /// A name for people.
        #[arg(long, value_name = "TEXT", default_value = "")]
        label: String,
        /// How long it is valid [default: no expiry].
        #[arg(long, value_name = "DURATION", value_parser = parse_timeout)]
        ttl: Option<Duration>,
        #[command(flatten)]
        hub: HubUrl,
    },
}

#[derive(Debug, Args)]
struct HubArgs {
    /// The address to listen on, `host:port` (port 0 picks a free port).
    #[arg(long, value_name = "ADDR", default_value = DEFAULT_LISTEN, value_parser = parse_listen)]
    listen: SocketAddr,
    /// How often hub and connectors ping each other; a peer silent for two
    /// intervals is dropped.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_heartbeat)]
    heartbeat_interval: Duration,
    /// How long a lost instance's session and in-flight calls are kept for it
    /// to resume [default: the heartbeat interval, at most 2s].
    #[arg(long, value_name = "DURATION", value_parser = duration::parse)]
    resume_window: Option<Duration>,
    /// On SIGINT/SIGTERM, how long connectors get to finish in-flight work.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = duration::parse)]
    shutdown_grace: Duration,
    /// Supervise the stdio sidecars listed in this TOML file: start each,
    /// attach it as a connector, restart it when it exits.
    #[arg(long, value_name = "FILE.toml")]
    sidecars: Option<PathBuf>,
    /// Where the hub keeps its store (hub.db) and operator token [default:
    /// $XDG_DATA_HOME/spoke, else ~/.local/share/spoke].
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// The TLS certificate chain (PEM) of the listener.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The TLS private key (PEM) of the listener.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Serve without TLS (required when no certificate is given).
    #[arg(long, conflicts_with = "tls_cert")]
    insecure: bool,
    /// Development only: approve every instance without credentials, let
    /// clients call without a token, put everything in tenant "default".
    #[arg(long)]
    no_auth: bool,
    /// Also serve every connector's actions as MCP tools over Streamable
    /// HTTP at http://ADDR/mcp; callers present client tokens (without
    /// auth: loopback only).
    #[arg(long, value_name = "ADDR", value_parser = parse_listen)]
    mcp: Option<SocketAddr>,
    /// Also join NATS at URL: serve the attached connectors there (under
    /// spoke.<tenant>.<connector>.*, as `<bin> nats` does) and answer calls
    /// to connectors with no instance here through it. SPOKE_NATS_CREDS and
    /// SPOKE_TLS_CA apply.
    #[arg(long, value_name = "URL")]
    nats: Option<String>,
    #[command(flatten)]
    connections: ConnectionFlags,
    #[command(flatten)]
    registrations: RegistrationFlags,
}

#[derive(Debug, Args)]
struct HubUrl {
    /// The hub to talk to.
    #[arg(long = "hub", value_name = "URL", env = "SPOKE_HUB_URL", default_value = DEFAULT_HUB_URL)]
    url: String,
    /// The client token [default: <data>/operator.token if readable].
    #[arg(
        long,
        value_name = "TOKEN",
        env = "SPOKE_TOKEN",
        hide_env_values = true
    )]
    token: Option<String>,
    /// The hub's data directory, to read the operator token from.
    #[arg(long = "data", value_name = "DIR")]
    data: Option<PathBuf>,
}

impl HubUrl {
    /// The hub and the token to present: `--token`/`SPOKE_TOKEN`, else the
    /// operator token file if readable, else none.
    fn target(&self) -> HubTarget {
        let token = self
            .token
            .clone()
            .filter(|t| !t.trim().is_empty())
            .or_else(|| {
                let dir = self.data.clone().or_else(config::default_data_dir)?;
                let text = std::fs::read_to_string(config::operator_token_path(&dir)).ok()?;
                let token = text.trim().to_owned();
                (!token.is_empty()).then_some(token)
            });
        HubTarget {
            url: self.url.clone(),
            token,
        }
    }
}

#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("route").multiple(false))]
struct CallArgs {
    /// The connector's name.
    connector: String,
    /// The action (with --operator: the search operator).
    action: String,
    /// The input as JSON (or text in --input-encoding), or `-` to read it
    /// from stdin. Default `{}`. With --operator: the value (`{"value":
    /// ...}`, any JSON value, or plain text).
    #[arg(conflicts_with = "input_file")]
    input: Option<String>,
    #[command(flatten)]
    payload: spoke_runtime::cli::payload_flags::PayloadFlags,
    /// Call this instance.
    #[arg(long, value_name = "ID", group = "route")]
    instance: Option<String>,
    /// Call an instance with this display name.
    #[arg(long, value_name = "NAME", group = "route")]
    name: Option<String>,
    /// Call every instance with this tag; prints one entry per instance.
    #[arg(long, value_name = "TAG", group = "route")]
    tag: Option<String>,
    /// Give up after this long.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_timeout)]
    timeout: Duration,
    /// Resolve a search operator instead of calling an action.
    #[arg(long)]
    operator: bool,
    /// Print the events the call emits (progress, logs, custom events) on
    /// stderr as they come, one `event: <json>` line each.
    #[arg(long)]
    events: bool,
    /// Print the call's progress events on stderr as they come (like
    /// --events, for progress only).
    #[arg(long)]
    progress: bool,
    #[command(flatten)]
    nats: NatsFlags,
    #[command(flatten)]
    hub: HubUrl,
}

/// `--nats URL` and `--tenant`: straight to connectors served on NATS.
#[derive(Debug, Args)]
struct NatsFlags {
    /// Go straight to the connector's instances on this NATS server (they
    /// serve with `<bin> nats`), not through a hub. SPOKE_NATS_CREDS and
    /// SPOKE_TLS_CA apply.
    #[arg(long, value_name = "URL")]
    nats: Option<String>,
    /// With --nats: the tenant whose connectors to reach.
    #[arg(
        long,
        value_name = "TENANT",
        requires = "nats",
        default_value = "default"
    )]
    tenant: String,
}

impl NatsFlags {
    fn target(&self) -> Option<nats_client::NatsTarget> {
        self.nats.as_ref().map(|url| nats_client::NatsTarget {
            url: url.clone(),
            tenant: self.tenant.clone(),
        })
    }
}

fn parse_listen(text: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = text.parse() {
        return Ok(addr);
    }
    text.to_socket_addrs()
        .map_err(|e| format!("`{text}` is not a host:port address: {e}"))?
        .next()
        .ok_or_else(|| format!("`{text}` resolves to no address"))
}

fn parse_heartbeat(text: &str) -> Result<Duration, String> {
    duration::parse(text).and_then(config::check_heartbeat_interval)
}

fn parse_timeout(text: &str) -> Result<Duration, String> {
    let timeout = duration::parse(text)?;
    if timeout.is_zero() {
        return Err("the timeout must be more than zero".into());
    }
    Ok(timeout)
}

/// Runs the `spoke` command line and returns its exit code.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            let _ = err.print();
            return ExitCode::from(u8::try_from(err.exit_code()).unwrap_or(EXIT_USAGE));
        }
    };
    match cli.command {
        Command::Hub(args) => run_hub(args),
        command => run_client(command),
    }
}

fn run_hub(args: HubArgs) -> ExitCode {
    spoke_runtime::logging::init("info");
    let sidecars = match &args.sidecars {
        None => Vec::new(),
        Some(path) => match sidecars::config::load(path) {
            Ok(sidecars) => sidecars,
            Err(err) => {
                eprintln!("error: {err}");
                return ExitCode::from(EXIT_USAGE);
            }
        },
    };
    let config = HubConfig {
        listen: args.listen,
        heartbeat_interval: args.heartbeat_interval,
        resume_window: args
            .resume_window
            .unwrap_or_else(|| config::default_resume_window(args.heartbeat_interval)),
        shutdown_grace: args.shutdown_grace,
        data_dir: None,
        syncs_dir: None,
        tls: None,
        connections: args.connections.limits(),
        registrations: args.registrations.limits(),
        mcp: args.mcp,
        nats: None,
    };
    let config = match &args.nats {
        None => config,
        Some(url) => match spoke_runtime::nats::NatsConnect::from_env(Some(url)) {
            Ok(connect) => config.with_nats(connect),
            Err(err) => {
                eprintln!("error: {err}");
                return ExitCode::from(EXIT_USAGE);
            }
        },
    };
    let config = match secure(config, &args) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(server::run_supervised(config, sidecars)) {
        Ok(()) => {
            tracing::info!("hub stopped");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}

/// Adds auth and TLS to the hub's configuration from its flags.
fn secure(mut config: HubConfig, args: &HubArgs) -> Result<HubConfig, String> {
    match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => {
            config.tls = Some(TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
            });
        }
        _ if args.insecure => {}
        _ => {
            return Err(
                "no TLS configured: pass --tls-cert FILE --tls-key FILE, or --insecure to serve without TLS"
                    .into(),
            );
        }
    }
    if args.no_auth {
        // No store of approvals or tokens; only sync checkpoints, if asked.
        config.syncs_dir.clone_from(&args.data);
        return Ok(config);
    }
    let dir = args
        .data
        .clone()
        .or_else(config::default_data_dir)
        .ok_or("no data directory: pass --data DIR (neither XDG_DATA_HOME nor HOME is set)")?;
    config.data_dir = Some(dir);
    Ok(config)
}

fn run_client(command: Command) -> ExitCode {
    spoke_runtime::logging::init("warn");
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::from(client::EXIT_HUB_ERROR);
        }
    };
    let code = runtime.block_on(async move {
        match command {
            Command::Ls {
                table, nats, hub, ..
            } => match nats.target() {
                Some(target) => nats_client::ls(&target, !table).await,
                None => client::ls(&hub.target(), !table).await,
            },
            Command::Describe {
                connector,
                hidden,
                nats,
                hub,
            } => match nats.target() {
                Some(target) => nats_client::describe(&target, &connector, hidden).await,
                None => client::describe(&hub.target(), &connector, hidden).await,
            },
            Command::Pending {
                table,
                page_size,
                hub,
            } => admin_client::pending(&hub.target(), table, page_size).await,
            Command::Approve(args) => decide(Decision::Approve, args).await,
            Command::Reject(args) => decide(Decision::Reject, args).await,
            Command::Revoke(args) => decide(Decision::Revoke, args).await,
            Command::Forget(args) => decide(Decision::Forget, args).await,
            Command::Token {
                command:
                    TokenCommand::Create {
                        connector,
                        tenant,
                        ttl,
                        hub,
                    },
            } => {
                admin_client::create_registration_token(&hub.target(), tenant, connector, ttl).await
            }
            Command::ClientToken {
                command: ClientTokenCommand::Ls { table, hub },
            } => admin_client::list_client_tokens(&hub.target(), table).await,
            Command::ClientToken {
                command: ClientTokenCommand::Revoke { id, hub },
            } => admin_client::revoke_client_token(&hub.target(), id).await,
            Command::ClientToken {
                command:
                    ClientTokenCommand::Create {
                        tenant,
                        connectors,
                        write,
                        admin,
                        label,
                        ttl,
                        hub,
                    },
            } => {
                let options = ClientTokenOptions {
                    tenant,
                    connectors,
                    write,
                    admin,
                    label,
                    ttl,
                };
                admin_client::create_client_token(&hub.target(), options).await
            }
            Command::Sync(args) => sync(args).await,
            Command::Syncs {
                connector,
                recent,
                json,
                hub,
            } => sync_client::list(&hub.target(), connector, recent.unwrap_or(0), json).await,
            Command::Checkpoint { command } => match command {
                CheckpointCommand::Get(args) => {
                    sync_client::get_checkpoint(&args.hub.target(), args.target()).await
                }
                CheckpointCommand::Set { target, value } => {
                    sync_client::set_checkpoint(&target.hub.target(), target.target(), &value).await
                }
                CheckpointCommand::Reset(args) => {
                    sync_client::reset_checkpoint(&args.hub.target(), args.target()).await
                }
            },
            Command::Call(args) => {
                let route = match (args.instance, args.name, args.tag) {
                    (Some(id), _, _) => Some(RouteFlag::Instance(id)),
                    (_, Some(name), _) => Some(RouteFlag::Name(name)),
                    (_, _, Some(tag)) => Some(RouteFlag::Tag(tag)),
                    _ => None,
                };
                let options = CallOptions {
                    connector: args.connector,
                    action: args.action,
                    input: args.input,
                    payload: args.payload,
                    route,
                    timeout: args.timeout,
                    operator: args.operator,
                    events: match (args.events, args.progress) {
                        (true, _) => ShowEvents::All,
                        (false, true) => ShowEvents::Progress,
                        (false, false) => ShowEvents::Off,
                    },
                };
                match args.nats.target() {
                    Some(target) => nats_client::call(&target, options).await,
                    None => client::call(&args.hub.target(), options).await,
                }
            }
            Command::Mcp { timeout, hub } => client::mcp(&hub.target(), timeout).await,
            Command::Hub(_) => EXIT_USAGE,
        }
    });
    ExitCode::from(code)
}

async fn decide(decision: Decision, args: InstanceArgs) -> u8 {
    let target = InstanceRef {
        instance_id: args.instance,
        connector: args.connector.unwrap_or_default(),
        tenant: args.tenant.unwrap_or_default(),
    };
    admin_client::decide(&args.hub.target(), decision, target).await
}

/// `spoke sync`: cancels the run `--cancel` names, or runs the sync.
async fn sync(args: SyncArgs) -> u8 {
    let hub = args.hub.target();
    let nats = args.nats.target();
    if let Some(run_id) = args.cancel {
        if nats.is_some() {
            return client::Failure::Usage(format!(
                "--cancel needs a hub; over NATS, Ctrl-C the `spoke sync --nats` that started the run, or publish to spoke.<tenant>.<connector>.cancel.{run_id}"
            ))
            .report();
        }
        return sync_client::cancel(&hub, run_id).await;
    }
    let route = match (args.instance, args.display_name) {
        (Some(id), _) => Some(RouteFlag::Instance(id)),
        (_, Some(name)) => Some(RouteFlag::Name(name)),
        _ => None,
    };
    let options = SyncOptions {
        connector: args.connector.unwrap_or_default(),
        sync: args.sync,
        mode: args.mode,
        source: args.source,
        route,
        timeout: args.timeout,
        fresh: args.fresh,
        out: args.out,
        verbose: args.verbose,
    };
    match nats {
        Some(target) => nats_client::sync(&target, options).await,
        None => sync_client::sync(&hub, options).await,
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn route_flags_exclude_each_other() {
        let err = Cli::try_parse_from(["spoke", "call", "c", "a", "--tag", "x", "--name", "y"])
            .unwrap_err();
        assert_eq!(err.exit_code(), 2);
    }

    fn sync_args(args: &[&str]) -> Result<SyncArgs, clap::Error> {
        let mut all = vec!["spoke", "sync"];
        all.extend_from_slice(args);
        match Cli::try_parse_from(all)?.command {
            Command::Sync(args) => Ok(args),
            other => panic!("not sync: {other:?}"),
        }
    }

    #[test]
    fn sync_takes_a_connector_or_a_run_to_cancel() {
        let args = sync_args(&["--cancel", "run-1a2b"]).unwrap();
        assert_eq!(args.cancel.as_deref(), Some("run-1a2b"));
        assert_eq!(args.connector, None);
        let err = sync_args(&[]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("<CONNECTOR>"), "{err}");
        // --cancel starts nothing: the flags of a run do not go with it.
        assert!(sync_args(&["files", "--cancel", "run-1"]).is_err());
        assert!(sync_args(&["--cancel", "run-1", "--fresh"]).is_err());

        let args = sync_args(&[
            "files",
            "pages",
            "--mode",
            "full",
            "--source",
            "docs",
            "--display-name",
            "Files",
            "--timeout",
            "10m",
            "--fresh",
            "--out",
            "-",
            "-v",
        ])
        .unwrap();
        assert_eq!(args.connector.as_deref(), Some("files"));
        assert_eq!(args.sync.as_deref(), Some("pages"));
        assert_eq!(args.mode.as_deref(), Some("full"));
        assert_eq!(args.source.as_deref(), Some("docs"));
        assert_eq!(args.display_name.as_deref(), Some("Files"));
        assert_eq!(args.timeout, Some(Duration::from_secs(600)));
        assert!(args.fresh && args.verbose && args.cancel.is_none());
        assert_eq!(args.out, Some(PathBuf::from("-")));

        let args = sync_args(&["files"]).unwrap();
        assert_eq!((args.sync, args.mode, args.timeout), (None, None, None));
        assert!(sync_args(&["files", "--mode", "sometimes"]).is_err());
        assert!(sync_args(&["files", "--timeout", "0s"]).is_err());
    }

    #[test]
    fn sync_routes_by_instance_or_display_name_not_both() {
        let args = sync_args(&["files", "--instance", "files-1"]).unwrap();
        assert_eq!(args.instance.as_deref(), Some("files-1"));
        let err =
            sync_args(&["files", "--instance", "files-1", "--display-name", "Files"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert_eq!(err.kind(), clap::error::ErrorKind::ArgumentConflict);
        assert!(sync_args(&["files", "--tag", "eu"]).is_err());
    }

    #[test]
    fn syncs_and_checkpoint_commands_parse() {
        let cli = Cli::try_parse_from([
            "spoke",
            "syncs",
            "--connector",
            "files",
            "--recent",
            "5",
            "--json",
        ])
        .unwrap();
        let Command::Syncs {
            connector,
            recent,
            json,
            ..
        } = cli.command
        else {
            panic!("not syncs")
        };
        assert_eq!(
            (connector.as_deref(), recent, json),
            (Some("files"), Some(5), true)
        );
        assert!(Cli::try_parse_from(["spoke", "syncs", "--recent", "0"]).is_err());

        let cli = Cli::try_parse_from([
            "spoke",
            "checkpoint",
            "set",
            "files",
            "pages",
            "-",
            "--source",
            "docs",
            "--tenant",
            "acme",
        ])
        .unwrap();
        let Command::Checkpoint {
            command: CheckpointCommand::Set { target, value },
        } = cli.command
        else {
            panic!("not checkpoint set")
        };
        assert_eq!(value, "-");
        assert_eq!(
            target.target(),
            CheckpointRef {
                connector: "files".into(),
                sync: "pages".into(),
                source_id: "docs".into(),
                tenant: "acme".into(),
            }
        );
        let cli =
            Cli::try_parse_from(["spoke", "checkpoint", "set", "files", "pages", "-3"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Checkpoint { command: CheckpointCommand::Set { value, .. } } if value == "-3"
        ));
        assert!(Cli::try_parse_from(["spoke", "checkpoint", "set", "files", "pages"]).is_err());
        let cli = Cli::try_parse_from(["spoke", "checkpoint", "get", "files", "pages"]).unwrap();
        let Command::Checkpoint {
            command: CheckpointCommand::Get(args),
        } = cli.command
        else {
            panic!("not checkpoint get")
        };
        assert_eq!(args.target().source_id, "");
        assert!(Cli::try_parse_from(["spoke", "checkpoint", "reset", "files"]).is_err());
    }

    fn hub_args(args: &[&str]) -> HubArgs {
        let mut all = vec!["spoke", "hub"];
        all.extend_from_slice(args);
        match Cli::try_parse_from(all).unwrap().command {
            Command::Hub(args) => args,
            _ => panic!("not hub"),
        }
    }

    #[test]
    fn tls_or_insecure_must_be_chosen_and_auth_needs_a_data_dir() {
        let base = HubConfig::new("127.0.0.1:0".parse().unwrap());
        let err = secure(base.clone(), &hub_args(&[])).unwrap_err();
        assert!(
            err.contains("--tls-cert") && err.contains("--insecure"),
            "{err}"
        );
        let config = secure(base.clone(), &hub_args(&["--insecure", "--data", "/tmp/x"])).unwrap();
        assert_eq!(
            config.data_dir.as_deref(),
            Some(std::path::Path::new("/tmp/x"))
        );
        assert!(config.tls.is_none());
        let config = secure(base.clone(), &hub_args(&["--insecure", "--no-auth"])).unwrap();
        assert!(config.data_dir.is_none());
        let config = secure(
            base,
            &hub_args(&[
                "--tls-cert",
                "c.pem",
                "--tls-key",
                "k.pem",
                "--data",
                "/tmp/x",
            ]),
        )
        .unwrap();
        assert!(config.tls.is_some());
        assert!(Cli::try_parse_from(["spoke", "hub", "--tls-cert", "c.pem"]).is_err());
        assert!(
            Cli::try_parse_from([
                "spoke",
                "hub",
                "--tls-cert",
                "c",
                "--tls-key",
                "k",
                "--insecure"
            ])
            .is_err()
        );
    }

    #[test]
    fn hub_flags_parse_durations() {
        let cli = Cli::try_parse_from([
            "spoke",
            "hub",
            "--listen",
            "127.0.0.1:0",
            "--heartbeat-interval",
            "200ms",
        ])
        .unwrap();
        let Command::Hub(args) = cli.command else {
            panic!("not hub")
        };
        assert_eq!(args.heartbeat_interval, Duration::from_millis(200));
        assert_eq!(args.resume_window, None);
        assert!(Cli::try_parse_from(["spoke", "hub", "--heartbeat-interval", "0s"]).is_err());
    }
}
