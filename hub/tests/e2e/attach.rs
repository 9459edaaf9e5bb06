//! Attach streams: registration, refusal, resume, heartbeats.

use std::time::{Duration, Instant};

use spoke_proto::v1::{ConnectorFrame, Ping, RegistrationStatus, connector_frame, hub_frame};

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_is_answered_with_a_fresh_session() {
    let hub = Hub::start(&["--heartbeat-interval", "1500ms"]);
    let a = Fake::attach(&hub.url, &Spec::echo("a")).await;
    let b = Fake::attach(&hub.url, &Spec::echo("b")).await;
    let r = &a.registered;
    assert_eq!(r.heartbeat_interval_ms, 1500);
    assert_eq!(r.status, i32::from(RegistrationStatus::Active));
    assert!(!r.resumed);
    assert_eq!(r.session_token.len(), 32, "128-bit hex token: {r:?}");
    assert!(r.session_token.bytes().all(|c| c.is_ascii_hexdigit()));
    assert!(!r.session_id.is_empty());
    assert_ne!(r.session_id, b.registered.session_id);
    assert_ne!(r.session_token, b.registered.session_token);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_frame_other_than_register_is_invalid_argument() {
    let hub = Hub::start(&[]);
    let refusal = |first: ConnectorFrame| {
        let url = hub.url.clone();
        async move {
            let mut stream = Stream::open(&url, first).await;
            match stream.next().await {
                Err(status) => {
                    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
                    status.message().to_owned()
                }
                other => panic!("expected INVALID_ARGUMENT, got {other:?}"),
            }
        }
    };
    let ping = frame(connector_frame::Frame::Ping(Ping { nonce: 7 }));
    let message = refusal(ping).await;
    assert!(message.contains("must be Register, got Ping"), "{message}");
    let message = refusal(ConnectorFrame { frame: None }).await;
    assert!(message.contains("an empty frame"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_registrations_are_refused_with_the_reason() {
    let hub = Hub::start(&[]);
    let goodbye = |spec: Spec| {
        let url = hub.url.clone();
        async move {
            let mut stream = Stream::open(&url, spec.register()).await;
            match stream.next_non_ping().await {
                Some(hub_frame::Frame::Goodbye(g)) => g.reason,
                other => panic!("expected Goodbye, got {other:?}"),
            }
        }
    };
    let mut bad = Spec::echo("a");
    bad.manifest = r#"{"spoke": 1, "name": "echo"}"#.into();
    let reason = goodbye(bad).await;
    assert!(reason.contains("not a valid Spoke manifest"), "{reason}");
    assert!(reason.contains("missing field `version`"), "{reason}");

    let mut bad = Spec::echo("a");
    bad.manifest = "not json".into();
    assert!(goodbye(bad).await.contains("manifest_json"));

    let reason = goodbye(Spec::echo("")).await;
    assert!(reason.contains("instance.id is empty"), "{reason}");

    // A second live stream for the same instance id, without the token.
    let _first = Fake::attach(&hub.url, &Spec::echo("a")).await;
    let reason = goodbye(Spec::echo("a")).await;
    assert!(reason.contains("already attached"), "{reason}");
    assert!(reason.contains("token"), "{reason}");

    // Someone else's token.
    let other = Fake::attach(&hub.url, &Spec::echo("b")).await;
    let reason = goodbye(Spec::echo("c").token(&other.registered.session_token)).await;
    assert!(reason.contains("belongs to instance `b`"), "{reason}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_stream_takes_over_the_session_and_delivers_pending_results() {
    let hub = Hub::start(&[]);
    let mut first = Fake::attach(&hub.url, &Spec::echo("a")).await;
    let session = first.registered.clone();

    let mut client = hub.client().await;
    let call = tokio::spawn(async move {
        let mut req = tonic::Request::new(request("put", serde_json::json!({"k": 1})));
        req.set_timeout(Duration::from_secs(8));
        client.invoke(req).await
    });
    let Some(hub_frame::Frame::Invoke(invoke)) = first.stream.next_non_ping().await else {
        panic!("expected Invoke")
    };
    assert_eq!(invoke.action, "put");
    assert!(
        (7000..=8000).contains(&invoke.timeout_ms),
        "the caller's deadline travels: {}",
        invoke.timeout_ms
    );
    drop(first); // the stream dies mid-call

    let again = Fake::attach(&hub.url, &Spec::echo("a").token(&session.session_token)).await;
    assert!(again.registered.resumed);
    assert_eq!(again.registered.session_id, session.session_id);
    assert_eq!(again.registered.session_token, session.session_token);
    again
        .stream
        .send(connector_frame::Frame::Result(spoke_proto::v1::Result {
            request_id: invoke.request_id.clone(),
            outcome: Some(spoke_proto::v1::result::Outcome::Payload(
                br#"{"done":true}"#.to_vec().into(),
            )),
            encoding: spoke_proto::v1::Encoding::Json.into(),
            duration_us: 5,
            chunked: false,
        }))
        .await;
    let response = call
        .await
        .unwrap()
        .expect("the result arrives after resume");
    assert_eq!(
        output(response.get_ref()),
        serde_json::json!({"done": true})
    );
    assert_eq!(response.get_ref().request_id, invoke.request_id);
    assert_eq!(response.get_ref().results[0].instance_id, "a");

    // A Result for a request nobody waits for is dropped, not fatal.
    again
        .stream
        .send(connector_frame::Frame::Result(spoke_proto::v1::Result {
            request_id: "no-such-request".into(),
            ..Default::default()
        }))
        .await;
    let served = again.serve("a", echo());
    let mut client = hub.client().await;
    let response = client
        .invoke(request("get", serde_json::json!({})))
        .await
        .unwrap();
    assert_eq!(output(response.get_ref())["instance"], "a");
    drop(served);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_connector_is_dropped_after_two_heartbeat_intervals() {
    let hub = Hub::start(&["--heartbeat-interval", "200ms"]);
    let alive = Fake::attach(&hub.url, &Spec::echo("alive"))
        .await
        .serve("alive", echo());
    let mut silent = Fake::attach(&hub.url, &Spec::echo("silent")).await;
    assert_eq!(silent.registered.heartbeat_interval_ms, 200);
    let started = Instant::now();
    // Read (pings arrive) but never send anything.
    let end = loop {
        match silent.stream.next().await {
            Ok(Some(f)) => assert!(
                matches!(f.frame, Some(hub_frame::Frame::Ping(_))),
                "only pings while silent: {f:?}"
            ),
            other => break other,
        }
    };
    let elapsed = started.elapsed();
    let status = end.expect_err("dropped with an error status");
    assert!(
        status.message().contains("two heartbeat intervals"),
        "{status}"
    );
    assert!(
        elapsed >= Duration::from_millis(350) && elapsed < Duration::from_millis(900),
        "dropped after {elapsed:?}"
    );

    // It leaves after the resume window; the one that answers pings stays.
    let mut client = hub.client().await;
    let deadline = Instant::now() + WAIT;
    loop {
        let list = client
            .list_connectors(spoke_proto::v1::ListConnectorsRequest {})
            .await
            .unwrap()
            .into_inner();
        let ids: Vec<String> = list.connectors[0]
            .instances
            .iter()
            .map(|i| i.info.clone().unwrap().id)
            .collect();
        if ids == ["alive"] {
            assert_eq!(list.connectors[0].instances[0].state, "ready");
            break;
        }
        assert!(Instant::now() < deadline, "still listed: {ids:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!alive.ended(), "the answering connector keeps its stream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resuming_while_the_old_stream_is_open_closes_the_old_one() {
    let hub = Hub::start(&[]);
    let mut old = Fake::attach(&hub.url, &Spec::echo("a")).await;
    let token = old.registered.session_token.clone();
    let new = Fake::attach(&hub.url, &Spec::echo("a").token(&token)).await;
    assert!(new.registered.resumed);
    let Some(hub_frame::Frame::Goodbye(g)) = old.stream.next_non_ping().await else {
        panic!("the old stream gets a Goodbye")
    };
    assert!(g.reason.contains("newer stream resumed"), "{}", g.reason);
    assert!(matches!(old.stream.next().await, Ok(None)));

    // The session carries on over the new stream.
    let served = new.serve("a", echo());
    let mut client = hub.client().await;
    let response = client
        .invoke(request("get", serde_json::json!({})))
        .await
        .unwrap();
    assert_eq!(output(response.get_ref())["instance"], "a");
    drop(served);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_instance_without_its_token_ends_the_old_session() {
    let hub = Hub::start(&[]);
    let mut old = Fake::attach(&hub.url, &Spec::echo("a")).await;
    let mut client = hub.client().await;
    let call = tokio::spawn(async move {
        let mut req = tonic::Request::new(request("put", serde_json::json!({})));
        req.set_timeout(Duration::from_secs(8));
        client.invoke(req).await
    });
    let Some(hub_frame::Frame::Invoke(_)) = old.stream.next_non_ping().await else {
        panic!("expected the Invoke")
    };
    drop(old);
    // Give the hub a moment to see the stream end (so the session is in its
    // resume window rather than attached).
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    let new = Fake::attach(&hub.url, &Spec::echo("a")).await;
    assert!(!new.registered.resumed);
    let status = call.await.unwrap().unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable);
    assert!(
        status.message().contains("may or may not have run"),
        "{status:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "at once, not after the window"
    );
}

/// The next frame after Registered that is not a Ping: must be an Invoke.
async fn next_invoke(stream: &mut Stream) -> spoke_proto::v1::Invoke {
    match stream.next_non_ping().await {
        Some(hub_frame::Frame::Invoke(invoke)) => invoke,
        other => panic!("expected an Invoke, got {other:?}"),
    }
}

fn answer(request_id: &str, json: &[u8]) -> connector_frame::Frame {
    connector_frame::Frame::Result(spoke_proto::v1::Result {
        request_id: request_id.to_owned(),
        outcome: Some(spoke_proto::v1::result::Outcome::Payload(
            json.to_vec().into(),
        )),
        encoding: spoke_proto::v1::Encoding::Json.into(),
        duration_us: 5,
        chunked: false,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_session_is_sent_the_invokes_of_its_pending_calls_again() {
    let hub = Hub::start(&[]);
    let mut first = Fake::attach(&hub.url, &Spec::echo("a")).await;
    let token = first.registered.session_token.clone();

    // Two pending calls: a write without a deadline (it would wait forever
    // for an Invoke that never arrived) and a read with one.
    let mut client = hub.client().await;
    let no_deadline = tokio::spawn(async move {
        client
            .invoke(request("put", serde_json::json!({"k": 1})))
            .await
    });
    let sent_put = next_invoke(&mut first.stream).await;
    let mut client = hub.client().await;
    let with_deadline = tokio::spawn(async move {
        let mut req = tonic::Request::new(request("get", serde_json::json!({"k": 2})));
        req.set_timeout(Duration::from_secs(8));
        client.invoke(req).await
    });
    let sent_get = next_invoke(&mut first.stream).await;
    assert_eq!(
        (sent_put.action.as_str(), sent_get.action.as_str()),
        ("put", "get")
    );
    // The stream dies: whether the Invokes got through is anyone's guess.
    drop(first);

    let mut again = Fake::attach(&hub.url, &Spec::echo("a").token(&token)).await;
    assert!(again.registered.resumed);
    // First thing after Registered: the pending Invokes, in order.
    let resent_put = next_invoke(&mut again.stream).await;
    assert_eq!(resent_put, sent_put, "the same Invoke, no deadline");
    let resent_get = next_invoke(&mut again.stream).await;
    assert_eq!(resent_get.request_id, sent_get.request_id);
    assert_eq!(
        (
            resent_get.action.as_str(),
            &resent_get.payload,
            &resent_get.metadata
        ),
        (
            sent_get.action.as_str(),
            &sent_get.payload,
            &sent_get.metadata
        )
    );
    assert!(
        resent_get.timeout_ms <= sent_get.timeout_ms && resent_get.timeout_ms > 5_000,
        "timeout_ms counted afresh: {} then {}",
        sent_get.timeout_ms,
        resent_get.timeout_ms
    );

    again
        .stream
        .send(answer(&resent_get.request_id, br#"{"got":2}"#))
        .await;
    again
        .stream
        .send(answer(&resent_put.request_id, br#"{"put":1}"#))
        .await;
    let response = tokio::time::timeout(WAIT, with_deadline)
        .await
        .expect("answered in time")
        .unwrap()
        .expect("the read is answered after the resume");
    assert_eq!(output(response.get_ref()), serde_json::json!({"got": 2}));
    let response = tokio::time::timeout(WAIT, no_deadline)
        .await
        .expect("answered in time")
        .unwrap()
        .expect("the write is answered after the resume");
    assert_eq!(output(response.get_ref()), serde_json::json!({"put": 1}));
    assert_eq!(response.get_ref().request_id, sent_put.request_id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_abandoned_while_its_instance_was_away_is_cancelled_after_the_resume() {
    let hub = Hub::start(&["--resume-window", "5s"]);
    let spec = Spec::echo("a").max_in_flight(1);
    let mut first = Fake::attach(&hub.url, &spec).await;
    let token = first.registered.session_token.clone();
    let mut client = hub.client().await;
    let call = tokio::spawn(async move {
        let mut req = tonic::Request::new(request("slow", serde_json::json!({})));
        req.set_timeout(Duration::from_millis(300));
        client.invoke(req).await
    });
    let sent = next_invoke(&mut first.stream).await;
    drop(first);
    let status = call.await.unwrap().unwrap_err();
    assert_eq!(status.code(), tonic::Code::DeadlineExceeded, "{status:?}");

    // The caller is gone, but the call still holds the instance's only slot:
    // the Invoke comes again, with a Cancel, so the connector answers it.
    let mut again = Fake::attach(&hub.url, &spec.clone().token(&token)).await;
    assert!(again.registered.resumed);
    assert_eq!(
        next_invoke(&mut again.stream).await.request_id,
        sent.request_id
    );
    match again.stream.next_non_ping().await {
        Some(hub_frame::Frame::Cancel(cancel)) => assert_eq!(cancel.request_id, sent.request_id),
        other => panic!("expected the Cancel, got {other:?}"),
    }
    again
        .stream
        .send(connector_frame::Frame::Result(spoke_proto::v1::Result {
            request_id: sent.request_id.clone(),
            outcome: Some(spoke_proto::v1::result::Outcome::Error(
                spoke_proto::v1::Error {
                    code: "cancelled".into(),
                    message: "cancelled before it started".into(),
                    details_json: r#"{"started":false}"#.into(),
                },
            )),
            ..Default::default()
        }))
        .await;

    // The slot is free again.
    let served = again.serve("a", echo());
    let mut client = hub.client().await;
    let mut req = tonic::Request::new(request("get", serde_json::json!({})));
    req.set_timeout(Duration::from_secs(3));
    let response = client.invoke(req).await.expect("the slot was freed");
    assert_eq!(output(response.get_ref())["instance"], "a");
    drop(served);
}
