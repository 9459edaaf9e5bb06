//! A peer at the HTTP/2 level (a gRPC request whose body the test writes
//! byte by byte, or never), and what a process holds (RSS, open fds).

use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes};
use h2::client::{ResponseFuture, SendRequest};
use tokio::net::TcpStream;

/// The resident set of process `pid`, in KiB (`VmRSS`).
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read the status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// How many file descriptors process `pid` has open.
pub fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("list the fds")
        .count()
}

/// Waits until `pid` has at most `limit` fds open; the last count.
pub fn wait_fds_at_most(pid: u32, limit: usize, within: Duration) -> usize {
    let started = Instant::now();
    loop {
        let count = fd_count(pid);
        if count <= limit || started.elapsed() > within {
            return count;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// An HTTP/2 connection to `authority` (`host:port`); the connection's own
/// task ends when it closes, reported on the returned receiver.
pub async fn h2_connect(
    authority: &str,
) -> (SendRequest<Bytes>, tokio::sync::oneshot::Receiver<()>) {
    let tcp = TcpStream::connect(authority).await.expect("connect");
    let (send, connection) = h2::client::handshake(tcp).await.expect("HTTP/2 handshake");
    let (closed_tx, closed_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let _ = connection.await;
        let _ = closed_tx.send(());
    });
    (send, closed_rx)
}

/// The headers of a gRPC call of `path`, with a bearer `token` if any.
pub fn grpc_request(authority: &str, path: &str, token: Option<&str>) -> http::Request<()> {
    let mut request = http::Request::builder()
        .method("POST")
        .uri(format!("http://{authority}{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    request.body(()).expect("a request")
}

/// A gRPC length prefix announcing a message of `len` bytes.
pub fn grpc_prefix(len: u32) -> Bytes {
    let mut prefix = vec![0u8];
    prefix.extend_from_slice(&len.to_be_bytes());
    Bytes::from(prefix)
}

/// Starts a call of `path` and sends `data` without ending the stream.
pub async fn open_call(
    send: &mut SendRequest<Bytes>,
    authority: &str,
    path: &str,
    data: Bytes,
) -> (ResponseFuture, h2::SendStream<Bytes>) {
    let mut ready = send
        .clone()
        .ready()
        .await
        .expect("the connection takes a stream");
    let (response, mut stream) = ready
        .send_request(grpc_request(authority, path, None), false)
        .expect("send the headers");
    stream.send_data(data, false).expect("send data");
    (response, stream)
}

/// The `grpc-status` and `grpc-message` a call ends with, from its
/// headers (trailers-only) or its trailers.
pub async fn grpc_status(response: ResponseFuture) -> (i32, String) {
    let response = response.await.expect("a response");
    if let Some(status) = status_of(response.headers()) {
        return status;
    }
    let mut body = response.into_body();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.expect("response data");
        let _ = body.flow_control().release_capacity(chunk.len());
    }
    let trailers = body
        .trailers()
        .await
        .expect("trailers")
        .expect("some trailers");
    status_of(&trailers).expect("a grpc-status trailer")
}

/// The `grpc-status` and decoded `grpc-message` of response headers or
/// trailers, if they carry a status.
fn status_of(headers: &http::HeaderMap) -> Option<(i32, String)> {
    let code = headers.get("grpc-status")?.to_str().ok()?.parse().ok()?;
    let message = headers
        .get("grpc-message")
        .map(|m| percent_decode(m.as_bytes()))
        .unwrap_or_default();
    Some((code, message))
}

fn percent_decode(bytes: &[u8]) -> String {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A tonic codec sending and receiving message bodies as raw bytes: what a
/// peer that does not speak the protocol puts on the wire.
#[derive(Debug, Clone, Default)]
pub struct Raw;

impl tonic::codec::Codec for Raw {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = Raw;
    type Decoder = Raw;
    fn encoder(&mut self) -> Raw {
        Raw
    }
    fn decoder(&mut self) -> Raw {
        Raw
    }
}

impl tonic::codec::Encoder for Raw {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(
        &mut self,
        item: Vec<u8>,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl tonic::codec::Decoder for Raw {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<Vec<u8>>, tonic::Status> {
        let n = src.remaining();
        Ok(Some(src.copy_to_bytes(n).to_vec()))
    }
}

/// What a unary call over a bare HTTP/2 connection (no client-side timer,
/// unlike tonic's channel, which gives up at its own `grpc-timeout`)
/// ended with: the hub's status, its message, and the response message.
#[derive(Debug)]
pub struct H2Answer {
    /// `grpc-status`.
    pub code: i32,
    /// `grpc-message`, decoded.
    pub message: String,
    /// The response message (without its prefix), if any.
    pub body: Vec<u8>,
    /// From the request's headers sent to its status received.
    pub took: Duration,
}

/// Calls `path` with `message` over a new HTTP/2 connection to
/// `authority`, sending `grpc-timeout: <timeout>` when given.
pub async fn h2_unary(
    authority: &str,
    path: &str,
    message: &[u8],
    timeout: Option<Duration>,
) -> H2Answer {
    let (send, _closed) = h2_connect(authority).await;
    let mut request = grpc_request(authority, path, None);
    if let Some(timeout) = timeout {
        let value = format!("{}u", timeout.as_micros());
        request
            .headers_mut()
            .insert("grpc-timeout", value.parse().expect("a header value"));
    }
    let mut ready = send.ready().await.expect("the connection takes a stream");
    let started = Instant::now();
    let (response, mut stream) = ready
        .send_request(request, false)
        .expect("send the headers");
    let mut data = grpc_prefix(message.len() as u32).to_vec();
    data.extend_from_slice(message);
    stream
        .send_data(Bytes::from(data), true)
        .expect("send the message");
    let response = response.await.expect("a response");
    if let Some((code, message)) = status_of(response.headers()) {
        return H2Answer {
            code,
            message,
            body: Vec::new(),
            took: started.elapsed(),
        };
    }
    let mut body = response.into_body();
    let mut bytes = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.expect("response data");
        let _ = body.flow_control().release_capacity(chunk.len());
        bytes.extend_from_slice(&chunk);
    }
    let trailers = body
        .trailers()
        .await
        .expect("trailers")
        .expect("some trailers");
    let (code, message) = status_of(&trailers).expect("a grpc-status trailer");
    let body = if bytes.len() >= 5 {
        bytes.split_off(5)
    } else {
        Vec::new()
    };
    H2Answer {
        code,
        message,
        body,
        took: started.elapsed(),
    }
}
