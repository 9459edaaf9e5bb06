//! The `spoke.v1.Admin` service: pending instances, approving, rejecting
//! and revoking them, making registration tokens, making, listing and
//! revoking client tokens.
//!
//! Every call needs an admin client token; it acts on the token's tenant,
//! the operator token on any tenant. An instance named by id alone must be
//! unambiguous among the tenants the caller acts on (otherwise the error
//! lists the matches). A hub without auth has no store: every Admin call
//! is `FAILED_PRECONDITION`. `ListPending` answers a page at a time (100 by
//! default, at most 500 and 1 MiB), with a token for the next.

use std::sync::Arc;
use std::time::Duration;

use spoke_proto::prost::Message;
use spoke_proto::v1::admin_server::Admin;
use spoke_proto::v1::{
    AdminResponse, CheckpointInfo, CheckpointRef, ClientTokenInfo, CreateClientTokenRequest,
    CreateRegistrationTokenRequest, CreatedToken, InstanceRef, ListClientTokensRequest,
    ListClientTokensResponse, ListPendingRequest, ListPendingResponse, PendingInstance,
    RevokeClientTokenRequest, SetCheckpointRequest,
};
use spoke_runtime::grpc::identity::fingerprint;
use tonic::{Request, Response, Status};

use crate::routing::registry::InstanceKey;
use crate::sessions::register::tenant_name;
use crate::sessions::state::HubState;
use crate::trust::access::Caller;
use crate::trust::approval::Trust;
use crate::trust::store::{Approval, ClientGrant, InstanceRecord, NewToken, PendingCursor, Scope};

/// How long a registration token stays usable when no TTL is given.
const DEFAULT_REGISTRATION_TTL: Duration = Duration::from_secs(24 * 3600);
/// The pending instances per `ListPending` page when the request says 0.
const DEFAULT_PENDING_PAGE_SIZE: usize = 100;
/// The most pending instances per `ListPending` page, whatever the request
/// says.
const MAX_PENDING_PAGE_SIZE: usize = 500;
/// The most bytes of pending instances per `ListPending` page (at least
/// one instance is sent): records stored before the Register limits may
/// be large.
const MAX_PENDING_PAGE_BYTES: usize = 1024 * 1024;
/// The longest page token the hub reads (it gives out about 35 bytes).
const MAX_PAGE_TOKEN_BYTES: usize = 64;

/// The Admin service.
#[derive(Debug, Clone)]
pub(crate) struct AdminApi {
    state: Arc<HubState>,
}

impl AdminApi {
    /// The service over the hub's state.
    pub(crate) fn new(state: Arc<HubState>) -> Self {
        AdminApi { state }
    }

    /// The admin caller and the trust store; the refusal otherwise.
    fn admin<T>(&self, request: &Request<T>, what: &str) -> Result<(Caller, Arc<Trust>), Status> {
        let checked = (|| {
            let trust = self.state.trust.clone().ok_or_else(|| {
                Status::failed_precondition(
                    "this hub runs with --no-auth: it keeps no approvals or tokens",
                )
            })?;
            let caller = self.state.access.caller(request.metadata())?;
            if !caller.is_admin() {
                return Err(Status::permission_denied(format!(
                    "Admin.{what} needs an admin token (spoke client-token create --admin); this one is not"
                )));
            }
            Ok((caller, trust))
        })();
        if let Err(status) = &checked {
            tracing::warn!(
                "admin {what} refused: {}: {}",
                crate::wire::code_name(status.code()),
                status.message()
            );
        }
        checked
    }

    /// The one recorded instance `target` names among the caller's tenants.
    async fn resolve(
        &self,
        caller: &Caller,
        trust: &Arc<Trust>,
        target: &InstanceRef,
    ) -> Result<InstanceRecord, Status> {
        if target.instance_id.is_empty() {
            return Err(Status::invalid_argument("InstanceRef.instance_id is empty"));
        }
        let tenant = if target.tenant.is_empty() {
            caller.tenant_scope()
        } else {
            Some(tenant_name(&target.tenant).to_owned())
        };
        let not_found = || {
            Status::not_found(format!(
                "no instance `{}`{} is recorded by this hub{}",
                target.instance_id,
                if target.connector.is_empty() {
                    String::new()
                } else {
                    format!(" of connector `{}`", target.connector)
                },
                if caller.is_operator() {
                    ""
                } else {
                    " in your tenant"
                }
            ))
        };
        if tenant.as_deref().is_some_and(|t| !caller.may_act_on(t)) {
            return Err(not_found());
        }
        let store = Arc::clone(&trust.store);
        let (id, connector) = (target.instance_id.clone(), target.connector.clone());
        let found = blocking(move || {
            store.find(
                &id,
                (!connector.is_empty()).then_some(connector.as_str()),
                tenant.as_deref(),
            )
        })
        .await?;
        match found.len() {
            0 => Err(not_found()),
            1 => Ok(found.into_iter().next().unwrap_or_else(|| unreachable!())),
            _ => {
                let matches: Vec<String> = found
                    .iter()
                    .map(|r| format!("connector `{}` in tenant `{}`", r.connector, r.tenant))
                    .collect();
                Err(Status::invalid_argument(format!(
                    "instance id `{}` is ambiguous: it matches {}; name one with --connector and/or --tenant",
                    target.instance_id,
                    matches.join(", ")
                )))
            }
        }
    }

    /// The admin caller, the trust store, and the one recorded instance the
    /// request names, with its key.
    async fn target(
        &self,
        request: Request<InstanceRef>,
        what: &str,
    ) -> Result<(Caller, Arc<Trust>, InstanceRecord, InstanceKey), Status> {
        let (caller, trust) = self.admin(&request, what)?;
        let record = self.resolve(&caller, &trust, request.get_ref()).await?;
        let key = InstanceKey {
            tenant: record.tenant.clone(),
            connector: record.connector.clone(),
            id: record.instance_id.clone(),
        };
        Ok((caller, trust, record, key))
    }

    /// Records a decision on the instance `target` names, then applies it
    /// to its live session.
    async fn decide(
        &self,
        request: Request<InstanceRef>,
        what: &str,
        to: Approval,
        allowed_from: &[Approval],
    ) -> Result<Response<AdminResponse>, Status> {
        let (caller, trust, record, key) = self.target(request, what).await?;
        if !allowed_from.contains(&record.status) {
            return Err(Status::failed_precondition(format!(
                "{key} is {}; {what} applies to an instance that is {}",
                record.status.as_str(),
                allowed_from
                    .iter()
                    .map(|a| a.as_str())
                    .collect::<Vec<_>>()
                    .join(" or ")
            )));
        }
        let store = Arc::clone(&trust.store);
        let by = format!("client token {}", caller.id());
        let k = key.clone();
        blocking(move || store.decide(&k.tenant, &k.connector, &k.id, to, &by)).await?;
        let message = match to {
            Approval::Approved => {
                if self.state.approve_live(&key) {
                    format!("approved {key}; its live session is now active")
                } else {
                    format!("approved {key}; it becomes active when it attaches")
                }
            }
            _ => {
                let verb = to.as_str();
                let live = self.state.deny_live(&key, verb);
                tracing::warn!("{key} was {verb} by client token {}", caller.id());
                if live {
                    format!("{verb} {key}; its live session was ended")
                } else {
                    format!("{verb} {key}")
                }
            }
        };
        Ok(answered(&caller, key, message))
    }

    /// The tenant a token-making request acts on.
    fn target_tenant(caller: &Caller, requested: &str) -> Result<String, Status> {
        let tenant = if requested.is_empty() {
            caller.tenant().to_owned()
        } else {
            requested.to_owned()
        };
        if !caller.may_act_on(&tenant) {
            return Err(Status::permission_denied(format!(
                "this token acts on tenant `{}` only, not on `{tenant}`",
                caller.tenant()
            )));
        }
        Ok(tenant)
    }
}

/// Runs a store call off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, crate::trust::store::StoreError> + Send + 'static,
) -> Result<T, Status> {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(Status::internal(e.to_string())),
        Err(e) => Err(Status::internal(format!("the store call failed: {e}"))),
    }
}

/// The page size a `ListPending` request gets: 0 is the default, and at
/// most [`MAX_PENDING_PAGE_SIZE`].
fn pending_page_size(requested: u32) -> usize {
    match usize::try_from(requested).unwrap_or(usize::MAX) {
        0 => DEFAULT_PENDING_PAGE_SIZE,
        n => n.min(MAX_PENDING_PAGE_SIZE),
    }
}

/// The cursor of a `ListPending` page token; `None` for the first page.
fn parse_page_token(token: &str) -> Result<Option<PendingCursor>, Status> {
    if token.is_empty() {
        return Ok(None);
    }
    if token.len() > MAX_PAGE_TOKEN_BYTES {
        return Err(Status::invalid_argument(format!(
            "ListPendingRequest.page_token is {} bytes long; the hub gives out tokens of at most {MAX_PAGE_TOKEN_BYTES}: pass the next_page_token of the previous page, or none for the first",
            token.len()
        )));
    }
    token.parse().map(Some).map_err(|()| {
        Status::invalid_argument(format!(
            "ListPendingRequest.page_token {token:?} is not one this hub gives out: pass the next_page_token of the previous page, or none for the first"
        ))
    })
}

fn ttl_of(ms: u64) -> Option<Duration> {
    (ms > 0).then(|| Duration::from_millis(ms))
}

/// Logs what an instance decision did and answers with it.
fn answered(caller: &Caller, key: InstanceKey, message: String) -> Response<AdminResponse> {
    tracing::info!("admin: {message} (by client token {})", caller.id());
    Response::new(AdminResponse {
        message,
        instance: Some(InstanceRef {
            instance_id: key.id,
            connector: key.connector,
            tenant: key.tenant,
        }),
    })
}

impl From<NewToken> for CreatedToken {
    fn from(made: NewToken) -> Self {
        CreatedToken {
            token: made.token,
            id: made.id,
            expires_unix_ms: made.expires_unix_ms.unwrap_or(0),
        }
    }
}

#[tonic::async_trait]
impl Admin for AdminApi {
    async fn get_checkpoint(
        &self,
        request: Request<CheckpointRef>,
    ) -> Result<Response<CheckpointInfo>, Status> {
        crate::syncs::api::get_checkpoint(&self.state, request).await
    }

    async fn set_checkpoint(
        &self,
        request: Request<SetCheckpointRequest>,
    ) -> Result<Response<CheckpointInfo>, Status> {
        crate::syncs::api::set_checkpoint(&self.state, request).await
    }

    async fn reset_checkpoint(
        &self,
        request: Request<CheckpointRef>,
    ) -> Result<Response<AdminResponse>, Status> {
        crate::syncs::api::reset_checkpoint(&self.state, request).await
    }

    async fn list_pending(
        &self,
        request: Request<ListPendingRequest>,
    ) -> Result<Response<ListPendingResponse>, Status> {
        let (caller, trust) = self.admin(&request, "ListPending")?;
        let request = request.into_inner();
        let page_size = pending_page_size(request.page_size);
        let after = parse_page_token(&request.page_token)?;
        let store = Arc::clone(&trust.store);
        let tenant = caller.tenant_scope();
        // One more than the page, to know whether another page follows.
        let records =
            blocking(move || store.pending_page(tenant.as_deref(), after, page_size + 1)).await?;
        let more = records.len() > page_size;
        let tables = self.state.lock();
        let mut instances = Vec::new();
        let mut bytes = 0;
        let mut last = None;
        let mut cut = false;
        for (cursor, r) in records.into_iter().take(page_size) {
            let key = InstanceKey {
                tenant: r.tenant.clone(),
                connector: r.connector.clone(),
                id: r.instance_id.clone(),
            };
            let attached = tables
                .registry
                .instance(&key)
                .is_some_and(|i| i.link.is_some());
            let instance = PendingInstance {
                key_fingerprint: fingerprint(&r.public_key),
                display_name: r.display_name,
                first_seen_unix_ms: r.first_seen_unix_ms,
                attached,
                peer: r.peer,
                instance: Some(InstanceRef {
                    instance_id: r.instance_id,
                    connector: r.connector,
                    tenant: r.tenant,
                }),
            };
            // The entry's bytes and its tag and length prefix.
            let size = instance.encoded_len() + 8;
            if !instances.is_empty() && bytes + size > MAX_PENDING_PAGE_BYTES {
                cut = true;
                break;
            }
            bytes += size;
            last = Some(cursor);
            instances.push(instance);
        }
        let next_page_token = match last {
            Some(cursor) if more || cut => cursor.to_string(),
            _ => String::new(),
        };
        Ok(Response::new(ListPendingResponse {
            instances,
            next_page_token,
        }))
    }

    async fn approve(
        &self,
        request: Request<InstanceRef>,
    ) -> Result<Response<AdminResponse>, Status> {
        self.decide(
            request,
            "Approve",
            Approval::Approved,
            &[Approval::Pending, Approval::Rejected, Approval::Revoked],
        )
        .await
    }

    async fn reject(
        &self,
        request: Request<InstanceRef>,
    ) -> Result<Response<AdminResponse>, Status> {
        self.decide(request, "Reject", Approval::Rejected, &[Approval::Pending])
            .await
    }

    async fn revoke(
        &self,
        request: Request<InstanceRef>,
    ) -> Result<Response<AdminResponse>, Status> {
        self.decide(
            request,
            "Revoke",
            Approval::Revoked,
            &[Approval::Approved, Approval::Pending],
        )
        .await
    }

    async fn forget(
        &self,
        request: Request<InstanceRef>,
    ) -> Result<Response<AdminResponse>, Status> {
        let (caller, trust, record, key) = self.target(request, "Forget").await?;
        let store = Arc::clone(&trust.store);
        let k = key.clone();
        blocking(move || store.forget(&k.tenant, &k.connector, &k.id)).await?;
        let live = self.state.deny_live(&key, "forgotten");
        let message = format!(
            "forgot {key} (key fingerprint {}){}; its next attach is a new instance pending approval",
            fingerprint(&record.public_key),
            if live {
                "; its live session was ended"
            } else {
                ""
            }
        );
        Ok(answered(&caller, key, message))
    }

    async fn create_registration_token(
        &self,
        request: Request<CreateRegistrationTokenRequest>,
    ) -> Result<Response<CreatedToken>, Status> {
        let (caller, trust) = self.admin(&request, "CreateRegistrationToken")?;
        let request = request.into_inner();
        let tenant = Self::target_tenant(&caller, &request.tenant)?;
        if request.connector.is_empty() {
            return Err(Status::invalid_argument(
                "CreateRegistrationTokenRequest.connector is empty: name the connector the token registers",
            ));
        }
        let ttl = ttl_of(request.ttl_ms).unwrap_or(DEFAULT_REGISTRATION_TTL);
        let store = Arc::clone(&trust.store);
        let connector = request.connector.clone();
        let t = tenant.clone();
        let made = blocking(move || store.create_registration_token(&t, &connector, ttl)).await?;
        tracing::info!(
            "admin: registration token {} made for connector `{}` in tenant `{tenant}` (by client token {})",
            made.id,
            request.connector,
            caller.id()
        );
        Ok(Response::new(made.into()))
    }

    async fn create_client_token(
        &self,
        request: Request<CreateClientTokenRequest>,
    ) -> Result<Response<CreatedToken>, Status> {
        let (caller, trust) = self.admin(&request, "CreateClientToken")?;
        let request = request.into_inner();
        let tenant = Self::target_tenant(&caller, &request.tenant)?;
        let names: Vec<String> = request
            .connectors
            .iter()
            .map(|c| c.trim().to_owned())
            .filter(|c| !c.is_empty())
            .collect();
        if names.is_empty() {
            return Err(Status::invalid_argument(
                "CreateClientTokenRequest.connectors is empty: name the connectors, or `*` for all",
            ));
        }
        let connectors = if names.iter().any(|n| n == "*") {
            Scope::All
        } else {
            Scope::Only(names)
        };
        let expires = ttl_of(request.ttl_ms).map(|ttl| {
            crate::ids::unix_ms().saturating_add(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX))
        });
        let grant = ClientGrant {
            id: String::new(),
            tenant: tenant.clone(),
            connectors,
            write: request.write,
            admin: request.admin,
            operator: false,
            label: request.label,
            expires_unix_ms: expires,
            revoked: false,
        };
        let store = Arc::clone(&trust.store);
        let (made, grant) = blocking(move || store.create_client_token(&grant)).await?;
        if let Some(cache) = self.state.access.tokens() {
            cache.insert(&made.token, grant);
        }
        tracing::info!(
            "admin: client token {} made for tenant `{tenant}` (by client token {})",
            made.id,
            caller.id()
        );
        Ok(Response::new(made.into()))
    }

    async fn list_client_tokens(
        &self,
        request: Request<ListClientTokensRequest>,
    ) -> Result<Response<ListClientTokensResponse>, Status> {
        let (caller, trust) = self.admin(&request, "ListClientTokens")?;
        let store = Arc::clone(&trust.store);
        let tenant = caller.tenant_scope();
        let records = blocking(move || store.list_client_tokens(tenant.as_deref())).await?;
        let tokens = records
            .into_iter()
            .map(|r| ClientTokenInfo {
                connectors: r.grant.connectors.names(),
                id: r.grant.id,
                tenant: r.grant.tenant,
                write: r.grant.write,
                admin: r.grant.admin,
                operator: r.grant.operator,
                label: r.grant.label,
                created_unix_ms: r.created_unix_ms,
                expires_unix_ms: r.grant.expires_unix_ms.unwrap_or(0),
                revoked: r.grant.revoked,
            })
            .collect();
        Ok(Response::new(ListClientTokensResponse { tokens }))
    }

    async fn revoke_client_token(
        &self,
        request: Request<RevokeClientTokenRequest>,
    ) -> Result<Response<AdminResponse>, Status> {
        let (caller, trust) = self.admin(&request, "RevokeClientToken")?;
        let id = request.into_inner().id.trim().to_owned();
        if id.is_empty() {
            return Err(Status::invalid_argument(
                "RevokeClientTokenRequest.id is empty: give the token's id (`spoke client-token ls` lists them)",
            ));
        }
        let store = Arc::clone(&trust.store);
        let tenant = caller.tenant_scope();
        let wanted = id.clone();
        let revoked =
            blocking(move || store.revoke_client_token(&wanted, tenant.as_deref())).await?;
        // Another tenant's token is reported like one that does not exist.
        let Some(grant) = revoked else {
            return Err(Status::not_found(format!(
                "no client token `{id}`; `spoke client-token ls` lists them"
            )));
        };
        if let Some(cache) = self.state.access.tokens() {
            cache.remove(&grant.id);
        }
        tracing::info!(
            "admin: client token {id} of tenant `{}` revoked (by client token {})",
            grant.tenant,
            caller.id()
        );
        Ok(Response::new(AdminResponse {
            message: format!(
                "client token {id} of tenant `{}` revoked: it is refused from now on",
                grant.tenant
            ),
            instance: None,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_sizes_default_and_are_capped() {
        assert_eq!(pending_page_size(0), DEFAULT_PENDING_PAGE_SIZE);
        assert_eq!(pending_page_size(7), 7);
        assert_eq!(pending_page_size(500), 500);
        assert_eq!(pending_page_size(501), MAX_PENDING_PAGE_SIZE);
        assert_eq!(pending_page_size(u32::MAX), MAX_PENDING_PAGE_SIZE);
    }

    #[test]
    fn page_tokens_are_checked_before_use() {
        assert_eq!(parse_page_token("").unwrap(), None);
        assert!(parse_page_token("1700000000000.42").unwrap().is_some());
        let err = parse_page_token("not a token").unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert!(
            err.message()
                .contains("page_token \"not a token\" is not one this hub gives out"),
            "{}",
            err.message()
        );
        let long = "1".repeat(1024 * 1024);
        let err = parse_page_token(&long).unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert!(
            err.message().contains("is 1048576 bytes long") && err.message().len() < 300,
            "{}",
            err.message()
        );
    }
}
