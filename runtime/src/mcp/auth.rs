//! Who calls over Streamable HTTP, decided from the `Authorization` header
//! before the body is read ([`Authorize`]; 401 when refused).
//!
//! `<bin> mcp --http` uses [`Tokens`]: with `SPOKE_MCP_TOKEN` or
//! `SPOKE_MCP_ADMIN_TOKEN` set, every request needs one of them as
//! `Authorization: Bearer <token>`; the admin token makes the caller an
//! administrator. With neither, callers are not administrators. A host
//! serving its own view (the hub's) brings its own [`Authorize`].

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::handler::Caller;
use crate::secret::Secret;

/// Decides who calls from a request's `Authorization` header.
///
/// ```
/// use spoke::mcp::Authorize;
///
/// /// One shared key; its callers are called `"ops"`.
/// #[derive(Clone)]
/// struct SharedKey(String);
///
/// impl Authorize for SharedKey {
///     type Caller = &'static str;
///     fn authorize(&self, authorization: Option<&str>) -> Result<&'static str, String> {
///         match authorization.and_then(|h| h.strip_prefix("Bearer ")) {
///             Some(key) if key == self.0 => Ok("ops"),
///             _ => Err("send `Authorization: Bearer <key>`".into()),
///         }
///     }
/// }
///
/// let key = SharedKey("k".into());
/// assert_eq!(key.authorize(Some("Bearer k")), Ok("ops"));
/// assert!(key.authorize(None).is_err());
/// ```
pub trait Authorize: Clone + Send + Sync + 'static {
    /// What the handler learns of the caller: put in the request's
    /// extensions (the handler finds it in `http::request::Parts`).
    type Caller: Clone + Send + Sync + 'static;

    /// The caller presenting `authorization` (the header's value; `None`
    /// without one), or why it is refused (answered 401, with this text).
    fn authorize(&self, authorization: Option<&str>) -> Result<Self::Caller, String>;
}

/// The tokens callers of `<bin> mcp --http` present.
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

impl Authorize for Tokens {
    type Caller = Caller;

    fn authorize(&self, authorization: Option<&str>) -> Result<Caller, String> {
        if !self.required() {
            return Ok(Caller { admin: false });
        }
        match authorization.and_then(crate::bearer::token_of) {
            Some(given) => self
                .caller_of(given)
                .ok_or_else(|| "the bearer token is wrong".to_owned()),
            None => Err(
                "this MCP server requires `Authorization: Bearer <token>` (SPOKE_MCP_TOKEN)"
                    .to_owned(),
            ),
        }
    }
}

/// Marks the request with its caller, or refuses it (401).
pub(crate) async fn authorize<A: Authorize>(
    State(authorizer): State<A>,
    mut request: Request,
    next: Next,
) -> Response {
    let header = request
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.to_str().unwrap_or(""));
    match authorizer.authorize(header) {
        Ok(caller) => {
            request.extensions_mut().insert(caller);
            next.run(request).await
        }
        Err(why) => unauthorized(&why),
    }
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
