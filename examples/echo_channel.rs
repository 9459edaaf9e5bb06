//! Echo channel: a LibreFang chat channel, as a Spoke connector over stdio.
//!
//! LibreFang runs it as a sidecar (`echo_channel stdio`) and writes commands
//! to its stdin. Each reply an agent `send`s is answered with a `message`
//! event in the same chat (and thread): the user "says" the text back,
//! prefixed with `echo: `. A streamed reply (`stream_start`,
//! `stream_delta`..., `stream_end`) is collected and echoed once, whole; an
//! empty reply is not echoed. A
//! file sent whole is not echoed back: the user says what arrived, e.g.
//! `echo: file `notes.pdf` (2621440 bytes, application/pdf)`.
//!
//! ```text
//! cargo build --example echo_channel
//! echo '{"method":"send","params":{"channel_id":"c1","text":"hello","user":{"platform_id":"c1","display_name":"Alice","librefang_user":null}}}' \
//!   | target/debug/examples/echo_channel stdio
//! ```
//!
//! LibreFang hands every echo to the agent like any incoming message, and the
//! agent answers it; `max_echoes` ends that conversation with a parrot.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use spoke::librefang::{
    Content, LibreFangEmit, MessageBuilder, SendParams, StreamDeltaParams, StreamEndParams,
    StreamStartParams, TypingParams,
};
use spoke::prelude::*;

/// A LibreFang channel that echoes every reply back into its chat.
#[connector(name = "echo_channel")]
pub struct EchoChannel {
    /// Put in front of every echo.
    #[config_field(
        env = "ECHO_CHANNEL_PREFIX",
        default = "echo: ",
        placeholder = "echo: "
    )]
    prefix: String,
    /// The most echoes this process sends, so an agent and the echo cannot
    /// talk forever.
    #[config_field(env = "ECHO_CHANNEL_MAX_ECHOES", default = 100, advanced)]
    max_echoes: u64,
    echoes: AtomicU64,
    streams: Mutex<HashMap<String, Stream>>,
}

/// A streamed reply being collected.
#[derive(Default)]
struct Stream {
    channel_id: String,
    thread_id: Option<String>,
    text: String,
}

impl EchoChannel {
    /// Emits `<prefix><text>` as a message from `user` in the chat.
    async fn echo(
        &self,
        ctx: &Context,
        (user_id, user_name): (&str, &str),
        channel_id: &str,
        thread_id: Option<&str>,
        text: &str,
    ) -> Result<(), ActionError> {
        if text.is_empty() {
            // Nothing was said (an agent's empty reply): nothing to echo.
            return Ok(());
        }
        if self.echoes.fetch_add(1, Ordering::SeqCst) >= self.max_echoes {
            return Err(ActionError::failed_precondition(format!(
                "echoed {} times already; not echoing any more",
                self.max_echoes
            )));
        }
        let mut message = MessageBuilder::new(user_id, user_name, format!("{}{text}", self.prefix))
            .content_text()
            .channel_id(channel_id)
            .platform("echo_channel");
        if let Some(thread) = thread_id {
            message = message.thread_id(thread);
        }
        Ok(ctx.emit_librefang(message).await?)
    }

    fn take_stream(&self, stream_id: &str) -> Result<Stream, ActionError> {
        let mut streams = self.streams.lock().unwrap_or_else(|e| e.into_inner());
        streams
            .remove(stream_id)
            .ok_or_else(|| ActionError::not_found(format!("no stream `{stream_id}`")))
    }
}

#[connector]
impl EchoChannel {
    /// Deliver a reply: echo it back as the user's next message (for a
    /// file, what arrived).
    #[action]
    async fn send(&self, ctx: &Context, #[input] cmd: SendParams) -> Result<(), ActionError> {
        let user = (
            cmd.user.platform_id.as_str(),
            cmd.user.display_name.as_str(),
        );
        let text = match &cmd.content {
            Some(Content::FileData(file)) => format!(
                "file `{}` ({} bytes, {})",
                file.filename,
                file.data.len(),
                file.mime_type
            ),
            _ => cmd.text,
        };
        self.echo(ctx, user, &cmd.channel_id, cmd.thread_id.as_deref(), &text)
            .await
    }

    /// Show a typing indicator (the echo has none to show).
    #[action]
    async fn typing(&self, #[input] _cmd: TypingParams) {}

    /// Start collecting a streamed reply.
    #[action]
    async fn stream_start(&self, #[input] cmd: StreamStartParams) {
        let stream = Stream {
            channel_id: cmd.channel_id,
            thread_id: cmd.thread_id,
            text: String::new(),
        };
        let mut streams = self.streams.lock().unwrap_or_else(|e| e.into_inner());
        streams.insert(cmd.stream_id, stream);
    }

    /// Add a chunk to a streamed reply.
    #[action]
    async fn stream_delta(&self, #[input] cmd: StreamDeltaParams) -> Result<(), ActionError> {
        let mut streams = self.streams.lock().unwrap_or_else(|e| e.into_inner());
        let stream = streams
            .get_mut(&cmd.stream_id)
            .ok_or_else(|| ActionError::not_found(format!("no stream `{}`", cmd.stream_id)))?;
        stream.text.push_str(&cmd.text);
        Ok(())
    }

    /// Finish a streamed reply: echo it whole.
    #[action]
    async fn stream_end(
        &self,
        ctx: &Context,
        #[input] cmd: StreamEndParams,
    ) -> Result<(), ActionError> {
        let stream = self.take_stream(&cmd.stream_id)?;
        let user = (stream.channel_id.as_str(), stream.channel_id.as_str());
        self.echo(
            ctx,
            user,
            &stream.channel_id,
            stream.thread_id.as_deref(),
            &stream.text,
        )
        .await
    }
}

fn main() -> std::process::ExitCode {
    spoke::main()
}
