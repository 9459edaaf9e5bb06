//! `serve` and the hub's trust rules, against a scripted hub on a real
//! loopback gRPC connection that checks every Register's credentials with
//! `spoke_runtime::grpc::identity::verify`: signed assertions, registration
//! tokens, pending approval, approval on a live stream, refusals.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use spoke_proto::v1::connector_frame::Frame;
use spoke_proto::v1::hub_frame;
use spoke_runtime::backoff::Backoff;
use spoke_runtime::{InstanceKey, KeySource, Secret, ServeError, ServeOutcome};
use support::*;
use tonic::Status;

const LIMIT: Duration = Duration::from_secs(30);

/// Stops `serve` and expects its Goodbye on `conn` (answering its Pings, so
/// every result is acknowledged), then its return.
async fn leave(mut conn: HubConn, running: Running) {
    running.stop();
    loop {
        match conn.next().await {
            Some(Frame::Goodbye(_)) => break,
            Some(Frame::Result(_)) => {}
            other => panic!("expected Goodbye, got {other:?}"),
        }
    }
    drop(conn);
    assert_eq!(running.finished().await, Ok(ServeOutcome::Shutdown));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_register_carries_a_fresh_assertion_signed_by_the_instance_key() {
    bounded(LIMIT, async {
        let mut hub = ScriptedHub::start().await;
        let key = Arc::new(InstanceKey::generate().unwrap());
        let mut options = options(&hub.url);
        options.tenant = "acme".into();
        options.key = KeySource::Loaded(Arc::clone(&key));
        let running = serve(options).await;

        let (conn, first) = hub.attach(registered("t1", 10_000, false)).await;
        let first = verified(&first);
        assert_eq!(first.public_key, key.public_key());
        assert_eq!(
            (
                first.assertion.tenant.as_str(),
                first.assertion.connector.as_str(),
                first.assertion.instance_id.as_str()
            ),
            ("acme", "probe", "probe-1")
        );
        conn.hang_up();
        let (conn, second) = hub.attach(registered("t1", 10_000, true)).await;
        assert_eq!(second.session_token, "t1");
        let second = verified(&second);
        assert_eq!(second.public_key, key.public_key(), "the same key");
        assert_ne!(
            second.assertion.nonce, first.assertion.nonce,
            "a fresh assertion for every Register"
        );
        leave(conn, running).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_registration_token_is_sent_until_the_instance_is_active() {
    bounded(LIMIT, async {
        let mut hub = ScriptedHub::start().await;
        let mut options = options(&hub.url);
        options.registration_token = Some(Secret::new("reg-tok-1".to_owned()));
        let running = serve(options).await;

        // Pending (say, the token was not accepted): it is sent again.
        let (conn, register) = hub.attach(registered_pending("t1", 10_000)).await;
        assert_eq!(verified(&register).assertion.instance_id, "probe-1");
        let token = |r: &spoke_proto::v1::Register| {
            r.credentials.as_ref().unwrap().registration_token.clone()
        };
        assert_eq!(token(&register), "reg-tok-1");
        conn.hang_up();
        let (conn, register) = hub.attach(registered("t2", 10_000, false)).await;
        assert_eq!(token(&register), "reg-tok-1");
        // Active: the one-time token has done its work and is not sent again.
        conn.hang_up();
        let (conn, register) = hub.attach(registered("t2", 10_000, true)).await;
        assert_eq!(token(&register), "");
        verified(&register);
        leave(conn, running).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_instance_keeps_its_stream_and_serves_once_approved_on_it() {
    bounded(LIMIT, async {
        let mut hub = ScriptedHub::start().await;
        let running = serve(options(&hub.url)).await;
        let (mut conn, register) = hub.attach(registered_pending("p-tok", 100)).await;
        verified(&register);

        // Pending: the stream stays up, heartbeats flow both ways.
        conn.send(hub_frame::Frame::Ping(spoke_proto::v1::Ping { nonce: 7 }))
            .await;
        loop {
            match conn.raw().await {
                Some(Frame::Pong(p)) => {
                    assert_eq!(p.nonce, 7);
                    break;
                }
                Some(Frame::Ping(_)) => {}
                other => panic!("expected heartbeats while pending, got {other:?}"),
            }
        }
        // Several heartbeat intervals later it is still the same stream.
        let quiet = Instant::now();
        while quiet.elapsed() < Duration::from_millis(500) {
            match tokio::time::timeout(Duration::from_millis(100), conn.next()).await {
                Err(_) => {}
                Ok(other) => panic!("expected only heartbeats while pending, got {other:?}"),
            }
        }
        assert!(conn.pings_seen >= 2, "pings: {}", conn.pings_seen);

        // Approved: a second Registered on the same stream, then calls arrive.
        conn.send(hub_frame::Frame::Registered(registered(
            "active-tok",
            100,
            false,
        )))
        .await;
        conn.invoke("r1", "echo", json!({"after": "approval"}), 0)
            .await;
        let r = conn.result().await;
        assert_eq!(ok_json(&r), json!({"after": "approval"}));
        assert!(
            hub.conn_within(Duration::from_millis(200)).await.is_none(),
            "approval needs no reconnect"
        );

        // The token of the second Registered is the one a resume sends.
        conn.hang_up();
        let (conn, register) = hub.attach(registered("active-tok", 100, true)).await;
        // (Resumed: r1's result, unacknowledged, comes again.)
        assert_eq!(register.session_token, "active-tok");
        leave(conn, running).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permission_denied_at_attach_stops_serve_with_the_hubs_message() {
    bounded(LIMIT, async {
        let mut hub = ScriptedHub::start().await;
        let running = serve(options(&hub.url)).await;
        let mut conn = hub.next_conn().await;
        verified(&conn.register().await);
        conn.refuse(Status::permission_denied(
            "instance probe-1 was rejected by an administrator",
        ))
        .await;
        let err = running.finished().await.unwrap_err();
        assert_eq!(
            err,
            ServeError::Refused {
                message: "instance probe-1 was rejected by an administrator".into()
            }
        );
        assert!(err.to_string().contains("refused this instance"), "{err}");
        assert!(
            hub.conn_within(Duration::from_millis(300)).await.is_none(),
            "no retry after PERMISSION_DENIED"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_live_session_stops_serve() {
    bounded(LIMIT, async {
        let mut hub = ScriptedHub::start().await;
        let running = serve(options(&hub.url)).await;
        let (mut conn, _) = hub.attach(registered("t1", 10_000, false)).await;
        conn.invoke("r1", "echo", json!({}), 0).await;
        conn.result().await;
        conn.refuse(Status::permission_denied("instance probe-1 was revoked"))
            .await;
        match running.finished().await {
            Err(ServeError::Refused { message }) => {
                assert_eq!(message, "instance probe-1 was revoked");
            }
            other => panic!("expected Refused, got {other:?}"),
        }
        assert!(hub.conn_within(Duration::from_millis(300)).await.is_none());
    })
    .await;
}

/// A refusal that is not final (a bad proof, too many registrations, a
/// Register the hub cannot take) is retried with the slow backoff.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registrations_not_accepted_are_retried_with_the_slow_backoff() {
    bounded(LIMIT, async {
        let mut hub = ScriptedHub::start().await;
        let mut options = options(&hub.url);
        // Lost streams retry within 20 ms; refused proofs wait 400 ms.
        options.backoff = Backoff::builder()
            .initial(Duration::from_millis(20))
            .max(Duration::from_millis(20))
            .jitter(0.0)
            .build()
            .unwrap();
        options.auth_backoff = Backoff::builder()
            .initial(Duration::from_millis(400))
            .max(Duration::from_millis(400))
            .jitter(0.0)
            .build()
            .unwrap();
        let running = serve(options).await;
        let mut previous = None;
        let refusals = [
            Status::unauthenticated("the key differs from the one recorded for probe-1"),
            Status::resource_exhausted("too many registrations from this address"),
            Status::invalid_argument("Register.instance.display_name is 300 bytes long"),
        ];
        for refusal in refusals {
            let mut conn = hub.next_conn().await;
            let at = Instant::now();
            if let Some(previous) = previous {
                let gap = at - previous;
                assert!(gap >= Duration::from_millis(350), "retried after {gap:?}");
            }
            previous = Some(at);
            verified(&conn.register().await);
            conn.refuse(refusal).await;
        }
        // Still trying, slowly after the last refusal too: once the hub
        // accepts, it serves.
        let (mut conn, _) = hub.attach(registered("t1", 10_000, false)).await;
        let gap = previous.expect("three attempts").elapsed();
        assert!(gap >= Duration::from_millis(350), "retried after {gap:?}");
        conn.invoke("r1", "echo", json!({"ok": true}), 0).await;
        assert_eq!(ok_json(&conn.result().await), json!({"ok": true}));
        // A lost stream afterwards is retried at the fast pace again.
        let lost = Instant::now();
        conn.hang_up();
        let (mut conn, _) = hub.attach(registered("t1", 10_000, true)).await;
        // The result of r1 was never acknowledged: it comes again.
        assert_eq!(conn.result().await.request_id, "r1");
        assert!(
            lost.elapsed() < Duration::from_millis(350),
            "{:?}",
            lost.elapsed()
        );
        leave(conn, running).await;
    })
    .await;
}

#[tokio::test]
async fn a_missing_key_file_stops_serve_before_dialing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("absent.pem");
    let mut o = options("http://127.0.0.1:1");
    o.key = KeySource::File(path.clone());
    let err = spoke_runtime::grpc::serve::run_until(probe().await, o, std::future::pending())
        .await
        .unwrap_err();
    assert!(matches!(err, ServeError::Key(_)), "{err:?}");
    let text = err.to_string();
    assert!(text.starts_with("SPOKE_KEY_PATH `"), "{text}");
    assert!(text.contains(&path.display().to_string()), "{text}");
}
