//! [`ManagerClient`]: the calls a connector makes to Omni's
//! connector-manager (`/sdk/...`), each with a connect and a request
//! timeout, and retried with backoff while the manager is away, busy (429,
//! honouring `Retry-After`) or failing (5xx).

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::options::ManagerOptions;
use crate::backoff::Backoff;
use crate::secret::Secret;

/// The longest `Retry-After` honoured; a longer one waits this long.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);
/// The longest a manager's error body is quoted in a message.
const MAX_QUOTED_BODY: usize = 300;

/// Why a call to the manager failed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ManagerError {
    /// `<what>: <why>`, with the manager's status and (shortened) body.
    pub message: String,
    /// The manager's status, when it answered.
    pub status: Option<u16>,
    /// Whether trying again may work: no answer, 429, 5xx.
    pub retryable: bool,
}

/// A client of one connector-manager.
#[derive(Debug, Clone)]
pub struct ManagerClient {
    http: reqwest::Client,
    base: String,
    token: Option<Secret<String>>,
    backoff: Backoff,
}

impl ManagerClient {
    /// A client of the manager `options` names.
    pub fn new(options: &ManagerOptions) -> Result<ManagerClient, String> {
        let http = reqwest::Client::builder()
            .connect_timeout(options.timeout.min(Duration::from_secs(5)))
            .timeout(options.timeout)
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        let backoff = Backoff::builder()
            .initial(Duration::from_millis(200))
            .max(Duration::from_secs(5))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(ManagerClient {
            http,
            base: options.url.clone(),
            token: options.token.clone(),
            backoff,
        })
    }

    /// The same client, retrying with `backoff` (its limits bound how long
    /// a call keeps trying).
    pub fn with_backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// One attempt: the answer's body as JSON (`null` when empty).
    async fn once(
        &self,
        method: &Method,
        path: &str,
        body: Option<&[u8]>,
    ) -> Result<Value, ManagerError> {
        let what = format!("{method} {path}");
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token.expose());
        }
        if let Some(body) = body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.to_vec());
        }
        let response = request.send().await.map_err(|e| ManagerError {
            message: format!("{what}: {}", describe(&e)),
            status: None,
            retryable: true,
        })?;
        let status = response.status();
        let retry_after = retry_after(response.headers());
        let bytes = response.bytes().await.map_err(|e| ManagerError {
            message: format!("{what}: reading the answer: {}", describe(&e)),
            status: Some(status.as_u16()),
            retryable: true,
        })?;
        if status.is_success() {
            if bytes.iter().all(u8::is_ascii_whitespace) {
                return Ok(Value::Null);
            }
            return serde_json::from_slice(&bytes).map_err(|e| ManagerError {
                message: format!("{what}: the answer is not JSON: {e}"),
                status: Some(status.as_u16()),
                retryable: false,
            });
        }
        let retryable = status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error();
        if let (true, Some(wait)) = (retryable, retry_after) {
            tokio::time::sleep(wait).await;
        }
        Err(ManagerError {
            message: format!("{what}: HTTP {}: {}", status.as_u16(), quoted(&bytes)),
            status: Some(status.as_u16()),
            retryable,
        })
    }

    /// Calls until an answer that retrying cannot change, or the backoff
    /// gives up.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, ManagerError> {
        let body = body.map(|b| serde_json::to_vec(b).unwrap_or_default());
        let mut schedule = self.backoff.schedule();
        loop {
            match self.once(&method, path, body.as_deref()).await {
                Ok(v) => return Ok(v),
                Err(e) if e.retryable => match schedule.next_delay() {
                    Some(delay) => {
                        tracing::debug!(target: "spoke::http", "{e}; trying again in {delay:?}");
                        tokio::time::sleep(delay).await;
                    }
                    None => return Err(e),
                },
                Err(e) => return Err(e),
            }
        }
    }

    /// One attempt, for calls whose caller retries (the sync sink, which
    /// the runtime retries with its own backoff).
    pub async fn call_once(
        &self,
        method: Method,
        path: &str,
        body: Option<&[u8]>,
    ) -> Result<Value, ManagerError> {
        self.once(&method, path, body).await
    }

    /// `GET /sdk/source/{id}`, decoded.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ManagerError> {
        let value = self.call(Method::GET, path, None).await?;
        serde_path_to_error::deserialize(value).map_err(|e| ManagerError {
            message: format!(
                "GET {path}: unexpected answer: at `{}`: {}",
                e.path(),
                e.inner()
            ),
            status: Some(200),
            retryable: false,
        })
    }
}

/// A reqwest error in words: timeouts and refused connections said plainly.
fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".to_owned()
    } else if e.is_connect() {
        "cannot connect".to_owned()
    } else {
        crate::logging::error_chain(e)
    }
}

/// `Retry-After` in seconds (an HTTP date is not honoured: the backoff
/// waits instead), capped at [`MAX_RETRY_AFTER`].
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let seconds: u64 = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(seconds).min(MAX_RETRY_AFTER))
}

/// The start of an answer's body, as text.
fn quoted(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim();
    if text.is_empty() {
        return "(no body)".to_owned();
    }
    match text.char_indices().nth(MAX_QUOTED_BODY) {
        Some((at, _)) => format!("{}...", &text[..at]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_read_in_seconds_and_capped() {
        let mut headers = reqwest::header::HeaderMap::new();
        assert_eq!(retry_after(&headers), None);
        headers.insert(reqwest::header::RETRY_AFTER, "2".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(2)));
        headers.insert(reqwest::header::RETRY_AFTER, "86400".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(MAX_RETRY_AFTER));
    }

    #[test]
    fn bodies_are_quoted_short() {
        assert_eq!(quoted(b"  "), "(no body)");
        let long = "x".repeat(400);
        assert_eq!(quoted(long.as_bytes()).len(), MAX_QUOTED_BODY + 3);
    }
}
