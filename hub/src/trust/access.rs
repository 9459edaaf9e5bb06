//! Client access: the bearer token of a Hub or Admin call (`authorization:
//! Bearer <token>`), looked up in an in-memory cache of the stored client
//! tokens (by SHA-256, refreshed when a token is made or revoked), and the
//! checks of what a token grants.
//!
//! - no token, or an unknown, expired or revoked one: `UNAUTHENTICATED`;
//! - a connector outside the token's scope: `PERMISSION_DENIED` (checked
//!   before the connector is looked up, so the answer tells nothing about
//!   whether it exists);
//! - a `write` action with a token made without `--write`, an `admin_only`
//!   action without `--admin`: `PERMISSION_DENIED`;
//! - a `hidden` action without `--admin`: `NOT_FOUND`, word for word what a
//!   nonexistent action gets (see `client_api`).
//!
//! With `--no-auth` every call gets [`Caller::open`]: tenant `default`,
//! everything allowed.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use spoke_runtime::Mode;
use spoke_runtime::manifest::ActionManifest;
use tonic::Status;

use crate::ids::{DEFAULT_TENANT, unix_ms};
use crate::trust::store::{ClientGrant, Scope, Store, StoreError, token_hash};

/// The client tokens, by hash.
#[derive(Debug, Default)]
pub(crate) struct TokenCache {
    grants: RwLock<HashMap<[u8; 32], Arc<ClientGrant>>>,
}

impl TokenCache {
    /// Loads every live client token from the store.
    pub(crate) fn load(store: &Store) -> Result<TokenCache, StoreError> {
        let cache = TokenCache::default();
        cache.reload(store)?;
        Ok(cache)
    }

    /// Reads the tokens again (after one was made or revoked).
    pub(crate) fn reload(&self, store: &Store) -> Result<(), StoreError> {
        let fresh: HashMap<_, _> = store
            .client_tokens()?
            .into_iter()
            .map(|(hash, grant)| (hash, Arc::new(grant)))
            .collect();
        *self.grants.write().unwrap_or_else(|e| e.into_inner()) = fresh;
        Ok(())
    }

    /// Adds one token just made.
    pub(crate) fn insert(&self, token: &str, grant: ClientGrant) {
        self.grants
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(token_hash(token), Arc::new(grant));
    }

    /// Forgets the token with this id (it was revoked).
    pub(crate) fn remove(&self, id: &str) {
        self.grants
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|_, grant| grant.id != id);
    }

    fn get(&self, token: &str) -> Option<Arc<ClientGrant>> {
        self.grants
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&token_hash(token))
            .cloned()
    }
}

/// Who is calling, and what it may do.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    grant: Arc<ClientGrant>,
}

impl Caller {
    /// The caller of a hub without auth: everything, in tenant `default`.
    pub(crate) fn open() -> Caller {
        Caller {
            grant: Arc::new(ClientGrant {
                id: "no-auth".into(),
                tenant: DEFAULT_TENANT.into(),
                connectors: Scope::All,
                write: true,
                admin: true,
                operator: true,
                label: String::new(),
                expires_unix_ms: None,
                revoked: false,
            }),
        }
    }

    /// The caller of a call that came over NATS to a connector of
    /// `tenant` attached here: NATS's permissions said who may publish
    /// there; it may call what is not admin-only, writes included.
    pub(crate) fn nats(tenant: &str) -> Caller {
        Caller {
            grant: Arc::new(ClientGrant {
                id: "nats".into(),
                tenant: tenant.into(),
                connectors: Scope::All,
                write: true,
                admin: false,
                operator: false,
                label: String::new(),
                expires_unix_ms: None,
                revoked: false,
            }),
        }
    }

    /// The caller's tenant.
    pub(crate) fn tenant(&self) -> &str {
        &self.grant.tenant
    }

    /// The tenant its listings and lookups are narrowed to: its own, or
    /// `None` (every tenant) for the operator.
    pub(crate) fn tenant_scope(&self) -> Option<String> {
        (!self.is_operator()).then(|| self.tenant().to_owned())
    }

    /// The token's id, for logs and `decided_by`.
    pub(crate) fn id(&self) -> &str {
        &self.grant.id
    }

    /// Whether it may call admin-only and hidden actions and the Admin service.
    pub(crate) fn is_admin(&self) -> bool {
        self.grant.admin || self.grant.operator
    }

    /// Whether it may call write actions (and start syncs).
    pub(crate) fn may_write(&self) -> bool {
        self.grant.write
    }

    /// Whether it acts on every tenant.
    pub(crate) fn is_operator(&self) -> bool {
        self.grant.operator
    }

    /// Whether it may act on `tenant`.
    pub(crate) fn may_act_on(&self, tenant: &str) -> bool {
        self.grant.operator || self.grant.tenant == tenant
    }

    /// `PERMISSION_DENIED` unless the token's scope includes `connector`.
    pub(crate) fn check_connector(&self, connector: &str) -> Result<(), Status> {
        if self.grant.connectors.allows(connector) {
            Ok(())
        } else {
            Err(Status::permission_denied(format!(
                "token does not grant connector {connector}"
            )))
        }
    }

    /// Whether the action is shown to this caller (hidden ones only to admins).
    pub(crate) fn sees(&self, action: &ActionManifest) -> bool {
        !action.hidden || self.is_admin()
    }

    /// `PERMISSION_DENIED` unless the token may call the (visible) action.
    pub(crate) fn check_action(
        &self,
        connector: &str,
        action: &ActionManifest,
    ) -> Result<(), Status> {
        if action.admin_only && !self.is_admin() {
            return Err(Status::permission_denied(format!(
                "action `{}` of connector `{connector}` is admin-only; this token was made without --admin",
                action.name
            )));
        }
        if action.mode == Mode::Write && !self.grant.write {
            return Err(Status::permission_denied(format!(
                "action `{}` of connector `{connector}` is a write action; this token was made without --write",
                action.name
            )));
        }
        Ok(())
    }
}

/// How the hub checks its clients.
#[derive(Debug)]
pub(crate) enum Access {
    /// `--no-auth`: no token needed.
    Open,
    /// Bearer tokens from the store.
    Tokens(TokenCache),
}

impl Access {
    /// The caller of a request, from its `authorization` header.
    pub(crate) fn caller(&self, metadata: &tonic::metadata::MetadataMap) -> Result<Caller, Status> {
        self.caller_from(metadata.get("authorization").map(|v| v.as_bytes()))
    }

    /// The caller presenting this `authorization` header value (`None`: no
    /// header); the hub asks before reading a request's body.
    pub(crate) fn caller_from(&self, authorization: Option<&[u8]>) -> Result<Caller, Status> {
        let cache = match self {
            Access::Open => return Ok(Caller::open()),
            Access::Tokens(cache) => cache,
        };
        let header = authorization.ok_or_else(|| {
            Status::unauthenticated(
                "no client token: send `authorization: Bearer <token>` (spoke: --token or SPOKE_TOKEN)",
            )
        })?;
        let token = std::str::from_utf8(header)
            .ok()
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim)
            .ok_or_else(|| {
                Status::unauthenticated("the authorization header is not `Bearer <token>`")
            })?;
        let grant = cache
            .get(token)
            .ok_or_else(|| Status::unauthenticated("the client token is not known to this hub"))?;
        if grant.revoked {
            return Err(Status::unauthenticated("the client token was revoked"));
        }
        if grant.expires_unix_ms.is_some_and(|at| at <= unix_ms()) {
            return Err(Status::unauthenticated("the client token expired"));
        }
        Ok(Caller { grant })
    }

    /// The token cache, when tokens are in use.
    pub(crate) fn tokens(&self) -> Option<&TokenCache> {
        match self {
            Access::Open => None,
            Access::Tokens(cache) => Some(cache),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn action(mode: Mode, admin_only: bool, hidden: bool) -> ActionManifest {
        let mut a = ActionManifest {
            name: "x".into(),
            description: String::new(),
            mode: Mode::Read,
            admin_only: false,
            hidden: false,
            destructive: false,
            idempotent: false,
            timeout_ms: None,
            input_schema: serde_json::Value::Null,
            output_schema: serde_json::Value::Null,
            input_encodings: vec![spoke_runtime::Encoding::Json],
            output_encodings: vec![spoke_runtime::Encoding::Json],
            input_message_type: None,
            output_message_type: None,
            input_arrow_schema: None,
            output_arrow_schema: None,
        };
        a.mode = mode;
        a.admin_only = admin_only;
        a.hidden = hidden;
        a
    }

    fn caller(write: bool, admin: bool, connectors: Scope) -> Caller {
        Caller {
            grant: Arc::new(ClientGrant {
                id: "c-1".into(),
                tenant: "acme".into(),
                connectors,
                write,
                admin,
                operator: false,
                label: String::new(),
                expires_unix_ms: None,
                revoked: false,
            }),
        }
    }

    #[test]
    fn grants_follow_the_token() {
        let read = caller(false, false, Scope::Only(vec!["echo".into()]));
        assert!(read.check_connector("echo").is_ok());
        let err = read.check_connector("files").unwrap_err();
        assert_eq!(err.code(), tonic::Code::PermissionDenied);
        assert_eq!(err.message(), "token does not grant connector files");
        assert!(
            read.check_action("echo", &action(Mode::Read, false, false))
                .is_ok()
        );
        let err = read
            .check_action("echo", &action(Mode::Write, false, false))
            .unwrap_err();
        assert!(err.message().contains("is a write action"), "{err}");
        let err = read
            .check_action("echo", &action(Mode::Read, true, false))
            .unwrap_err();
        assert!(err.message().contains("admin-only"), "{err}");
        assert!(!read.sees(&action(Mode::Read, false, true)));
        let admin = caller(true, true, Scope::All);
        assert!(admin.sees(&action(Mode::Read, false, true)));
        assert!(
            admin
                .check_action("echo", &action(Mode::Write, true, false))
                .is_ok()
        );
    }

    #[test]
    fn missing_and_unknown_tokens_are_unauthenticated() {
        let access = Access::Tokens(TokenCache::default());
        let mut md = tonic::metadata::MetadataMap::new();
        assert_eq!(
            access.caller(&md).unwrap_err().code(),
            tonic::Code::Unauthenticated
        );
        md.insert("authorization", "Bearer spk_nope".parse().unwrap());
        let err = access.caller(&md).unwrap_err();
        assert!(err.message().contains("not known"), "{err}");
    }
}
