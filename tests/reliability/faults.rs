//! Faults under load: a slow link, a connection cut shorter than the
//! resume window, a connector SIGKILLed among two, the hub SIGKILLed and
//! restarted.

use std::time::{Duration, Instant};

use spoke_proto::v1::hub_client::HubClient;
use tonic::transport::Channel;

use crate::common::Hub;
use crate::common::proxy::Proxy;
use crate::storms::{full, quiet_connector};
use crate::tally::{Answer, Tally, assert_serves, call, client, run_calls};

/// `count` calls of `sleep` for `ms` through `url`, 32 at once, each with
/// a 20 s deadline.
async fn load(url: &str, count: usize, ms: u64) -> Vec<(Answer, Duration)> {
    let client = client(url).await;
    run_calls(count, 32, move |_| {
        let client = client.clone();
        async move {
            call(
                &client,
                "faults",
                "sleep",
                &format!(r#"{{"ms": {ms}}}"#),
                Some(Duration::from_secs(20)),
                Duration::from_secs(40),
            )
            .await
        }
    })
    .await
}

fn tally(answers: &[(Answer, Duration)]) -> Tally {
    Tally::of(answers, |_| Some(Duration::from_secs(20)))
}

/// The connector's link holds every chunk 100 ms each way; calls with
/// deadlines both longer and shorter than what that costs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_link_answers_every_call_once_within_its_deadline() {
    let hub = Hub::start(&[]);
    let proxy = Proxy::start(hub.authority());
    let _connector = through(&proxy, "f1");
    hub.wait_for_instances("faults", 1, Duration::from_secs(20));
    proxy.delay(Duration::from_millis(100));
    let count = if full() { 1000 } else { 200 };
    let deadline = |n: usize| Duration::from_millis(if n.is_multiple_of(2) { 100 } else { 3000 });
    let client = client(&hub.url).await;
    let answers = run_calls(count, 32, move |n| {
        let client = client.clone();
        async move {
            call(
                &client,
                "faults",
                "add",
                r#"{"a":1,"b":1}"#,
                Some(deadline(n)),
                Duration::from_secs(20),
            )
            .await
        }
    })
    .await;
    let tally = Tally::of(&answers, |n| Some(deadline(n)));
    tally.check("a link delayed 100 ms each way");
    let fast = tally.count("status:DeadlineExceeded") + tally.count("status:Cancelled");
    assert_eq!(
        tally.count("ok") + fast,
        count,
        "each answered with its result or its deadline"
    );
    assert!(
        tally.count("ok") >= count / 2,
        "the calls with 3 s to spare get their result"
    );
}

/// A `faults` instance `id` reaching the hub through `proxy`.
pub fn through(proxy: &Proxy, id: &str) -> crate::common::ChildGuard {
    let mut connector = crate::common::example("faults");
    connector
        .arg("serve")
        .env("SPOKE_HUB_URL", &proxy.url)
        .env("SPOKE_INSTANCE_ID", id)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    crate::common::ChildGuard {
        child: connector.spawn().expect("start the connector"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_shorter_than_the_resume_window_loses_no_call() {
    let hub = Hub::start_quiet(&["--heartbeat-interval", "1s", "--resume-window", "3s"]);
    let proxy = Proxy::start(hub.authority());
    let _connector = through(&proxy, "f1");
    hub.wait_for_instances("faults", 1, Duration::from_secs(20));
    let count = if full() { 2000 } else { 300 };
    let url = hub.url.clone();
    let load = tokio::spawn(async move { load(&url, count, 100).await });
    tokio::time::sleep(Duration::from_millis(400)).await;
    proxy.cut();
    tokio::time::sleep(Duration::from_millis(300)).await;
    proxy.open();
    let answers = load.await.unwrap();
    let tally = tally(&answers);
    tally.check("a 300 ms cut under load");
    assert_eq!(
        tally.count("ok"),
        count,
        "every call answered once, with its result: {tally:?}"
    );
}

/// A call made while the lone instance's link is down waits for it to
/// resume instead of failing at once; when the instance never comes back,
/// the call ends at its deadline or when the session expires, whichever
/// comes first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_made_during_a_cut_waits_for_the_instance_to_resume() {
    let hub = Hub::start(&["--heartbeat-interval", "1s", "--resume-window", "3s"]);
    let proxy = Proxy::start(hub.authority());
    let connector = through(&proxy, "f1");
    hub.wait_for_instances("faults", 1, Duration::from_secs(20));
    let client = client(&hub.url).await;
    let add = |client: HubClient<Channel>, deadline: u64| async move {
        call(
            &client,
            "faults",
            "add",
            r#"{"a":1,"b":2}"#,
            Some(Duration::from_secs(deadline)),
            Duration::from_secs(30),
        )
        .await
    };

    proxy.cut();
    hub.logged(&["f1", "stream lost"]).await;
    let during = tokio::spawn(add(client.clone(), 10));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!during.is_finished(), "the call waits for the instance");
    proxy.open();
    let (answer, _) = during.await.unwrap();
    assert_eq!(answer, Answer::Ok("3".into()), "answered once it resumed");
    hub.logged(&["f1", "resumed"]).await;

    // Now it never comes back.
    drop(connector);
    let lost = || hub.log_text().matches("stream lost").count();
    let started = Instant::now();
    while lost() < 2 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the hub notices the loss"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let lost_at = Instant::now();
    let short = tokio::spawn(add(client.clone(), 1));
    let (answer, elapsed) = add(client.clone(), 20).await;
    assert_eq!(
        answer,
        Answer::Status(tonic::Code::Unavailable),
        "fails once the session expired"
    );
    assert!(
        lost_at.elapsed() >= Duration::from_millis(2500) && elapsed < Duration::from_secs(5),
        "waited out the 3 s resume window, not more: {elapsed:?}"
    );
    let (answer, elapsed) = short.await.unwrap();
    assert_eq!(answer, Answer::Status(tonic::Code::DeadlineExceeded));
    assert!(
        elapsed >= Duration::from_millis(900) && elapsed < Duration::from_secs(2),
        "ended at its 1 s deadline: {elapsed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connector_killed_under_load_has_its_reads_run_once_more_elsewhere() {
    let hub = Hub::start(&[]);
    let f1 = quiet_connector(&hub, "faults", "f1");
    let _f2 = quiet_connector(&hub, "faults", "f2");
    hub.wait_for_instances("faults", 2, Duration::from_secs(20));
    let count = if full() { 2000 } else { 300 };
    let url = hub.url.clone();
    let load = tokio::spawn(async move { load(&url, count, 200).await });
    tokio::time::sleep(Duration::from_millis(600)).await;
    f1.signal("KILL");
    let answers = load.await.unwrap();
    let tally = tally(&answers);
    tally.check("a connector SIGKILLed under load");
    assert_eq!(
        tally.count("ok"),
        count,
        "every read answered once, with its result"
    );
    let retried = hub.log_text().matches("retrying once on").count();
    eprintln!("figures: a connector SIGKILLed under load: {retried} reads run once more elsewhere");
    assert!(
        retried > 0,
        "some reads were in flight on the killed instance"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_killed_under_load_answers_or_fails_each_call_once_and_comes_back() {
    let hub = Hub::start(&[]);
    let listen = hub.authority().to_owned();
    let _f1 = quiet_connector(&hub, "faults", "f1");
    hub.wait_for_instances("faults", 1, Duration::from_secs(20));
    let count = if full() { 2000 } else { 300 };
    let url = hub.url.clone();
    let load = tokio::spawn(async move { load(&url, count, 100).await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    hub.process.signal("KILL");
    let answers = load.await.unwrap();
    let tally = tally(&answers);
    tally.check("the hub SIGKILLed under load");
    // Calls in flight or made while no hub listens fail on the client's
    // side of the dead connection: `UNAVAILABLE`, or `UNKNOWN`/`CANCELLED`
    // for a stream the dying connection cut.
    let failed = ["Unavailable", "Unknown", "Cancelled"]
        .iter()
        .map(|code| tally.count(&format!("status:{code}")))
        .sum::<usize>();
    assert_eq!(
        tally.count("ok") + failed,
        count,
        "each call answered with its result or failed once"
    );
    let unavailable = failed;
    assert!(unavailable > 0, "calls in flight when the hub died fail");

    // The connector comes back to the next hub on the same address.
    let hub = Hub::start_on(&listen, &[]);
    hub.wait_for_instances("faults", 1, Duration::from_secs(30));
    assert_serves(&hub.url, 1, 1).await;
}
