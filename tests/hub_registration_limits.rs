//! The bounds on registrations (issue 14, item 2), through real `spoke hub`
//! processes with auth: a flood of Attach streams from one address is
//! rate-limited before the hub reads them, new pending instances are capped
//! per tenant and overall, old pending instances expire, a Register over
//! the size limits is refused naming the field, and `spoke pending` lists
//! any number of pending instances, page after page.
//!
//! The connector side is a raw tonic client that signs its own Register
//! frames (ed25519-dalek); the admin side is the real `spoke` CLI with the
//! operator token.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::Hub;
use ed25519_dalek::{Signer, SigningKey};
use spoke_proto::prost::Message;
use spoke_proto::v1::admin_client::AdminClient;
use spoke_proto::v1::connector_hub_client::ConnectorHubClient;
use spoke_proto::v1::{
    Assertion, ConnectorFrame, Credentials, HubFrame, InstanceInfo, ListPendingRequest, Register,
    RegistrationStatus, connector_frame, hub_frame,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status, Streaming};

/// The longest any one wait takes.
const WAIT: Duration = Duration::from_secs(10);

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn new_key() -> SigningKey {
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).unwrap();
    SigningKey::from_bytes(&secret)
}

/// A Register of instance `id` of connector `echo` in `tenant`, signed
/// with `key`.
fn register(tenant: &str, id: &str, key: &SigningKey) -> Register {
    let mut nonce = [0u8; 16];
    getrandom::fill(&mut nonce).unwrap();
    let now = now_ms();
    let assertion = Assertion {
        tenant: tenant.to_owned(),
        connector: "echo".to_owned(),
        instance_id: id.to_owned(),
        issued_at_unix_ms: now,
        expires_at_unix_ms: now + 60_000,
        nonce: nonce.to_vec().into(),
    }
    .encode_to_vec();
    let mut signed = b"spoke.v1.Assertion\n".to_vec();
    signed.extend_from_slice(&assertion);
    let manifest = serde_json::json!({
        "spoke": 1, "name": "echo", "version": "1.0.0", "display_name": "Echo",
        "description": "", "config": {}, "actions": [], "search_operators": [],
        "capabilities": ["actions"]
    });
    Register {
        manifest_json: manifest.to_string(),
        protocol_version: 1,
        sdk_version: "test".into(),
        tenant: tenant.to_owned(),
        instance: Some(InstanceInfo {
            id: id.to_owned(),
            display_name: id.to_owned(),
            ..Default::default()
        }),
        session_token: String::new(),
        credentials: Some(Credentials {
            public_key: key.verifying_key().to_bytes().to_vec().into(),
            signature: key.sign(&signed).to_bytes().to_vec().into(),
            assertion: assertion.into(),
            registration_token: String::new(),
        }),
        max_in_flight: 0,
    }
}

/// An attached stream: dropping it ends it (the instance detaches).
struct Attached {
    _up: mpsc::Sender<ConnectorFrame>,
    _down: Streaming<HubFrame>,
}

/// Opens an Attach stream with `register`: the status of `Registered`, or
/// the status the hub refused the stream with.
async fn attach(channel: &Channel, register: Register) -> Result<(i32, Attached), Status> {
    let (up, rx) = mpsc::channel(4);
    up.send(ConnectorFrame {
        frame: Some(connector_frame::Frame::Register(register)),
    })
    .await
    .unwrap();
    let mut down = ConnectorHubClient::new(channel.clone())
        .max_encoding_message_size(usize::MAX)
        .attach(ReceiverStream::new(rx))
        .await?
        .into_inner();
    let first = tokio::time::timeout(WAIT, down.message())
        .await
        .expect("the hub answers Register")?;
    match first.and_then(|f| f.frame) {
        Some(hub_frame::Frame::Registered(r)) => Ok((
            r.status,
            Attached {
                _up: up,
                _down: down,
            },
        )),
        other => panic!("expected Registered, got {other:?}"),
    }
}

/// Attaches instance `id` of `tenant` with a fresh key and expects it
/// pending; the live stream.
async fn pending(channel: &Channel, tenant: &str, id: &str) -> Attached {
    let (status, attached) = attach(channel, register(tenant, id, &new_key()))
        .await
        .unwrap_or_else(|s| panic!("{tenant}/{id} refused: {s:?}"));
    assert_eq!(status, RegistrationStatus::PendingApproval as i32, "{id}");
    attached
}

async fn channel(hub: &Hub) -> Channel {
    Endpoint::from_shared(hub.url.clone())
        .unwrap()
        .connect()
        .await
        .expect("connect to the hub")
}

/// A hub with auth and `extra` flags, its data in a temporary directory.
fn start(extra: &[&str]) -> (Hub, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut args = vec!["--insecure", "--heartbeat-interval", "500ms"];
    args.extend_from_slice(extra);
    let hub = Hub::start_secure(dir.path(), &args);
    (hub, dir)
}

/// Runs `spoke <args>` with the operator token; its stdout (it must
/// succeed).
fn spoke(hub: &Hub, args: &[&str]) -> String {
    hub.operator(&[], args)
}

/// The instance ids `spoke pending` (with `extra` flags) lists, in order.
fn pending_ids(hub: &Hub, extra: &[&str]) -> Vec<String> {
    let mut args = vec!["pending"];
    args.extend_from_slice(extra);
    let listed: serde_json::Value = serde_json::from_str(&spoke(hub, &args)).unwrap();
    listed["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["instance"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_attaches_from_one_address_is_rate_limited_before_it_is_read() {
    let (hub, _dir) = start(&["--register-burst", "5", "--register-rate", "2"]);
    let ch = channel(&hub).await;
    let started = Instant::now();
    let mut accepted = Vec::new();
    let mut refused = Vec::new();
    for n in 0..40 {
        match attach(&ch, register("", &format!("f{n}"), &new_key())).await {
            Ok((_, live)) => accepted.push(live),
            Err(status) => refused.push(status),
        }
    }
    let took = started.elapsed();
    // The burst, and at most what the rate refilled meanwhile.
    let allowed = 5 + (took.as_secs_f64() * 2.0).ceil() as usize;
    assert!(
        accepted.len() >= 5 && accepted.len() <= allowed,
        "{} accepted in {took:?}",
        accepted.len()
    );
    assert_eq!(accepted.len() + refused.len(), 40);
    assert!(
        took < Duration::from_secs(5),
        "a refusal is immediate: {took:?}"
    );
    for status in &refused {
        assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    }
    let message = refused[0].message();
    assert!(
        message.contains("address 127.0.0.1 opens Attach streams faster than this hub allows")
            && message.contains("5 at once, then 2 a second")
            && message.contains("--register-burst")
            && message.contains("try again in"),
        "{message}"
    );
    // Nothing of a refused stream reached the store.
    assert_eq!(pending_ids(&hub, &[]).len(), accepted.len());
    // The log says so, without a line per refusal.
    hub.wait_log(&[
        "refused an Attach stream from 127.0.0.1:",
        "resource_exhausted",
    ]);
    let lines = hub
        .log_text()
        .lines()
        .filter(|l| l.contains("refused an Attach stream from"))
        .count();
    assert!(lines <= 1 + took.as_secs() as usize, "{lines} log lines");
    // The bucket refills.
    tokio::time::sleep(Duration::from_millis(600)).await;
    pending(&ch, "", "after-the-flood").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_pending_instances_are_capped_per_tenant_and_overall() {
    let (hub, _dir) = start(&["--max-pending-per-tenant", "2", "--max-pending", "3"]);
    let ch = channel(&hub).await;
    let a_key = new_key();
    let (_, a) = attach(&ch, register("acme", "a", &a_key)).await.unwrap();
    let _b = pending(&ch, "acme", "b").await;

    let err = attach(&ch, register("acme", "c", &new_key()))
        .await
        .err()
        .expect("a third pending instance of acme is refused");
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert!(
        err.message()
            .contains("tenant `acme` already has 2 instances pending approval")
            && err.message().contains("--max-pending-per-tenant")
            && err.message().contains("forgotten 168h after"),
        "{}",
        err.message()
    );
    hub.wait_log(&[
        "refused instance `c` of connector `echo` (tenant `acme`) attaching from 127.0.0.1:",
        "resource_exhausted",
    ]);

    // An instance already pending attaching again is not a new one.
    drop(a);
    let (status, _a) = attach(&ch, register("acme", "a", &a_key))
        .await
        .expect("a pending instance attaches again");
    assert_eq!(status, RegistrationStatus::PendingApproval as i32);

    // Another tenant has room, until the hub as a whole is full.
    let _beta = pending(&ch, "beta", "a").await;
    let err = attach(&ch, register("gamma", "a", &new_key()))
        .await
        .err()
        .expect("a fourth pending instance is refused");
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert!(
        err.message()
            .contains("this hub already has 3 instances pending approval")
            && err.message().contains("--max-pending)"),
        "{}",
        err.message()
    );
    let mut listed = pending_ids(&hub, &[]);
    listed.sort();
    assert_eq!(listed, ["a", "a", "b"]);

    // A registration token approves an instance whatever the caps.
    let token = spoke(
        &hub,
        &["token", "create", "--connector", "echo", "--tenant", "acme"],
    );
    let mut with_token = register("acme", "t", &new_key());
    with_token.credentials.as_mut().unwrap().registration_token = token.trim().to_owned();
    let (status, _t) = attach(&ch, with_token)
        .await
        .expect("a token bypasses the caps");
    assert_eq!(status, RegistrationStatus::Active as i32);

    // A decision frees a place.
    spoke(&hub, &["reject", "b", "--tenant", "acme"]);
    pending(&ch, "acme", "c").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_pending_instances_expire_unless_attached() {
    let dir = tempfile::tempdir().unwrap();
    // Recorded by a hub that keeps pending instances for a week...
    {
        let hub = Hub::start_secure(dir.path(), &["--insecure"]);
        let ch = channel(&hub).await;
        drop(pending(&ch, "", "from-before").await);
        assert_eq!(pending_ids(&hub, &[]), ["from-before"]);
    }
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // ...and forgotten at the start of one that keeps them for a second.
    let hub = Hub::start_secure(dir.path(), &["--insecure", "--pending-expiry", "1s"]);
    hub.wait_log(
        &[
            "forgot 1 pending instance(s) first seen more than 1s ago and not attached (--pending-expiry)",
            "default/echo/from-before",
        ],
    );
    assert!(pending_ids(&hub, &[]).is_empty());

    let ch = channel(&hub).await;
    let gone = pending(&ch, "", "gone").await;
    let live = pending(&ch, "", "live").await;
    drop(gone);
    let started = Instant::now();
    hub.wait_log(&["forgot 1 pending instance(s)", "default/echo/gone"]);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    // The attached one stays, to be approved or rejected, well past the
    // expiry; it is forgotten once it is gone.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(pending_ids(&hub, &[]), ["live"]);
    drop(live);
    hub.wait_log(&["forgot 1 pending instance(s)", "default/echo/live"]);
    assert!(pending_ids(&hub, &[]).is_empty());
    // An expired instance attaching again is a new pending instance.
    pending(&ch, "", "gone").await;
    assert_eq!(pending_ids(&hub, &[]), ["gone"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_register_over_the_limits_is_invalid_argument_naming_the_field() {
    let (hub, _dir) = start(&[]);
    let ch = channel(&hub).await;
    let mut big = register("", "big", &new_key());
    big.instance.as_mut().unwrap().display_name = "n".repeat(1024 * 1024);
    let err = attach(&ch, big).await.err().expect("refused");
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert_eq!(
        err.message(),
        "Register.instance.display_name is 1048576 bytes long; at most 256 are allowed"
    );
    let line = hub.wait_log(&[
        "refused an unregistered peer attaching from 127.0.0.1:",
        "invalid_argument: Register.instance.display_name is 1048576 bytes long",
    ]);
    assert!(line.len() < 400, "the log line quotes no field: {line}");

    let mut many = register("", "many", &new_key());
    many.instance.as_mut().unwrap().metadata = (0..65)
        .map(|n| (format!("k{n}"), String::new()))
        .collect::<HashMap<_, _>>();
    let err = attach(&ch, many).await.err().expect("refused");
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert_eq!(
        err.message(),
        "Register.instance.metadata has 65 entries; at most 64 are allowed"
    );
    // Nothing was recorded.
    assert!(pending_ids(&hub, &[]).is_empty());

    // A hub without auth refuses it the same way.
    let open = Hub::start(&[]);
    let mut big = register("", "big", &new_key());
    big.instance.as_mut().unwrap().display_name = "n".repeat(1024 * 1024);
    let err = attach(&channel(&open).await, big)
        .await
        .err()
        .expect("refused");
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(
        err.message()
            .starts_with("Register.instance.display_name is 1048576 bytes long"),
        "{}",
        err.message()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spoke_pending_lists_every_page() {
    let (hub, _dir) = start(&["--max-pending-per-tenant", "1000", "--register-rate", "0"]);
    let ch = channel(&hub).await;
    let ids: Vec<String> = (0..130).map(|n| format!("p{n:03}")).collect();
    for id in &ids {
        drop(pending(&ch, "", id).await);
    }

    // The hub answers a page at a time: 100 by default.
    let op = hub.operator_token.clone().unwrap();
    let list = |page_size: u32, page_token: String| {
        let (ch, op) = (ch.clone(), op.clone());
        async move {
            let mut request = tonic::Request::new(ListPendingRequest {
                page_size,
                page_token,
            });
            request
                .metadata_mut()
                .insert("authorization", format!("Bearer {op}").parse().unwrap());
            AdminClient::new(ch).list_pending(request).await
        }
    };
    let first = list(0, String::new()).await.unwrap().into_inner();
    assert_eq!(first.instances.len(), 100);
    assert!(!first.next_page_token.is_empty());
    let second = list(0, first.next_page_token).await.unwrap().into_inner();
    assert_eq!(second.instances.len(), 30);
    assert!(second.next_page_token.is_empty());
    let err = list(0, "not a token".into()).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");

    // `spoke pending` prints them all, oldest first, whatever the page size.
    assert_eq!(pending_ids(&hub, &[]), ids);
    assert_eq!(pending_ids(&hub, &["--page-size", "7"]), ids);
    let table = spoke(&hub, &["pending", "--table", "--page-size", "50"]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 131, "{table}");
    assert!(lines[0].starts_with("TENANT"), "{table}");
    assert!(lines[130].contains("p129"), "{table}");
}
