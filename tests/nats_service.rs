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

/// `spoke ls --nats URL [--tenant T] [--table]`.
fn spoke_ls(url: &str, extra: &[&str]) -> std::process::Output {
    let mut cmd = std::process::Command::new(common::spoke_bin());
    cmd.env_remove("SPOKE_HUB_URL")
        .env_remove("SPOKE_NATS_CREDS")
        .args(["ls", "--nats", url])
        .args(extra);
    common::run_with_limit(&mut cmd, Duration::from_secs(30))
}

/// The instances `spoke ls --nats` lists for `connector`, by id.
fn listed(url: &str, tenant: &str, connector: &str) -> BTreeMap<String, Value> {
    let out = spoke_ls(url, &["--tenant", tenant]);
    assert_eq!(out.status.code(), Some(0), "{}", common::stderr(&out));
    let ls = common::stdout_json(&out);
    ls["connectors"]
        .as_array()
        .expect("connectors")
        .iter()
        .filter(|c| c["name"] == connector)
        .flat_map(|c| c["instances"].as_array().unwrap().clone())
        .map(|i| (i["id"].as_str().unwrap().to_owned(), i))
        .collect()
}

/// Polls `spoke ls --nats` (at most `limit`) until `done` holds.
fn wait_listed(
    url: &str,
    tenant: &str,
    connector: &str,
    limit: Duration,
    done: impl Fn(&BTreeMap<String, Value>) -> bool,
) -> (BTreeMap<String, Value>, Duration) {
    let started = Instant::now();
    loop {
        let now = listed(url, tenant, connector);
        if done(&now) {
            return (now, started.elapsed());
        }
        assert!(
            started.elapsed() < limit,
            "after {limit:?}, spoke ls --nats lists {now:#?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn the_status_bucket_lists_live_instances_and_forgets_dead_ones() {
    let server = NatsServer::start();
    // Before any instance made the bucket: nothing, and no error.
    let out = spoke_ls(&server.url, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", common::stderr(&out));
    assert_eq!(common::stdout_json(&out), json!({ "connectors": [] }));

    let every = [("SPOKE_NATS_STATUS_EVERY", "1s")];
    let a = Served::start(
        "echo",
        &server.url,
        "echo-a",
        &[
            every[0],
            ("SPOKE_DISPLAY_NAME", "Echo A"),
            ("SPOKE_TAGS", "eu,blue"),
        ],
    );
    let b = Served::start("echo", &server.url, "echo-b", &every);
    let _other_tenant = Served::start(
        "echo",
        &server.url,
        "echo-acme",
        &[every[0], ("SPOKE_TENANT", "acme")],
    );
    let (live, _) = wait_listed(
        &server.url,
        "default",
        "echo",
        Duration::from_secs(10),
        |l| l.len() == 2,
    );
    let echo_a = &live["echo-a"];
    assert_eq!(echo_a["display_name"], "Echo A");
    assert_eq!(echo_a["tags"], json!(["eu", "blue"]));
    assert_eq!(echo_a["state"], "serving");
    assert_eq!(echo_a["tenant"], "default");
    assert_eq!(live["echo-b"]["display_name"], "Echo");
    assert!(
        !live.contains_key("echo-acme"),
        "another tenant's: {live:#?}"
    );
    let (acme, _) = wait_listed(&server.url, "acme", "echo", Duration::from_secs(10), |l| {
        l.len() == 1
    });
    assert!(acme.contains_key("echo-acme"), "{acme:#?}");

    // Calls show in the counters within a heartbeat or two.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = async_nats::connect(&server.url).await.unwrap();
        let subjects = Subjects::new("", "echo").unwrap().instance("echo-a");
        for i in 0..5 {
            let input = Bytes::from(json!({ "text": format!("n{i}") }).to_string());
            client
                .request(subjects.action("echo"), input)
                .await
                .unwrap();
        }
    });
    wait_listed(
        &server.url,
        "default",
        "echo",
        Duration::from_secs(5),
        |l| {
            l.get("echo-a")
                .is_some_and(|a| a["requests"].as_u64() >= Some(5) && a["in_flight"] == 0)
        },
    );

    let out = spoke_ls(&server.url, &["--table"]);
    assert_eq!(out.status.code(), Some(0), "{}", common::stderr(&out));
    let table = common::stdout(&out);
    let header = table.lines().next().unwrap_or_default();
    assert!(
        header.starts_with("CONNECTOR") && header.contains("REQUESTS"),
        "{table}"
    );
    assert!(
        table
            .lines()
            .any(|l| l.contains("echo-a") && l.contains("Echo A") && l.contains("eu,blue")),
        "{table}"
    );

    // Killed without a word: gone within its TTL (3 s at 1 s a beat).
    b.process.signal("KILL");
    let (_, took) = wait_listed(
        &server.url,
        "default",
        "echo",
        Duration::from_secs(10),
        |l| !l.contains_key("echo-b"),
    );
    assert!(took < Duration::from_secs(8), "it took {took:?} to expire");

    // Stopped: it removes itself before it leaves.
    let mut a = a;
    a.process.signal("TERM");
    let status = a
        .process
        .wait_for(Duration::from_secs(10))
        .expect("it leaves");
    assert!(status.success(), "{status:?}");
    let now = listed(&server.url, "default", "echo");
    assert!(
        now.is_empty(),
        "a stopped instance is still listed: {now:#?}"
    );
}

/// What instance `id` of `accounts` says of `keys`: the members it sees
/// and the keys it owns.
async fn ownership(client: &Client, id: &str, keys: &[String]) -> (Vec<String>, Vec<String>) {
    let subjects = Subjects::new("", "accounts").unwrap().instance(id);
    let input = Bytes::from(json!({ "accounts": keys }).to_string());
    let m = client
        .request(subjects.action("refresh"), input)
        .await
        .expect("refresh");
    let v: Value = serde_json::from_slice(&m.payload).expect("JSON");
    assert_eq!(v["instance"], id, "{v}");
    let strings = |v: &Value| -> Vec<String> {
        serde_json::from_value(v.clone()).expect("a list of strings")
    };
    (strings(&v["members"]), strings(&v["refreshed"]))
}

/// Asks every one of `ids` until each sees exactly `ids` as the members
/// (at most 10 s); what each owns then.
async fn settled(client: &Client, ids: &[&str], keys: &[String]) -> BTreeMap<String, Vec<String>> {
    let started = Instant::now();
    loop {
        let mut owned = BTreeMap::new();
        let mut agreed = true;
        for id in ids {
            let (members, mine) = ownership(client, id, keys).await;
            let mut want: Vec<&str> = ids.to_vec();
            want.sort();
            agreed &= members == want;
            owned.insert((*id).to_owned(), mine);
        }
        if agreed {
            return owned;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the instances did not agree on {ids:?} in 10 s: {owned:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn work_is_partitioned_and_only_a_leavers_share_moves() {
    let server = NatsServer::start();
    let every = [("SPOKE_NATS_STATUS_EVERY", "1s")];
    let _a = Served::start("accounts", &server.url, "acct-a", &every);
    let mut b = Served::start("accounts", &server.url, "acct-b", &every);
    let _c = Served::start("accounts", &server.url, "acct-c", &every);
    let client = connect(&server).await;
    let keys: Vec<String> = (0..300).map(|k| format!("account-{k}")).collect();

    let before = settled(&client, &["acct-a", "acct-b", "acct-c"], &keys).await;
    // Each key exactly once, where the documented hash puts it.
    let members = ["acct-a", "acct-b", "acct-c"];
    for key in &keys {
        let holders: Vec<&String> = before
            .iter()
            .filter(|(_, mine)| mine.contains(key))
            .map(|(id, _)| id)
            .collect();
        assert_eq!(holders.len(), 1, "{key} is owned by {holders:?}");
        assert_eq!(
            holders[0],
            spoke::partition::owner(key, &members).unwrap(),
            "{key}"
        );
    }
    for (id, mine) in &before {
        assert!((60..=140).contains(&mine.len()), "{id} owns {}", mine.len());
    }

    // b leaves: a and c keep all they had and take exactly b's share.
    b.process.signal("TERM");
    b.process
        .wait_for(Duration::from_secs(10))
        .expect("it leaves");
    let after = settled(&client, &["acct-a", "acct-c"], &keys).await;
    let mut gained: Vec<String> = Vec::new();
    for id in ["acct-a", "acct-c"] {
        let (old, new) = (&before[id], &after[id]);
        assert!(
            old.iter().all(|k| new.contains(k)),
            "{id} lost keys though it stayed"
        );
        gained.extend(new.iter().filter(|k| !old.contains(k)).cloned());
    }
    gained.sort();
    let mut of_b = before["acct-b"].clone();
    of_b.sort();
    assert_eq!(gained, of_b, "what moved is exactly what b owned");

    // d joins: it takes keys only from the others, none moves between them.
    let _d = Served::start("accounts", &server.url, "acct-d", &every);
    let joined = settled(&client, &["acct-a", "acct-c", "acct-d"], &keys).await;
    for id in ["acct-a", "acct-c"] {
        assert!(
            joined[id].iter().all(|k| after[id].contains(k)),
            "{id} took keys when d joined"
        );
    }
    assert!(!joined["acct-d"].is_empty());
    let total: usize = joined.values().map(Vec::len).sum();
    assert_eq!(total, keys.len());
}

/// Calls `accounts note` at instance `id`.
async fn note(client: &Client, id: &str, input: Value) -> Result<Value, spoke::ActionError> {
    let subjects = Subjects::new("", "accounts").unwrap();
    let body = call(
        client,
        &subjects,
        Some(id),
        Callee::Action("note"),
        Bytes::from(input.to_string()),
        Some(Duration::from_secs(10)),
    )
    .await?;
    Ok(serde_json::from_slice(&body).expect("JSON"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_is_shared_and_of_racing_writers_exactly_one_wins() {
    let server = NatsServer::start();
    let _a = Served::start("accounts", &server.url, "store-a", &[]);
    let _b = Served::start("accounts", &server.url, "store-b", &[]);
    let client = connect(&server).await;

    // The declared bucket exists in JetStream KV, made at start-up.
    let js = async_nats::jetstream::new(client.clone());
    let kv = js
        .get_key_value("spoke_accounts_notes")
        .await
        .expect("the bucket spoke_accounts_notes");

    for round in 0..10 {
        let account = format!("acct-{round}");
        // Creating: both at once, exactly one makes it.
        let input = |text: &str| json!({ "account": account, "text": text });
        let (ra, rb) = tokio::join!(
            note(&client, "store-a", input("from a")),
            note(&client, "store-b", input("from b"))
        );
        let (created, lost) = match (ra, rb) {
            (Ok(won), Err(lost)) | (Err(lost), Ok(won)) => (won, lost),
            other => panic!("round {round}: not exactly one winner: {other:?}"),
        };
        assert_eq!(lost.code(), ErrorCode::FailedPrecondition, "{lost:?}");
        assert!(lost.message().contains("exists"), "{}", lost.message());
        let revision = created["revision"].as_u64().unwrap();

        // Swapping from the same revision: exactly one again.
        let swap = |text: &str| json!({ "account": account, "text": text, "revision": revision });
        let (ra, rb) = tokio::join!(
            note(&client, "store-a", swap("a swapped")),
            note(&client, "store-b", swap("b swapped"))
        );
        let (won, lost) = match (ra, rb) {
            (Ok(won), Err(lost)) | (Err(lost), Ok(won)) => (won, lost),
            other => panic!("round {round}: not exactly one swap won: {other:?}"),
        };
        assert_eq!(lost.code(), ErrorCode::FailedPrecondition);
        // Both instances read what the winner wrote, and so does KV.
        for id in ["store-a", "store-b"] {
            let subjects = Subjects::new("", "accounts").unwrap();
            let body = call(
                &client,
                &subjects,
                Some(id),
                Callee::Action("notes"),
                Bytes::from(json!({ "account": account }).to_string()),
                Some(Duration::from_secs(10)),
            )
            .await
            .unwrap();
            let seen: Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(seen["text"], won["text"], "{id}");
            assert_eq!(seen["revision"], won["revision"], "{id}");
        }
        let stored = kv
            .get(format!("default.{account}"))
            .await
            .unwrap()
            .expect("the note in KV, under the tenant");
        let stored: Value = serde_json::from_slice(&stored).unwrap();
        assert_eq!(stored["text"], won["text"]);
    }
}

/// The events of a sync run on `events` until its end message (at most
/// `limit`), or until `enough` of them came: their document ids, and the
/// end (`None` when stopped early).
async fn run_events(
    events: &mut async_nats::Subscriber,
    enough: usize,
    limit: Duration,
) -> (Vec<String>, Option<(String, Value)>) {
    let deadline = tokio::time::Instant::now() + limit;
    let mut ids = Vec::new();
    while ids.len() < enough {
        let m = tokio::time::timeout_at(deadline, events.next())
            .await
            .unwrap_or_else(|_| panic!("no end of the run in {limit:?}; {} events", ids.len()))
            .expect("the subscription");
        let body: Value = serde_json::from_slice(&m.payload).expect("JSON");
        let end = m
            .headers
            .as_ref()
            .and_then(|h| h.get("Spoke-Sync-End"))
            .map(|v| v.to_string());
        if let Some(status) = end {
            return (ids, Some((status, body)));
        }
        ids.push(body["id"].as_str().expect("a document id").to_owned());
    }
    (ids, None)
}

/// Asks `subject` to start a sync run, events to `events`.
async fn start_sync(
    client: &Client,
    subject: String,
    events: &str,
) -> Result<Value, (String, String)> {
    let mut headers = HeaderMap::new();
    headers.insert("Spoke-Timeout", "10000");
    let body = Bytes::from(json!({ "events": events }).to_string());
    let m = tokio::time::timeout(
        Duration::from_secs(10),
        client.request_with_headers(subject, headers, body),
    )
    .await
    .expect("an answer in 10 s")
    .expect("an answer");
    match m.headers.as_ref().and_then(|h| h.get("Spoke-Error-Code")) {
        Some(code) => {
            let body: Value = serde_json::from_slice(&m.payload).unwrap();
            Err((
                code.to_string(),
                body["message"].as_str().unwrap().to_owned(),
            ))
        }
        None => Ok(serde_json::from_slice(&m.payload).unwrap()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_killed_half_way_is_resumed_by_another_instance_from_kv() {
    let server = NatsServer::start();
    let every = ("SPOKE_NATS_STATUS_EVERY", "1s");
    let mut a = Served::start(
        "accounts",
        &server.url,
        "sync-a",
        &[every, ("ACCOUNTS_PAGE_DELAY", "300ms")],
    );
    let _b = Served::start("accounts", &server.url, "sync-b", &[every]);
    let client = connect(&server).await;
    let subjects = Subjects::new("", "accounts").unwrap();
    let kv = async_nats::jetstream::new(client.clone())
        .get_key_value("spoke_accounts_syncs")
        .await
        .expect("the sync state bucket, made at start-up");
    let state = || async {
        let raw = kv
            .get("default.ledger.none")
            .await
            .unwrap()
            .expect("the state");
        serde_json::from_slice::<Value>(&raw).unwrap()
    };

    // A starts the walk; after three pages it is killed.
    let mut first = client.subscribe("evt.first").await.unwrap();
    let started = start_sync(
        &client,
        subjects.instance("sync-a").sync("ledger"),
        "evt.first",
    )
    .await
    .expect("started");
    assert_eq!(started["instance"], "sync-a");
    assert_eq!(started["is_resume"], false);
    let (seen, end) = run_events(&mut first, 30, Duration::from_secs(20)).await;
    assert!(end.is_none(), "the walk ended before it was killed");
    a.process.signal("KILL");
    let _ = a.process.wait_for(Duration::from_secs(5));
    let left = state().await;
    assert_eq!(left["last_run"]["status"], "running", "{left:#}");
    assert_eq!(left["last_run"]["instance"], "sync-a");
    let next = left["checkpoint"]["checkpoint"]["next"].as_u64().unwrap();
    assert!((30..100).contains(&next), "{left:#}");
    // What A's checkpoint covers was delivered before it was stored.
    let mut seen = seen;
    while let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(500), first.next()).await {
        let body: Value = serde_json::from_slice(&m.payload).unwrap();
        seen.push(body["id"].as_str().unwrap().to_owned());
    }
    for n in 0..next {
        assert!(
            seen.contains(&format!("account-{n}")),
            "account-{n} not delivered"
        );
    }

    // While A still counts as live, B will not start a second run.
    let refused = start_sync(
        &client,
        subjects.instance("sync-b").sync("ledger"),
        "evt.second",
    )
    .await
    .expect_err("refused");
    assert_eq!(refused.0, "failed_precondition", "{refused:?}");
    assert!(refused.1.contains("at instance sync-a"), "{refused:?}");

    // Once A's status expired, B resumes after A's last checkpoint.
    let mut second = client.subscribe("evt.second").await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    let resumed = loop {
        match start_sync(
            &client,
            subjects.instance("sync-b").sync("ledger"),
            "evt.second",
        )
        .await
        {
            Ok(answer) => break answer,
            Err(e) => assert!(
                Instant::now() < deadline && e.0 == "failed_precondition",
                "B never resumed: {e:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(resumed["instance"], "sync-b");
    assert_eq!(resumed["is_resume"], true, "{resumed}");
    let (rest, end) = run_events(&mut second, usize::MAX, Duration::from_secs(20)).await;
    let (status, outcome) = end.expect("the end of B's run");
    assert_eq!(status, "completed", "{outcome:#}");
    let want: Vec<String> = (next..100).map(|n| format!("account-{n}")).collect();
    assert_eq!(
        rest, want,
        "B emits exactly what A's checkpoint did not cover"
    );
    let done = state().await;
    assert_eq!(done["last_run"]["status"], "completed");
    assert_eq!(done["completed"]["checkpoint"]["next"], 100);

    // The next run, on any instance, starts from the completed checkpoint.
    let mut third = client.subscribe("evt.third").await.unwrap();
    let again = start_sync(&client, subjects.sync("ledger"), "evt.third")
        .await
        .unwrap();
    assert_eq!(again["is_resume"], false);
    let (none, end) = run_events(&mut third, usize::MAX, Duration::from_secs(10)).await;
    assert!(none.is_empty(), "{none:?}");
    assert_eq!(end.unwrap().0, "completed");
}

/// `spoke <args>` against `hub` with client token `token` (none: a hub
/// without auth), bounded in time.
fn hub_call(hub: &common::Hub, token: Option<&str>, args: &[&str]) -> std::process::Output {
    let mut cmd = hub.cli();
    if let Some(token) = token {
        cmd.env("SPOKE_TOKEN", token);
    }
    cmd.args(args);
    common::run_with_limit(&mut cmd, Duration::from_secs(30))
}

/// Asserts that `spoke` exited with `code`, saying `needle` on stderr.
fn failed_with(out: &std::process::Output, code: i32, needle: &str) {
    assert_eq!(out.status.code(), Some(code), "{out:?}");
    let stderr = common::stderr(out);
    assert!(stderr.contains(needle), "{stderr}");
}

#[test]
fn two_hubs_on_one_nats_call_each_others_connectors() {
    let server = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    // Hub A, with auth: echo attaches to it.
    let a = common::Hub::start_secure(
        &dir.path().join("a"),
        &["--insecure", "--nats", &server.url],
    );
    let attach_to_a = |name: &str, id: &str, env: &[(&str, &str)]| {
        let registration = a.operator(&[], &["token", "create", "--connector", name]);
        let mut cmd = common::example(name);
        cmd.arg("serve")
            .env("SPOKE_HUB_URL", &a.url)
            .env("HOME", &home)
            .env("SPOKE_INSTANCE_ID", id)
            .env("SPOKE_REGISTRATION_TOKEN", &registration)
            .envs(env.iter().copied())
            .stdout(std::process::Stdio::null());
        common::spawn_logged(&mut cmd, id).0
    };
    let _echo = attach_to_a("echo", "echo-a", &[("ECHO_PREFIX", "a: ")]);
    let _faults = attach_to_a("faults", "faults-a", &[]);
    // Hub B, without auth: tickets attaches to it.
    let b = common::Hub::start(&["--nats", &server.url]);
    let mut tickets = b.attach("tickets", &[("SPOKE_INSTANCE_ID", "tickets-b")]);
    // And files serves NATS itself.
    let root = dir.path().join("files");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("a.txt"), "a").unwrap();
    let _files = Served::start(
        "files",
        &server.url,
        "files-n",
        &[("FILES_ROOT", root.to_str().unwrap())],
    );

    // A client of B calls echo, which only A has: through NATS.
    let started = Instant::now();
    let out = loop {
        let out = hub_call(&b, None, &["call", "echo", "echo", r#"{"text":"hi"}"#]);
        if out.status.success() || started.elapsed() > Duration::from_secs(20) {
            break out;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(out.status.success(), "{}", common::stderr(&out));
    assert_eq!(common::stdout_json(&out), json!("a: hi"));
    let out = hub_call(
        &b,
        None,
        &[
            "call",
            "echo",
            "echo",
            r#"{"text":"one"}"#,
            "--instance",
            "echo-a",
        ],
    );
    assert!(out.status.success(), "{}", common::stderr(&out));
    assert_eq!(common::stdout_json(&out), json!("a: one"));
    let out = hub_call(&b, None, &["call", "echo", "echo", "--tag", "eu"]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert!(
        common::stderr(&out)
            .contains("a route by tag or display name picks among this hub's instances only"),
        "{}",
        common::stderr(&out)
    );
    // B logged it like any call; A took it over NATS and logged it too.
    b.wait_log(&["connector=echo", "action=echo", "outcome=ok"]);
    a.wait_log(&[
        "connector=echo",
        "instance=echo-a",
        "action=echo",
        "outcome=ok",
    ]);
    // A plain NATS caller reaches A's echo too, by its instance subject.
    let mut nats_cli = std::process::Command::new(common::spoke_bin());
    nats_cli
        .env_remove("SPOKE_HUB_URL")
        .args([
            "call",
            "--nats",
            &server.url,
            "echo",
            "echo",
            r#"{"text":"n"}"#,
        ])
        .args(["--instance", "echo-a"]);
    let out = common::run_with_limit(&mut nats_cli, Duration::from_secs(30));
    assert!(out.status.success(), "{}", common::stderr(&out));
    assert_eq!(common::stdout_json(&out), json!("a: n"));

    // Clients of A reach tickets on B, with their tokens checked at A.
    let read = a.operator(&[], &["client-token", "create", "--connectors", "*"]);
    let write = a.operator(
        &[],
        &["client-token", "create", "--connectors", "*", "--write"],
    );
    let echo_only = a.operator(&[], &["client-token", "create", "--connectors", "echo"]);
    let acme = a.operator(
        &[],
        &[
            "client-token",
            "create",
            "--tenant",
            "acme",
            "--connectors",
            "*",
        ],
    );
    let out = hub_call(&a, Some(&read), &["call", "tickets", "list"]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    assert!(common::stdout_json(&out).is_array(), "{out:?}");
    let out = hub_call(
        &a,
        Some(&read),
        &["call", "tickets", "create", r#"{"title":"x"}"#],
    );
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert!(
        common::stderr(&out).contains("is a write action; this token was made without --write"),
        "{}",
        common::stderr(&out)
    );
    let out = hub_call(
        &a,
        Some(&write),
        &["call", "tickets", "create", r#"{"title":"x"}"#],
    );
    assert!(out.status.success(), "{}", common::stderr(&out));
    assert_eq!(common::stdout_json(&out)["title"], "x");
    let out = hub_call(
        &a,
        Some(&read),
        &["call", "tickets", "get", r#"{"id":"seven"}"#],
    );
    failed_with(&out, 1, "error[invalid_input]");
    let out = hub_call(&a, Some(&echo_only), &["call", "tickets", "list"]);
    failed_with(&out, 3, "token does not grant connector tickets");
    // Tenant acme has no tickets, here or on NATS.
    let out = hub_call(&a, Some(&acme), &["call", "tickets", "list"]);
    failed_with(&out, 3, "nor does one serve tenant `acme` on NATS");
    // A connector serving NATS itself answers A's clients.
    let out = hub_call(&a, Some(&read), &["call", "files", "list"]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    assert!(common::stdout(&out).contains("a.txt"), "{out:?}");
    let out = hub_call(&a, Some(&read), &["call", "files", "nosuch"]);
    failed_with(&out, 3, "connector `files` has no action `nosuch`");

    // Through two hubs, an action's error arrives whole, the deadline
    // reaches the action, and so does the caller's giving up.
    let started = Instant::now();
    let fail = [
        "call",
        "faults",
        "fail",
        r#"{"code":"not_found","message":"gone"}"#,
    ];
    let out = loop {
        let out = hub_call(&b, None, &fail);
        if out.status.code() == Some(1) || started.elapsed() > Duration::from_secs(20) {
            break out;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    failed_with(&out, 1, "error[not_found]: gone");
    assert!(
        common::stderr(&out).contains(r#""requested":"not_found""#),
        "{out:?}"
    );
    let out = hub_call(
        &b,
        None,
        &[
            "call",
            "faults",
            "sleep",
            r#"{"ms":20000}"#,
            "--timeout",
            "700ms",
        ],
    );
    assert!(
        common::stderr(&out).contains("deadline_exceeded"),
        "{out:?}"
    );
    a.wait_log(&[
        "connector=faults",
        "action=sleep",
        "outcome=deadline_exceeded",
    ]);
    let mut gives_up = b.cli();
    gives_up
        .args(["call", "faults", "sleep", r#"{"ms":30000}"#])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let gives_up = common::ChildGuard {
        child: gives_up.spawn().unwrap(),
    };
    std::thread::sleep(Duration::from_millis(1500));
    gives_up.signal("KILL");
    // A gives the call up as soon as B's caller is gone, not when the 30 s
    // are over.
    let line = a.wait_log(&["connector=faults", "action=sleep", "outcome=caller_gone"]);
    assert!(line.contains("instance=faults-a"), "{line}");

    // No token reached either log.
    for token in [&read, &write, &echo_only, &acme] {
        assert!(!a.log_text().contains(token.as_str()), "a token was logged");
    }

    // Tickets leaves B: B stops serving it on NATS, and A says so.
    tickets.signal("TERM");
    assert!(tickets.wait_for(Duration::from_secs(15)).is_some());
    let started = Instant::now();
    let out = loop {
        let out = hub_call(&a, Some(&read), &["call", "tickets", "list"]);
        if !out.status.success() || started.elapsed() > Duration::from_secs(20) {
            break out;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    // Unavailable while A still holds its manifest (a few seconds), not
    // found after.
    assert!(matches!(out.status.code(), Some(1 | 3)), "{out:?}");
    let err = common::stderr(&out);
    assert!(
        err.contains("error[unavailable]: no instance answers on spoke.default.tickets.list")
            || err.contains("nor does one serve tenant `default` on NATS"),
        "{err}"
    );
}

#[test]
fn spoke_sync_over_nats_writes_the_events_and_says_how_the_run_ended() {
    let server = NatsServer::start();
    let every = ("SPOKE_NATS_STATUS_EVERY", "1s");
    let _fast = Served::start("accounts", &server.url, "acc-1", &[every]);
    let _slow = Served::start(
        "accounts",
        &server.url,
        "acc-slow",
        &[
            every,
            ("SPOKE_TENANT", "slow"),
            ("ACCOUNTS_PAGE_DELAY", "300ms"),
        ],
    );
    let dir = tempfile::tempdir().unwrap();
    let sync = |args: &[&str]| {
        let mut cmd = std::process::Command::new(common::spoke_bin());
        cmd.env_remove("SPOKE_HUB_URL")
            .args(["sync", "--nats", &server.url])
            .args(args);
        cmd
    };
    // The connector's one sync, to a file: every account once.
    let out_file = dir.path().join("events.jsonl");
    let out = common::run_with_limit(
        sync(&["accounts", "--out", out_file.to_str().unwrap()]).stdin(std::process::Stdio::null()),
        Duration::from_secs(60),
    );
    let err = common::stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("sync `ledger` of `accounts` on instance acc-1, full"),
        "{err}"
    );
    assert!(err.contains("completed: 100 events"), "{err}");
    let lines = std::fs::read_to_string(&out_file).unwrap();
    let ids: Vec<String> = lines
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).expect("a JSON line")["id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(ids.len(), 100);
    assert!(ids.contains(&"account-0".to_owned()) && ids.contains(&"account-99".to_owned()));
    // The next run starts from the completed checkpoint: nothing new.
    let out = common::run_with_limit(
        sync(&["accounts", "ledger"]).stdin(std::process::Stdio::null()),
        Duration::from_secs(60),
    );
    assert_eq!(out.status.code(), Some(0), "{}", common::stderr(&out));
    assert!(
        common::stderr(&out).contains("completed: 0 events"),
        "{}",
        common::stderr(&out)
    );
    assert!(common::stdout(&out).is_empty());
    // What needs a hub says so.
    for args in [
        &["accounts", "--display-name", "x"][..],
        &["accounts", "--fresh"],
        &["--cancel", "run-1"],
    ] {
        let out = common::run_with_limit(
            sync(args).stdin(std::process::Stdio::null()),
            Duration::from_secs(30),
        );
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
        assert!(common::stderr(&out).contains("need"), "{out:?}");
    }
    let out = common::run_with_limit(
        sync(&["nobody"]).stdin(std::process::Stdio::null()),
        Duration::from_secs(30),
    );
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    // Ctrl-C cancels the run and waits for its end.
    let log = dir.path().join("slow.log");
    let mut slow = sync(&["--tenant", "slow", "accounts"]);
    slow.stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    let mut slow = common::ChildGuard {
        child: slow.spawn().unwrap(),
    };
    let started = Instant::now();
    while !std::fs::read_to_string(&log)
        .unwrap()
        .contains("on instance acc-slow")
    {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the run did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    slow.signal("INT");
    let status = slow.wait_for(Duration::from_secs(20)).expect("it ends");
    let err = std::fs::read_to_string(&log).unwrap();
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(err.contains("cancelling run run-"), "{err}");
    assert!(err.contains(" cancelled: "), "{err}");
}
