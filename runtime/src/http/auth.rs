//! The bearer token `SPOKE_HTTP_TOKEN` asks of every route but `/health`:
//! `Authorization: Bearer <token>`, compared in constant time; 401
//! otherwise, before the body is read.

use std::sync::Arc;

use crate::secret::Secret;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;

/// The token, for [`require_token`].
#[derive(Debug, Clone)]
pub struct Token(pub Arc<Secret<String>>);

/// Refuses a request without the token (`/health` excepted).
pub async fn require_token(State(token): State<Token>, request: Request, next: Next) -> Response {
    if request.uri().path() == "/health" {
        return next.run(request).await;
    }
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(crate::bearer::token_of);
    match given {
        Some(given) if crate::bearer::matches(given, token.0.expose()) => next.run(request).await,
        Some(_) => super::routes::error(StatusCode::UNAUTHORIZED, "the bearer token is wrong"),
        None => super::routes::error(
            StatusCode::UNAUTHORIZED,
            "this connector requires `Authorization: Bearer <token>` (SPOKE_HTTP_TOKEN)",
        ),
    }
}
