//! `<bin> nats`: the example connectors as NATS micro services on a real
//! nats-server (a child process on a random loopback port), called with
//! async-nats and with Spoke's own NATS client.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use async_nats::{Client, HeaderMap};
use bytes::Bytes;
use common::nats::{NatsServer, Served};
use futures_util::StreamExt;
use serde_json::{Value, json};
use spoke::ErrorCode;
use spoke::nats::client::{Callee, call, request};
use spoke::nats::subjects::Subjects;

async fn connect(server: &NatsServer) -> Client {
    async_nats::connect(&server.url).await.expect("connect")
}

/// Asks `subject` and collects every answer that comes within `wait`
/// (scatter-gather, as `nats micro` discovers services).
async fn gather(client: &Client, subject: &str, wait: Duration) -> Vec<Value> {
    let inbox = client.new_inbox();
    let mut answers = client.subscribe(inbox.clone()).await.unwrap();
    client
        .publish_with_reply(subject.to_owned(), inbox, Bytes::new())
        .await
        .unwrap();
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + wait;
    while let Ok(Some(m)) = tokio::time::timeout_at(deadline, answers.next()).await {
        out.push(serde_json::from_slice(&m.payload).expect("a JSON answer"));
    }
    out
}

/// The STATS of one instance, its endpoints by name.
async fn stats(client: &Client, service: &str, id: &str) -> BTreeMap<String, Value> {
    let m = client
        .request(format!("$SRV.STATS.{service}.{id}"), Bytes::new())
        .await
        .expect("STATS");
    let v: Value = serde_json::from_slice(&m.payload).unwrap();
    v["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["name"].as_str().unwrap().to_owned(), e.clone()))
        .collect()
}

fn schema(name: &str) -> jsonschema::Validator {
    let path = format!(
        "{}/tests/fixtures/nats-micro-v1/{name}_response.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap();
    jsonschema::options()
        .should_validate_formats(true)
        .build(&serde_json::from_str(&text).unwrap())
        .unwrap()
}

fn assert_valid(validator: &jsonschema::Validator, answer: &Value) {
    let errors: Vec<String> = validator
        .iter_errors(answer)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{errors:?} in {answer:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_the_calls_and_a_killed_one_loses_only_what_it_held() {
    let server = NatsServer::start();
    let a = Served::start(
        "echo",
        &server.url,
        "echo-a",
        &[("RUST_LOG", "warn,spoke::nats=info")],
    );
    let b = Served::start(
        "echo",
        &server.url,
        "echo-b",
        &[("RUST_LOG", "warn,spoke::nats=info")],
    );
    let client = connect(&server).await;
    let subjects = Subjects::new("", "echo").unwrap();

    // 1,000 calls, 16 at a time: every one answered, each instance 30-70%.
    let calls = futures_util::stream::iter(0..1000)
        .map(|i| {
            let (client, subjects) = (client.clone(), subjects.clone());
            async move {
                let input = Bytes::from(json!({ "text": format!("m{i}") }).to_string());
                request(
                    &client,
                    &subjects,
                    subjects.action("echo"),
                    input,
                    Some(Duration::from_secs(5)),
                )
                .await
                .map(|b| (i, b))
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
    for outcome in &calls {
        let (i, body) = outcome.as_ref().expect("every call answered");
        let out: Value = serde_json::from_slice(body).unwrap();
        assert!(out.as_str().unwrap().ends_with(&format!("m{i}")), "{out}");
    }
    let (sa, sb) = (
        stats(&client, "echo", "echo-a").await["echo"]["num_requests"]
            .as_u64()
            .unwrap(),
        stats(&client, "echo", "echo-b").await["echo"]["num_requests"]
            .as_u64()
            .unwrap(),
    );
    assert_eq!(sa + sb, 1000);
    assert!(
        (300..=700).contains(&sa),
        "echo-a took {sa} of 1000, echo-b {sb}"
    );

    // SIGKILL one under load: every call ends (answered, or failed within
    // its deadline), at most those it held fail, and later calls all go to
    // the survivor.
    let started = Instant::now();
    let load = {
        let (client, subjects) = (client.clone(), subjects.clone());
        tokio::spawn(async move {
            futures_util::stream::iter(0..3000)
                .map(|_| {
                    let (client, subjects) = (client.clone(), subjects.clone());
                    async move {
                        let input = Bytes::from(json!({ "text": "k" }).to_string());
                        request(
                            &client,
                            &subjects,
                            subjects.action("echo"),
                            input,
                            Some(Duration::from_secs(2)),
                        )
                        .await
                    }
                })
                .buffer_unordered(8)
                .collect::<Vec<_>>()
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    a.process.signal("KILL");
    let outcomes = tokio::time::timeout(Duration::from_secs(30), load)
        .await
        .expect("no call hangs")
        .unwrap();
    let failed: Vec<_> = outcomes.iter().filter_map(|o| o.as_ref().err()).collect();
    assert!(
        failed.len() <= 8,
        "more calls failed than the killed instance could hold: {failed:?}"
    );
    for e in &failed {
        assert!(
            matches!(
                e.code(),
                ErrorCode::DeadlineExceeded | ErrorCode::Unavailable
            ),
            "{e}"
        );
    }
    assert!(started.elapsed() < Duration::from_secs(25));
    let before = stats(&client, "echo", "echo-b").await["echo"]["num_requests"]
        .as_u64()
        .unwrap();
    for _ in 0..50 {
        let input = Bytes::from(json!({ "text": "after" }).to_string());
        request(
            &client,
            &subjects,
            subjects.action("echo"),
            input,
            Some(Duration::from_secs(2)),
        )
        .await
        .expect("the survivor answers");
    }
    let after = stats(&client, "echo", "echo-b").await["echo"]["num_requests"]
        .as_u64()
        .unwrap();
    assert_eq!(after - before, 50, "every later call went to the survivor");
    drop(b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_are_targeted_and_discovered_with_valid_srv_answers() {
    let server = NatsServer::start();
    let env = [("SPOKE_TAGS", "eu, blue"), ("SPOKE_DISPLAY_NAME", "Echo B")];
    let _a = Served::start("echo", &server.url, "echo-a", &[]);
    let _b = Served::start("echo", &server.url, "echo-b", &env);
    let client = connect(&server).await;
    let subjects = Subjects::new("", "echo").unwrap();
    let at_b = subjects.instance("echo-b");
    for _ in 0..20 {
        let input = Bytes::from_static(br#"{"text":"hi"}"#);
        request(
            &client,
            &subjects,
            at_b.action("echo"),
            input,
            Some(Duration::from_secs(5)),
        )
        .await
        .unwrap();
    }
    let (sa, sb) = (
        stats(&client, "echo", "echo-a").await,
        stats(&client, "echo", "echo-b").await,
    );
    assert_eq!(sb["spoke-instance"]["num_requests"], 20);
    assert_eq!(sa["spoke-instance"]["num_requests"], 0);
    assert_eq!(
        sa["echo"]["num_requests"].as_u64().unwrap() + sb["echo"]["num_requests"].as_u64().unwrap(),
        0
    );

    // describe, shared and at one instance: the manifest.
    for subject in [subjects.describe(), at_b.describe()] {
        let body = request(
            &client,
            &subjects,
            subject,
            Bytes::new(),
            Some(Duration::from_secs(5)),
        )
        .await
        .unwrap();
        let manifest: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(manifest["name"], "echo");
        assert_eq!(manifest["actions"][0]["name"], "echo");
    }
    // Nothing else is served under an instance.
    let e = request(
        &client,
        &subjects,
        format!("{}.a.b", at_b.base()),
        Bytes::new(),
        Some(Duration::from_secs(5)),
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), ErrorCode::NotFound, "{e}");
    // An instance that does not exist: nobody answers, at once.
    let started = Instant::now();
    let e = request(
        &client,
        &subjects,
        subjects.instance("nope").action("echo"),
        Bytes::new(),
        Some(Duration::from_secs(5)),
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), ErrorCode::Unavailable, "{e}");
    assert!(started.elapsed() < Duration::from_secs(2));

    // $SRV: both instances discovered, every answer schema-valid, on all
    // three subject forms.
    let (ping, info, stats_schema) = (schema("ping"), schema("info"), schema("stats"));
    for (verb, validator) in [("PING", &ping), ("INFO", &info), ("STATS", &stats_schema)] {
        for subject in [format!("$SRV.{verb}"), format!("$SRV.{verb}.echo")] {
            let answers = gather(&client, &subject, Duration::from_millis(500)).await;
            let ids: Vec<&str> = answers.iter().filter_map(|a| a["id"].as_str()).collect();
            assert!(
                ids.contains(&"echo-a") && ids.contains(&"echo-b"),
                "{subject}: {ids:?}"
            );
            for answer in &answers {
                assert_valid(validator, answer);
            }
        }
        let one = gather(
            &client,
            &format!("$SRV.{verb}.echo.echo-b"),
            Duration::from_millis(300),
        )
        .await;
        assert_eq!(one.len(), 1, "{one:?}");
        assert_valid(validator, &one[0]);
    }
    let info_b = &gather(&client, "$SRV.INFO.echo.echo-b", Duration::from_millis(300)).await[0];
    assert_eq!(info_b["version"], "0.1.0");
    assert_eq!(info_b["metadata"]["spoke.tenant"], "default");
    assert_eq!(info_b["metadata"]["spoke.display_name"], "Echo B");
    assert_eq!(info_b["metadata"]["spoke.tags"], "eu,blue");
    assert_eq!(
        info_b["metadata"]["spoke.manifest_sha256"]
            .as_str()
            .unwrap()
            .len(),
        64
    );
    let endpoints: BTreeMap<&str, &Value> = info_b["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["name"].as_str().unwrap(), e))
        .collect();
    assert_eq!(endpoints["echo"]["subject"], "spoke.default.echo.echo");
    assert_eq!(endpoints["echo"]["queue_group"], "q");
    assert_eq!(endpoints["echo"]["metadata"]["spoke.mode"], "read");
    assert_eq!(
        endpoints["spoke-describe"]["subject"],
        "spoke.default.echo.describe"
    );
    assert_eq!(
        endpoints["spoke-instance"]["subject"],
        "spoke.default.echo.instance.echo-b.>"
    );
    assert!(endpoints["spoke-instance"].get("queue_group").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_deadlines_cancels_and_panics_behave_as_everywhere() {
    let server = NatsServer::start();
    let faults = Served::start(
        "faults",
        &server.url,
        "faults-1",
        &[("SPOKE_TENANT", "acme")],
    );
    let client = connect(&server).await;
    let subjects = Subjects::new("acme", "faults").unwrap();
    let act = |action: &str, input: Value, timeout: u64| {
        let (client, subjects) = (client.clone(), subjects.clone());
        let subject = subjects.action(action);
        async move {
            request(
                &client,
                &subjects,
                subject,
                Bytes::from(input.to_string()),
                Some(Duration::from_millis(timeout)),
            )
            .await
        }
    };

    // An action error: ADR-32's headers and a JSON body, counted in STATS.
    let m = client
        .request(
            subjects.action("fail"),
            Bytes::from(json!({"code": "not_found", "message": "no ticket 7"}).to_string()),
        )
        .await
        .unwrap();
    let headers = m.headers.as_ref().expect("error headers");
    assert_eq!(
        headers.get("Nats-Service-Error").unwrap().as_str(),
        "no ticket 7"
    );
    assert_eq!(
        headers.get("Nats-Service-Error-Code").unwrap().as_str(),
        "404"
    );
    assert_eq!(
        headers.get("Spoke-Error-Code").unwrap().as_str(),
        "not_found"
    );
    let body: Value = serde_json::from_slice(&m.payload).unwrap();
    assert_eq!(
        body,
        json!({"code": "not_found", "message": "no ticket 7", "details": {"requested": "not_found"}})
    );
    let s = stats(&client, "faults", "faults-1").await;
    assert_eq!(s["fail"]["num_errors"], 1);
    assert_eq!(s["fail"]["last_error"], "404:no ticket 7");

    // Bad input names the field.
    let e = act("add", json!({"a": 1, "b": "two"}), 5000)
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidInput);
    assert!(e.message().contains('b'), "{e}");
    // A panic is an answer; the process lives on.
    let e = act("panic", json!({"message": "boom"}), 5000)
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::Panicked);
    assert!(e.message().contains("boom"), "{e}");
    assert_eq!(
        act("add", json!({"a": 1, "b": 2}), 5000).await.unwrap(),
        Bytes::from_static(b"3")
    );

    // The caller's deadline is the action's.
    let started = Instant::now();
    let e = act("sleep", json!({"ms": 10_000}), 300).await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::DeadlineExceeded, "{e}");
    assert!(
        e.message().contains("sleep"),
        "the instance's own answer: {e}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );

    // A cancel reaches the action: its own answer says it stopped early.
    let inbox = client.new_inbox();
    let mut answers = client.subscribe(inbox.clone()).await.unwrap();
    let mut headers = HeaderMap::new();
    headers.insert("Spoke-Request-Id", "cancel-me-1");
    client
        .publish_with_reply_and_headers(
            subjects.action("sleep"),
            inbox,
            headers,
            Bytes::from_static(br#"{"ms":10000}"#),
        )
        .await
        .unwrap();
    client.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    client
        .publish(subjects.cancel("cancel-me-1"), Bytes::new())
        .await
        .unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(3), answers.next())
        .await
        .expect("the cancelled call answers")
        .unwrap();
    let body: Value = serde_json::from_slice(&answer.payload).unwrap();
    assert_eq!(body["code"], "cancelled", "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("sleep stopped after"),
        "{body}"
    );

    // Spoke's client cancels when the caller drops the call.
    let dropped = tokio::time::timeout(
        Duration::from_millis(200),
        act("sleep", json!({"ms": 10_000}), 20_000),
    )
    .await;
    assert!(dropped.is_err());
    let deadline = Instant::now() + Duration::from_secs(5);
    while faults
        .log_text()
        .matches("call ended: cancelled: sleep stopped after")
        .count()
        < 2
    {
        assert!(
            Instant::now() < deadline,
            "the dropped call was not cancelled:\n{}",
            faults.log_text()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Bad headers are bad input, not a hang.
    let mut bad = HeaderMap::new();
    bad.insert("Spoke-Timeout", "soon");
    let m = client
        .request_with_headers(
            subjects.action("add"),
            bad,
            Bytes::from_static(br#"{"a":1,"b":2}"#),
        )
        .await
        .unwrap();
    let body: Value = serde_json::from_slice(&m.payload).unwrap();
    assert_eq!(body["code"], "invalid_input");
    assert!(
        body["message"].as_str().unwrap().contains("Spoke-Timeout"),
        "{body}"
    );
    // An action nobody serves on a connector that is served: not_found,
    // from its describe; a connector nobody serves: unavailable.
    let e = call(
        &client,
        &subjects,
        None,
        Callee::Action("ad"),
        Bytes::from_static(b"{}"),
        Some(Duration::from_secs(2)),
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), ErrorCode::NotFound, "{e}");
    assert!(e.message().contains("did you mean `add`?"), "{e}");
    let e = call(
        &client,
        &subjects,
        Some("faults-1"),
        Callee::Operator("x"),
        Bytes::new(),
        Some(Duration::from_secs(2)),
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), ErrorCode::NotFound, "{e}");
    let nobody = Subjects::new("acme", "nobody").unwrap();
    let e = call(
        &client,
        &nobody,
        None,
        Callee::Action("add"),
        Bytes::new(),
        Some(Duration::from_secs(2)),
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), ErrorCode::Unavailable, "{e}");
    // A search operator-less connector has no operator endpoints: nobody answers.
    let e = request(
        &client,
        &subjects,
        subjects.operator("x"),
        Bytes::new(),
        Some(Duration::from_secs(2)),
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), ErrorCode::Unavailable);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_flight_is_bounded_and_sigterm_drains() {
    let server = NatsServer::start();
    let mut faults = Served::start(
        "faults",
        &server.url,
        "faults-1",
        &[("SPOKE_MAX_IN_FLIGHT", "1"), ("SPOKE_SHUTDOWN_GRACE", "5s")],
    );
    let client = connect(&server).await;
    let subjects = Subjects::new("", "faults").unwrap();
    let sleep = |ms: u64| {
        let (client, subjects) = (client.clone(), subjects.clone());
        async move {
            let input = Bytes::from(json!({ "ms": ms }).to_string());
            let started = Instant::now();
            let out = request(
                &client,
                &subjects,
                subjects.action("sleep"),
                input,
                Some(Duration::from_secs(10)),
            )
            .await;
            (out, started.elapsed())
        }
    };
    // One at a time: the second waits for the first.
    let ((first, _), (second, took)) = tokio::join!(sleep(400), sleep(400));
    first.unwrap();
    second.unwrap();
    assert!(
        took >= Duration::from_millis(780),
        "the second ran beside the first: {took:?}"
    );

    // SIGTERM with a call under way: it is answered, then the process leaves.
    let under_way = tokio::spawn(sleep(800));
    tokio::time::sleep(Duration::from_millis(200)).await;
    faults.process.signal("TERM");
    faults.wait_log("draining");
    let (out, _) = under_way.await.unwrap();
    assert_eq!(
        serde_json::from_slice::<Value>(&out.unwrap()).unwrap()["slept_ms"],
        800
    );
    let status = faults
        .process
        .wait_for(Duration::from_secs(10))
        .expect("it leaves");
    assert!(status.success(), "{status:?}");
    faults.wait_log("left NATS");
    let (after, _) = sleep(1).await;
    assert_eq!(after.unwrap_err().code(), ErrorCode::Unavailable);
}

#[test]
fn names_that_cannot_be_subject_tokens_stop_it_at_start() {
    let server = NatsServer::start();
    let out = common::run_with_limit(
        common::example("echo")
            .arg("nats")
            .env("SPOKE_NATS_URL", &server.url)
            .env("SPOKE_TENANT", "acme.eu"),
        Duration::from_secs(20),
    );
    assert_eq!(out.status.code(), Some(2));
    let err = common::stderr(&out);
    assert!(err.contains("SPOKE_TENANT") && err.contains("`.`"), "{err}");
    // No server there: exit 1, saying where, with no password shown.
    let out = common::run_with_limit(
        common::example("echo")
            .arg("nats")
            .env("SPOKE_NATS_URL", "nats://me:hunter2@127.0.0.1:9"),
        Duration::from_secs(20),
    );
    assert_eq!(out.status.code(), Some(1));
    let err = common::stderr(&out);
    assert!(err.contains("nats://***@127.0.0.1:9"), "{err}");
    assert!(!err.contains("hunter2"), "{err}");
}

#[test]
fn the_spoke_cli_calls_and_describes_over_nats() {
    let server = NatsServer::start();
    let _echo = Served::start("echo", &server.url, "echo-a", &[]);
    let _faults = Served::start("faults", &server.url, "faults-a", &[]);
    let spoke = |args: &[&str]| {
        let mut cmd = std::process::Command::new(common::spoke_bin());
        cmd.env_remove("SPOKE_HUB_URL")
            .env_remove("SPOKE_NATS_CREDS")
            .arg(args[0])
            .args(["--nats", &server.url])
            .args(&args[1..]);
        common::run_with_limit(&mut cmd, Duration::from_secs(30))
    };
    let out = spoke(&[
        "call",
        "echo",
        "echo",
        r#"{"text":"cli"}"#,
        "--instance",
        "echo-a",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", common::stderr(&out));
    assert!(common::stdout_json(&out).as_str().unwrap().ends_with("cli"));

    let out = spoke(&[
        "call",
        "faults",
        "fail",
        r#"{"code":"not_found","message":"gone"}"#,
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = common::stderr(&out);
    assert!(err.contains("error[not_found]: gone"), "{err}");
    assert!(
        err.contains(r#"details: {"requested":"not_found"}"#),
        "{err}"
    );

    let out = spoke(&["call", "echo", "ecoh"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        common::stderr(&out).contains("did you mean `echo`?"),
        "{}",
        common::stderr(&out)
    );

    let out = spoke(&[
        "call",
        "faults",
        "sleep",
        r#"{"ms":5000}"#,
        "--timeout",
        "300ms",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        common::stderr(&out).contains("error[deadline_exceeded]"),
        "{}",
        common::stderr(&out)
    );

    let out = spoke(&["describe", "echo"]);
    assert_eq!(out.status.code(), Some(0), "{}", common::stderr(&out));
    assert_eq!(common::stdout_json(&out)["name"], "echo");

    let out = spoke(&["call", "nobody", "x", "--tenant", "acme"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        common::stderr(&out).contains("error[unavailable]"),
        "{}",
        common::stderr(&out)
    );
    let out = spoke(&["call", "echo", "echo", "--tag", "eu"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        common::stderr(&out).contains("--tag need a hub"),
        "{}",
        common::stderr(&out)
    );
}
