//! LibreFang sidecar conformance, from both directions, against the frames in
//! `tests/fixtures/librefang/` (LibreFang's own corpus; see its README):
//!
//! - events (connector to LibreFang): Spoke's builders produce every frame,
//!   by structural JSON equality, and parse it back;
//! - commands (LibreFang to connector): every frame parses into Spoke's typed
//!   command and serializes back, and, driven through the stdio transport,
//!   reaches the connector's action of that name with that input, or has its
//!   protocol effect.
//!
//! A missing fixture fails, and so does a fixture no test asserts on.

mod stdio_support;

use std::collections::BTreeSet;
use std::time::Duration;

use serde::Serialize;
use serde_json::{Value, json};
use spoke::librefang::{
    self, Button, ChannelUser, Command, Content, InteractiveMessage, InteractiveParams,
    LibreFangEvent, MessageBuilder, QrReady, QrStatus, ReactionParams, Ready, SendParams,
    StreamDeltaParams, StreamEndParams, StreamStartParams, TypingParams,
};
use spoke::prelude::*;
use spoke::stdio::StdioOptions;
use stdio_support::frames::{fixture, fixtures_dir};
use stdio_support::{Host, invoke};

/// Records what each LibreFang command delivered: every action emits a
/// `received` event with its name and its typed input, serialized again.
#[connector(name = "lf_probe")]
pub struct Probe {}

async fn received(ctx: &Context, input: &impl Serialize) -> Result<(), ActionError> {
    let data = json!({"action": ctx.action(), "input": input});
    ctx.emit_custom("received", data)
        .await
        .map_err(|e| ActionError::cancelled(e.to_string()))
}

#[connector]
impl Probe {
    #[action]
    async fn send(&self, ctx: &Context, #[input] p: SendParams) -> Result<(), ActionError> {
        received(ctx, &p).await
    }
    #[action]
    async fn typing(&self, ctx: &Context, #[input] p: TypingParams) -> Result<(), ActionError> {
        received(ctx, &p).await
    }
    #[action]
    async fn reaction(&self, ctx: &Context, #[input] p: ReactionParams) -> Result<(), ActionError> {
        received(ctx, &p).await
    }
    #[action]
    async fn interactive(
        &self,
        ctx: &Context,
        #[input] p: InteractiveParams,
    ) -> Result<(), ActionError> {
        received(ctx, &p).await
    }
    #[action]
    async fn stream_start(
        &self,
        ctx: &Context,
        #[input] p: StreamStartParams,
    ) -> Result<(), ActionError> {
        received(ctx, &p).await
    }
    #[action]
    async fn stream_delta(
        &self,
        ctx: &Context,
        #[input] p: StreamDeltaParams,
    ) -> Result<(), ActionError> {
        received(ctx, &p).await
    }
    #[action]
    async fn stream_end(
        &self,
        ctx: &Context,
        #[input] p: StreamEndParams,
    ) -> Result<(), ActionError> {
        received(ctx, &p).await
    }
    /// Answers `pong`.
    #[action(read)]
    async fn ping(&self) -> &'static str {
        "pong"
    }
}

// ---------------------------------------------------------------- fixtures

/// The fixture names (without `.json`) in `kind`.
fn fixture_names(kind: &str) -> BTreeSet<String> {
    let dir = fixtures_dir().join(kind);
    std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("fixtures dir {} is missing: {e}", dir.display()))
        .map(|e| {
            e.expect("dir entry")
                .file_name()
                .into_string()
                .expect("UTF-8")
        })
        .map(|n| {
            n.strip_suffix(".json")
                .unwrap_or_else(|| panic!("unexpected file {n} in {}", dir.display()))
                .to_owned()
        })
        .collect()
}

// ------------------------------------------------------------------ events

/// Every event fixture Spoke produces, with the builder calls that produce it.
fn event_cases() -> Vec<(&'static str, LibreFangEvent)> {
    vec![
        ("error", librefang::error("boom")),
        (
            "message_minimal",
            MessageBuilder::new("1", "Bob", "hi").into(),
        ),
        (
            "message_text",
            MessageBuilder::new("42", "Alice", "hello")
                .content_text()
                .channel_id("-100123")
                .platform("telegram")
                .into(),
        ),
        (
            "qr_ready",
            QrReady::new("wxp://f2f0YGcQ-xxxxxxxxxxxxxxxxxxxx")
                .qr_url("https://login.example/qr?code=abc")
                .message("Scan within 5 minutes")
                .expires_at("2026-05-28T20:00:00Z")
                .into(),
        ),
        (
            "qr_status",
            QrStatus::new("confirmed").message("Login confirmed").into(),
        ),
        (
            "ready_full",
            Ready::new("bot-1")
                .capabilities(["typing", "reaction", "interactive", "thread", "streaming"])
                .into(),
        ),
        ("typing", librefang::typing("u", "n", true)),
    ]
}

/// Event fixtures Spoke only consumes, never produces (see `ready_minimal_is_consumer_only`).
const CONSUMER_ONLY_EVENTS: [&str; 1] = ["ready_minimal"];

#[test]
fn our_builders_produce_every_event_fixture() {
    for (name, event) in event_cases() {
        let expected = fixture("events", name);
        assert_eq!(event.to_frame(), expected, "events/{name}.json");
        assert_eq!(
            serde_json::to_value(&event).unwrap(),
            expected,
            "events/{name}.json (Serialize)"
        );
        let parsed: LibreFangEvent = serde_json::from_value(expected.clone())
            .unwrap_or_else(|e| panic!("events/{name}.json does not parse: {e}"));
        assert_eq!(parsed, event, "events/{name}.json parses back");
    }
}

/// `ready_minimal.json` is the bare legacy `{"method":"ready"}`. Spoke never
/// sends it: its `ready` always carries full params (as LibreFang's Python
/// SDK, which documents and skips it on the producer side). What is pinned is
/// that Spoke's parser of `ready` frames still accepts it, with every field at
/// its default.
#[test]
fn ready_minimal_is_consumer_only() {
    let parsed: LibreFangEvent =
        serde_json::from_value(fixture("events", "ready_minimal")).expect("parses");
    assert_eq!(parsed, LibreFangEvent::Ready(Ready::default()));
    let LibreFangEvent::Ready(ready) = parsed else {
        unreachable!()
    };
    assert!(ready.capabilities.is_empty());
    assert_eq!(ready.account_id, None);
    assert_eq!(ready.protocol_version, None);
    // `"params": null` is the same legacy form.
    let null: LibreFangEvent =
        serde_json::from_value(json!({"method": "ready", "params": null})).unwrap();
    assert_eq!(null, LibreFangEvent::Ready(Ready::default()));
    // And what Spoke does send is never the minimal form.
    let sent = LibreFangEvent::Ready(Ready::new("x")).to_frame();
    assert_ne!(sent, fixture("events", "ready_minimal"));
}

/// The `ready` the transport sends is `ready_full.json`'s shape with Spoke's
/// own keys added: LibreFang's fields all carry the same meaning.
#[tokio::test]
async fn the_transports_ready_extends_ready_full() {
    let (host, ready) = Host::ready("lf_probe").await;
    let full = fixture("events", "ready_full");
    let keys = |v: &Value| -> BTreeSet<String> {
        v["params"].as_object().unwrap().keys().cloned().collect()
    };
    let spoke_keys: BTreeSet<String> = ["spoke".to_owned(), "manifest".to_owned()].into();
    assert_eq!(
        keys(&ready),
        keys(&full)
            .union(&spoke_keys)
            .cloned()
            .collect::<BTreeSet<_>>()
    );
    assert_eq!(
        ready["params"]["capabilities"],
        full["params"]["capabilities"]
    );
    assert_eq!(ready["params"]["account_id"], "lf_probe");
    assert_eq!(ready["params"]["protocol_version"], 1);
    let parsed: LibreFangEvent = serde_json::from_value(ready).expect("LibreFang-shaped");
    assert!(matches!(parsed, LibreFangEvent::Ready(_)));
    let (_, outcome) = host.finish().await;
    outcome.unwrap();
}

// ---------------------------------------------------------------- commands

fn user(platform_id: &str, display_name: &str) -> ChannelUser {
    ChannelUser {
        platform_id: platform_id.into(),
        display_name: display_name.into(),
        librefang_user: None,
    }
}

/// Every command fixture, with the typed command it must parse into.
fn command_cases() -> Vec<(&'static str, Command)> {
    vec![
        ("heartbeat", Command::Heartbeat),
        ("ready_ack", Command::ReadyAck),
        ("shutdown", Command::Shutdown),
        (
            "send_full",
            Command::Send(SendParams {
                channel_id: "c1".into(),
                text: "hello".into(),
                content: Some(Content::Text("hello".into())),
                thread_id: Some("t1".into()),
                user: user("c1", "Alice"),
            }),
        ),
        (
            "send_minimal",
            Command::Send(SendParams {
                channel_id: "c1".into(),
                text: "hi".into(),
                content: None,
                thread_id: None,
                user: user("c1", "Bob"),
            }),
        ),
        (
            "typing",
            Command::Typing(TypingParams {
                channel_id: "c1".into(),
            }),
        ),
        (
            "reaction",
            Command::Reaction(ReactionParams {
                channel_id: "c1".into(),
                message_id: "55".into(),
                reaction: "👍".into(),
            }),
        ),
        (
            "interactive",
            Command::Interactive(InteractiveParams {
                channel_id: "c1".into(),
                message: InteractiveMessage {
                    text: "pick".into(),
                    buttons: vec![vec![
                        Button {
                            label: "Yes".into(),
                            action: "y".into(),
                            url: None,
                        },
                        Button {
                            label: "Docs".into(),
                            action: "d".into(),
                            url: Some("https://x".into()),
                        },
                    ]],
                },
            }),
        ),
        (
            "stream_start",
            Command::StreamStart(StreamStartParams {
                channel_id: "c1".into(),
                stream_id: "s1".into(),
                thread_id: None,
            }),
        ),
        (
            "stream_start_threaded",
            Command::StreamStart(StreamStartParams {
                channel_id: "c1".into(),
                stream_id: "s1".into(),
                thread_id: Some("t1".into()),
            }),
        ),
        (
            "stream_delta",
            Command::StreamDelta(StreamDeltaParams {
                stream_id: "s1".into(),
                text: "Hel".into(),
            }),
        ),
        (
            "stream_end",
            Command::StreamEnd(StreamEndParams {
                stream_id: "s1".into(),
            }),
        ),
    ]
}

/// Command fixtures that invoke the connector's action of the same name.
const ACTION_COMMANDS: [&str; 9] = [
    "send_full",
    "send_minimal",
    "typing",
    "reaction",
    "interactive",
    "stream_start",
    "stream_start_threaded",
    "stream_delta",
    "stream_end",
];

/// Command fixtures the transport acts on itself (each has its own test).
const PROTOCOL_COMMANDS: [&str; 3] = ["heartbeat", "ready_ack", "shutdown"];

#[test]
fn every_command_fixture_parses_into_our_typed_command() {
    for (name, expected) in command_cases() {
        let frame = fixture("commands", name);
        let parsed: Command = serde_json::from_value(frame.clone())
            .unwrap_or_else(|e| panic!("commands/{name}.json does not parse: {e}"));
        assert_eq!(parsed, expected, "commands/{name}.json");
        assert_eq!(
            serde_json::to_value(&parsed).unwrap(),
            frame,
            "commands/{name}.json serializes back"
        );
    }
}

#[test]
fn the_typed_commands_ignore_fields_from_a_newer_librefang() {
    let mut frame = fixture("commands", "send_full");
    frame["params"]["reply_to"] = json!("m9");
    frame["params"]["user"]["avatar"] = json!("https://a");
    let Command::Send(send) = serde_json::from_value(frame).expect("parses") else {
        panic!("a send")
    };
    assert_eq!(send.thread_id.as_deref(), Some("t1"));
}

#[tokio::test]
async fn every_action_command_reaches_its_action_with_its_input() {
    let (mut host, _) = Host::ready("lf_probe").await;
    for name in ACTION_COMMANDS {
        host.send(&fixture("commands", name)).await;
    }
    // The commands run one at a time in arrival order, so the events come
    // back in the same order.
    for name in ACTION_COMMANDS {
        let sent = fixture("commands", name);
        let frame = host.frame().await;
        assert_eq!(frame["method"], "event", "{name}: {frame}");
        assert!(
            frame["params"].get("id").is_none(),
            "LibreFang commands have no id: {frame}"
        );
        let event = &frame["params"]["event"];
        assert_eq!(event["type"], "custom");
        assert_eq!(event["name"], "received");
        assert_eq!(
            event["action"], sent["method"],
            "{name} reached the wrong action"
        );
        assert_eq!(event["data"]["action"], sent["method"]);
        assert_eq!(
            event["data"]["input"], sent["params"],
            "{name}: the input as typed"
        );
    }
    let (frames, outcome) = host.finish().await;
    outcome.unwrap();
    assert!(
        frames.is_empty(),
        "LibreFang commands get no replies: {frames:?}"
    );
}

#[tokio::test]
async fn heartbeat_is_accepted_silently() {
    let (mut host, _) = Host::ready("lf_probe").await;
    host.send(&fixture("commands", "heartbeat")).await;
    host.send(&invoke("1", "ping", json!({}))).await;
    // The next frame answers the invoke: the heartbeat got no reply.
    let frame = host.frame().await;
    assert_eq!(
        frame,
        json!({"method": "result", "params": {"id": "1", "output": "pong"}})
    );
    let (frames, outcome) = host.finish().await;
    outcome.unwrap();
    assert!(frames.is_empty(), "{frames:?}");
}

#[tokio::test(start_paused = true)]
async fn ready_ack_stops_the_ready_resends() {
    let (mut host, ready) = Host::ready_with("lf_probe", StdioOptions::default()).await;
    // Without an ack, `ready` comes again after 2 s.
    let again = host.frame_within(Duration::from_millis(2_100)).await;
    assert_eq!(again.as_ref(), Some(&ready));
    host.send(&fixture("commands", "ready_ack")).await;
    assert_eq!(host.frame_within(Duration::from_secs(20)).await, None);
    let (frames, outcome) = host.finish().await;
    outcome.unwrap();
    assert!(frames.is_empty(), "{frames:?}");
}

#[tokio::test]
async fn shutdown_ends_the_session_cleanly() {
    let (mut host, _) = Host::ready("lf_probe").await;
    host.send(&fixture("commands", "shutdown")).await;
    // stdin stays open: the shutdown frame alone ends the session.
    let frames = host.rest().await;
    assert!(frames.is_empty(), "{frames:?}");
    let outcome = tokio::time::timeout(stdio_support::WAIT, &mut host.session)
        .await
        .expect("ends")
        .expect("no panic");
    outcome.unwrap();
}

// ------------------------------------------------------------------- guard

#[test]
fn every_fixture_has_an_assertion() {
    let events: BTreeSet<String> = event_cases()
        .iter()
        .map(|(n, _)| n.to_string())
        .chain(CONSUMER_ONLY_EVENTS.iter().map(|n| n.to_string()))
        .collect();
    assert_eq!(
        fixture_names("events"),
        events,
        "every events/*.json fixture needs a builder case (or a consumer-only test), and every case its fixture"
    );
    let parsed: BTreeSet<String> = command_cases().iter().map(|(n, _)| n.to_string()).collect();
    let driven: BTreeSet<String> = ACTION_COMMANDS
        .iter()
        .chain(PROTOCOL_COMMANDS.iter())
        .map(|n| n.to_string())
        .collect();
    let files = fixture_names("commands");
    assert_eq!(
        files, parsed,
        "every commands/*.json fixture needs a typed-parse case"
    );
    assert_eq!(
        files, driven,
        "every commands/*.json fixture must be driven through the transport"
    );
    for name in &files {
        fixture("commands", name);
    }
    for name in fixture_names("events") {
        fixture("events", &name);
    }
    for extra in [
        "README.md",
        "PROVENANCE.txt",
        "LICENSE-MIT",
        "UPSTREAM-README.md",
    ] {
        assert!(fixtures_dir().join(extra).is_file(), "{extra} is missing");
    }
}
