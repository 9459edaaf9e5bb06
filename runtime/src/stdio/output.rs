//! The stdout side of the stdio transport: frames encoded as lines, and the
//! one writer task that writes them in order: each frame, with the frames
//! queued behind it, in one write and one flush.
//!
//! Everything that writes a frame goes through a bounded channel to the
//! writer: a sender waits while the channel is full (backpressure) and
//! nothing is dropped. When a write fails (the host has gone away) the writer
//! stops, cancels [`Frames::broken`] and the channel closes, so senders fail
//! at once instead of waiting.

use std::sync::{Arc, Mutex};

use serde::Serialize;
use serde_json::Value;
use serde_json::value::RawValue;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::connector::ActionOutput;
use crate::context::{Event, EventKind};
use crate::encoding::Encoding;
use crate::error::ActionError;
use crate::stdio::librefang;

/// Frames waiting for the writer.
const CAPACITY: usize = 256;
/// How many bytes of queued frames one write gathers, at most (a frame
/// larger than this still goes whole).
const BATCH_BYTES: usize = 256 * 1024;

/// A handle for sending frames to the writer task. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Frames {
    tx: mpsc::Sender<String>,
    broken: CancellationToken,
}

/// The writer task's side.
pub(crate) struct Writer {
    rx: mpsc::Receiver<String>,
    broken: CancellationToken,
    failure: Arc<Mutex<Option<std::io::Error>>>,
}

/// A new frame channel: the handle for senders and the writer's end.
pub(crate) fn channel() -> (Frames, Writer) {
    let (tx, rx) = mpsc::channel(CAPACITY);
    let broken = CancellationToken::new();
    (
        Frames {
            tx,
            broken: broken.clone(),
        },
        Writer {
            rx,
            broken,
            failure: Arc::default(),
        },
    )
}

impl Writer {
    /// Where the write error is kept once the writer has failed.
    pub(crate) fn failure(&self) -> Arc<Mutex<Option<std::io::Error>>> {
        Arc::clone(&self.failure)
    }

    /// Writes frames until every sender is gone or `finish` is cancelled
    /// (then writes what is already queued), flushing after each batch.
    pub(crate) async fn run<W: AsyncWrite + Unpin>(
        mut self,
        mut out: W,
        finish: CancellationToken,
    ) {
        let result = async {
            // Frames queued while one was being written go out together,
            // in one write and one flush: under load a pipe carries many
            // frames per system call, and one frame alone is not delayed.
            let mut batch = String::new();
            loop {
                let line = tokio::select! {
                    biased;
                    () = finish.cancelled() => {
                        while let Ok(line) = self.rx.try_recv() {
                            batch.push_str(&line);
                        }
                        write_batch(&mut out, &mut batch).await?;
                        break;
                    }
                    line = self.rx.recv() => match line {
                        Some(line) => line,
                        None => break,
                    },
                };
                batch.push_str(&line);
                while batch.len() < BATCH_BYTES {
                    match self.rx.try_recv() {
                        Ok(line) => batch.push_str(&line),
                        Err(_) => break,
                    }
                }
                write_batch(&mut out, &mut batch).await?;
            }
            out.shutdown().await
        }
        .await;
        if let Err(e) = result {
            tracing::warn!(error = %e, "cannot write to stdout; stopping");
            if let Ok(mut slot) = self.failure.lock() {
                *slot = Some(e);
            }
            self.rx.close();
            self.broken.cancel();
        }
    }
}

/// Writes and flushes what `batch` holds, and empties it.
async fn write_batch<W: AsyncWrite + Unpin>(
    out: &mut W,
    batch: &mut String,
) -> std::io::Result<()> {
    if batch.is_empty() {
        return Ok(());
    }
    out.write_all(batch.as_bytes()).await?;
    out.flush().await?;
    batch.clear();
    Ok(())
}

impl Frames {
    /// Cancelled when stdout has failed.
    pub(crate) fn broken(&self) -> &CancellationToken {
        &self.broken
    }

    /// Sends an encoded line; `false` when the writer is gone.
    pub(crate) async fn send_line(&self, line: String) -> bool {
        self.tx.send(line).await.is_ok()
    }

    /// Sends the `result` of an invocation.
    pub(crate) async fn result(
        &self,
        id: &str,
        result: &Result<ActionOutput, ActionError>,
    ) -> bool {
        self.send_line(result_line(id, result)).await
    }

    /// Sends a LibreFang `error` frame.
    pub(crate) async fn error(&self, message: impl Into<String>) -> bool {
        self.send_line(line_of(&librefang::error(message))).await
    }

    /// Sends an event; see [`event_line`].
    pub(crate) async fn event(&self, id: Option<&str>, event: &Event) -> bool {
        self.send_line(event_line(id, event)).await
    }

    /// Waits for room for one frame; `None` when the writer is gone. With
    /// the room reserved, sending cannot wait any more, so it can be done
    /// under a lock (see [`Slot`]).
    pub(crate) async fn reserve(&self) -> Option<Slot<'_>> {
        self.tx.reserve().await.ok().map(Slot)
    }
}

/// Room for one frame in the writer's channel, from [`Frames::reserve`].
/// Sending through it never waits.
pub(crate) struct Slot<'a>(mpsc::Permit<'a, String>);

impl Slot<'_> {
    /// Sends the `result` of an invocation at once.
    pub(crate) fn result(self, id: &str, result: &Result<ActionOutput, ActionError>) {
        self.0.send(result_line(id, result));
    }
}

/// `{"method":"result","params":{"id":..,"output":..}}` (JSON), with
/// `output_encoding` and `output_base64` (any other encoding), or with
/// `error`.
pub(crate) fn result_line(id: &str, result: &Result<ActionOutput, ActionError>) -> String {
    #[derive(Serialize)]
    struct Ok<'a> {
        id: &'a str,
        output: &'a RawValue,
    }
    #[derive(Serialize)]
    struct Encoded<'a> {
        id: &'a str,
        output_encoding: Encoding,
        output_base64: String,
    }
    #[derive(Serialize)]
    struct Failed<'a> {
        id: &'a str,
        error: &'a ActionError,
    }
    let output = match result {
        Result::Ok(output) => output,
        Err(error) => return encode("result", &Failed { id, error }),
    };
    if output.encoding() != Encoding::Json {
        use base64::Engine as _;
        return encode(
            "result",
            &Encoded {
                id,
                output_encoding: output.encoding(),
                output_base64: base64::engine::general_purpose::STANDARD.encode(output.bytes()),
            },
        );
    }
    match output.require_json() {
        Result::Ok(json) => encode("result", &Ok { id, output: &json }),
        Err(error) => encode("result", &Failed { id, error: &error }),
    }
}

/// The line for an event. An invocation's events (`id` is its request id)
/// are always `event` frames with that id, LibreFang events included: a
/// host that sends `invoke` is a Spoke host, which relays them to the
/// caller. Events of producers and LibreFang commands (`id` is `None`) are
/// `event` frames without an id, except LibreFang events, which are written
/// as the LibreFang frame itself (what LibreFang reads).
pub(crate) fn event_line(id: Option<&str>, event: &Event) -> String {
    if id.is_none()
        && let Some(frame) = librefang_frame(event)
    {
        return line_of(frame);
    }
    #[derive(Serialize)]
    struct Params<'a> {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a str>,
        event: &'a Event,
    }
    encode("event", &Params { id, event })
}

/// The frame a `librefang` custom event carries, when it is one a connector
/// may send: an object with a `method` among
/// [`EMITTED_METHODS`](librefang::EMITTED_METHODS) and object `params`.
/// Anything else is forwarded as an ordinary event (with a warning).
fn librefang_frame(event: &Event) -> Option<&Value> {
    let EventKind::Custom { name, data } = &event.kind else {
        return None;
    };
    if name != librefang::EVENT_NAME {
        return None;
    }
    let method = data.get("method").and_then(Value::as_str);
    let ok = method.is_some_and(|m| librefang::EMITTED_METHODS.contains(&m))
        && data.get("params").is_some_and(Value::is_object);
    if !ok {
        tracing::warn!(
            action = %event.action,
            "a `librefang` event is not a LibreFang frame a connector may send (method one of {:?}, params an object); forwarding it as an `event` frame",
            librefang::EMITTED_METHODS
        );
        return None;
    }
    Some(data)
}

/// A frame `{"method", "params"}` as one line.
pub(crate) fn encode<P: Serialize + ?Sized>(method: &str, params: &P) -> String {
    #[derive(Serialize)]
    struct Frame<'a, P: ?Sized> {
        method: &'a str,
        params: &'a P,
    }
    line_of(&Frame { method, params })
}

/// Any value as one line. The frames Spoke writes are plain data (strings,
/// numbers, raw JSON, string-keyed maps), which always encode; should one
/// ever fail, an `error` frame says so instead.
pub(crate) fn line_of<T: Serialize + ?Sized>(value: &T) -> String {
    let mut line = serde_json::to_string(value).unwrap_or_else(|e| {
        tracing::error!(error = %e, "cannot encode a frame");
        format!(
            r#"{{"method":"error","params":{{"message":{}}}}}"#,
            Value::String(format!("cannot encode a frame: {e}"))
        )
    });
    line.push('\n');
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(line: &str) -> Value {
        assert!(line.ends_with('\n') && !line[..line.len() - 1].contains('\n'));
        serde_json::from_str(line).unwrap()
    }

    #[test]
    fn results_events_and_librefang_frames() {
        let ok = ActionOutput::encode(&json!({"a": 1})).unwrap();
        assert_eq!(
            parse(&result_line("r1", &Ok(ok))),
            json!({"method": "result", "params": {"id": "r1", "output": {"a": 1}}})
        );
        let err = ActionError::not_found("gone");
        assert_eq!(
            parse(&result_line("r2", &Err(err))),
            json!({"method": "result", "params": {"id": "r2", "error": {"code": "not_found", "message": "gone"}}})
        );
        let progress = Event {
            request_id: "r3".into(),
            action: "a".into(),
            kind: EventKind::Progress {
                progress: 1.0,
                total: None,
                message: None,
            },
        };
        assert_eq!(
            parse(&event_line(Some("r3"), &progress)),
            json!({"method": "event", "params": {"id": "r3", "event": {"request_id": "r3", "action": "a", "type": "progress", "progress": 1.0}}})
        );
        let frame = librefang::typing("u", "n", true).to_frame();
        let custom = |data: Value| Event {
            request_id: String::new(),
            action: String::new(),
            kind: EventKind::Custom {
                name: librefang::EVENT_NAME.into(),
                data,
            },
        };
        assert_eq!(parse(&event_line(None, &custom(frame.clone()))), frame);
        // From an invocation, a LibreFang event is an `event` frame with its
        // id, like any other: Spoke hosts relay those to the caller.
        let mut from_invoke = custom(frame.clone());
        from_invoke.request_id = "r4".into();
        from_invoke.action = "announce".into();
        assert_eq!(
            parse(&event_line(Some("r4"), &from_invoke)),
            json!({"method": "event", "params": {"id": "r4", "event": {
                "request_id": "r4", "action": "announce", "type": "custom",
                "name": "librefang", "data": frame
            }}})
        );
        // Connectors may not forge protocol frames.
        let forged = json!({"method": "result", "params": {"id": "x", "output": 1}});
        assert_eq!(
            parse(&event_line(None, &custom(forged.clone()))),
            json!({"method": "event", "params": {"event": {"request_id": "", "action": "", "type": "custom", "name": "librefang", "data": forged}}})
        );
    }
}
