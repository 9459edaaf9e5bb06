//! Storms: many calls at once whose deadlines pass, whose callers go away,
//! or whose actions panic.

use std::process::Stdio;
use std::time::Duration;

use crate::common::peer::{fd_count, h2_unary, rss_kib, wait_fds_at_most};
use crate::common::{ChildGuard, Hub, example};
use crate::tally::{Answer, Tally, assert_serves, call, client, run_calls};

/// Whether the full counts were asked for (`SPOKE_RELIABILITY_FULL=1`).
pub fn full() -> bool {
    std::env::var("SPOKE_RELIABILITY_FULL").is_ok_and(|v| v == "1")
}

/// An example connector attached to `hub` as instance `id`, its log
/// discarded (a storm's log is large and says nothing new).
pub fn quiet_connector(hub: &Hub, name: &str, id: &str) -> ChildGuard {
    let mut cmd = example(name);
    cmd.arg("serve")
        .env("SPOKE_HUB_URL", &hub.url)
        .env("SPOKE_INSTANCE_ID", id)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    ChildGuard {
        child: cmd.spawn().expect("start the connector"),
    }
}

/// Waits until the hub's log has `count` lines containing `text`.
pub fn wait_log_count(hub: &Hub, text: &str, count: usize, limit: Duration) -> usize {
    let started = std::time::Instant::now();
    loop {
        let seen = hub.log_text().matches(text).count();
        if seen >= count || started.elapsed() > limit {
            return seen;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A deadline storm's calls go over bare HTTP/2 connections: tonic's
/// channel would give up at its own copy of the deadline (`CANCELLED`,
/// "Timeout expired") and hide what the hub answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadline_storm_is_answered_deadline_exceeded_every_time() {
    use spoke_proto::prost::Message;
    let hub = Hub::start(&[]);
    let _f1 = quiet_connector(&hub, "faults", "f1");
    hub.wait_for_instances("faults", 1, Duration::from_secs(20));
    let count = if full() { 2000 } else { 300 };
    let deadline = |n: usize| Duration::from_millis(50 + (n % 8) as u64 * 40);
    let request = spoke_proto::v1::InvokeRequest {
        connector: "faults".into(),
        action: "sleep".into(),
        payload: br#"{"ms": 5000}"#.to_vec().into(),
        ..Default::default()
    }
    .encode_to_vec();
    let authority = hub.authority().to_owned();
    let answers = run_calls(count, 200, move |n| {
        let (authority, request) = (authority.clone(), request.clone());
        async move {
            let answered = tokio::time::timeout(
                Duration::from_secs(10),
                h2_unary(
                    &authority,
                    "/spoke.v1.Hub/Invoke",
                    &request,
                    Some(deadline(n)),
                ),
            )
            .await;
            let took = answered
                .as_ref()
                .map_or(Duration::from_secs(10), |a| a.took);
            let answer = match answered {
                Err(_) => Answer::Hang,
                Ok(answer) if answer.code != 0 => Answer::Status(tonic::Code::from(answer.code)),
                Ok(answer) => {
                    let response = spoke_proto::v1::InvokeResponse::decode(answer.body.as_slice())
                        .expect("an InvokeResponse");
                    match response.results.first().and_then(|r| r.outcome.clone()) {
                        Some(spoke_proto::v1::instance_result::Outcome::Error(e)) => {
                            Answer::ActionError(e.code)
                        }
                        _ => Answer::Ok(String::new()),
                    }
                }
            };
            (answer, took)
        }
    })
    .await;
    let tally = Tally::of(&answers, |n| Some(deadline(n)));
    tally.check("deadline storm");
    assert_eq!(
        tally.count("status:DeadlineExceeded"),
        count,
        "one outcome for a deadline: the gRPC status, never an OK carrying an error"
    );
    // Every action was stopped: the connector serves at once.
    assert_serves(&hub.url, 1, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancellation_storm_frees_every_call_at_the_connector() {
    let hub = Hub::start(&[]);
    let (_f1, connector_log) = hub.attach_logged(
        "faults",
        &[
            ("SPOKE_INSTANCE_ID", "f1"),
            ("RUST_LOG", "spoke_runtime=debug"),
        ],
    );
    hub.wait_for_instances("faults", 1, Duration::from_secs(20));
    let pid = hub.process.pid();
    let client = client(&hub.url).await;
    let baseline = fd_count(pid);
    let count = if full() { 2000 } else { 200 };
    // Each caller gives up after 50 to 300 ms: the hub sees the caller go
    // and cancels the call at the connector.
    let answers = {
        let client = client.clone();
        run_calls(count, 200, move |n| {
            let client = client.clone();
            async move {
                let give_up = Duration::from_millis(50 + (n % 6) as u64 * 50);
                call(
                    &client,
                    "faults",
                    "sleep",
                    r#"{"ms": 20000}"#,
                    None,
                    give_up,
                )
                .await
            }
        })
        .await
    };
    assert!(
        answers.iter().all(|(a, _)| *a == Answer::Hang),
        "every caller gave up first"
    );
    let gone = wait_log_count(&hub, "outcome=caller_gone", count, Duration::from_secs(20));
    // The running actions stop as soon as they see their cancel.
    std::thread::sleep(Duration::from_millis(500));
    let stopped = connector_log
        .lock()
        .unwrap()
        .matches("answered: sleep stopped after")
        .count();
    eprintln!(
        "figures: cancellation storm: {count} callers gave up; hub log caller_gone {gone}; actions stopped at the connector {stopped} (the others were still waiting for one of its 64 slots)"
    );
    assert_eq!(gone, count);
    assert!(
        stopped >= 64,
        "the 64 running actions saw their cancel: {stopped}"
    );
    // Nothing is left holding a slot: as many calls as the connector runs
    // at once (64, its default max_in_flight) all run at once; one still
    // held by a 20 s sleep would keep a call waiting past its 5 s deadline.
    let answers = {
        let client = client.clone();
        run_calls(64, 64, move |_| {
            let client = client.clone();
            async move {
                call(
                    &client,
                    "faults",
                    "sleep",
                    r#"{"ms": 10}"#,
                    Some(Duration::from_secs(5)),
                    Duration::from_secs(10),
                )
                .await
            }
        })
        .await
    };
    let tally = Tally::of(&answers, |_| Some(Duration::from_secs(5)));
    tally.check("after the cancellation storm");
    assert_eq!(tally.count("ok"), 64);
    drop(client);
    let after = wait_fds_at_most(pid, baseline, Duration::from_secs(5));
    assert!(after <= baseline, "hub fds {after}, {baseline} before");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_storm_leaves_the_connector_flat() {
    // A connector keeps each result until the hub acknowledges it, at the
    // next heartbeat: a 1 s heartbeat keeps that backlog small, so what is
    // measured is what the calls leave behind.
    let hub = Hub::start_quiet(&["--heartbeat-interval", "1s"]);
    let f1 = quiet_connector(&hub, "faults", "f1");
    hub.wait_for_instances("faults", 1, Duration::from_secs(20));
    let client = client(&hub.url).await;
    // RSS is compared from the 10,000th call on: the first thousands
    // warm the allocator and the outbox of 10,000 unacknowledged results.
    let warm = 10_000;
    let count = if full() { 100_000 } else { 20_000 };
    let started = std::time::Instant::now();
    let mut tally = Tally::default();
    let mut rss_at_warm = 0;
    let rounds = count / 2_000;
    for round in 0..rounds {
        let answers = {
            let client = client.clone();
            run_calls(2_000, 32, move |_| {
                let client = client.clone();
                async move {
                    call(
                        &client,
                        "faults",
                        "panic",
                        r#"{"message":"storm"}"#,
                        None,
                        Duration::from_secs(30),
                    )
                    .await
                }
            })
            .await
        };
        for (answer, elapsed) in &answers {
            tally.record(answer, *elapsed, None);
        }
        if (round + 1) * 2_000 == warm {
            rss_at_warm = rss_kib(f1.pid());
        }
    }
    let rss_at_end = rss_kib(f1.pid());
    tally.check("panic storm");
    eprintln!(
        "figures: panic storm: {count} panicking calls in {:?}; connector RSS {rss_at_warm} KiB after {warm}, {rss_at_end} KiB after {count}",
        started.elapsed()
    );
    assert_eq!(tally.count("error:panicked"), count);
    assert!(
        rss_at_end <= rss_at_warm + rss_at_warm / 10,
        "connector RSS grew from {rss_at_warm} KiB to {rss_at_end} KiB"
    );
}
