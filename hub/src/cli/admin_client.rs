//! The admin commands of the `spoke` CLI, calling the hub's Admin service:
//! `pending`, `approve`, `reject`, `revoke`, `forget`, `token create` and
//! `client-token create|ls|revoke`.
//!
//! Output: `pending` prints JSON (`{"instances": [{"tenant", "connector",
//! "instance", "display_name", "key_fingerprint", "first_seen_unix_ms",
//! "attached", "peer"}]}`) or with `--table` a table, of every pending
//! instance (it asks the hub for page after page); `approve`, `reject`, `forget`
//! and `revoke` print what was done, one line on stdout; the token
//! commands print the token alone on stdout (its id and expiry on stderr).
//! Errors and exit codes as for the other client commands.

use std::time::Duration;

use serde_json::json;
use spoke_proto::v1::admin_client::AdminClient;
use spoke_proto::v1::{
    CreateClientTokenRequest, CreateRegistrationTokenRequest, InstanceRef, ListClientTokensRequest,
    ListPendingRequest, PendingInstance, RevokeClientTokenRequest,
};

use crate::cli::client::{EXIT_OK, Failure, HubTarget, authorized_channel, columns};

/// How long an admin call waits for the hub.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(10);

/// What `approve`, `reject`, `revoke` and `forget` do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// `spoke approve`.
    Approve,
    /// `spoke reject`.
    Reject,
    /// `spoke revoke`.
    Revoke,
    /// `spoke forget`.
    Forget,
}

/// What `spoke client-token create` makes.
#[derive(Debug, Clone, Default)]
pub struct ClientTokenOptions {
    /// Its tenant ("" for the caller's).
    pub tenant: String,
    /// The connectors, or `["*"]`.
    pub connectors: Vec<String>,
    /// May call write actions.
    pub write: bool,
    /// May call admin-only and hidden actions and the Admin service.
    pub admin: bool,
    /// A name for people.
    pub label: String,
    /// How long it is valid; `None`: no expiry.
    pub ttl: Option<Duration>,
}

/// The Admin service's client, its requests carrying the client token.
pub(crate) async fn admin(
    hub: &HubTarget,
) -> Result<AdminClient<crate::cli::client::Authorized>, Failure> {
    Ok(AdminClient::new(authorized_channel(hub).await?))
}

/// An admin request, with the admin calls' deadline.
pub(crate) fn request<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(ADMIN_TIMEOUT);
    request
}

/// Prints the command's answer on stdout (exit 0), or reports its failure.
pub(crate) fn finish(result: Result<String, Failure>) -> u8 {
    match result {
        Ok(text) => {
            println!("{text}");
            EXIT_OK
        }
        Err(failure) => failure.report(),
    }
}

fn ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// Every pending instance the hub lists, page after page (`page_size` per
/// page; 0 the hub's default).
async fn all_pending(
    client: &mut AdminClient<crate::cli::client::Authorized>,
    page_size: u32,
) -> Result<Vec<PendingInstance>, Failure> {
    let mut instances = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = client
            .list_pending(request(ListPendingRequest {
                page_size,
                page_token: page_token.clone(),
            }))
            .await
            .map_err(|s| Failure::from_status(&s))?
            .into_inner();
        instances.extend(page.instances);
        if page.next_page_token.is_empty() {
            return Ok(instances);
        }
        if page.next_page_token == page_token {
            return Err(Failure::Hub {
                code: "internal",
                message: "the hub answered ListPending with the page token it was given; stopped to avoid listing forever".to_owned(),
            });
        }
        page_token = page.next_page_token;
    }
}

/// `spoke pending [--table]`: every page of the pending instances.
pub async fn pending(hub: &HubTarget, table: bool, page_size: u32) -> u8 {
    finish(
        async {
            let mut client = admin(hub).await?;
            let instances = all_pending(&mut client, page_size).await?;
            let rows: Vec<_> = instances
                .into_iter()
                .map(|p| {
                    let r = p.instance.unwrap_or_default();
                    (
                        r,
                        p.display_name,
                        p.key_fingerprint,
                        p.first_seen_unix_ms,
                        p.attached,
                        p.peer,
                    )
                })
                .collect();
            if !table {
                let list: Vec<_> = rows
                    .iter()
                    .map(|(r, name, fp, first, attached, peer)| {
                        json!({
                            "tenant": r.tenant, "connector": r.connector, "instance": r.instance_id,
                            "display_name": name, "key_fingerprint": fp,
                            "first_seen_unix_ms": first, "attached": attached, "peer": peer,
                        })
                    })
                    .collect();
                return Ok(
                    serde_json::to_string_pretty(&json!({ "instances": list })).unwrap_or_default()
                );
            }
            if rows.is_empty() {
                return Ok("no instances await approval".to_owned());
            }
            let mut cells = vec![
                [
                    "TENANT",
                    "CONNECTOR",
                    "INSTANCE",
                    "NAME",
                    "KEY",
                    "ATTACHED",
                    "PEER",
                ]
                .map(str::to_owned),
            ];
            for (r, name, fp, _, attached, peer) in rows {
                cells.push([
                    r.tenant,
                    r.connector,
                    r.instance_id,
                    name,
                    fp,
                    if attached { "yes" } else { "no" }.to_owned(),
                    peer,
                ]);
            }
            Ok(columns(&cells).join("\n"))
        }
        .await,
    )
}

/// `spoke approve|reject|revoke|forget <instance> [--connector C] [--tenant T]`.
pub async fn decide(hub: &HubTarget, decision: Decision, target: InstanceRef) -> u8 {
    finish(
        async {
            let mut client = admin(hub).await?;
            let answer = match decision {
                Decision::Approve => client.approve(request(target)).await,
                Decision::Reject => client.reject(request(target)).await,
                Decision::Revoke => client.revoke(request(target)).await,
                Decision::Forget => client.forget(request(target)).await,
            }
            .map_err(|s| Failure::from_status(&s))?;
            Ok(answer.into_inner().message)
        }
        .await,
    )
}

/// `spoke token create --connector NAME [--tenant T] [--ttl D]`: prints the
/// registration token alone.
pub async fn create_registration_token(
    hub: &HubTarget,
    tenant: String,
    connector: String,
    ttl: Option<Duration>,
) -> u8 {
    finish(
        async {
            let mut client = admin(hub).await?;
            let made = client
                .create_registration_token(request(CreateRegistrationTokenRequest {
                    tenant,
                    connector,
                    ttl_ms: ttl.map_or(0, ms),
                }))
                .await
                .map_err(|s| Failure::from_status(&s))?
                .into_inner();
            eprintln!(
                "registration token {} (one use; expires at unix ms {})",
                made.id, made.expires_unix_ms
            );
            Ok(made.token)
        }
        .await,
    )
}

/// `spoke client-token create ...`: prints the client token alone.
pub async fn create_client_token(hub: &HubTarget, options: ClientTokenOptions) -> u8 {
    finish(
        async {
            let mut client = admin(hub).await?;
            let made = client
                .create_client_token(request(CreateClientTokenRequest {
                    tenant: options.tenant,
                    connectors: options.connectors,
                    write: options.write,
                    admin: options.admin,
                    label: options.label,
                    ttl_ms: options.ttl.map_or(0, ms),
                }))
                .await
                .map_err(|s| Failure::from_status(&s))?
                .into_inner();
            if made.expires_unix_ms == 0 {
                eprintln!("client token {} (no expiry)", made.id);
            } else {
                eprintln!(
                    "client token {} (expires at unix ms {})",
                    made.id, made.expires_unix_ms
                );
            }
            Ok(made.token)
        }
        .await,
    )
}

/// `spoke client-token ls [--table]`.
pub async fn list_client_tokens(hub: &HubTarget, table: bool) -> u8 {
    finish(
        async {
            let mut client = admin(hub).await?;
            let tokens = client
                .list_client_tokens(request(ListClientTokensRequest {}))
                .await
                .map_err(|s| Failure::from_status(&s))?
                .into_inner()
                .tokens;
            if !table {
                let list: Vec<_> = tokens
                    .iter()
                    .map(|t| {
                        json!({
                            "id": t.id, "tenant": t.tenant, "connectors": t.connectors,
                            "write": t.write, "admin": t.admin, "operator": t.operator,
                            "label": t.label, "created_unix_ms": t.created_unix_ms,
                            "expires_unix_ms": t.expires_unix_ms, "revoked": t.revoked,
                        })
                    })
                    .collect();
                return Ok(
                    serde_json::to_string_pretty(&json!({ "tokens": list })).unwrap_or_default()
                );
            }
            if tokens.is_empty() {
                return Ok("no client tokens".to_owned());
            }
            let mut cells = vec![
                [
                    "ID",
                    "TENANT",
                    "CONNECTORS",
                    "GRANTS",
                    "LABEL",
                    "EXPIRES",
                    "STATE",
                ]
                .map(str::to_owned),
            ];
            let now = crate::ids::unix_ms();
            for t in tokens {
                let grants = [
                    Some("read"),
                    t.write.then_some("write"),
                    t.admin.then_some("admin"),
                    t.operator.then_some("operator"),
                ]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(",");
                let expired = t.expires_unix_ms != 0 && t.expires_unix_ms <= now;
                cells.push([
                    t.id,
                    t.tenant,
                    t.connectors.join(","),
                    grants,
                    t.label,
                    if t.expires_unix_ms == 0 {
                        "never".to_owned()
                    } else {
                        format!("unix ms {}", t.expires_unix_ms)
                    },
                    if t.revoked {
                        "revoked"
                    } else if expired {
                        "expired"
                    } else {
                        "active"
                    }
                    .to_owned(),
                ]);
            }
            Ok(columns(&cells).join("\n"))
        }
        .await,
    )
}

/// `spoke client-token revoke <id>`.
pub async fn revoke_client_token(hub: &HubTarget, id: String) -> u8 {
    finish(
        async {
            let mut client = admin(hub).await?;
            let answer = client
                .revoke_client_token(request(RevokeClientTokenRequest { id }))
                .await
                .map_err(|s| Failure::from_status(&s))?;
            Ok(answer.into_inner().message)
        }
        .await,
    )
}
