//! Peers without credentials cannot make the hub hold memory or
//! connections (issue 14, items 1 and 3): a Hub call without a token is
//! refused from its headers before its body is read; over-limit messages
//! and bytes beyond the budgets are `RESOURCE_EXHAUSTED`; connections that
//! open no request, sit idle or stop answering pings are closed; beyond
//! `--max-connections` a connection is closed at once. Each test prints
//! its figures.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::Hub;
use common::peer::{
    Raw, fd_count, grpc_prefix, grpc_status, h2_connect, open_call, rss_kib, wait_fds_at_most,
};
use tokio::io::AsyncReadExt;
use tonic::Code;
use tonic::transport::Channel;

const ATTACH: &str = "/spoke.v1.ConnectorHub/Attach";
const INVOKE: &str = "/spoke.v1.Hub/Invoke";
const MIB: usize = 1024 * 1024;

async fn channel(url: &str) -> Channel {
    Channel::from_shared(url.to_owned())
        .expect("hub url")
        .connect()
        .await
        .expect("connect to the hub")
}

/// A unary call of `path` with `body` as its raw message.
async fn raw_unary(url: &str, path: &str, body: Vec<u8>) -> tonic::Status {
    let mut grpc = tonic::client::Grpc::new(channel(url).await)
        .max_encoding_message_size(usize::MAX)
        .max_decoding_message_size(usize::MAX);
    grpc.ready().await.expect("ready");
    grpc.unary(tonic::Request::new(body), path.parse().unwrap(), Raw)
        .await
        .expect_err("the hub refuses the call")
}

/// Whether the hub closes a connection: `true` once a read ends.
async fn closed_within(stream: &mut tokio::net::TcpStream, limit: Duration) -> bool {
    let mut buf = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_without_a_token_are_refused_before_their_bodies_are_read_and_leave_no_memory() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start_secure(dir.path(), &["--insecure"]);
    let pid = hub.process.pid();
    // Warm up with the same burst of small bodies (connections, threads
    // and their buffers), then take the idle figure: what is left to
    // measure is what the bodies cost.
    let warm_up: Vec<_> = (0..32)
        .map(|_| {
            let url = hub.url.clone();
            tokio::spawn(async move { raw_unary(&url, INVOKE, vec![0; 16]).await })
        })
        .collect();
    for call in warm_up {
        assert_eq!(call.await.unwrap().code(), Code::Unauthenticated);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let idle = rss_kib(pid);

    let sampling = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = {
        let sampling = std::sync::Arc::clone(&sampling);
        std::thread::spawn(move || {
            let mut peak = 0;
            while sampling.load(std::sync::atomic::Ordering::SeqCst) {
                peak = peak.max(rss_kib(pid));
                std::thread::sleep(Duration::from_millis(5));
            }
            peak
        })
    };
    let started = Instant::now();
    let calls: Vec<_> = (0..32)
        .map(|_| {
            let url = hub.url.clone();
            tokio::spawn(async move { raw_unary(&url, INVOKE, vec![7; 16 * MIB - 64]).await })
        })
        .collect();
    for call in calls {
        let status = call.await.unwrap();
        assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    }
    let burst = started.elapsed();
    tokio::time::sleep(Duration::from_millis(500)).await;
    sampling.store(false, std::sync::atomic::Ordering::SeqCst);
    let peak = sampler.join().unwrap();
    let after = rss_kib(pid);
    eprintln!(
        "figures: 32 unauthenticated 16 MiB calls in {burst:?}: hub RSS idle {idle} KiB, peak {peak} KiB, after {after} KiB"
    );
    assert!(
        after <= idle + idle / 10,
        "RSS after the burst {after} KiB is more than 10% over idle {idle} KiB"
    );
    assert!(
        peak < idle + 64 * 1024,
        "the burst took the hub from {idle} KiB to {peak} KiB"
    );
    let line = hub
        .logged(&["call refused before its body was read method=/spoke.v1.Hub/Invoke"])
        .await;
    assert!(line.contains("outcome=unauthenticated"), "{line}");
}

#[tokio::test]
async fn over_limit_messages_are_resource_exhausted() {
    let hub = Hub::start(&[]);
    let status = raw_unary(&hub.url, INVOKE, vec![0; 16 * MIB + 1]).await;
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(
        status
            .message()
            .contains("a message of 16777217 bytes is over this method's limit of 16777216 bytes"),
        "{status:?}"
    );

    // An Attach's opening message comes before any proof: 4 MiB at most.
    let authority = hub.authority().to_owned();
    let (mut send, _closed) = h2_connect(&authority).await;
    let (response, _stream) = open_call(
        &mut send,
        &authority,
        ATTACH,
        grpc_prefix((4 * MIB + 1) as u32),
    )
    .await;
    let (code, message) = grpc_status(response).await;
    assert_eq!(code, Code::ResourceExhausted as i32, "{message}");
    assert!(
        message.contains("an opening message of 4194305 bytes is over this method's limit"),
        "{message}"
    );
    hub.logged(&["refused an unregistered peer attaching from 127.0.0.1:"])
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_bytes_in_flight_are_bounded_per_connection_and_overall() {
    let hub = Hub::start(&[
        "--connection-budget",
        "16MiB",
        "--request-budget",
        "32MiB",
        "--heartbeat-interval",
        "30s",
    ]);
    let authority = hub.authority().to_owned();
    // Sixteen Attach streams each send all but the last byte of a 1 MiB
    // opening message: the connection's 16 MiB are taken by bytes that
    // arrived (a prefix alone holds nothing).
    let opening = || {
        let mut data = grpc_prefix(MIB as u32).to_vec();
        data.resize(5 + MIB - 1, 0);
        Bytes::from(data)
    };
    let some_bytes = || {
        let mut data = grpc_prefix(MIB as u32).to_vec();
        data.resize(5 + 4096, 0);
        Bytes::from(data)
    };
    let (mut first, _first_closed) = h2_connect(&authority).await;
    let mut held = Vec::new();
    for _ in 0..16 {
        held.push(open_call(&mut first, &authority, ATTACH, opening()).await);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (response, _stream) = open_call(&mut first, &authority, ATTACH, some_bytes()).await;
    let (code, message) = grpc_status(response).await;
    assert_eq!(code, Code::ResourceExhausted as i32, "{message}");
    assert!(message.contains("this connection already has"), "{message}");

    // A second connection takes the other 16 MiB; a third finds none.
    let (mut second, _second_closed) = h2_connect(&authority).await;
    let mut held_too = Vec::new();
    for _ in 0..16 {
        held_too.push(open_call(&mut second, &authority, ATTACH, opening()).await);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (mut third, _third_closed) = h2_connect(&authority).await;
    let (response, _stream) = open_call(&mut third, &authority, ATTACH, some_bytes()).await;
    let (code, message) = grpc_status(response).await;
    assert_eq!(code, Code::ResourceExhausted as i32, "{message}");
    assert!(message.contains("the hub is holding"), "{message}");

    // Ending the first connection's streams gives their bytes back.
    for (_, mut stream) in held {
        stream.send_reset(h2::Reason::CANCEL);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut garbage = grpc_prefix(4).to_vec();
    garbage.extend_from_slice(&[0xff, 1, 2, 3]);
    let (response, _stream) = open_call(&mut third, &authority, ATTACH, Bytes::from(garbage)).await;
    let (code, message) = grpc_status(response).await;
    assert_eq!(
        code,
        Code::InvalidArgument as i32,
        "read in full and refused as no Register: {message}"
    );
    drop(held_too);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_that_open_no_request_or_sit_idle_are_closed_and_their_fds_return() {
    let hub = Hub::start(&["--handshake-timeout", "300ms", "--idle-timeout", "500ms"]);
    let pid = hub.process.pid();
    let authority = hub.authority().to_owned();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let baseline = fd_count(pid);

    // Fifty connections that never say a word.
    let mut silent = Vec::new();
    for _ in 0..50 {
        silent.push(tokio::net::TcpStream::connect(&authority).await.unwrap());
    }
    let held = wait_fds_at_most(pid, 0, Duration::from_millis(100));
    assert!(
        held >= baseline + 50,
        "{held} fds with 50 held, {baseline} before"
    );
    let started = Instant::now();
    for stream in &mut silent {
        assert!(
            closed_within(stream, Duration::from_secs(3)).await,
            "a silent connection stayed open"
        );
    }
    let silent_closed = started.elapsed();

    // An HTTP/2 handshake and no request.
    let (_send, closed) = h2_connect(&authority).await;
    tokio::time::timeout(Duration::from_secs(3), closed)
        .await
        .expect("a connection without a request is closed")
        .ok();

    // One request, then idle.
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel(&hub.url).await);
    health
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await
        .expect("health");
    let (send, closed) = h2_connect(&authority).await;
    let mut ready = send.ready().await.unwrap();
    let (response, mut stream) = ready
        .send_request(
            common::peer::grpc_request(&authority, "/grpc.health.v1.Health/Check", None),
            false,
        )
        .unwrap();
    stream.send_data(grpc_prefix(0), true).unwrap();
    assert_eq!(
        grpc_status(response).await.0,
        0,
        "the health check is answered"
    );
    let idle_started = Instant::now();
    tokio::time::timeout(Duration::from_secs(3), closed)
        .await
        .expect("an idle connection is closed")
        .ok();
    let idle_closed = idle_started.elapsed();
    assert!(
        idle_closed >= Duration::from_millis(300),
        "closed after {idle_closed:?}"
    );

    // A request open longer than the idle timeout (a health watch) keeps
    // its connection.
    let mut watcher = tonic_health::pb::health_client::HealthClient::new(channel(&hub.url).await);
    let mut watch = watcher
        .watch(tonic_health::pb::HealthCheckRequest::default())
        .await
        .expect("watch")
        .into_inner();
    assert!(watch.message().await.unwrap().is_some());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let ok = watcher
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await;
    assert!(ok.is_ok(), "the watching connection stays open: {ok:?}");

    drop((watch, watcher, health));
    let after = wait_fds_at_most(pid, baseline, Duration::from_secs(3));
    eprintln!(
        "figures: fds {baseline} at rest, {held} with 50 silent connections, {after} after; \
         silent closed within {silent_closed:?}, idle closed after {idle_closed:?}"
    );
    assert!(after <= baseline, "fds {after} after, {baseline} before");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_limit_are_closed_at_once_with_a_warning() {
    let hub = Hub::start(&["--max-connections", "3"]);
    let authority = hub.authority().to_owned();
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(tokio::net::TcpStream::connect(&authority).await.unwrap());
    }
    let mut fourth = tokio::net::TcpStream::connect(&authority).await.unwrap();
    assert!(closed_within(&mut fourth, Duration::from_secs(2)).await);
    hub.logged(&["closed 1 connection(s) over the limit of 3"])
        .await;
    drop(held);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel(&hub.url).await);
    health
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await
        .expect("a slot is free again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keepalive_closes_a_black_holed_peer_and_keeps_healthy_connectors() {
    let hub = Hub::start(&[
        "--keepalive",
        "200ms",
        "--keepalive-timeout",
        "500ms",
        "--idle-timeout",
        "500ms",
    ]);
    let pid = hub.process.pid();
    let _echo = hub.attach("echo", &[]);
    hub.wait_for_instances("echo", 1, Duration::from_secs(20));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let baseline = fd_count(pid);

    // A watch through a proxy, which then stops forwarding anything.
    let proxy = common::proxy::Proxy::start(hub.authority());
    let mut watcher = tonic_health::pb::health_client::HealthClient::new(channel(&proxy.url).await);
    let mut watch = watcher
        .watch(tonic_health::pb::HealthCheckRequest::default())
        .await
        .expect("watch")
        .into_inner();
    assert!(watch.message().await.unwrap().is_some());
    assert!(fd_count(pid) > baseline);
    proxy.black_hole();
    let started = Instant::now();
    let after = wait_fds_at_most(pid, baseline, Duration::from_secs(5));
    let closed_after = started.elapsed();
    assert!(
        after <= baseline,
        "the black-holed connection is still open ({after} fds, {baseline} before)"
    );

    // The connector answered every ping and kept its Attach stream open.
    let out = common::run(
        hub.cli()
            .args(["call", "echo", "echo", r#"{"text":"still here"}"#]),
    );
    assert!(out.status.success(), "{}", common::stderr(&out));
    let log = hub.log_text();
    assert_eq!(
        log.matches("attached with session").count(),
        1,
        "the connector attached once and stayed: {log}"
    );
    eprintln!(
        "figures: a black-holed connection closed after {closed_after:?} (keepalive 200ms, timeout 500ms); the connector stayed attached"
    );
    drop(watch);
}
