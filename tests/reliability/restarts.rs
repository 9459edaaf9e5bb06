//! Restarts of an instance (issue 14, item 5): a restarted process with
//! the same id and key takes the place of a session whose stream is
//! half-open at once, and reads in flight on a lone instance that is
//! killed run on its restart.

use std::time::{Duration, Instant};

use crate::common::Hub;
use crate::common::proxy::Proxy;
use crate::storms::quiet_connector;
use crate::tally::{Answer, Tally, call, client};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_takes_over_a_half_open_session_at_once() {
    let hub = Hub::start(&[]);
    let proxy = Proxy::start(hub.authority());
    // The first process reaches the hub through the proxy...
    let _first = crate::faults::through(&proxy, "f1");
    hub.wait_for_instances("faults", 1, Duration::from_secs(20));
    // ...which goes silent: the hub's end of its stream is half-open.
    proxy.black_hole();

    let restarted = Instant::now();
    let _second = quiet_connector(&hub, "faults", "f1");
    let client = client(&hub.url).await;
    let mut refused = 0;
    loop {
        let (answer, _) = call(
            &client,
            "faults",
            "add",
            r#"{"a":2,"b":2}"#,
            Some(Duration::from_secs(2)),
            Duration::from_secs(5),
        )
        .await;
        if answer == Answer::Ok("4".into()) {
            break;
        }
        refused += 1;
        assert!(
            restarted.elapsed() < Duration::from_secs(5),
            "the restart did not serve within 5 s: {answer:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let took = restarted.elapsed();
    eprintln!(
        "figures: half-open restart: serving {took:?} after the restart began, {refused} calls answered otherwise meanwhile"
    );
    assert!(
        hub.log_text()
            .contains("registers again, proving the key of its session"),
        "{}",
        hub.log_text()
    );
    assert!(
        !hub.log_text().contains("is already attached"),
        "the restart was refused: {}",
        hub.log_text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_in_flight_on_a_killed_lone_instance_run_on_its_restart() {
    let hub = Hub::start(&[]);
    let f1 = quiet_connector(&hub, "faults", "f1");
    hub.wait_for_instances("faults", 1, Duration::from_secs(20));
    let client = client(&hub.url).await;
    let deadline = Duration::from_secs(15);
    let calls: Vec<_> = (0..20)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move {
                call(
                    &client,
                    "faults",
                    "sleep",
                    r#"{"ms": 1500}"#,
                    Some(deadline),
                    Duration::from_secs(30),
                )
                .await
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    f1.signal("KILL");
    let restarted = Instant::now();
    let _f1_again = quiet_connector(&hub, "faults", "f1");
    let mut tally = Tally::default();
    for task in calls {
        let (answer, elapsed) = task.await.unwrap();
        tally.record(&answer, elapsed, Some(deadline));
    }
    eprintln!(
        "figures: lone instance killed mid-read and restarted: answered {:?} after the restart",
        restarted.elapsed()
    );
    tally.check("reads across a kill and restart");
    assert_eq!(
        tally.count("ok"),
        20,
        "every read ran again on the restarted process"
    );
}
