//! `serve` against a scripted hub on a real loopback gRPC connection: the
//! connector side of the Attach protocol, in-process.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use spoke_proto::v1::connector_frame::Frame;
use spoke_proto::v1::{Drain, Goodbye, Ping, Pong, hub_frame};
use spoke_runtime::{Manifest, ServeOutcome};
use support::*;

const LIMIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_carries_identity_manifest_and_versions_then_goodbye_on_shutdown() {
    bounded(LIMIT, async {
        let mut hub = ScriptedHub::start().await;
        let mut options = options(&hub.url);
        options.instance.id = "probe-eu-1".into();
        options.instance.display_name = "Probe EU".into();
        options.instance.tags = vec!["eu".into(), "blue".into()];
        options.instance.metadata = BTreeMap::from([("region".into(), "eu-west-1".into())]);
        options.tenant = "acme".into();
        options.max_in_flight = 3;
        let running = serve(options).await;

        let (mut conn, register) = hub.attach(registered("t1", 10_000, false)).await;
        let instance = register.instance.as_ref().expect("instance info");
        assert_eq!(instance.id, "probe-eu-1");
        assert_eq!(instance.display_name, "Probe EU");
        assert_eq!(instance.tags, ["eu", "blue"]);
        assert_eq!(
            instance.metadata.get("region").map(String::as_str),
            Some("eu-west-1")
        );
        assert_eq!(register.tenant, "acme");
        assert_eq!(register.max_in_flight, 3);
        assert_eq!(register.protocol_version, spoke_proto::PROTOCOL_VERSION);
        assert_eq!(register.sdk_version, env!("CARGO_PKG_VERSION"));
        assert_eq!(
            register.session_token, "",
            "nothing to resume on the first attach"
        );
        let manifest: Manifest =
            serde_json::from_str(&register.manifest_json).expect("manifest JSON");
        assert_eq!(manifest, probe().await.manifest().clone());
        assert_eq!(
            (manifest.name.as_str(), manifest.version.as_str()),
            ("probe", "1.2.3")
        );

        running.stop();
        match conn.next().await {
            Some(Frame::Goodbye(Goodbye { reason })) => assert_eq!(reason, "shutting down"),
            other => panic!("expected Goodbye, got {other:?}"),
        }
        assert_eq!(
            conn.next().await,
            None,
            "the connector ends its stream after Goodbye"
        );
        drop(conn);
        assert_eq!(running.finished().await, Ok(ServeOutcome::Shutdown));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invocations_answer_with_payloads_and_errors() {
    bounded(LIMIT, async {
        let mut hub = ScriptedHub::start().await;
        let running = serve(options(&hub.url)).await;
        let (mut conn, _) = hub.attach(registered("t1", 10_000, false)).await;

        conn.invoke("r1", "echo", json!({"text": "hi", "n": [1, 2]}), 0)
            .await;
        let r = conn.result().await;
        assert_eq!(r.request_id, "r1");
        assert_eq!(ok_json(&r), json!({"text": "hi", "n": [1, 2]}));
        assert_eq!(r.encoding, spoke_proto::v1::Encoding::Json as i32);

        conn.invoke("r2", "fail", json!({}), 0).await;
        let r = conn.result().await;
        assert_eq!(r.request_id, "r2");
        let e = error_of(&r);
        assert_eq!(
            (e.code.as_str(), e.message.as_str()),
            ("not_found", "no such thing")
        );
        assert_eq!(
            serde_json::from_str::<Value>(&e.details_json).unwrap(),
            json!({"id": 42})
        );

        conn.invoke("r3", "ehco", json!({}), 0).await;
        let e = error_of(&conn.result().await);
        assert_eq!(e.code, "not_found");
        assert!(e.message.contains("did you mean `echo`"), "{}", e.message);

        conn.resolve("r4", "upper", "rust").await;
        let r = conn.result().await;
        assert_eq!((r.request_id.as_str(), ok_json(&r)), ("r4", json!("RUST")));

        conn.send(hub_frame::Frame::Invoke(spoke_proto::v1::Invoke {
            request_id: "r5".into(),
            action: "echo".into(),
            payload: b"{}".to_vec().into(),
            encoding: spoke_proto::v1::Encoding::Msgpack as i32,
            ..Default::default()
        }))
        .await;
        assert_eq!(error_of(&conn.result().await).code, "invalid_input");

        conn.invoke("r6", "work", json!({"ms": 30}), 0).await;
        let r = conn.result().await;
        assert!(r.duration_us >= 30_000, "duration_us = {}", r.duration_us);

        running.stop();
        assert!(matches!(conn.next().await, Some(Frame::Goodbye(_))));
        drop(conn);
        running.finished().await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_in_flight_is_respected_and_heartbeats_flow_while_full() {
    bounded(LIMIT, async {
        let mut hub = ScriptedHub::start().await;
        let mut options = options(&hub.url);
        options.max_in_flight = 2;
        let running = serve(options).await;
        let (mut conn, _) = hub.attach(registered("t1", 10_000, false)).await;

        // Two run, two wait in the queue: the pipeline is full.
        for i in 0..4 {
            conn.invoke(
                &format!("w{i}"),
                "work",
                json!({"ms": 600, "probe": "conc"}),
                0,
            )
            .await;
        }
        conn.event_of("w0").await;
        conn.event_of("w1").await;
        // The reader still answers a Ping at once.
        let sent = Instant::now();
        conn.send(hub_frame::Frame::Ping(Ping { nonce: 77 })).await;
        loop {
            match conn.raw().await {
                Some(Frame::Pong(Pong { nonce: 77 })) => break,
                Some(Frame::Event(e)) => conn.events.push(e),
                Some(Frame::Ping(_) | Frame::Pong(_)) => {}
                other => panic!("expected Pong while the slots are busy, got {other:?}"),
            }
        }
        assert!(
            sent.elapsed() < Duration::from_millis(400),
            "Pong took {:?}",
            sent.elapsed()
        );

        let mut done = Vec::new();
        for _ in 0..4 {
            let r = conn.result().await;
            ok_json(&r);
            done.push(r.request_id);
        }
        done.sort();
        assert_eq!(done, ["w0", "w1", "w2", "w3"]);
        assert_eq!(
            max_concurrency("conc"),
            2,
            "never more than max_in_flight at once"
        );

        // A hub that ignores max_in_flight: 2 run, 2 wait, the rest are refused.
        for i in 0..6 {
            conn.invoke(
                &format!("x{i}"),
                "work",
                json!({"ms": 300, "probe": "flood"}),
                0,
            )
            .await;
        }
        let mut refused = 0;
        for _ in 0..6 {
            let r = conn.result().await;
            if let Some(spoke_proto::v1::result::Outcome::Error(e)) = &r.outcome {
                assert_eq!(e.code, "unavailable");
                assert!(e.message.contains("at capacity"), "{}", e.message);
                assert_eq!(
                    serde_json::from_str::<Value>(&e.details_json).unwrap(),
                    json!({"started": false}),
                    "a refusal says the call never started"
                );
                refused += 1;
            }
        }
        assert_eq!(refused, 2);
        assert_eq!(max_concurrency("flood"), 2);

        running.stop();
        assert!(matches!(conn.next().await, Some(Frame::Goodbye(_))));
        drop(conn);
        running.finished().await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_reaches_the_action_and_a_cancelled_result_comes_back() {
    bounded(LIMIT, async {
        let mut hub = ScriptedHub::start().await;
        let running = serve(options(&hub.url)).await;
        let (mut conn, _) = hub.attach(registered("t1", 10_000, false)).await;

        conn.invoke("c1", "work", json!({"ms": 60_000}), 0).await;
        conn.event_of("c1").await;
        conn.cancel("nobody").await; // unknown: ignored
        let asked = Instant::now();
        conn.cancel("c1").await;
        let r = conn.result().await;
        assert_eq!(r.request_id, "c1");
        let e = error_of(&r);
        assert_eq!(
            (e.code.as_str(), e.message.as_str()),
            ("cancelled", "work saw the cancel")
        );
        assert!(
            asked.elapsed() < Duration::from_secs(2),
            "took {:?}",
            asked.elapsed()
        );

        // Still serving.
        conn.invoke("c2", "echo", json!({"ok": true}), 0).await;
        assert_eq!(ok_json(&conn.result().await), json!({"ok": true}));

        running.stop();
        assert!(matches!(conn.next().await, Some(Frame::Goodbye(_))));
        drop(conn);
        running.finished().await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_ms_becomes_the_deadline() {
    bounded(LIMIT, async {
        let mut hub = ScriptedHub::start().await;
        let running = serve(options(&hub.url)).await;
        let (mut conn, _) = hub.attach(registered("t1", 10_000, false)).await;

        conn.invoke("d1", "work", json!({"ms": 0}), 5_000).await;
        let left = ok_json(&conn.result().await)["deadline_ms"]
            .as_u64()
            .expect("a deadline");
        assert!((4_000..=5_000).contains(&left), "deadline_ms = {left}");

        conn.invoke("d2", "work", json!({"ms": 0}), 0).await;
        assert_eq!(
            ok_json(&conn.result().await)["deadline_ms"],
            Value::Null,
            "0 means no deadline"
        );

        let sent = Instant::now();
        conn.invoke("d3", "work", json!({"ms": 60_000}), 200).await;
        let e = error_of(&conn.result().await);
        assert_eq!(e.code, "deadline_exceeded");
        assert!(
            sent.elapsed() < Duration::from_secs(2),
            "took {:?}",
            sent.elapsed()
        );

        running.stop();
        assert!(matches!(conn.next().await, Some(Frame::Goodbye(_))));
        drop(conn);
        running.finished().await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_become_event_frames_before_the_result() {
    bounded(LIMIT, async {
        let mut hub = ScriptedHub::start().await;
        let running = serve(options(&hub.url)).await;
        let (mut conn, _) = hub.attach(registered("t1", 10_000, false)).await;

        conn.invoke("p1", "progress", json!({"steps": 3}), 0).await;
        let r = conn.result().await;
        assert_eq!(ok_json(&r), json!(3));
        let kinds: Vec<&str> = conn.events.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(kinds, ["progress", "progress", "progress", "log"], "all before the Result");
        let first: Value = serde_json::from_str(&conn.events[0].json).unwrap();
        assert_eq!(
            first,
            json!({"request_id": "p1", "action": "progress", "type": "progress", "progress": 1.0, "total": 3.0, "message": "step 1"})
        );
        assert!(conn.events.iter().all(|e| e.request_id == "p1"));
        conn.events.clear();

        conn.invoke("p2", "work", json!({"ms": 0}), 0).await;
        conn.result().await;
        assert_eq!(conn.events[0].kind, "custom");
        let custom: Value = serde_json::from_str(&conn.events[0].json).unwrap();
        assert_eq!((custom["name"].as_str(), custom["data"]["ms"].as_u64()), (Some("started"), Some(0)));

        running.stop();
        assert!(matches!(conn.next().await, Some(Frame::Goodbye(_))));
        drop(conn);
        running.finished().await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_finished_while_the_stream_is_down_arrives_after_resuming() {
    bounded(LIMIT, async {
        let mut hub = ScriptedHub::start().await;
        let running = serve(options(&hub.url)).await;
        let (mut conn, first) = hub.attach(registered("tok-1", 10_000, false)).await;
        assert_eq!(first.session_token, "");

        conn.invoke("slow", "work", json!({"ms": 400}), 0).await;
        conn.event_of("slow").await;
        conn.hang_up(); // the hub drops the stream while the action runs

        let mut conn = hub.next_conn().await;
        let again = conn.register().await;
        assert_eq!(again.session_token, "tok-1", "resume with the last token");
        // Let the action finish while no session is registered: its result waits in the outbox.
        tokio::time::sleep(Duration::from_millis(600)).await;
        conn.send(hub_frame::Frame::Registered(registered(
            "tok-1", 10_000, true,
        )))
        .await;
        let r = conn.result().await;
        assert_eq!(r.request_id, "slow");
        assert_eq!(ok_json(&r)["slept_ms"], 400);

        running.stop();
        assert!(matches!(conn.next().await, Some(Frame::Goodbye(_))));
        drop(conn);
        running.finished().await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_the_hub_never_acknowledged_are_sent_again_after_reconnecting() {
    bounded(LIMIT, async {
        let mut hub = ScriptedHub::start().await;
        let running = serve(options(&hub.url)).await;
        // A long heartbeat: no Ping/Pong round trip acknowledges the result.
        let (mut conn, _) = hub.attach(registered("tok-1", 60_000, false)).await;
        conn.invoke("e1", "echo", json!({"n": 1}), 0).await;
        assert_eq!(conn.result().await.request_id, "e1");
        conn.hang_up();

        let (mut conn, register) = hub.attach(registered("tok-1", 60_000, true)).await;
        assert_eq!(register.session_token, "tok-1");
        let r = conn.result().await;
        assert_eq!(
            (r.request_id.as_str(), ok_json(&r)),
            ("e1", json!({"n": 1}))
        );

        conn.hang_up();

        // Session 3 heartbeats every 300 ms: once the hub has answered a Ping
        // sent after a result, that result is acknowledged and never repeated.
        let (mut conn, _) = hub.attach(registered("tok-1", 300, true)).await;
        let r = conn.result().await;
        assert_eq!(r.request_id, "e1", "still unacknowledged: sent again");
        conn.invoke("e2", "echo", json!({"n": 2}), 0).await;
        assert_eq!(conn.result().await.request_id, "e2");
        loop {
            match conn.raw().await {
                Some(Frame::Ping(Ping { nonce })) => {
                    conn.send(hub_frame::Frame::Pong(Pong { nonce })).await;
                    break;
                }
                Some(Frame::Pong(_)) => {}
                other => panic!("expected a Ping, got {other:?}"),
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        conn.hang_up();

        let (mut conn, _) = hub.attach(registered("tok-1", 10_000, true)).await;
        conn.invoke("e3", "echo", json!({"n": 3}), 0).await;
        assert_eq!(
            conn.result().await.request_id,
            "e3",
            "e1 and e2 were acknowledged"
        );
        running.stop();
        assert!(matches!(conn.next().await, Some(Frame::Goodbye(_))));
        drop(conn);
        running.finished().await.unwrap();
        assert!(hub.conn_within(Duration::from_millis(300)).await.is_none());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_session_forgets_the_old_sessions_calls() {
    bounded(LIMIT, async {
        let mut hub = ScriptedHub::start().await;
        let running = serve(options(&hub.url)).await;
        let (mut conn, _) = hub.attach(registered("tok-1", 10_000, false)).await;
        conn.invoke("old", "work", json!({"ms": 300}), 0).await;
        conn.event_of("old").await;
        conn.hang_up();

        // The hub restarted: it does not know tok-1 and starts a new session.
        let (mut conn, register) = hub.attach(registered("tok-2", 10_000, false)).await;
        assert_eq!(register.session_token, "tok-1");
        // A restarted hub may reuse request ids: the old call's result (due
        // first) must not answer the new call.
        conn.invoke("old", "work", json!({"ms": 700}), 0).await;
        let r = conn.result().await;
        assert_eq!(r.request_id, "old");
        assert_eq!(ok_json(&r)["slept_ms"], 700, "answered by the new call");
        conn.invoke("new", "echo", json!({}), 0).await;
        let r = conn.result().await;
        assert_eq!(
            r.request_id, "new",
            "the old session's result is never sent"
        );

        running.stop();
        assert!(matches!(conn.next().await, Some(Frame::Goodbye(_))));
        drop(conn);
        running.finished().await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silence_for_two_heartbeat_intervals_drops_the_stream_and_reconnects() {
    bounded(LIMIT, async {
        let mut hub = ScriptedHub::start().await;
        let running = serve(options(&hub.url)).await;
        let attached = Instant::now();
        // The hub asks for 100 ms heartbeats, then never says anything again
        // (the stream stays open: only the silence can end it).
        let (mut silent, _) = hub.attach(registered("tok-hb", 100, false)).await;
        match silent.raw().await {
            Some(Frame::Ping(_)) => {}
            other => panic!("expected the connector's Ping, got {other:?}"),
        }

        let (mut conn, register) = hub.attach(registered("tok-hb", 10_000, true)).await;
        let waited = attached.elapsed();
        assert_eq!(register.session_token, "tok-hb");
        assert!(
            waited >= Duration::from_millis(200),
            "reconnected after {waited:?}"
        );
        // Dropped after two intervals (200 ms), back after the first
        // reconnect delay (at most 200 ms), with room for a loaded machine.
        assert!(
            waited < Duration::from_millis(1200),
            "reconnected after {waited:?}"
        );
        drop(silent);

        conn.invoke("after", "echo", json!({"x": 1}), 0).await;
        assert_eq!(ok_json(&conn.result().await), json!({"x": 1}));
        running.stop();
        assert!(matches!(conn.next().await, Some(Frame::Goodbye(_))));
        drop(conn);
        running.finished().await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_attempts_back_off_until_the_hub_appears() {
    bounded(LIMIT, async {
        // Reserve a port, then close it: the first attempts are refused.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let running = serve(options(&format!("http://{addr}"))).await;
        tokio::time::sleep(Duration::from_millis(500)).await;

        let mut hub = ScriptedHub::on(tokio::net::TcpListener::bind(addr).await.unwrap());
        let (mut conn, _) = hub.attach(registered("t", 10_000, false)).await;
        conn.invoke("r", "echo", json!(1), 0).await;
        assert_eq!(ok_json(&conn.result().await), json!(1));
        running.stop();
        assert!(matches!(conn.next().await, Some(Frame::Goodbye(_))));
        drop(conn);
        running.finished().await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_refuses_new_work_and_finishes_running_calls_first() {
    bounded(LIMIT, async {
        let mut hub = ScriptedHub::start().await;
        let running = serve(options(&hub.url)).await;
        let (mut conn, _) = hub.attach(registered("t1", 10_000, false)).await;

        conn.invoke("long", "work", json!({"ms": 500}), 0).await;
        conn.event_of("long").await;
        running.stop();
        tokio::time::sleep(Duration::from_millis(50)).await;
        conn.invoke("late", "echo", json!({}), 0).await;

        let r = conn.result().await;
        assert_eq!(r.request_id, "late");
        let e = error_of(&r);
        assert_eq!(
            (e.code.as_str(), e.message.as_str()),
            ("unavailable", "connector is shutting down")
        );
        assert_eq!(
            serde_json::from_str::<Value>(&e.details_json).unwrap(),
            json!({"started": false}),
            "the hub may retry it elsewhere"
        );
        let r = conn.result().await;
        assert_eq!(
            (r.request_id.as_str(), ok_json(&r)["slept_ms"].as_u64()),
            ("long", Some(500))
        );
        match conn.next().await {
            Some(Frame::Goodbye(Goodbye { reason })) => assert_eq!(reason, "shutting down"),
            other => panic!("expected Goodbye, got {other:?}"),
        }
        drop(conn);
        assert_eq!(running.finished().await, Ok(ServeOutcome::Shutdown));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_cancels_what_outlives_its_grace_then_says_goodbye_and_returns() {
    bounded(LIMIT, async {
        let mut hub = ScriptedHub::start().await;
        let running = serve(options(&hub.url)).await;
        let (mut conn, _) = hub.attach(registered("t1", 10_000, false)).await;

        conn.invoke("quick", "work", json!({"ms": 100}), 0).await;
        conn.invoke("endless", "work", json!({"ms": 60_000}), 0)
            .await;
        conn.event_of("endless").await;
        let asked = Instant::now();
        conn.send(hub_frame::Frame::Drain(Drain {
            reason: "rolling update".into(),
            grace_ms: 300,
        }))
        .await;
        let mut results = BTreeMap::new();
        for _ in 0..2 {
            let r = conn.result().await;
            results.insert(r.request_id.clone(), r);
        }
        ok_json(&results["quick"]);
        assert_eq!(error_of(&results["endless"]).code, "cancelled");
        match conn.next().await {
            Some(Frame::Goodbye(Goodbye { reason })) => {
                assert_eq!(reason, "drained: rolling update")
            }
            other => panic!("expected Goodbye, got {other:?}"),
        }
        assert!(
            asked.elapsed() < Duration::from_secs(3),
            "drain took {:?}",
            asked.elapsed()
        );
        drop(conn);
        assert_eq!(running.finished().await, Ok(ServeOutcome::Drained));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_with_no_hub_returns_promptly() {
    bounded(LIMIT, async {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let running = serve(options(&format!("http://{addr}"))).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let asked = Instant::now();
        running.stop();
        assert_eq!(running.finished().await, Ok(ServeOutcome::Shutdown));
        assert!(
            asked.elapsed() < Duration::from_secs(1),
            "took {:?}",
            asked.elapsed()
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_leaves_at_once_when_no_hub_listens() {
    bounded(LIMIT, async {
        let mut hub = ScriptedHub::start().await;
        let running = serve(options(&hub.url)).await;
        let (mut conn, _) = hub.attach(registered("t1", 10_000, false)).await;
        conn.invoke("orphan", "work", json!({"ms": 300}), 0).await;
        conn.event_of("orphan").await;
        drop(hub); // the hub goes away for good, mid-call
        conn.hang_up();
        let asked = Instant::now();
        running.stop();
        // The call finishes; its result has nobody to go to (its caller went
        // with the hub, and nothing listens any more): serve returns without
        // waiting out the leave window.
        assert_eq!(running.finished().await, Ok(ServeOutcome::Shutdown));
        let took = asked.elapsed();
        let window = spoke_runtime::grpc::serve::LEAVE_WINDOW;
        assert!(took < window, "waited {took:?} for a hub that is gone");
    })
    .await;
}

#[tokio::test]
async fn bad_options_are_refused_up_front() {
    let mut o = options("ftp://hub.example:443");
    let err =
        spoke_runtime::grpc::serve::run_until(probe().await, o.clone(), std::future::pending())
            .await
            .unwrap_err();
    assert!(err.to_string().contains("expected http://"), "{err}");
    o.hub_url = "https://127.0.0.1:1".into();
    o.tls.ca_pem = Some(b"not a certificate".to_vec());
    let err =
        spoke_runtime::grpc::serve::run_until(probe().await, o.clone(), std::future::pending())
            .await
            .unwrap_err();
    assert!(err.to_string().contains("no certificate"), "{err}");
    o.tls.ca_pem = None;
    o.hub_url = "http://127.0.0.1:1".into();
    o.max_in_flight = 0;
    let err = spoke_runtime::grpc::serve::run_until(probe().await, o, std::future::pending())
        .await
        .unwrap_err();
    assert_eq!(err, spoke_runtime::ServeError::ZeroMaxInFlight);
}

/// The details of an error Result, as JSON (`null` when empty).
fn details(r: &spoke_proto::v1::Result) -> Value {
    let e = error_of(r);
    if e.details_json.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&e.details_json).unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_cancelled_while_queued_is_refused_as_never_started() {
    bounded(LIMIT, async {
        let mut hub = ScriptedHub::start().await;
        let mut options = options(&hub.url);
        options.max_in_flight = 1;
        let running = serve(options).await;
        let (mut conn, _) = hub.attach(registered("t1", 10_000, false)).await;

        conn.invoke(
            "busy",
            "work",
            json!({"ms": 400, "probe": "queued-cancel"}),
            0,
        )
        .await;
        conn.event_of("busy").await;
        conn.invoke(
            "queued",
            "work",
            json!({"ms": 0, "probe": "queued-cancel"}),
            0,
        )
        .await;
        conn.cancel("queued").await;
        let mut results = BTreeMap::new();
        for _ in 0..2 {
            let r = conn.result().await;
            results.insert(r.request_id.clone(), r);
        }
        assert_eq!(ok_json(&results["busy"])["slept_ms"], 400);
        assert_eq!(error_of(&results["queued"]).code, "cancelled");
        assert_eq!(details(&results["queued"]), json!({"started": false}));
        assert_eq!(starts("queued-cancel"), 1, "the cancelled call never ran");

        // An error of a call that did run carries no such mark.
        conn.invoke("ran", "fail", json!({}), 0).await;
        assert_eq!(details(&conn.result().await), json!({"id": 42}));

        running.stop();
        assert!(matches!(conn.next().await, Some(Frame::Goodbye(_))));
        drop(conn);
        running.finished().await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invoke_metadata_reaches_the_action() {
    bounded(LIMIT, async {
        let mut hub = ScriptedHub::start().await;
        let running = serve(options(&hub.url)).await;
        let (mut conn, _) = hub.attach(registered("t1", 10_000, false)).await;

        let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        conn.invoke_with(
            "m1",
            "meta",
            &[
                ("caller", "spoke-cli"),
                ("traceparent", traceparent),
                ("tracestate", "congo=t61rcWkgMzE"),
            ],
        )
        .await;
        let r = conn.result().await;
        assert_eq!(r.request_id, "m1");
        assert_eq!(
            ok_json(&r),
            json!({"caller": "spoke-cli", "traceparent": traceparent, "tracestate": "congo=t61rcWkgMzE"})
        );

        conn.invoke_with("m2", "meta", &[]).await;
        assert_eq!(ok_json(&conn.result().await), json!({}), "empty by default");

        running.stop();
        assert!(matches!(conn.next().await, Some(Frame::Goodbye(_))));
        drop(conn);
        running.finished().await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_invoke_of_a_running_call_runs_it_once() {
    bounded(LIMIT, async {
        let mut hub = ScriptedHub::start().await;
        let running = serve(options(&hub.url)).await;
        let (mut conn, _) = hub.attach(registered("tok-dup", 10_000, false)).await;
        let input = json!({"ms": 500, "probe": "dup-running"});

        conn.invoke("d1", "work", input.clone(), 0).await;
        conn.event_of("d1").await;
        // The same Invoke again on the same stream: ignored.
        conn.invoke("d1", "work", input.clone(), 0).await;
        conn.hang_up();

        // The session resumes; the hub sends its pending call's Invoke again,
        // as it does after every resume.
        let (mut conn, register) = hub.attach(registered("tok-dup", 10_000, true)).await;
        assert_eq!(register.session_token, "tok-dup");
        conn.invoke("d1", "work", input, 0).await;
        let r = conn.result().await;
        assert_eq!(r.request_id, "d1");
        assert_eq!(ok_json(&r)["slept_ms"], 500);
        conn.invoke("after", "echo", json!({"n": 1}), 0).await;
        let r = conn.result().await;
        assert_eq!(r.request_id, "after", "one Result for d1, not two");
        assert_eq!(starts("dup-running"), 1, "the action ran once");

        running.stop();
        assert!(matches!(conn.next().await, Some(Frame::Goodbye(_))));
        drop(conn);
        running.finished().await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_invoke_of_an_unacknowledged_result_is_ignored() {
    bounded(LIMIT, async {
        let mut hub = ScriptedHub::start().await;
        let running = serve(options(&hub.url)).await;
        // A long heartbeat: no Pong acknowledges the result.
        let (mut conn, _) = hub.attach(registered("tok-ack", 60_000, false)).await;
        let input = json!({"ms": 0, "probe": "dup-unacked"});
        conn.invoke("u1", "work", input.clone(), 0).await;
        assert_eq!(conn.result().await.request_id, "u1");
        conn.hang_up(); // the hub never read it

        let (mut conn, _) = hub.attach(registered("tok-ack", 60_000, true)).await;
        conn.invoke("u1", "work", input, 0).await;
        let r = conn.result().await;
        assert_eq!(r.request_id, "u1", "the outbox sends it again");
        assert_eq!(ok_json(&r)["slept_ms"], 0);
        conn.invoke("after", "echo", json!({"n": 2}), 0).await;
        assert_eq!(
            conn.result().await.request_id,
            "after",
            "the re-sent Invoke did not run u1 again"
        );
        assert_eq!(starts("dup-unacked"), 1, "the action ran once");

        running.stop();
        assert!(matches!(conn.next().await, Some(Frame::Goodbye(_))));
        drop(conn);
        running.finished().await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_backoff_re_registers_within_a_second_of_a_long_outage() {
    bounded(LIMIT, async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut hub = ScriptedHub::on(listener);
        let mut options = options(&hub.url);
        options.backoff = spoke_runtime::grpc::serve::default_backoff();
        let running = serve(options).await;
        let (conn, _) = hub.attach(registered("t1", 10_000, false)).await;

        // The hub goes away for 3 s: long enough for the old 10 s cap to
        // leave the connector waiting well past its return.
        drop(hub);
        conn.hang_up();
        tokio::time::sleep(Duration::from_secs(3)).await;
        let mut hub = ScriptedHub::on(tokio::net::TcpListener::bind(addr).await.unwrap());
        let back = Instant::now();
        let (mut conn, register) = hub.attach(registered("t2", 10_000, false)).await;
        let waited = back.elapsed();
        assert_eq!(register.session_token, "t1");
        assert!(
            waited < Duration::from_millis(1_500),
            "re-registered {waited:?} after the hub's return"
        );
        conn.invoke("r", "echo", json!(1), 0).await;
        assert_eq!(ok_json(&conn.result().await), json!(1));

        running.stop();
        assert!(matches!(conn.next().await, Some(Frame::Goodbye(_))));
        drop(conn);
        running.finished().await.unwrap();
    })
    .await;
}
