//! The `spoke` CLI's output contract and exit codes, against a real hub and
//! fake connectors.

use std::sync::Arc;

use serde_json::{Value, json};

use crate::support::*;

/// A hub with `echo` instances: `a` (tags all, eu) echoes, fails `put` with
/// details, and hangs on `slow`; `b` (tag all) fails everything.
async fn setup() -> (Hub, Vec<Served>) {
    let hub = Hub::start(&[]);
    let a: Behavior = Arc::new(|invoke| match invoke.action.as_str() {
        "put" => Reply::Err {
            code: "not_found",
            message: "no issue #42".into(),
            details: Some(json!({"id": 42})),
        },
        "slow" => Reply::Hang,
        _ => Reply::Ok(Value::Null),
    });
    let b: Behavior = Arc::new(|_| Reply::Err {
        code: "unavailable",
        message: "down".into(),
        details: None,
    });
    let served = vec![
        Fake::attach(
            &hub.url,
            &Spec::echo("a").name("Alpha").tags(&["all", "eu"]),
        )
        .await
        .serve("a", a),
        Fake::attach(&hub.url, &Spec::echo("b").name("Beta").tags(&["all"]))
            .await
            .serve("b", b),
    ];
    (hub, served)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_prints_output_errors_and_exit_codes() {
    let (hub, _served) = setup().await;
    let url = hub.url.as_str();

    // Success: pretty JSON on stdout, exit 0.
    let (code, out, err) = cli(
        &[
            "call",
            "echo",
            "get",
            r#"{"q": "x"}"#,
            "--instance",
            "a",
            "--hub",
            url,
        ],
        None,
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let expected = json!({"instance": "a", "action": "get", "input": {"q": "x"}});
    assert_eq!(
        out,
        format!("{}\n", serde_json::to_string_pretty(&expected).unwrap())
    );

    // Input from stdin, routed by display name.
    let (code, out, err) = cli(
        &["call", "echo", "get", "-", "--name", "Alpha", "--hub", url],
        Some("[1, 2]"),
    )
    .await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap()["input"],
        json!([1, 2])
    );

    // The hub URL from the environment is not needed when --hub is given;
    // an action error: stderr error[code] and details, exit 1.
    let (code, out, err) = cli(
        &["call", "echo", "put", "--instance", "a", "--hub", url],
        None,
    )
    .await;
    assert_eq!(code, 1);
    assert_eq!(out, "");
    assert_eq!(
        err,
        "error[not_found]: no issue #42\ndetails: {\"id\":42}\n"
    );

    // A search operator: the value is wrapped as {"value": ...}.
    let (code, out, err) = cli(
        &[
            "call",
            "echo",
            "ext",
            "rs",
            "--operator",
            "--instance",
            "a",
            "--hub",
            url,
        ],
        None,
    )
    .await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap()["input"],
        json!({"value": "rs"})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_broadcasts_print_one_entry_per_instance() {
    let (hub, _served) = setup().await;
    let url = hub.url.as_str();
    let (code, out, _) = cli(&["call", "echo", "get", "--tag", "all", "--hub", url], None).await;
    assert_eq!(code, 1, "an entry is an error");
    let entries: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        entries,
        json!([
            {"instance": "a", "output": {"instance": "a", "action": "get", "input": {}}},
            {"instance": "b", "error": {"code": "unavailable", "message": "down", "details": null}},
        ])
    );
    let (code, out, _) = cli(&["call", "echo", "get", "--tag", "eu", "--hub", url], None).await;
    assert_eq!(code, 0);
    let entries: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(entries.as_array().unwrap().len(), 1);
    assert_eq!(entries[0]["instance"], "a");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_reports_hub_and_usage_errors() {
    let (hub, served) = setup().await;
    let url = hub.url.as_str();

    let (code, _, err) = cli(&["call", "nope", "get", "--hub", url], None).await;
    assert_eq!(code, 3);
    assert!(
        err.starts_with("error[not_found]: no connector named `nope`"),
        "{err}"
    );
    assert!(err.contains("connectors: echo"), "{err}");

    let (code, _, err) = cli(
        &["call", "echo", "get", "--instance", "zz", "--hub", url],
        None,
    )
    .await;
    assert_eq!(code, 3);
    assert!(
        err.starts_with("error[not_found]:") && err.contains("its instances: a, b"),
        "{err}"
    );

    let started = std::time::Instant::now();
    let (code, _, err) = cli(
        &[
            "call",
            "echo",
            "slow",
            "--instance",
            "a",
            "--timeout",
            "300ms",
            "--hub",
            url,
        ],
        None,
    )
    .await;
    assert_eq!(code, 3, "{err}");
    assert!(err.starts_with("error[deadline_exceeded]:"), "{err}");
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    let ids = served[0].log.invoke_ids();
    let slow = ids.last().unwrap().clone();
    served[0]
        .log
        .wait_until("the Cancel", |log| log.cancelled(&slow))
        .await;

    let (code, _, err) = cli(&["call", "echo", "get", "{not json", "--hub", url], None).await;
    assert_eq!(code, 2);
    assert!(
        err.starts_with("error: the input is not valid JSON"),
        "{err}"
    );

    let (code, _, _) = cli(
        &[
            "call",
            "echo",
            "get",
            "--tag",
            "x",
            "--instance",
            "a",
            "--hub",
            url,
        ],
        None,
    )
    .await;
    assert_eq!(code, 2, "route flags exclude each other");

    let (code, _, _) = cli(
        &["call", "echo", "get", "--timeout", "soon", "--hub", url],
        None,
    )
    .await;
    assert_eq!(code, 2);

    let (code, _, err) = cli(
        &["call", "echo", "get", "--hub", "http://127.0.0.1:1"],
        None,
    )
    .await;
    assert_eq!(code, 3);
    assert!(
        err.starts_with("error[unavailable]: cannot connect to the hub"),
        "{err}"
    );

    let (code, _, err) = cli(&["ls", "--hub", "not a url"], None).await;
    assert_eq!(code, 2, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ls_and_describe_print_tables_and_json() {
    let (hub, _served) = setup().await;
    let url = hub.url.as_str();

    let (code, out, err) = cli(&["ls", "--table", "--hub", url], None).await;
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(
        header,
        [
            "CONNECTOR",
            "VERSION",
            "INSTANCE",
            "NAME",
            "TAGS",
            "STATE",
            "IN-FLIGHT"
        ]
    );
    let row: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(row, ["echo", "1.0.0", "a", "Alpha", "all,eu", "ready", "0"]);

    // JSON is the default; `--json` says so explicitly.
    let (code, default_out, _) = cli(&["ls", "--hub", url], None).await;
    assert_eq!(code, 0);
    let (code, out, _) = cli(&["ls", "--json", "--hub", url], None).await;
    assert_eq!(code, 0);
    assert_eq!(default_out, out);
    let list: Value = serde_json::from_str(&out).unwrap();
    let echo = &list["connectors"][0];
    assert_eq!(echo["name"], "echo");
    assert_eq!(echo["version"], "1.0.0");
    assert_eq!(echo["instances"][1]["id"], "b");
    assert_eq!(echo["instances"][1]["display_name"], "Beta");
    assert_eq!(echo["instances"][1]["tags"], json!(["all"]));
    assert_eq!(echo["instances"][1]["state"], "ready");
    assert_eq!(echo["instances"][1]["in_flight"], 0);
    assert_eq!(echo["instances"][1]["tenant"], "acme");

    let (code, out, _) = cli(&["describe", "echo", "--hub", url], None).await;
    assert_eq!(code, 0);
    let manifest: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        manifest,
        serde_json::from_str::<Value>(&echo_manifest()).unwrap()
    );
    assert!(out.contains("\n  \"actions\": ["), "pretty-printed: {out}");

    let (code, _, err) = cli(&["describe", "nope", "--hub", url], None).await;
    assert_eq!(code, 3);
    assert!(err.starts_with("error[not_found]:"), "{err}");
}
