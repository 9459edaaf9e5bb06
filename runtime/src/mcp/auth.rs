//! Who calls over Streamable HTTP: with `SPOKE_MCP_TOKEN` or
//! `SPOKE_MCP_ADMIN_TOKEN` set, every request needs one of them as
//! `Authorization: Bearer <token>` (401 otherwise, before the body is
//! read); the admin token makes the caller an administrator. With neither,
//! callers are not administrators.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::handler::Caller;
use crate::secret::Secret;

/// The tokens callers present.
#[derive(Debug, Clone, Default)]
pub struct Tokens {
    /// Callers who are not administrators.
    pub user: Option<Arc<Secret<String>>>,
    /// Administrators.
    pub admin: Option<Arc<Secret<String>>>,
}

impl Tokens {
    fn required(&self) -> bool {
        self.user.is_some() || self.admin.is_some()
    }

    /// The caller a token makes, if it is one of ours.
    fn caller_of(&self, given: &str) -> Option<Caller> {
        let is = |t: &Option<Arc<Secret<String>>>| {
            t.as_ref()
                .is_some_and(|t| crate::bearer::matches(given, t.expose()))
        };
        if is(&self.admin) {
            Some(Caller { admin: true })
        } else if is(&self.user) {
            Some(Caller { admin: false })
        } else {
            None
        }
    }
}

/// Marks the request with its [`Caller`], or refuses it (401).
pub async fn authorize(State(tokens): State<Tokens>, mut request: Request, next: Next) -> Response {
    let caller = if tokens.required() {
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(crate::bearer::token_of);
        match given.map(|g| tokens.caller_of(g)) {
            Some(Some(caller)) => caller,
            Some(None) => return unauthorized("the bearer token is wrong"),
            None => {
                return unauthorized(
                    "this MCP server requires `Authorization: Bearer <token>` (SPOKE_MCP_TOKEN)",
                );
            }
        }
    } else {
        Caller { admin: false }
    };
    request.extensions_mut().insert(caller);
    next.run(request).await
}

fn unauthorized(message: &str) -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer")],
        axum::Json(serde_json::json!({
            "jsonrpc": "2.0",
            "id": null,
            "error": {"code": -32001, "message": message},
        })),
    )
        .into_response()
}
