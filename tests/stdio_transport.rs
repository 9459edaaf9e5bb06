//! In-process tests of the stdio transport (`spoke::stdio::run`) over
//! in-memory pipes: the `ready` frame and its re-sends, concurrent invokes,
//! cancel and deadlines, bad and oversized lines, the sequential LibreFang
//! command queue, producers, and the shutdown drain. Tests that depend on
//! time run on Tokio's paused clock, so they are exact and fast.

mod stdio_support;

use std::time::Duration;

use serde_json::{Value, json};
use spoke::librefang::{
    self, LibreFangEmit, MessageBuilder, ReactionParams, SendParams, StreamDeltaParams,
};
use spoke::prelude::*;
use spoke::producer;
use spoke::stdio::{StdioError, StdioOptions};
use stdio_support::frames::{error_code, error_frame, result_ok};
use stdio_support::{Host, instance, invoke, quiet};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

/// A connector for exercising the transport.
#[connector(name = "tlab")]
pub struct Lab {}

#[connector]
impl Lab {
    /// Returns the text.
    #[action(read)]
    async fn echo(&self, text: String) -> String {
        text
    }

    /// Sleeps `ms`, stopping when cancelled.
    #[action(read)]
    async fn sleep(&self, ctx: &Context, ms: u64) -> Result<u64, ActionError> {
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(ms)) => Ok(ms),
            () = ctx.cancelled() => Err(ActionError::cancelled("sleep stopped")),
        }
    }

    /// Sleeps `ms`, ignoring cancellation.
    #[action(read)]
    async fn stubborn(&self, ms: u64) -> u64 {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        ms
    }

    /// Reports progress `steps` times.
    #[action(read)]
    async fn progress(&self, ctx: &Context, steps: u32) -> Result<u32, ActionError> {
        for i in 1..=steps {
            ctx.progress(f64::from(i), Some(f64::from(steps)), None)
                .await?;
        }
        Ok(steps)
    }

    /// Panics.
    #[action(read)]
    async fn boom(&self) -> String {
        panic!("kaboom")
    }

    /// Emits a LibreFang `message` from a Spoke invoke.
    #[action(read)]
    async fn announce(&self, ctx: &Context, text: String) -> Result<(), ActionError> {
        ctx.emit_librefang(MessageBuilder::new("bot", "Bot", text))
            .await
            .map_err(|e| ActionError::cancelled(e.to_string()))
    }

    /// LibreFang `send`: echoes, or fails when the text is `fail`.
    #[action]
    async fn send(&self, ctx: &Context, #[input] p: SendParams) -> Result<(), ActionError> {
        if p.text == "fail" {
            return Err(ActionError::unavailable("platform down"));
        }
        let mut echo = MessageBuilder::new(p.user.platform_id, p.user.display_name, p.text)
            .channel_id(p.channel_id);
        if let Some(thread) = p.thread_id {
            echo = echo.thread_id(thread);
        }
        ctx.emit_librefang(echo)
            .await
            .map_err(|e| ActionError::cancelled(e.to_string()))
    }

    /// LibreFang `stream_delta`: slow when the text starts with `slow`.
    #[action]
    async fn stream_delta(
        &self,
        ctx: &Context,
        #[input] p: StreamDeltaParams,
    ) -> Result<(), ActionError> {
        if p.text.starts_with("slow") {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        ctx.emit_custom("delta", json!({ "text": p.text }))
            .await
            .map_err(|e| ActionError::cancelled(e.to_string()))
    }

    /// LibreFang `reaction`: panics.
    #[action]
    async fn reaction(&self, #[input] p: ReactionParams) {
        panic!("no reactions: {}", p.reaction)
    }

    /// Returns the invocation's metadata.
    #[action(read)]
    async fn whoami(&self, ctx: &Context) -> Value {
        json!(ctx.metadata())
    }

    /// Emits `n` small custom events, stopping when it cannot.
    #[action(read)]
    async fn flood(&self, ctx: &Context, n: u32) -> u32 {
        for i in 0..n {
            if ctx.emit_custom("flood", json!(i)).await.is_err() {
                return i;
            }
        }
        n
    }

    /// Upper-cases the value.
    #[search_operator(attribute = "upper")]
    async fn upper(&self, value: String) -> Result<String, ActionError> {
        Ok(value.to_uppercase())
    }
}

/// A connector with a producer.
#[connector(name = "tprod")]
pub struct Prod {}

#[connector]
impl Prod {
    /// Says hello as a LibreFang message and as a Spoke event, then waits.
    #[producer]
    async fn listen(&self, ctx: &Context) -> Result<(), ActionError> {
        ctx.emit_librefang(MessageBuilder::new("u1", "Ann", "hello from the platform"))
            .await?;
        ctx.emit_custom("listening", json!({})).await?;
        ctx.cancelled().await;
        Ok(())
    }

    /// Returns 1.
    #[action(read)]
    async fn one(&self) -> u32 {
        1
    }
}

/// A connector whose producers fail: one returns an error, one panics.
#[connector(name = "tflaky")]
pub struct FlakyProducers {}

#[connector]
impl FlakyProducers {
    /// Fails at once, every run.
    #[producer]
    async fn refused(&self) -> Result<(), ActionError> {
        Err(ActionError::unavailable("connection refused"))
    }

    /// Panics on every run.
    #[producer]
    async fn fragile(&self) {
        panic!("socket gone")
    }

    /// Returns 1.
    #[action(read)]
    async fn one(&self) -> u32 {
        1
    }
}

async fn finish_ok(host: Host) -> Vec<Value> {
    let (frames, outcome) = host.finish().await;
    outcome.expect("a clean end");
    frames
}

// ------------------------------------------------------------------- ready

#[tokio::test]
async fn ready_describes_the_connector() {
    let (host, ready) = Host::ready("tlab").await;
    let manifest = instance("tlab").await.manifest().clone();
    let p = &ready["params"];
    assert_eq!(p["protocol_version"], 1);
    // `reaction` action; `send` takes a `thread_id`; only one stream action.
    assert_eq!(p["capabilities"], json!(["reaction", "thread"]));
    assert_eq!(p["account_id"], "tlab");
    assert_eq!(p["suppress_error_responses"], false);
    assert_eq!(p["notification_recipients"], json!([]));
    assert_eq!(p["header_rules"], json!([]));
    assert_eq!(
        p["spoke"],
        json!({
            "name": "tlab",
            "version": manifest.version,
            "display_name": "Tlab",
            "actions": ["announce", "boom", "echo", "flood", "progress", "reaction", "send", "sleep", "stream_delta", "stubborn", "whoami"],
            "search_operators": ["upper"],
            "capabilities": manifest.capabilities,
            "max_in_flight": 64,
        })
    );
    assert_eq!(p["manifest"], serde_json::to_value(&manifest).unwrap());
    assert!(finish_ok(host).await.is_empty());
}

#[tokio::test]
async fn the_account_id_comes_from_the_options() {
    let mut options = quiet();
    options.account_id = Some("acct-7".into());
    let (host, ready) = Host::ready_with("tlab", options).await;
    assert_eq!(ready["params"]["account_id"], "acct-7");
    finish_ok(host).await;
}

#[tokio::test(start_paused = true)]
async fn ready_is_resent_every_two_seconds_at_most_five_times() {
    let started = Instant::now();
    let (mut host, ready) = Host::ready_with("tlab", StdioOptions::default()).await;
    let mut at = vec![started.elapsed()];
    for _ in 0..4 {
        assert_eq!(host.frame().await, ready);
        at.push(started.elapsed());
    }
    let secs: Vec<u64> = at.iter().map(|d| d.as_secs()).collect();
    assert_eq!(secs, [0, 2, 4, 6, 8]);
    assert_eq!(host.frame_within(Duration::from_secs(60)).await, None);
    assert!(finish_ok(host).await.is_empty());
}

// ----------------------------------------------------------------- invokes

#[tokio::test]
async fn invoke_and_resolve_answer_with_results() {
    let (mut host, _) = Host::ready("tlab").await;
    host.send(&invoke("1", "echo", json!({"text": "hi"}))).await;
    assert_eq!(host.frame().await, result_ok("1", json!("hi")));
    host.send(
        &json!({"method": "resolve", "params": {"id": "2", "operator": "upper", "value": "rs"}}),
    )
    .await;
    assert_eq!(host.frame().await, result_ok("2", json!("RS")));
    host.send(
        &json!({"method": "resolve", "params": {"id": "3", "operator": "lower", "value": "rs"}}),
    )
    .await;
    assert_eq!(error_code(&host.frame().await, "3"), "not_found");
    host.send(
        &json!({"method": "resolve", "params": {"id": "4", "operator": "upper", "value": 5}}),
    )
    .await;
    assert_eq!(error_code(&host.frame().await, "4"), "invalid_input");
    host.send(&invoke("5", "ecoh", json!({}))).await;
    let frame = host.frame().await;
    assert_eq!(error_code(&frame, "5"), "not_found");
    assert!(
        frame["params"]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("did you mean `echo`"),
        "{frame}"
    );
    host.send(&invoke("6", "echo", json!([1]))).await;
    assert_eq!(error_code(&host.frame().await, "6"), "invalid_input");
    host.send(&invoke("7", "echo", json!({"text": 1}))).await;
    assert_eq!(error_code(&host.frame().await, "7"), "invalid_input");
    // No input means `{}`.
    host.send(&json!({"method": "invoke", "params": {"id": "8", "action": "boom"}}))
        .await;
    let frame = host.frame().await;
    assert_eq!(error_code(&frame, "8"), "panicked");
    assert_eq!(frame["params"]["error"]["message"], "kaboom");
    host.send(&invoke("9", "echo", json!({"text": "still here"})))
        .await;
    assert_eq!(host.frame().await, result_ok("9", json!("still here")));
    assert!(finish_ok(host).await.is_empty());
}

#[tokio::test]
async fn events_come_before_their_result_with_the_request_id() {
    let (mut host, _) = Host::ready("tlab").await;
    host.send(&invoke("p", "progress", json!({"steps": 3})))
        .await;
    for i in 1..=3 {
        assert_eq!(
            host.frame().await,
            json!({"method": "event", "params": {"id": "p", "event": {
                "request_id": "p", "action": "progress", "type": "progress",
                "progress": f64::from(i), "total": 3.0
            }}})
        );
    }
    assert_eq!(host.frame().await, result_ok("p", json!(3)));
    // A LibreFang event emitted by a Spoke invoke is an `event` frame with
    // the invoke's id, like any other event of it: a host that sends
    // `invoke` relays events to its caller (bare LibreFang frames are for
    // LibreFang, whose commands have no id).
    host.send(&invoke("a", "announce", json!({"text": "hey"})))
        .await;
    assert_eq!(
        host.frame().await,
        json!({"method": "event", "params": {"id": "a", "event": {
            "request_id": "a", "action": "announce", "type": "custom", "name": "librefang",
            "data": {"method": "message", "params": {"user_id": "bot", "user_name": "Bot", "text": "hey"}}
        }}})
    );
    assert_eq!(host.frame().await, result_ok("a", Value::Null));
    finish_ok(host).await;
}

#[tokio::test]
async fn metadata_reaches_the_context() {
    let (mut host, ready) = Host::ready("tlab").await;
    assert_eq!(ready["params"]["spoke"]["max_in_flight"], 64);
    host.send(&json!({"method": "invoke", "params": {"id": "m", "action": "whoami", "metadata": {"caller": "spoke-cli", "traceparent": "00-ab-cd-01"}}}))
        .await;
    assert_eq!(
        host.frame().await,
        result_ok(
            "m",
            json!({"caller": "spoke-cli", "traceparent": "00-ab-cd-01"})
        )
    );
    host.send(&invoke("none", "whoami", json!({}))).await;
    assert_eq!(host.frame().await, result_ok("none", json!({})));
    host.send(&json!({"method": "invoke", "params": {"id": "bad", "action": "whoami", "metadata": {"caller": 7}}}))
        .await;
    let frame = host.frame().await;
    assert_eq!(error_code(&frame, "bad"), "invalid_input");
    assert!(
        frame["params"]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("metadata"),
        "{frame}"
    );
    assert!(finish_ok(host).await.is_empty());
}

#[tokio::test]
async fn max_in_flight_in_the_ready_frame_follows_the_options() {
    let mut options = quiet();
    options.max_in_flight = 3;
    let (host, ready) = Host::ready_with("tlab", options).await;
    assert_eq!(ready["params"]["spoke"]["max_in_flight"], 3);
    finish_ok(host).await;
}

#[tokio::test(start_paused = true)]
async fn concurrent_invokes_are_answered_out_of_order_each_once() {
    let (mut host, _) = Host::ready("tlab").await;
    for (id, ms) in [("a", 300), ("b", 200), ("c", 100)] {
        host.send(&invoke(id, "sleep", json!({"ms": ms}))).await;
    }
    host.send(&invoke("d", "echo", json!({"text": "now"})))
        .await;
    let mut order = Vec::new();
    for _ in 0..4 {
        let frame = host.frame().await;
        assert_eq!(frame["method"], "result", "{frame}");
        order.push(frame["params"]["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(order, ["d", "c", "b", "a"]);
    assert!(finish_ok(host).await.is_empty(), "one result per id");
}

#[tokio::test(start_paused = true)]
async fn a_full_house_stops_reading_stdin() {
    let mut options = quiet();
    options.max_in_flight = 1;
    let (mut host, _) = Host::ready_with("tlab", options).await;
    host.send(&invoke("slow", "sleep", json!({"ms": 1000})))
        .await;
    host.send(&invoke("quick", "echo", json!({"text": "x"})))
        .await;
    let started = Instant::now();
    assert_eq!(host.frame().await, result_ok("slow", json!(1000)));
    assert_eq!(host.frame().await, result_ok("quick", json!("x")));
    assert!(started.elapsed() >= Duration::from_millis(1000));
    finish_ok(host).await;
}

#[tokio::test(start_paused = true)]
async fn cancel_and_deadlines() {
    let (mut host, _) = Host::ready("tlab").await;
    host.send(&invoke("c", "sleep", json!({"ms": 60_000})))
        .await;
    host.send(&json!({"method": "cancel", "params": {"id": "c"}}))
        .await;
    host.send(&json!({"method": "cancel", "params": {"id": "nobody"}}))
        .await;
    let frame = host.frame().await;
    assert_eq!(error_code(&frame, "c"), "cancelled");
    assert_eq!(frame["params"]["error"]["message"], "sleep stopped");

    let started = Instant::now();
    host.send(&json!({"method": "invoke", "params": {"id": "d", "action": "stubborn", "input": {"ms": 60_000}, "deadline_ms": 250}}))
        .await;
    assert_eq!(error_code(&host.frame().await, "d"), "deadline_exceeded");
    assert_eq!(started.elapsed(), Duration::from_millis(250));

    host.send(&json!({"method": "invoke", "params": {"id": "e", "action": "echo", "input": {"text": "x"}, "deadline_ms": "soon"}}))
        .await;
    let frame = host.frame().await;
    assert_eq!(error_code(&frame, "e"), "invalid_input");
    assert!(
        frame["params"]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("deadline_ms"),
        "{frame}"
    );
    // A deadline too far away to represent is no deadline.
    host.send(&json!({"method": "invoke", "params": {"id": "f", "action": "echo", "input": {"text": "x"}, "deadline_ms": u64::MAX}}))
        .await;
    assert_eq!(host.frame().await, result_ok("f", json!("x")));
    assert!(finish_ok(host).await.is_empty());
}

#[tokio::test(start_paused = true)]
async fn an_id_already_in_flight_is_an_error_and_free_again_after_its_result() {
    let (mut host, _) = Host::ready("tlab").await;
    host.send(&invoke("d", "sleep", json!({"ms": 200}))).await;
    host.send(&invoke("d", "echo", json!({"text": "second"})))
        .await;
    assert_eq!(
        host.frame().await,
        error_frame("line 2: id `d` is already in flight; skipped")
    );
    assert_eq!(host.frame().await, result_ok("d", json!(200)));
    host.send(&invoke("d", "echo", json!({"text": "again"})))
        .await;
    assert_eq!(host.frame().await, result_ok("d", json!("again")));
    assert!(finish_ok(host).await.is_empty());
}

// --------------------------------------------------------------- bad input

#[tokio::test]
async fn bad_lines_get_error_frames_and_the_session_goes_on() {
    let (mut host, _) = Host::ready("tlab").await;
    host.write(b"[1,2]\n").await;
    host.write(b"{\"params\":{}}\n").await;
    host.write(b"{\"method\":\"invoke\",\"params\":{\"action\":\"echo\"}}\n")
        .await;
    host.write(b"{\"method\":\"invoke\",\"params\":{\"id\":\"x\"}}\n")
        .await;
    host.write(b"{nope\n").await;
    host.write(b"\n").await;
    host.write(b"{\"method\":\"frobnicate\",\"params\":{\"x\":1}}\n")
        .await;
    host.write(b"\xff\xfe\n").await;
    host.write(b"{\"method\":\"typing\",\"params\":{\"channel_id\":\"c1\"}}\n")
        .await;
    host.write(b"{\"method\":\"cancel\"}\n").await;
    host.send(&invoke("ok", "echo", json!({"text": "fine"})))
        .await;
    assert_eq!(
        host.frame().await,
        error_frame("line 1: expected a JSON object, got an array")
    );
    assert_eq!(
        host.frame().await,
        error_frame("line 2: missing a string `method`")
    );
    assert_eq!(
        host.frame().await,
        error_frame("line 3: `invoke` needs a non-empty string `id`")
    );
    assert_eq!(
        host.frame().await,
        error_frame("line 4: `invoke` needs a string `action`")
    );
    let frame = host.frame().await;
    let message = frame["params"]["message"].as_str().unwrap();
    assert!(message.starts_with("line 5: not valid JSON: "), "{frame}");
    // Line 6 is blank, line 7 an unknown method, line 9 a LibreFang method
    // this connector has no action for: no replies.
    let frame = host.frame().await;
    let message = frame["params"]["message"].as_str().unwrap();
    assert!(message.starts_with("line 8: not valid JSON"), "{frame}");
    assert_eq!(
        host.frame().await,
        error_frame("line 10: `cancel` needs a non-empty string `id`")
    );
    assert_eq!(host.frame().await, result_ok("ok", json!("fine")));
    assert!(finish_ok(host).await.is_empty());
}

#[tokio::test]
async fn an_oversized_line_is_skipped_without_being_buffered() {
    let mut options = quiet();
    options.max_line_bytes = 128;
    let (mut host, _) = Host::ready_with("tlab", options).await;
    host.send(&invoke("a", "echo", json!({"text": "before"})))
        .await;
    assert_eq!(host.frame().await, result_ok("a", json!("before")));
    // 1 MiB without a newline: reported as soon as it passes the limit.
    let chunk = vec![b'x'; 64 * 1024];
    for _ in 0..16 {
        host.write(&chunk).await;
    }
    assert_eq!(
        host.frame().await,
        error_frame("line 2: longer than 128 bytes; skipped")
    );
    host.write(b"still the same line\n").await;
    host.send(&invoke("b", "echo", json!({"text": "after"})))
        .await;
    assert_eq!(host.frame().await, result_ok("b", json!("after")));
    // Exactly at the limit is fine.
    let mut line = serde_json::to_vec(&invoke("c", "echo", json!({"text": ""}))).unwrap();
    let pad = 128 - line.len();
    line.splice(1..1, std::iter::repeat_n(b' ', pad));
    assert_eq!(line.len(), 128);
    line.push(b'\n');
    host.write(&line).await;
    assert_eq!(host.frame().await, result_ok("c", json!("")));
    assert!(finish_ok(host).await.is_empty());
}

// -------------------------------------------------------------- LibreFang

#[tokio::test(start_paused = true)]
async fn librefang_commands_run_one_at_a_time_in_order_beside_invokes() {
    let (mut host, _) = Host::ready("tlab").await;
    let delta =
        |text: &str| json!({"method": "stream_delta", "params": {"stream_id": "s1", "text": text}});
    host.send(&delta("slow-1")).await;
    host.send(&delta("fast-2")).await;
    host.send(&invoke("i", "echo", json!({"text": "not queued"})))
        .await;
    // The invoke does not wait behind the slow command.
    assert_eq!(host.frame().await, result_ok("i", json!("not queued")));
    let texts: Vec<Value> = [host.frame().await, host.frame().await]
        .iter()
        .map(|f| {
            assert_eq!(f["method"], "event", "{f}");
            assert!(f["params"].get("id").is_none(), "{f}");
            f["params"]["event"]["data"]["text"].clone()
        })
        .collect();
    assert_eq!(texts, [json!("slow-1"), json!("fast-2")]);
    assert!(finish_ok(host).await.is_empty());
}

#[tokio::test]
async fn librefang_commands_answer_only_with_events_and_errors() {
    let (mut host, _) = Host::ready("tlab").await;
    let send = |text: &str| json!({"method": "send", "params": {"channel_id": "c1", "text": text, "thread_id": "t1", "user": {"platform_id": "c1", "display_name": "Ann", "librefang_user": null}}});
    host.send(&send("hello")).await;
    assert_eq!(
        host.frame().await,
        librefang::LibreFangEvent::from(
            MessageBuilder::new("c1", "Ann", "hello")
                .channel_id("c1")
                .thread_id("t1")
        )
        .to_frame()
    );
    host.send(&send("fail")).await;
    assert_eq!(host.frame().await, error_frame("send: platform down"));
    host.send(&json!({"method": "send", "params": {"channel_id": "c1", "text": "x"}}))
        .await;
    assert_eq!(
        host.frame().await,
        // As for every input decoded from its text: the path, then where
        // in the params.
        error_frame("send: $.user: missing field `user` at line 1 column 30")
    );
    host.send(&json!({"method": "reaction", "params": {"channel_id": "c1", "message_id": "1", "reaction": "👍"}}))
        .await;
    assert_eq!(
        host.frame().await,
        error_frame("reaction: no reactions: 👍")
    );
    // No `interactive` action: an unknown method, ignored.
    host.send(
        &json!({"method": "interactive", "params": {"channel_id": "c1", "message": {"text": "?"}}}),
    )
    .await;
    host.send(&invoke("z", "echo", json!({"text": "end"})))
        .await;
    assert_eq!(host.frame().await, result_ok("z", json!("end")));
    assert!(finish_ok(host).await.is_empty());
}

#[tokio::test]
async fn producer_events_reach_stdout_and_producers_stop_at_shutdown() {
    let (mut host, ready) = Host::ready("tprod").await;
    assert_eq!(ready["params"]["capabilities"], json!([]));
    let mut frames = [host.frame().await, host.frame().await];
    frames.sort_by_key(|f| f["method"].as_str().unwrap().to_owned());
    assert_eq!(
        frames[0],
        json!({"method": "event", "params": {"event": {"request_id": "", "action": "listen", "type": "custom", "name": "listening", "data": {}}}})
    );
    assert_eq!(
        frames[1],
        json!({"method": "message", "params": {"user_id": "u1", "user_name": "Ann", "text": "hello from the platform"}})
    );
    host.send(&invoke("1", "one", json!({}))).await;
    assert_eq!(host.frame().await, result_ok("1", json!(1)));
    host.send(&json!({"method": "shutdown"})).await;
    let rest = host.rest().await;
    assert!(rest.is_empty(), "{rest:?}");
    tokio::time::timeout(stdio_support::WAIT, &mut host.session)
        .await
        .expect("the producer stopped and the session ended")
        .unwrap()
        .unwrap();
}

#[tokio::test(start_paused = true)]
async fn producer_failures_are_error_frames_and_the_session_goes_on() {
    let (mut host, _) = Host::ready("tflaky").await;
    let mut errors = Vec::new();
    let mut logs = Vec::new();
    while errors.len() < 2 || logs.len() < 2 {
        let frame = host.frame().await;
        match frame["method"].as_str() {
            Some("error") => errors.push(frame["params"]["message"].as_str().unwrap().to_owned()),
            Some("event") => {
                let event = &frame["params"]["event"];
                assert_eq!(event["type"], "log", "{frame}");
                assert_eq!(event["level"], "error", "{frame}");
                assert!(frame["params"].get("id").is_none(), "{frame}");
                logs.push(event["message"].as_str().unwrap().to_owned());
            }
            _ => panic!("unexpected {frame}"),
        }
    }
    errors.sort();
    let (fragile, refused) = (&errors[0], &errors[1]);
    assert!(
        fragile.starts_with("producer `fragile` panicked: socket gone; restarting in "),
        "{fragile}"
    );
    assert!(
        refused.starts_with(
            "producer `refused` failed: unavailable: connection refused; restarting in "
        ),
        "{refused}"
    );
    // The same report is also kept as the (Spoke) log event.
    logs.sort();
    assert_eq!(logs, errors);
    // The session keeps serving while the producers are restarted.
    host.send(&invoke("1", "one", json!({}))).await;
    loop {
        let frame = host.frame().await;
        if frame["method"] == "result" {
            assert_eq!(frame, result_ok("1", json!(1)));
            break;
        }
        assert!(
            ["error", "event"].contains(&frame["method"].as_str().unwrap()),
            "{frame}"
        );
    }
    host.send(&json!({"method": "shutdown"})).await;
    let (_, outcome) = host.finish().await;
    outcome.expect("a clean end");
}

// ---------------------------------------------------------------- shutdown

#[tokio::test(start_paused = true)]
async fn shutdown_takes_no_new_work_and_drains_what_is_in_flight() {
    let (mut host, _) = Host::ready("tlab").await;
    host.send(&invoke("long", "sleep", json!({"ms": 500})))
        .await;
    host.send(&json!({"method": "shutdown"})).await;
    host.send(&invoke("late", "echo", json!({"text": "x"})))
        .await;
    host.send(&json!({"method": "send", "params": {"channel_id": "c1", "text": "x", "user": {"platform_id": "c1", "display_name": "A"}}}))
        .await;
    assert_eq!(
        host.frame().await,
        json!({"method": "result", "params": {"id": "late", "error": {
            "code": "unavailable", "message": "connector is shutting down", "details": {"started": false}
        }}})
    );
    assert_eq!(
        host.frame().await,
        error_frame("send: connector is shutting down")
    );
    assert_eq!(host.frame().await, result_ok("long", json!(500)));
    // stdout ends and the session is over although stdin is still open.
    assert_eq!(host.rest().await, Vec::<Value>::new());
    tokio::time::timeout(stdio_support::WAIT, &mut host.session)
        .await
        .expect("ends")
        .unwrap()
        .unwrap();
}

#[tokio::test(start_paused = true)]
async fn after_the_grace_in_flight_work_is_cancelled() {
    let mut options = quiet();
    options.shutdown_grace = Duration::from_secs(1);
    let (mut host, _) = Host::ready_with("tlab", options).await;
    host.send(&invoke("polite", "sleep", json!({"ms": 60_000})))
        .await;
    host.send(&invoke("stubborn", "stubborn", json!({"ms": 60_000})))
        .await;
    let started = Instant::now();
    host.send(&json!({"method": "shutdown"})).await;
    let frame = host.frame().await;
    assert_eq!(error_code(&frame, "polite"), "cancelled");
    assert_eq!(started.elapsed(), Duration::from_secs(1));
    // One that ignores cancellation gets the instance's cancel grace (2 s).
    let frame = host.frame().await;
    assert_eq!(error_code(&frame, "stubborn"), "cancelled");
    assert_eq!(started.elapsed(), Duration::from_secs(3));
    assert!(finish_ok(host).await.is_empty());
}

#[tokio::test(start_paused = true)]
async fn the_end_of_stdin_drains_like_shutdown() {
    let (mut host, _) = Host::ready("tlab").await;
    host.send(&invoke("s", "sleep", json!({"ms": 300}))).await;
    host.write(b"{\"method\":\"invoke\",\"params\":{\"id\":\"t\",\"action\":\"echo\",\"input\":{\"text\":\"unterminated\"}}}")
        .await;
    let (frames, outcome) = host.finish().await;
    outcome.unwrap();
    // The last line had no newline and still counted.
    assert_eq!(
        frames,
        [
            result_ok("t", json!("unterminated")),
            result_ok("s", json!(300))
        ]
    );
}

#[tokio::test]
async fn a_host_that_stops_reading_ends_the_session_with_an_error() {
    let (mut stdin, connector_in) = tokio::io::duplex(1024);
    let (connector_out, mut stdout) = tokio::io::duplex(1024);
    let session = tokio::spawn(spoke::stdio::run(
        instance("tlab").await,
        connector_in,
        connector_out,
        quiet(),
    ));
    // Read a little of the ready frame, then go away.
    let mut some = [0u8; 16];
    stdout.read_exact(&mut some).await.unwrap();
    assert!(some.starts_with(b"{\"method\":\"ready"));
    drop(stdout);
    let _ = stdin
        .write_all(
            serde_json::to_string(&invoke("1", "echo", json!({"text": "x"})))
                .unwrap()
                .as_bytes(),
        )
        .await;
    let outcome = tokio::time::timeout(stdio_support::WAIT, session)
        .await
        .expect("ends")
        .unwrap();
    assert!(matches!(outcome, Err(StdioError::Output(_))), "{outcome:?}");
}

#[tokio::test(start_paused = true)]
async fn an_invocation_done_while_stdout_is_full_still_gets_its_result_when_abandoned() {
    // stdout is tiny and the host does not read it: `flood` fills it and
    // the writer's queue, then `echo` finishes and waits to write its
    // result. Shutdown, the grace and the cancel grace pass with stdout
    // still full, so both are abandoned; each must still get one result.
    let (mut stdin, connector_in) = tokio::io::duplex(64 * 1024);
    let (connector_out, stdout) = tokio::io::duplex(1024);
    let mut options = quiet();
    options.shutdown_grace = Duration::from_secs(1);
    let session = tokio::spawn(spoke::stdio::run(
        instance("tlab").await,
        connector_in,
        connector_out,
        options,
    ));
    let mut write = async |frame: Value| {
        let mut line = serde_json::to_vec(&frame).unwrap();
        line.push(b'\n');
        stdin.write_all(&line).await.unwrap();
    };
    write(invoke("flood", "flood", json!({"n": 100_000}))).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    write(invoke("quick", "echo", json!({"text": "done"}))).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    write(json!({"method": "shutdown"})).await;
    // Past the grace (1 s), the cancel grace (2 s) and the margin (1 s).
    tokio::time::sleep(Duration::from_secs(10)).await;
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let mut results = std::collections::BTreeMap::<String, Vec<Value>>::new();
    while let Some(line) = tokio::time::timeout(stdio_support::WAIT, lines.next_line())
        .await
        .expect("stdout ends")
        .unwrap()
    {
        let frame: Value = serde_json::from_str(&line).unwrap();
        if frame["method"] == "result" {
            let id = frame["params"]["id"].as_str().unwrap().to_owned();
            results.entry(id).or_default().push(frame);
        }
    }
    assert_eq!(
        results.keys().collect::<Vec<_>>(),
        ["flood", "quick"],
        "one result per invocation: {results:?}"
    );
    assert!(results.values().all(|r| r.len() == 1), "{results:?}");
    assert_eq!(error_code(&results["flood"][0], "flood"), "cancelled");
    tokio::time::timeout(stdio_support::WAIT, session)
        .await
        .expect("ends")
        .unwrap()
        .unwrap();
}

#[test]
fn producers_are_started_by_the_runtime() {
    // The transport relies on this entry point; keep the path stable.
    let _: fn(
        &spoke::Instance,
        tokio::sync::mpsc::Sender<spoke::Event>,
        spoke::CancellationToken,
    ) -> tokio::task::JoinHandle<()> = producer::spawn_producers;
}
