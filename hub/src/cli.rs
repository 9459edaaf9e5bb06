//! The `spoke` command line.
//!
//! ```text
//! spoke hub [--listen ADDR] [--heartbeat-interval D] [--resume-window D] [--shutdown-grace D]
//!           [--sidecars FILE.toml]
//! spoke ls [--table]                        connector types and their instances (JSON)
//! spoke describe <connector>                a connector's manifest (pretty JSON)
//! spoke call <connector> <action> [JSON|-]  call an action through the hub
//!     [--instance ID | --name NAME | --tag TAG] [--timeout D] [--operator]
//! ```
//!
//! The client commands take `--hub URL` (env `SPOKE_HUB_URL`, default
//! `http://127.0.0.1:7700`). Exit codes: 0 success, 1 the action returned an
//! error (or a broadcast had one), 2 usage error, 3 hub or transport error.
//! `spoke hub` exits 0 after a signal-driven shutdown and 1 if it cannot run.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use spoke_runtime::duration;

use crate::client::{self, CallOptions, EXIT_USAGE, RouteFlag};
use crate::config::{self, DEFAULT_LISTEN, HubConfig};
use crate::{server, sidecars_config};

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
    /// List connector types and their instances, as JSON.
    Ls {
        /// Print a table for people instead of JSON.
        #[arg(long, short = 't', conflicts_with = "json")]
        table: bool,
        /// Print JSON (the default; kept for scripts that ask for it).
        #[arg(long, hide = true)]
        json: bool,
        #[command(flatten)]
        hub: HubUrl,
    },
    /// Print a connector's manifest as JSON.
    Describe {
        /// The connector's name.
        connector: String,
        #[command(flatten)]
        hub: HubUrl,
    },
    /// Call an action (or resolve a search operator) through the hub.
    Call(CallArgs),
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
}

#[derive(Debug, Args)]
struct HubUrl {
    /// The hub to talk to.
    #[arg(long = "hub", value_name = "URL", env = "SPOKE_HUB_URL", default_value = DEFAULT_HUB_URL)]
    url: String,
}

#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("route").multiple(false))]
struct CallArgs {
    /// The connector's name.
    connector: String,
    /// The action (with --operator: the search operator).
    action: String,
    /// The input as JSON, or `-` to read it from stdin. Default `{}`. With
    /// --operator: the value (`{"value": ...}`, any JSON value, or plain text).
    input: Option<String>,
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
    #[command(flatten)]
    hub: HubUrl,
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
        Some(path) => match sidecars_config::load(path) {
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
            Command::Ls { table, hub, .. } => client::ls(&hub.url, !table).await,
            Command::Describe { connector, hub } => client::describe(&hub.url, &connector).await,
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
                    route,
                    timeout: args.timeout,
                    operator: args.operator,
                };
                client::call(&args.hub.url, options).await
            }
            Command::Hub(_) => EXIT_USAGE,
        }
    });
    ExitCode::from(code)
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
