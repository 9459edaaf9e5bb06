//! `spoke::testing::Conformance` over real connector binaries: the same
//! calls through the in-process CLI, the stdio sidecar, Omni's HTTP, MCP,
//! a real hub on loopback and a real nats-server give the same
//! outputs and error codes, and a transport that answers differently fails
//! the run naming the call.

mod common;

use serde_json::json;
use spoke::testing::{Answer, Case, Conformance, Leg};

#[test]
fn tickets_answers_the_same_through_every_transport() {
    let nats = common::nats::NatsServer::start();
    let report = Conformance::new(common::example_bin("tickets"))
        .env("TICKETS_PATH", ":memory:")
        .call("create", json!({"title": "Printer on fire"}))
        .call("get", json!({"id": 99}))
        .call("create", json!({"title": 7}))
        .call("lsit", json!({}))
        .call("link", json!({"id": 1}))
        .resolve("title", "printer")
        .hub(common::spoke_bin())
        .nats(&nats.url)
        .run()
        .unwrap();
    assert_eq!(
        report.transports,
        ["in-process", "stdio", "http", "mcp", "hub", "nats"]
    );
    let answers: Vec<&Answer> = report.answers.iter().map(|(_, a)| a).collect();
    assert_eq!(
        answers,
        [
            &Answer::Output(json!({"id": 1, "title": "Printer on fire", "status": "open"})),
            &Answer::Error("not_found".into()),
            &Answer::Error("invalid_input".into()),
            &Answer::Error("not_found".into()),
            &Answer::Error("failed_precondition".into()),
            &Answer::Output(json!([])),
        ]
    );
}

/// A leg that answers every call with the same output: it disagrees with
/// the real transports on purpose.
struct Stale;

impl Leg for Stale {
    fn name(&self) -> &'static str {
        "stale-cache"
    }
    fn answer(&self, _: &Conformance, _: &Case) -> Result<Answer, String> {
        Ok(Answer::Output(json!("cached")))
    }
}

#[test]
fn a_transport_that_answers_differently_fails_the_run() {
    let err = Conformance::new(common::example_bin("tickets"))
        .call("get", json!({"id": 5}))
        .leg(Stale)
        .run()
        .unwrap_err();
    assert!(
        err.contains("`call get {\"id\":5}` answered differently"),
        "{err}"
    );
    assert!(err.contains("stdio: Error(\"not_found\")"), "{err}");
    assert!(
        err.contains("stale-cache: Output(String(\"cached\"))"),
        "{err}"
    );
}
