//! The `spoke` command line.
//!
//! ```text
//! spoke hub [--listen ADDR] [--heartbeat-interval D] [--resume-window D] [--shutdown-grace D]
//!           [--sidecars FILE.toml] [--data DIR] (--tls-cert FILE --tls-key FILE | --insecure)
//!           [--no-auth] [--mcp ADDR]
//! spoke ls [--table]                        connector types and their instances (JSON)
//! spoke describe <connector>                a connector's manifest (pretty JSON)
//! spoke call <connector> <action> [JSON|-]  call an action through the hub
//!     [--instance ID | --name NAME | --tag TAG] [--timeout D] [--operator]
//! spoke mcp [--timeout D]                   the hub's actions as MCP tools over stdio
//! spoke pending [--table]                   instances awaiting approval
//! spoke approve|reject|revoke|forget <instance> [--connector C] [--tenant T]
//! spoke token create --connector NAME [--tenant T] [--ttl D]
//! spoke client-token create --connectors a,b|* [--tenant T] [--write] [--admin] [--label L] [--ttl D]
//! spoke client-token ls [--table]          client tokens (JSON; never the tokens)
//! spoke client-token revoke <ID>           refuse a client token from now on
//! spoke sync <connector> [sync] [--mode M] [--source ID] [--fresh] [--out FILE|-]
//!     [--instance ID | --display-name NAME] [--timeout D] [-v]
//!                                          run a sync: events on stdout, its end on stderr
//! spoke sync --cancel <RUN_ID>             cancel a running run
//! spoke syncs [--connector C] [--recent N] [--json]
//!                                          the running and the recent sync runs (a table)
//! spoke checkpoint get|reset <connector> <sync> [--source ID] [--tenant T]
//! spoke checkpoint set <connector> <sync> <JSON|-|@FILE> [--source ID] [--tenant T]
//! ```
//!
//! The client commands take `--hub URL` (env `SPOKE_HUB_URL`, default
//! `http://127.0.0.1:7700`) and send a client token: `--token` (env
//! `SPOKE_TOKEN`), else the operator token in `<data>/operator.token` if it
//! is readable (`--data DIR`, default the user's data directory). Exit codes: 0 success, 1 the action returned an
//! error (or a broadcast had one; for `sync`, the run failed or was
//! cancelled), 2 usage error, 3 hub or transport error.
//! `spoke hub` exits 0 after a signal-driven shutdown, 1 if it cannot run,
//! 2 on a usage error (among them: neither TLS flags nor `--insecure`).
//!
//! | module | what it is |
//! |---|---|
//! | `commands` | the arguments and [`main`]: `spoke hub` runs a [`server`](crate::server), the others call one |
//! | `connection_flags` | `spoke hub`'s connection-limit flags (`--max-connections`, the timeouts, the budgets) |
//! | `registration_flags` | `spoke hub`'s registration-limit flags (`--max-pending-per-tenant`, `--max-pending`, `--pending-expiry`, `--register-burst`, `--register-rate`) |
//! | [`client`] | `ls`, `describe`, `call`, `mcp`: the Hub service's client, the token and TLS of `--hub` |
//! | [`admin_client`] | `pending`, `approve`, `reject`, `revoke`, `forget`, `token`, `client-token`: the Admin service's client |
//! | [`sync_client`] | `sync`, `syncs` (the Hub service's sync calls) and `checkpoint` (the Admin service's) |
//!
//! It is the top of the crate: it uses the server, the settings and the
//! sidecars file; nothing in the hub imports it.

pub mod admin_client;
pub mod client;
mod commands;
mod connection_flags;
pub mod nats_client;
mod registration_flags;
pub mod sync_client;

pub use commands::{DEFAULT_HUB_URL, main};
