//! Producers, in-process, through connectors the macros generate: events
//! arrive, failures and panics are reported and restarted with growing
//! delays, `restart` is honoured, shutdown cancels within the grace, and the
//! registry lists them (and rejects two with one name). Time is Tokio's
//! paused clock, so the delays are exact and the tests fast.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use spoke::prelude::*;
use spoke::producer::Restart;
use spoke::{
    CancellationToken, ConfigSource, Event, EventKind, Input, Instance, Registry, spawn_producers,
};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Emits a few messages, then waits to be stopped.
#[connector(name = "chat")]
pub struct Chat {}

#[connector(actions = CHAT_SET)]
impl Chat {
    /// Listens for incoming messages.
    #[producer]
    async fn listen(&self, ctx: &Context) -> Result<(), ActionError> {
        for n in 1..=3 {
            ctx.emit_custom("message", json!({ "n": n }))
                .await
                .map_err(|e| ActionError::unavailable(e.to_string()))?;
        }
        ctx.cancelled().await;
        // Still room in the channel: a producer may say goodbye.
        let _ = ctx.emit_custom("stopping", Value::Null).await;
        Ok(())
    }

    #[action(read)]
    fn ping(&self) -> &'static str {
        "pong"
    }
}

/// Fails at once, except its fourth run, which is healthy for a while first.
#[connector(name = "flaky")]
pub struct Flaky {
    runs: AtomicUsize,
}

#[connector]
impl Flaky {
    #[producer]
    async fn flaky(&self, ctx: &Context) -> anyhow::Result<()> {
        let run = self.runs.fetch_add(1, Ordering::SeqCst) + 1;
        ctx.emit_custom("run", json!(run)).await?;
        if run == 4 {
            tokio::time::sleep(Duration::from_secs(61)).await;
        }
        anyhow::bail!("connection refused (run {run})")
    }
}

/// Panics on every run.
#[connector(name = "fragile")]
pub struct Fragile {
    runs: AtomicUsize,
}

#[connector]
impl Fragile {
    #[producer(name = "socket")]
    async fn watch_socket(&self) {
        let run = self.runs.fetch_add(1, Ordering::SeqCst) + 1;
        panic!("socket gone (run {run})");
    }

    #[action(read)]
    fn ping(&self) -> &'static str {
        "pong"
    }
}

/// One producer restarted after `Ok`, one not.
#[connector(name = "poller")]
pub struct Poller {
    polls: AtomicUsize,
}

#[connector]
impl Poller {
    /// Polls once, then returns.
    #[producer(restart = "always")]
    async fn poll(&self, ctx: &Context) -> Result<(), ActionError> {
        let n = self.polls.fetch_add(1, Ordering::SeqCst) + 1;
        ctx.emit_custom("poll", json!(n))
            .await
            .map_err(|e| ActionError::unavailable(e.to_string()))
    }

    /// Says hello once.
    #[producer(restart = "on_failure")]
    async fn hello(&self, ctx: &Context) {
        let _ = ctx.emit_custom("hello", Value::Null).await;
    }
}

/// Only a producer that returns `Ok` and is not restarted.
#[connector(name = "oneshot")]
pub struct Oneshot {}

#[connector]
impl Oneshot {
    #[producer]
    async fn once(&self) {}
}

/// Ignores cancellation.
#[connector(name = "stubborn")]
pub struct Stubborn {}

#[connector]
impl Stubborn {
    #[producer]
    async fn stubborn(&self, ctx: &Context) {
        let _ = ctx.emit_custom("started", Value::Null).await;
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
}

/// Emits forever.
#[connector(name = "chatty")]
pub struct Chatty {}

#[connector]
impl Chatty {
    #[producer]
    async fn chatter(&self, ctx: &Context) -> Result<(), ActionError> {
        loop {
            ctx.emit_custom("tick", Value::Null)
                .await
                .map_err(|e| ActionError::unavailable(e.to_string()))?;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// No producers at all.
#[connector(name = "quiet")]
pub struct Quiet {}

#[connector]
impl Quiet {
    #[action(read)]
    fn ping(&self) -> &'static str {
        "pong"
    }
}

struct Running {
    instance: Instance,
    events: mpsc::Receiver<Event>,
    shutdown: CancellationToken,
    handle: JoinHandle<()>,
}

async fn run(name: &str) -> Running {
    let registry = Registry::from_inventory().expect("registry is valid");
    let ty = registry.get(name).expect("registered").clone();
    let instance = Instance::start(ty, ConfigSource::from_vars::<&str, &str>([]))
        .await
        .expect("starts");
    let (tx, events) = mpsc::channel(16);
    let shutdown = CancellationToken::new();
    let handle = spawn_producers(&instance, tx, shutdown.clone());
    Running {
        instance,
        events,
        shutdown,
        handle,
    }
}

async fn next(events: &mut mpsc::Receiver<Event>) -> Event {
    tokio::time::timeout(Duration::from_secs(600), events.recv())
        .await
        .expect("an event within 10 minutes")
        .expect("the channel is open")
}

fn custom(event: &Event) -> (&str, &Value) {
    match &event.kind {
        EventKind::Custom { name, data } => (name.as_str(), data),
        other => panic!("expected a custom event, got {other:?}"),
    }
}

fn error_message(event: &Event) -> &str {
    match &event.kind {
        EventKind::Log { level, message } if level == "error" => message,
        other => panic!("expected an error log event, got {other:?}"),
    }
}

async fn ping(instance: &Instance) -> Value {
    instance
        .invoke("ping", Input::Value(&json!({})), Context::new("t", "ping"))
        .await
        .expect("ping answers")
        .to_value()
}

#[tokio::test(start_paused = true)]
async fn a_producers_events_arrive_and_shutdown_cancels_it() {
    let mut r = run("chat").await;
    for n in 1..=3 {
        let event = next(&mut r.events).await;
        assert_eq!(event.request_id, "");
        assert_eq!(event.action, "listen");
        assert_eq!(custom(&event), ("message", &json!({ "n": n })));
    }
    // Actions are served beside it.
    assert_eq!(ping(&r.instance).await, json!("pong"));

    let stopping = Instant::now();
    r.shutdown.cancel();
    let event = next(&mut r.events).await;
    assert_eq!(
        custom(&event).0,
        "stopping",
        "the producer saw its ctx cancelled"
    );
    r.handle.await.expect("supervisor does not panic");
    assert!(
        stopping.elapsed() < Duration::from_millis(10),
        "it returned on its own, before the grace"
    );
    assert!(
        r.events.recv().await.is_none(),
        "stopped for good: nothing more"
    );
}

#[tokio::test(start_paused = true)]
async fn a_failing_producer_is_reported_and_restarted_with_growing_delays() {
    let mut r = run("flaky").await;
    let mut starts = Vec::new();
    let mut messages = Vec::new();
    for run in 1..=5 {
        let event = next(&mut r.events).await;
        assert_eq!(
            (event.action.as_str(), custom(&event)),
            ("flaky", ("run", &json!(run)))
        );
        starts.push(Instant::now());
        let event = next(&mut r.events).await;
        assert_eq!(
            (event.request_id.as_str(), event.action.as_str()),
            ("", "flaky")
        );
        messages.push(error_message(&event).to_owned());
    }
    for (i, message) in messages.iter().enumerate() {
        let expected = format!(
            "producer `flaky` failed: internal: connection refused (run {}); restarting in ",
            i + 1
        );
        assert!(message.starts_with(&expected), "{message}");
    }
    let gaps: Vec<Duration> = starts.windows(2).map(|w| w[1] - w[0]).collect();
    let ms = Duration::from_millis;
    // 500 ms, doubling, each shortened by up to 20 % jitter.
    assert!((ms(400)..=ms(500)).contains(&gaps[0]), "{gaps:?}");
    assert!((ms(800)..=ms(1000)).contains(&gaps[1]), "{gaps:?}");
    assert!((ms(1600)..=ms(2000)).contains(&gaps[2]), "{gaps:?}");
    // The fourth run lasted 61 s, more than a minute: the schedule starts over.
    let after_healthy = gaps[3] - Duration::from_secs(61);
    assert!((ms(400)..=ms(500)).contains(&after_healthy), "{gaps:?}");

    r.shutdown.cancel();
    r.handle.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_panicking_producer_is_reported_with_its_message_and_restarted() {
    let mut r = run("fragile").await;
    let first = Instant::now();
    for run in 1..=3 {
        let event = next(&mut r.events).await;
        assert_eq!(event.action, "socket");
        let message = error_message(&event);
        assert!(
            message.starts_with(&format!(
                "producer `socket` panicked: socket gone (run {run}); restarting in "
            )),
            "{message}"
        );
    }
    assert!(
        first.elapsed() >= Duration::from_millis(400 + 800),
        "restarts wait"
    );
    // The connector (and the process) keeps serving.
    assert_eq!(ping(&r.instance).await, json!("pong"));
    assert!(!r.handle.is_finished());
    r.shutdown.cancel();
    r.handle.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn restart_always_restarts_after_ok_and_on_failure_does_not() {
    let mut r = run("poller").await;
    let until = Instant::now() + Duration::from_secs(10);
    let (mut polls, mut hellos) = (Vec::new(), 0);
    while let Ok(Some(event)) = tokio::time::timeout_at(until, r.events.recv()).await {
        match custom(&event) {
            ("poll", n) => polls.push(n.clone()),
            ("hello", _) => hellos += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    // 0, then ~0.5, ~1.5, ~3.5, ~7.5 s: at least four runs in ten seconds.
    assert!(polls.len() >= 4, "{polls:?}");
    assert_eq!(polls[..4], [json!(1), json!(2), json!(3), json!(4)]);
    assert_eq!(hellos, 1, "restart = on_failure: not restarted after Ok");
    r.shutdown.cancel();
    r.handle.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn when_every_producer_is_done_the_handle_completes_without_shutdown() {
    let r = run("oneshot").await;
    tokio::time::timeout(Duration::from_secs(60), r.handle)
        .await
        .expect("completes on its own")
        .unwrap();
    assert!(!r.shutdown.is_cancelled());

    let r = run("quiet").await;
    tokio::time::timeout(Duration::from_secs(1), r.handle)
        .await
        .expect("no producers: completes at once")
        .unwrap();
}

#[tokio::test(start_paused = true)]
async fn nothing_starts_after_shutdown() {
    let registry = Registry::from_inventory().unwrap();
    let ty = registry.get("chat").unwrap().clone();
    let instance = Instance::start(ty, ConfigSource::from_vars::<&str, &str>([]))
        .await
        .unwrap();
    let (tx, mut events) = mpsc::channel(16);
    let shutdown = CancellationToken::new();
    shutdown.cancel();
    spawn_producers(&instance, tx, shutdown).await.unwrap();
    assert!(events.recv().await.is_none(), "no producer ran");
}

#[tokio::test(start_paused = true)]
async fn a_producer_that_ignores_shutdown_is_dropped_after_the_grace() {
    let mut r = run("stubborn").await;
    assert_eq!(custom(&next(&mut r.events).await).0, "started");
    let stopping = Instant::now();
    r.shutdown.cancel();
    r.handle.await.unwrap();
    let took = stopping.elapsed();
    assert!(
        (Duration::from_secs(2)..Duration::from_millis(2100)).contains(&took),
        "{took:?}"
    );
    assert!(
        r.events.recv().await.is_none(),
        "dropped, and not restarted"
    );
}

#[tokio::test(start_paused = true)]
async fn producers_stop_when_the_receiver_of_events_is_gone() {
    let mut r = run("chatty").await;
    assert_eq!(custom(&next(&mut r.events).await).0, "tick");
    drop(r.events);
    tokio::time::timeout(Duration::from_secs(3), r.handle)
        .await
        .expect("stops within the grace")
        .unwrap();
}

#[test]
fn the_registry_lists_producers_and_the_manifest_says_producers() {
    let registry = Registry::from_inventory().unwrap();
    let poller = registry.get("poller").unwrap();
    let listed: Vec<(&str, &str, Restart)> = poller
        .producers()
        .iter()
        .map(|p| (p.name, p.description, p.restart))
        .collect();
    assert_eq!(
        listed,
        [
            ("hello", "Says hello once.", Restart::OnFailure),
            ("poll", "Polls once, then returns.", Restart::Always),
        ]
    );
    assert!(
        poller
            .producer("poll")
            .unwrap()
            .location
            .starts_with("tests/producers.rs:")
    );
    assert_eq!(
        registry
            .get("fragile")
            .unwrap()
            .producer("socket")
            .unwrap()
            .name,
        "socket"
    );
    assert!(
        registry
            .get("fragile")
            .unwrap()
            .producer("watch_socket")
            .is_none()
    );

    let manifest = serde_json::to_value(poller.manifest()).unwrap();
    assert_eq!(
        manifest["capabilities"],
        json!(["cancellation", "deadlines", "events", "producers"])
    );
    assert!(
        manifest.get("producers").is_none(),
        "the manifest format is unchanged"
    );

    let chat = serde_json::to_value(registry.get("chat").unwrap().manifest()).unwrap();
    assert!(
        chat["capabilities"]
            .as_array()
            .unwrap()
            .contains(&json!("producers"))
    );
    let quiet = serde_json::to_value(registry.get("quiet").unwrap().manifest()).unwrap();
    assert!(
        !quiet["capabilities"]
            .as_array()
            .unwrap()
            .contains(&json!("producers"))
    );
    assert!(registry.get("quiet").unwrap().producers().is_empty());
}

fn idle(_: spoke::connector::AnyConnector, _: Context) -> spoke::connector::ProducerFuture {
    Box::pin(async { Ok(()) })
}

static EXTRA: spoke::connector::ActionSet = spoke::connector::ActionSet {
    connector: "chat",
    actions: &[],
    operators: &[],
    producers: &[spoke::connector::ProducerDef {
        name: "listen",
        description: "",
        restart: Restart::OnFailure,
        run: idle,
        location: "elsewhere.rs:1",
    }],
    syncs: &[],
};

#[test]
fn two_producers_with_one_name_fail_start_up_naming_both() {
    let builder = Registry::builder()
        .connector(&<Chat as spoke::Connector>::REGISTRATION)
        .action_set(&Chat::CHAT_SET);
    let err = builder.action_set(&EXTRA).build().unwrap_err();
    let message = err.to_string();
    assert!(
        message.starts_with("connector `chat` has two producers named `listen`: one at "),
        "{message}"
    );
    assert!(message.contains("elsewhere.rs:1"), "{message}");
}
