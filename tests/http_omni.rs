//! `<example> http`: Spoke connectors as Omni connectors, driven through a
//! connector-manager that answers as Omni's does (tests/common/omni.rs),
//! over loopback, with the connectors as real processes.

mod common;

use std::time::Duration;

use common::omni::{Connector, Fault, Manager, schema_problem};
use serde_json::{Value, json};

/// A directory of `n` text files `f000.txt`...
fn tree(n: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for i in 0..n {
        std::fs::write(dir.path().join(format!("f{i:03}.txt")), format!("file {i}")).unwrap();
    }
    dir
}

fn files_source(manager: &Manager, id: &str, dir: &tempfile::TempDir) {
    manager.add_source(
        id,
        "file_system",
        json!({"root": dir.path(), "read_only": false}),
        None,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn it_registers_at_once_and_again_with_a_manifest_the_manager_accepts() {
    let manager = Manager::start().await;
    let connector = Connector::start(
        "files",
        Some(&manager),
        &[("SPOKE_HTTP_REGISTER_EVERY", "300ms")],
    )
    .await;
    manager
        .wait(Duration::from_secs(10), "two registrations", |m| {
            m.registrations().len() >= 2
        })
        .await;
    let registered = manager.registrations()[0].clone();
    assert_eq!(registered["connector_id"], "files");
    assert_eq!(registered["connector_url"], connector.url.as_str());
    assert_eq!(registered["sync_modes"], json!(["full", "incremental"]));
    assert_eq!(registered["source_types"], json!(["file_system"]));
    assert_eq!(registered["read_only"], false);
    // The document field types the `files` sync declares.
    assert_eq!(
        registered["attributes_schema"]["properties"]["modified"]["format"],
        "date-time"
    );
    assert_eq!(
        registered["extra_schema"]["properties"]["directory"]["type"],
        "string"
    );
    for action in registered["actions"].as_array().unwrap() {
        assert_eq!(action["source_types"], json!(["file_system"]), "{action}");
        assert!(["read", "write"].contains(&action["mode"].as_str().unwrap()));
    }
    let (status, manifest) = connector.get("/manifest").await;
    assert_eq!(status, 200);
    assert_eq!(manifest, registered);
    let (status, health) = connector.get("/health").await;
    assert_eq!(
        (status, health),
        (
            200,
            json!({"status": "healthy", "service": "files-connector"})
        )
    );
    assert_eq!(
        connector
            .log()
            .matches("registered with the connector-manager")
            .count(),
        1,
        "an unchanged outcome is logged once"
    );
}

#[test]
fn every_examples_action_schemas_pass_the_managers_rules() {
    for example in ["echo", "echo_channel", "files", "faults", "tickets"] {
        let out = common::run(common::example(example).arg("describe"));
        assert!(out.status.success(), "{example}: {}", common::stderr(&out));
        let described = common::stdout_json(&out);
        let manifest = described.get("manifest").unwrap_or(&described);
        let actions = manifest["actions"].as_array().expect("actions");
        assert!(!actions.is_empty(), "{example}");
        for action in actions {
            let at = format!("{example}.{} input_schema", action["name"]);
            assert_eq!(schema_problem(&at, &action["input_schema"]), None);
        }
    }
    // The check itself refuses what the manager refuses.
    let bad = json!({"type": "object", "properties": {"not": {"type": "string"}}});
    assert_eq!(
        schema_problem("c.a input_schema", &bad).as_deref(),
        Some("c.a input_schema.properties.not is not supported")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_sync_then_an_incremental_one_from_the_stored_checkpoint() {
    let dir = tree(120);
    let manager = Manager::start().await;
    files_source(&manager, "s1", &dir);
    let connector = Connector::start("files", Some(&manager), &[]).await;

    let (status, body) = connector.sync(&manager, "r1", "s1", "full").await;
    assert_eq!((status, body), (200, json!({"status": "started"})));
    connector.wait_done("r1", Duration::from_secs(30)).await;
    let run = manager.run("r1");
    assert_eq!(run.status, "completed", "{run:?}");
    let events = manager.events("r1");
    assert_eq!(events.len(), 120);
    assert!(events.iter().all(|e| e["type"] == "document_created"));
    let first = &events[0];
    assert_eq!(first["document_id"], "f000.txt");
    assert_eq!(first["metadata"]["size"], "6");
    // What the search operators filter on, in the declared shape.
    assert_eq!(first["attributes"]["extension"], "txt");
    assert!(
        first["attributes"]["modified"]
            .as_str()
            .is_some_and(|m| m.ends_with('Z')),
        "{first}"
    );
    assert_eq!(first["metadata"]["extra"]["directory"], ".");
    assert_eq!(
        first["permissions"],
        json!({"public": true, "users": [], "groups": []})
    );
    assert_eq!(
        manager.content(first["content_id"].as_str().unwrap()),
        "file 0"
    );
    // A checkpoint after every page of 50, each after the batch before it.
    let calls = manager.calls();
    let order: Vec<&str> = calls
        .iter()
        .filter_map(|c| {
            if c.route == "POST /sdk/events/batch" {
                Some("batch")
            } else if c.route.ends_with("/checkpoint") {
                Some("checkpoint")
            } else if c.route.ends_with("/complete") {
                Some("complete")
            } else {
                None
            }
        })
        .collect();
    assert_eq!(
        order,
        [
            "batch",
            "checkpoint",
            "batch",
            "checkpoint",
            "batch",
            "checkpoint",
            "checkpoint",
            "complete"
        ]
    );
    let scanned: i64 = manager
        .calls_to("POST /sdk/sync/r1/scanned")
        .iter()
        .map(|c| c.body["count"].as_i64().unwrap())
        .sum();
    assert_eq!(scanned, 120);
    // Completing promoted the run's last checkpoint to the source.
    let stored = manager.source("s1")["checkpoint"].clone();
    assert_eq!(stored["version"], 1, "{stored}");
    assert!(
        stored["checkpoint"]["modified_after"].is_string(),
        "{stored}"
    );

    // One file changes, one is new: the incremental run sends those two.
    std::thread::sleep(Duration::from_millis(1100));
    std::fs::write(dir.path().join("f007.txt"), "changed").unwrap();
    std::fs::write(dir.path().join("new.txt"), "new").unwrap();
    let (status, _) = connector.sync(&manager, "r2", "s1", "incremental").await;
    assert_eq!(status, 200);
    connector.wait_done("r2", Duration::from_secs(30)).await;
    assert_eq!(manager.run("r2").status, "completed");
    let mut ids: Vec<String> = manager
        .events("r2")
        .iter()
        .map(|e| {
            assert_eq!(e["type"], "document_updated", "{e}");
            e["document_id"].as_str().unwrap().to_owned()
        })
        .collect();
    ids.sort();
    assert_eq!(ids, ["f007.txt", "new.txt"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_that_stores_no_checkpoint_keeps_the_sources_on_complete() {
    let manager = Manager::start().await;
    manager.add_source("s1", "trickle", json!({}), None);
    let connector = Connector::start("faults", Some(&manager), &[]).await;
    let (status, _) = connector.sync(&manager, "r1", "s1", "full").await;
    assert_eq!(status, 200);
    connector.wait_done("r1", Duration::from_secs(30)).await;
    assert_eq!(manager.run("r1").status, "completed");
    assert_eq!(manager.events("r1").len(), 2);
    // No checkpoint before complete: the source keeps none (it had none).
    assert_eq!(manager.source("s1")["checkpoint"], Value::Null);

    // With a checkpoint on the source, it survives a run that stores none.
    let manager = Manager::start().await;
    manager.add_source("s2", "trickle", json!({}), None);
    let connector = Connector::start("faults", Some(&manager), &[]).await;
    manager.new_run("r2", "s2");
    let (status, body) = connector
        .post(
            "/sync",
            json!({"sync_run_id": "r2", "source_id": "s2", "sync_mode": "full",
                "checkpoint": {"version": 1, "checkpoint": null}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    connector.wait_done("r2", Duration::from_secs(30)).await;
    assert_eq!(manager.run("r2").status, "completed");
    assert_eq!(
        manager.run("r2").checkpoint,
        json!({"version": 1, "checkpoint": null}),
        "the starting checkpoint is stored before complete"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_frees_the_slot_even_for_a_sync_that_ignores_it() {
    let manager = Manager::start().await;
    manager.add_source("s1", "stuck", json!({}), None);
    let connector = Connector::start(
        "faults",
        Some(&manager),
        &[("SPOKE_HTTP_HEARTBEAT", "100ms")],
    )
    .await;
    let (status, _) = connector.sync(&manager, "r1", "s1", "full").await;
    assert_eq!(status, 200);
    manager
        .wait(Duration::from_secs(10), "three documents", |m| {
            m.events("r1").len() == 3
        })
        .await;
    // A live run heartbeats while it waits.
    manager
        .wait(Duration::from_secs(10), "heartbeats", |m| {
            m.calls_to("POST /sdk/sync/r1/heartbeat").len() >= 2
        })
        .await;
    // The same run again (the manager's retry) is started, another is busy.
    let again = json!({"sync_run_id": "r1", "source_id": "s1", "sync_mode": "full"});
    assert_eq!(
        connector.post("/sync", again).await,
        (200, json!({"status": "started"}))
    );
    let (status, body) = connector.sync(&manager, "r2", "s1", "full").await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(
        body["message"],
        "scheduled sync already in progress for this source"
    );
    assert_eq!(
        connector.get("/sync/r1").await,
        (200, json!({"running": true}))
    );

    let (status, body) = connector
        .post("/cancel", json!({"sync_run_id": "r1"}))
        .await;
    assert_eq!((status, body), (200, json!({"status": "cancelled"})));
    manager.mark("r1", "cancelled");
    // The sync sleeps for an hour: its slot is free after the 2 s grace.
    connector.wait_done("r1", Duration::from_secs(5)).await;
    let (status, body) = connector.sync(&manager, "r3", "s1", "full").await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = connector
        .post("/cancel", json!({"sync_run_id": "nope"}))
        .await;
    assert_eq!((status, body), (404, json!({"status": "not_found"})));
    // Nothing is reported for a cancelled run.
    assert!(manager.calls_to("POST /sdk/sync/r1/complete").is_empty());
    assert!(manager.calls_to("POST /sdk/sync/r1/fail").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_sync_is_reported_failed_and_the_connector_goes_on() {
    let manager = Manager::start().await;
    manager.add_source("s1", "panicky", json!({}), None);
    let connector = Connector::start("faults", Some(&manager), &[]).await;
    let (status, _) = connector.sync(&manager, "r1", "s1", "full").await;
    assert_eq!(status, 200);
    connector.wait_done("r1", Duration::from_secs(10)).await;
    let run = manager.run("r1");
    assert_eq!(run.status, "failed");
    assert!(
        run.error
            .as_deref()
            .unwrap()
            .contains("the sync fell over after document 0"),
        "{run:?}"
    );
    let (status, body) = connector
        .post(
            "/action",
            json!({"action": "add", "params": {"a": 1, "b": 2}}),
        )
        .await;
    assert_eq!(
        (status, body),
        (200, json!({"status": "success", "result": 3}))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manager_that_fails_then_recovers_loses_no_event_and_takes_no_batch_twice() {
    let dir = tree(120);
    let manager = Manager::start().await;
    files_source(&manager, "s1", &dir);
    manager.fail_next(
        "POST /sdk/events/batch",
        &[Fault::Status(500), Fault::Busy(1), Fault::Status(503)],
    );
    manager.fail_next("POST /sdk/content", &[Fault::Status(502)]);
    manager.fail_next("PUT /sdk/sync/{id}/checkpoint", &[Fault::Status(500)]);
    manager.fail_next(
        "POST /sdk/sync/{id}/complete",
        &[Fault::Status(500), Fault::Busy(1)],
    );
    let connector = Connector::start("files", Some(&manager), &[]).await;
    let (status, _) = connector.sync(&manager, "r1", "s1", "full").await;
    assert_eq!(status, 200);
    connector.wait_done("r1", Duration::from_secs(60)).await;
    assert_eq!(manager.run("r1").status, "completed");
    let ids: Vec<String> = manager
        .events("r1")
        .iter()
        .map(|e| e["document_id"].as_str().unwrap().to_owned())
        .collect();
    let expected: Vec<String> = (0..120).map(|i| format!("f{i:03}.txt")).collect();
    assert_eq!(ids, expected, "every document once, in order");
    let refused = manager
        .calls_to("POST /sdk/events/batch")
        .iter()
        .filter(|c| c.status != 200)
        .count();
    assert_eq!(refused, 3);
    // The 429 was honoured: the retry came after its Retry-After.
    let batches = manager.calls_to("POST /sdk/events/batch");
    let busy = batches.iter().position(|c| c.status == 429).unwrap();
    assert!(batches[busy + 1].at - batches[busy].at >= Duration::from_millis(950));
    // Each text was stored once, but for the one refused.
    assert_eq!(
        manager
            .calls_to("POST /sdk/content")
            .iter()
            .filter(|c| c.status == 200)
            .count(),
        120
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actions_answer_success_or_an_error_with_its_status() {
    let connector = Connector::start("faults", None, &[]).await;
    let (status, body) = connector
        .post(
            "/action",
            json!({"action": "add", "params": {"a": 2, "b": 3}}),
        )
        .await;
    assert_eq!(
        (status, body),
        (200, json!({"status": "success", "result": 5}))
    );
    for (code, http) in [
        ("invalid_input", 400),
        ("unauthorized", 403),
        ("not_found", 404),
        ("failed_precondition", 409),
        ("unavailable", 503),
        ("internal", 500),
    ] {
        let (status, body) = connector
            .post(
                "/action",
                json!({"action": "fail", "params": {"code": code, "message": "no"}}),
            )
            .await;
        assert_eq!(status, http, "{code}: {body}");
        assert_eq!(body["status"], "error");
        assert_eq!(body["error"], format!("{code}: no"));
    }
    let (status, body) = connector.post("/action", json!({"action": "slow"})).await;
    assert_eq!(status, 504, "{body}");
    let (status, body) = connector
        .post(
            "/action",
            json!({"action": "panic", "params": {"message": "boom"}}),
        )
        .await;
    assert_eq!(status, 500, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .starts_with("panicked: boom"),
        "{body}"
    );
    let (status, body) = connector.post("/action", json!({"action": "nope"})).await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = connector
        .post("/action", json!({"action": "add", "params": {"a": "x"}}))
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains("$.a"), "{body}");
    // actor_email reaches the action's context.
    let (status, body) = connector
        .post(
            "/action",
            json!({"action": "whoami", "actor_email": "ana@example.com"}),
        )
        .await;
    assert_eq!(
        (status, body),
        (
            200,
            json!({"status": "success", "result": "ana@example.com"})
        )
    );
    // Bodies Omni's own routes would refuse are refused with the field.
    let (status, body) = connector.post("/action", json!({"params": {}})).await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("action"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_source_gets_its_own_instance_and_every_config_problem_at_once() {
    let good = tree(2);
    let manager = Manager::start().await;
    files_source(&manager, "good", &good);
    let connector = Connector::start("files", Some(&manager), &[]).await;
    let source = manager.source("good");
    // The manager merges the source's config into the params.
    let (status, body) = connector
        .post(
            "/action",
            json!({"action": "list", "params": {"dir": ".", "root": source["config"]["root"], "read_only": false},
                "source": source, "credentials": null}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["result"]["entries"].as_array().unwrap().len(),
        2,
        "{body}"
    );

    manager.add_source(
        "bad",
        "file_system",
        json!({"rot": "/x", "max_bytes": "lots"}),
        None,
    );
    let (status, body) = connector.sync(&manager, "r1", "bad", "full").await;
    assert_eq!(status, 400, "{body}");
    let message = body["message"].as_str().unwrap();
    for needle in [
        "source `bad`",
        "`rot`: unknown config key; did you mean `root`?",
        "`root`: required",
        "`max_bytes`",
    ] {
        assert!(message.contains(needle), "{needle}: {message}");
    }
    // An action that names no source uses the process's own config: none here.
    let (status, body) = connector
        .post("/action", json!({"action": "list", "params": {}}))
        .await;
    assert_eq!(status, 400, "{body}");
    let error = body["error"].as_str().unwrap();
    assert!(error.contains("names no source"), "{error}");
    assert!(
        error.contains("`root` (env FILES_ROOT): required"),
        "{error}"
    );
    // No sync without a known source.
    let (status, body) = connector.sync(&manager, "r2", "ghost", "full").await;
    assert_eq!(status, 404, "{body}");
    // A mode the sync does not have.
    let (status, body) = connector.sync(&manager, "r3", "good", "realtime").await;
    assert_eq!(status, 400, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bearer_token_guards_every_route_but_health_and_bodies_are_bounded() {
    let manager = Manager::start().await;
    let connector = Connector::start(
        "faults",
        Some(&manager),
        &[
            ("SPOKE_HTTP_TOKEN", "s3cret-token"),
            ("SPOKE_MANAGER_TOKEN", "m4nager-token"),
            ("SPOKE_HTTP_MAX_BODY", "1024"),
        ],
    )
    .await;
    let bare = reqwest::Client::new();
    let health = bare
        .get(format!("{}/health", connector.url))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    for (path, token) in [("/manifest", None), ("/manifest", Some("wrong"))] {
        let mut request = bare.get(format!("{}{path}", connector.url));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 401);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["status"], "error");
        assert!(!body.to_string().contains("s3cret"), "{body}");
    }
    let (status, _) = connector.get("/manifest").await;
    assert_eq!(status, 200);
    let (status, body) = connector
        .post(
            "/action",
            json!({"action": "whole", "params": {"pad": "x".repeat(2000)}}),
        )
        .await;
    assert_eq!(status, 413, "{body}");
    manager
        .wait(Duration::from_secs(10), "a registration", |m| {
            !m.registrations().is_empty()
        })
        .await;
    let call = &manager.calls_to("POST /sdk/register")[0];
    assert_eq!(call.authorization.as_deref(), Some("Bearer m4nager-token"));
    assert!(!connector.log().contains("s3cret-token"));
    assert!(!connector.log().contains("m4nager-token"));
}

#[test]
fn missing_variables_are_a_clear_start_up_error() {
    let out = common::run(
        common::example("echo")
            .args(["http"])
            .env("PORT", "0")
            .env("CONNECTOR_MANAGER_URL", "http://127.0.0.1:9"),
    );
    assert_eq!(out.status.code(), Some(2));
    let err = common::stderr(&out);
    assert!(err.contains("CONNECTOR_HOST_NAME: not set"), "{err}");
    let out = common::run(common::example("echo").args(["http"]));
    assert_eq!(out.status.code(), Some(2));
    assert!(common::stderr(&out).contains("PORT: not set"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_registration_is_logged_once_and_tried_again_until_it_is_taken() {
    let manager = Manager::start().await;
    manager.fail_next(
        "POST /sdk/register",
        &[Fault::Status(500), Fault::Status(503), Fault::Busy(0)],
    );
    let connector = Connector::start(
        "echo",
        Some(&manager),
        &[("SPOKE_HTTP_REGISTER_EVERY", "100ms")],
    )
    .await;
    manager
        .wait(Duration::from_secs(10), "a registration taken", |m| {
            !m.registrations().is_empty()
        })
        .await;
    assert!(manager.calls_to("POST /sdk/register").len() >= 4);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let log = connector.log();
    assert_eq!(
        log.matches("registering with the connector-manager failed")
            .count(),
        1,
        "{log}"
    );
    assert_eq!(
        log.matches("registered with the connector-manager").count(),
        1,
        "{log}"
    );
}
