//! The baseline of path 9: a plain axum 0.8 server with one route, `POST
//! /action`, the way a hand-written HTTP connector would answer it.
//!
//! It decodes `{"action":"echo","params":{"text":..}}` with serde_json (axum's
//! `Json` extractor) into a struct and answers `{"status":"success",
//! "result":<text>}` as JSON. It listens on a fresh loopback port and logs
//! `listening on http://ADDR` on stderr, as `<connector> http` does; it
//! serves with `axum::serve` as Spoke's HTTP transport does, on tokio's
//! multi-thread runtime (a worker per core), as `<connector> http` runs.

use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, serve};
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
struct ActionRequest {
    action: String,
    params: Params,
}

#[derive(Deserialize)]
struct Params {
    text: String,
}

#[derive(Serialize)]
struct ActionResponse {
    status: &'static str,
    result: String,
}

async fn action(Json(request): Json<ActionRequest>) -> Response {
    if request.action != "echo" {
        return (StatusCode::NOT_FOUND, "no such action").into_response();
    }
    Json(ActionResponse {
        status: "success",
        result: request.params.text,
    })
    .into_response()
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let app = Router::new().route("/action", post(action));
    eprintln!("listening on http://{addr}");
    serve(listener, app).await
}
