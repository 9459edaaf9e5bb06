//! Auth and trust through a real `spoke hub` process with `--data <tempdir>`:
//! every refusal of the issue, each with its error and its hub log line.
//!
//! The connector side is a raw tonic client that builds and signs its
//! Register frames itself (ed25519-dalek), so it can also forge bad ones;
//! the admin side is the real `spoke` CLI with the operator token.

mod common;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::Hub;
use ed25519_dalek::{Signer, SigningKey};
use spoke_proto::prost::Message;
use spoke_proto::v1::connector_hub_client::ConnectorHubClient;
use spoke_proto::v1::hub_client::HubClient;
use spoke_proto::v1::{
    Assertion, ConnectorFrame, Credentials, DescribeRequest, HubFrame, InstanceInfo, InvokeRequest,
    ListConnectorsRequest, Pong, Register, Registered, RegistrationStatus, Result as WireResult,
    connector_frame, hub_frame, instance_result, result,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use tonic::{Code, Status};

/// The longest any one wait takes.
const WAIT: Duration = Duration::from_secs(10);

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A manifest with one action of each kind.
fn manifest(name: &str) -> String {
    let action = |n: &str, mode: &str, admin_only: bool, hidden: bool| {
        serde_json::json!({
            "name": n, "description": "", "mode": mode, "admin_only": admin_only,
            "hidden": hidden, "timeout_ms": null, "input_schema": {}, "output_schema": {}
        })
    };
    serde_json::json!({
        "spoke": 1, "name": name, "version": "1.0.0", "display_name": name,
        "description": "", "config": {},
        "actions": [
            action("echo", "read", false, false),
            action("put", "write", false, false),
            action("wipe", "read", true, false),
            action("secret", "read", false, true),
        ],
        "search_operators": [], "capabilities": ["actions"]
    })
    .to_string()
}

/// Signed credentials for an instance, with its times.
fn credentials_at(
    key: &SigningKey,
    tenant: &str,
    connector: &str,
    id: &str,
    issued: u64,
    expires: u64,
) -> Credentials {
    let mut nonce = [0u8; 16];
    getrandom::fill(&mut nonce).unwrap();
    let assertion = Assertion {
        tenant: tenant.to_owned(),
        connector: connector.to_owned(),
        instance_id: id.to_owned(),
        issued_at_unix_ms: issued,
        expires_at_unix_ms: expires,
        nonce: nonce.to_vec().into(),
    }
    .encode_to_vec();
    let mut signed = b"spoke.v1.Assertion\n".to_vec();
    signed.extend_from_slice(&assertion);
    Credentials {
        public_key: key.verifying_key().to_bytes().to_vec().into(),
        signature: key.sign(&signed).to_bytes().to_vec().into(),
        assertion: assertion.into(),
        registration_token: String::new(),
    }
}

fn credentials(key: &SigningKey, tenant: &str, connector: &str, id: &str) -> Credentials {
    let now = now_ms();
    credentials_at(key, tenant, connector, id, now, now + 60_000)
}

fn new_key() -> SigningKey {
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).unwrap();
    SigningKey::from_bytes(&secret)
}

/// A connector instance attached over a raw stream: it answers Pings, and
/// echoes every Invoke's payload.
struct Connector {
    /// Every `Registered` the hub sent.
    registered: mpsc::UnboundedReceiver<Registered>,
    /// How the stream ended (`Ok` for a clean end).
    ended: tokio::sync::oneshot::Receiver<Result<(), Status>>,
    _up: mpsc::Sender<ConnectorFrame>,
}

struct Attach<'a> {
    tenant: &'a str,
    connector: &'a str,
    id: &'a str,
    credentials: Option<Credentials>,
    session_token: String,
}

impl<'a> Attach<'a> {
    fn new(connector: &'a str, id: &'a str, credentials: Option<Credentials>) -> Self {
        Attach {
            tenant: "",
            connector,
            id,
            credentials,
            session_token: String::new(),
        }
    }
}

/// Attaches; `Err` when the hub refused the stream with a status.
async fn attach(channel: Channel, how: Attach<'_>) -> Result<(Connector, Registered), Status> {
    let mut client = ConnectorHubClient::new(channel);
    let (up, rx) = mpsc::channel(64);
    up.send(ConnectorFrame {
        frame: Some(connector_frame::Frame::Register(Register {
            manifest_json: manifest(how.connector),
            protocol_version: 1,
            sdk_version: "test".into(),
            tenant: how.tenant.to_owned(),
            instance: Some(InstanceInfo {
                id: how.id.to_owned(),
                display_name: how.id.to_owned(),
                ..Default::default()
            }),
            session_token: how.session_token,
            credentials: how.credentials,
            max_in_flight: 0,
        })),
    })
    .await
    .unwrap();
    let mut down = client.attach(ReceiverStream::new(rx)).await?.into_inner();
    let first = tokio::time::timeout(WAIT, down.message())
        .await
        .expect("the hub answers Register")?;
    let registered = match first.and_then(|f| f.frame) {
        Some(hub_frame::Frame::Registered(r)) => r,
        other => panic!("expected Registered, got {other:?}"),
    };
    let (reg_tx, reg_rx) = mpsc::unbounded_channel();
    let (end_tx, end_rx) = tokio::sync::oneshot::channel();
    let answers = up.clone();
    tokio::spawn(async move {
        let ended = loop {
            match down.message().await {
                Err(status) => break Err(status),
                Ok(None) => break Ok(()),
                Ok(Some(HubFrame { frame: Some(frame) })) => match frame {
                    hub_frame::Frame::Registered(r) => {
                        let _ = reg_tx.send(r);
                    }
                    hub_frame::Frame::Ping(p) => {
                        let _ = answers
                            .send(ConnectorFrame {
                                frame: Some(connector_frame::Frame::Pong(Pong { nonce: p.nonce })),
                            })
                            .await;
                    }
                    hub_frame::Frame::Invoke(invoke) => {
                        let _ = answers
                            .send(ConnectorFrame {
                                frame: Some(connector_frame::Frame::Result(WireResult {
                                    request_id: invoke.request_id,
                                    outcome: Some(result::Outcome::Payload(invoke.payload)),
                                    encoding: invoke.encoding,
                                    ..Default::default()
                                })),
                            })
                            .await;
                    }
                    _ => {}
                },
                Ok(Some(_)) => {}
            }
        };
        let _ = end_tx.send(ended);
    });
    Ok((
        Connector {
            registered: reg_rx,
            ended: end_rx,
            _up: up,
        },
        registered,
    ))
}

/// Attaches with `how` and asserts the hub refuses: the gRPC `code`, a
/// message containing `says`, and a hub log line with every one of `logged`.
async fn refused(hub: &Hub, how: Attach<'_>, code: Code, says: &str, logged: &[&str]) {
    let err = attach(channel(hub).await, how)
        .await
        .err()
        .expect("refused");
    assert_eq!(err.code(), code, "{err:?}");
    assert!(err.message().contains(says), "{}", err.message());
    hub.wait_log(logged);
}

async fn channel(hub: &Hub) -> Channel {
    Endpoint::from_shared(hub.url.clone())
        .unwrap()
        .connect()
        .await
        .expect("connect to the hub")
}

fn bearer<T>(message: T, token: Option<&str>) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(WAIT);
    if let Some(token) = token {
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    request
}

async fn call(
    channel: &Channel,
    token: Option<&str>,
    connector: &str,
    action: &str,
) -> Result<String, Status> {
    let response = HubClient::new(channel.clone())
        .invoke(bearer(
            InvokeRequest {
                connector: connector.to_owned(),
                action: action.to_owned(),
                payload: br#"{"hi":1}"#.to_vec().into(),
                ..Default::default()
            },
            token,
        ))
        .await?
        .into_inner();
    match &response.results[0].outcome {
        Some(instance_result::Outcome::Payload(p)) => Ok(String::from_utf8_lossy(p).into_owned()),
        other => panic!("unexpected outcome {other:?}"),
    }
}

/// Runs a `spoke` admin command with the operator token; its stdout.
fn spoke(hub: &Hub, args: &[&str]) -> String {
    spoke_with(hub, &[], args)
}

/// Runs a `spoke` command with `token` that the hub refuses: asserts exit
/// code 3 and returns its stderr.
fn spoke_refused(hub: &Hub, token: &str, args: &[&str]) -> String {
    let out = hub
        .cli()
        .env("SPOKE_TOKEN", token)
        .args(args)
        .output()
        .expect("run spoke");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(3), "spoke {args:?}: {stderr}");
    stderr
}

fn start() -> (Hub, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start_secure(dir.path(), &["--insecure", "--heartbeat-interval", "500ms"]);
    (hub, dir)
}

async fn ended(connector: Connector) -> Result<(), Status> {
    tokio::time::timeout(WAIT, connector.ended)
        .await
        .expect("the stream ends")
        .expect("the reader reports")
}

/// An instance approved with a registration token, attached.
async fn approved(
    hub: &Hub,
    tenant: &str,
    connector: &str,
    id: &str,
    key: &SigningKey,
) -> Connector {
    let mut args = vec!["token", "create", "--connector", connector];
    if !tenant.is_empty() {
        args.extend(["--tenant", tenant]);
    }
    let token = spoke(hub, &args);
    let mut creds = credentials(key, tenant, connector, id);
    creds.registration_token = token;
    let mut how = Attach::new(connector, id, Some(creds));
    how.tenant = tenant;
    let (c, registered) = attach(channel(hub).await, how).await.expect("attach");
    assert_eq!(registered.status, RegistrationStatus::Active as i32);
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forgotten_instance_comes_back_with_a_new_key_as_pending() {
    let (hub, _dir) = start();
    let old_key = new_key();
    let live = approved(&hub, "", "echo", "n1", &old_key).await;
    let new = new_key();
    refused(
        &hub,
        Attach::new("echo", "n1", Some(credentials(&new, "", "echo", "n1"))),
        Code::Unauthenticated,
        "recorded with another public key",
        &["refused instance `n1`", "another public key"],
    )
    .await;

    // The old key's live session ends; the record is gone.
    let said = spoke(&hub, &["forget", "n1"]);
    assert!(
        said.starts_with("forgot instance `n1` of connector `echo`")
            && said.contains("live session was ended"),
        "{said}"
    );
    let status = ended(live).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    hub.wait_log(&["admin: forgot instance `n1`"]);

    // The new key attaches as a new, pending instance, and is approved live.
    let (c, first) = attach(
        channel(&hub).await,
        Attach::new("echo", "n1", Some(credentials(&new, "", "echo", "n1"))),
    )
    .await
    .expect("a forgotten instance attaches again");
    assert_eq!(first.status, RegistrationStatus::PendingApproval as i32);
    let pending = spoke(&hub, &["pending"]);
    assert!(pending.contains("\"n1\""), "{pending}");
    spoke(&hub, &["approve", "n1"]);
    let ch = channel(&hub).await;
    let op = hub.operator_token.clone().unwrap();
    let deadline = Instant::now() + WAIT;
    while call(&ch, Some(&op), "echo", "echo").await.is_err() {
        assert!(Instant::now() < deadline, "never routed after approval");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(c);

    // Forgetting what is not recorded.
    let stderr = spoke_refused(&hub, &op, &["forget", "nobody"]);
    assert!(
        stderr.contains("error[not_found]: no instance `nobody`"),
        "{}",
        stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_instance_waits_for_approval_and_is_approved_live() {
    let (hub, _dir) = start();
    let ch = channel(&hub).await;
    let op = hub.operator_token.clone().unwrap();
    let key = new_key();
    let (mut c, first) = attach(
        ch.clone(),
        Attach::new("echo", "e1", Some(credentials(&key, "", "echo", "e1"))),
    )
    .await
    .expect("a pending instance attaches");
    assert_eq!(first.status, RegistrationStatus::PendingApproval as i32);
    hub.wait_log(&["instance `e1` of connector `echo`", "pending"]);

    // Nothing is routed to it.
    let err = call(&ch, Some(&op), "echo", "echo").await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert!(
        err.message().contains("awaits an administrator's approval"),
        "{}",
        err.message()
    );
    hub.wait_log(&["call", "outcome=unavailable"]);

    let pending: serde_json::Value = serde_json::from_str(&spoke(&hub, &["pending"])).unwrap();
    let list = pending["instances"].as_array().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["instance"], "e1");
    assert_eq!(list[0]["connector"], "echo");
    assert_eq!(list[0]["attached"], true);
    let table = spoke(&hub, &["pending", "--table"]);
    assert!(table.contains("e1") && table.contains("echo"), "{table}");
    let ls: serde_json::Value = serde_json::from_str(&spoke(&hub, &["ls"])).unwrap();
    assert_eq!(ls["connectors"][0]["instances"][0]["state"], "pending");

    // Approval reaches the live stream: a second Registered, same session.
    let said = spoke(&hub, &["approve", "e1"]);
    assert!(said.contains("approved"), "{said}");
    let second = tokio::time::timeout(WAIT, c.registered.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(second.status, RegistrationStatus::Active as i32);
    assert_eq!(second.session_id, first.session_id);
    assert_eq!(
        call(&ch, Some(&op), "echo", "echo").await.unwrap(),
        r#"{"hi":1}"#
    );
    assert!(spoke(&hub, &["pending", "--table"]).contains("no instances await"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_instance_is_cut_and_refused_later() {
    let (hub, _dir) = start();
    let key = new_key();
    let (c, _) = attach(
        channel(&hub).await,
        Attach::new("echo", "r1", Some(credentials(&key, "", "echo", "r1"))),
    )
    .await
    .unwrap();
    spoke(&hub, &["reject", "r1", "--connector", "echo"]);
    let status = ended(c).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(
        status.message().contains("rejected or revoked"),
        "{}",
        status.message()
    );
    hub.wait_log(&["instance `r1`", "rejected by an administrator"]);

    refused(
        &hub,
        Attach::new("echo", "r1", Some(credentials(&key, "", "echo", "r1"))),
        Code::PermissionDenied,
        "was rejected",
        &["refused instance `r1`", "permission_denied"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_proofs_are_unauthenticated() {
    let (hub, _dir) = start();
    let key = new_key();
    let live = approved(&hub, "", "echo", "k1", &key).await;
    drop(live);

    // A key other than the recorded one.
    refused(
        &hub,
        Attach::new(
            "echo",
            "k1",
            Some(credentials(&new_key(), "", "echo", "k1")),
        ),
        Code::Unauthenticated,
        "recorded with another public key",
        &[
            "refused instance `k1`",
            "unauthenticated",
            "another public key",
        ],
    )
    .await;

    // A replayed assertion.
    let creds = credentials(&key, "", "echo", "k2");
    let mut first = creds.clone();
    first.registration_token = spoke(&hub, &["token", "create", "--connector", "echo"]);
    let (c, _) = attach(channel(&hub).await, Attach::new("echo", "k2", Some(first)))
        .await
        .unwrap();
    drop(c);
    refused(
        &hub,
        Attach::new("echo", "k2", Some(creds)),
        Code::Unauthenticated,
        "replayed",
        &["refused instance `k2`", "replayed"],
    )
    .await;

    // An expired assertion.
    let old = now_ms() - 400_000;
    let stale = credentials_at(&key, "", "echo", "k1", old, old + 60_000);
    refused(
        &hub,
        Attach::new("echo", "k1", Some(stale)),
        Code::Unauthenticated,
        "expired",
        &["refused instance `k1`", "expired"],
    )
    .await;

    // A forged signature.
    let mut forged = credentials(&key, "", "echo", "k1");
    let mut sig = forged.signature.to_vec();
    sig[0] ^= 1;
    forged.signature = sig.into();
    refused(
        &hub,
        Attach::new("echo", "k1", Some(forged)),
        Code::Unauthenticated,
        "does not verify",
        &["refused instance `k1`", "does not verify"],
    )
    .await;

    // No credentials at all.
    refused(
        &hub,
        Attach::new("echo", "k3", None),
        Code::Unauthenticated,
        "credentials is missing",
        &["refused instance `k3`", "credentials is missing"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_cuts_the_live_session_and_its_token() {
    let (hub, _dir) = start();
    let key = new_key();
    let token = spoke(&hub, &["token", "create", "--connector", "echo"]);
    let mut creds = credentials(&key, "", "echo", "v1");
    creds.registration_token = token;
    let (c, registered) = attach(channel(&hub).await, Attach::new("echo", "v1", Some(creds)))
        .await
        .unwrap();
    spoke(&hub, &["revoke", "v1"]);
    let status = ended(c).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    hub.wait_log(&["instance `v1`", "revoked by an administrator"]);

    // Resuming with the old session token and a valid assertion: refused.
    let mut how = Attach::new("echo", "v1", Some(credentials(&key, "", "echo", "v1")));
    how.session_token = registered.session_token;
    refused(
        &hub,
        how,
        Code::PermissionDenied,
        "was revoked",
        &["refused instance `v1`", "permission_denied", "revoked"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registration_token_approves_once() {
    let (hub, _dir) = start();
    let token = spoke(
        &hub,
        &["token", "create", "--connector", "echo", "--ttl", "1m"],
    );
    assert!(
        token.starts_with("spr_") && !token.contains('\n'),
        "{token}"
    );
    let mut creds = credentials(&new_key(), "", "echo", "t1");
    creds.registration_token = token.clone();
    let (_c, first) = attach(channel(&hub).await, Attach::new("echo", "t1", Some(creds)))
        .await
        .unwrap();
    assert_eq!(first.status, RegistrationStatus::Active as i32);
    let mut again = credentials(&new_key(), "", "echo", "t2");
    again.registration_token = token;
    refused(
        &hub,
        Attach::new("echo", "t2", Some(again)),
        Code::Unauthenticated,
        "already used",
        &["refused instance `t2`", "already used"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_tokens_grant_what_they_say() {
    let (hub, _dir) = start();
    let _echo = approved(&hub, "", "echo", "c1", &new_key()).await;
    let _files = approved(&hub, "", "files", "f1", &new_key()).await;
    let ch = channel(&hub).await;
    let read = spoke(
        &hub,
        &[
            "client-token",
            "create",
            "--connectors",
            "echo",
            "--label",
            "r",
        ],
    );
    assert!(read.starts_with("spk_"), "{read}");
    let writer = spoke(
        &hub,
        &[
            "client-token",
            "create",
            "--connectors",
            "echo,files",
            "--write",
        ],
    );
    let admin = spoke(
        &hub,
        &["client-token", "create", "--connectors", "*", "--admin"],
    );

    // No token, an unknown one.
    let err = call(&ch, None, "echo", "echo").await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
    // Refused from its headers: the body (which names the connector) is
    // never read.
    hub.wait_log(&[
        "call refused before its body was read",
        "method=/spoke.v1.Hub/Invoke",
        "outcome=unauthenticated",
    ]);
    let err = call(&ch, Some("spk_forged"), "echo", "echo")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    let out = hub.cli().args(["ls"]).output().unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("error[unauthenticated]"));

    // In scope, out of scope.
    assert_eq!(
        call(&ch, Some(&read), "echo", "echo").await.unwrap(),
        r#"{"hi":1}"#
    );
    let err = call(&ch, Some(&read), "files", "echo").await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert_eq!(err.message(), "token does not grant connector files");
    let err = call(&ch, Some(&read), "nothing", "echo").await.unwrap_err();
    assert_eq!(err.message(), "token does not grant connector nothing");
    hub.wait_log(&["call", "connector=files", "outcome=permission_denied"]);

    // Write with a read token.
    let err = call(&ch, Some(&read), "echo", "put").await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(
        err.message().contains("`put`") && err.message().contains("write action"),
        "{}",
        err.message()
    );
    assert!(call(&ch, Some(&writer), "echo", "put").await.is_ok());

    // Admin-only without admin.
    let err = call(&ch, Some(&writer), "echo", "wipe").await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(err.message().contains("admin-only"), "{}", err.message());
    hub.wait_log(&["call", "action=wipe", "outcome=permission_denied"]);
    assert!(call(&ch, Some(&admin), "echo", "wipe").await.is_ok());

    // Hidden: not listed, and uncallable exactly like a missing action.
    let describe = |token: String| {
        let ch = ch.clone();
        async move {
            HubClient::new(ch)
                .describe(bearer(
                    DescribeRequest {
                        connector: "echo".into(),
                    },
                    Some(&token),
                ))
                .await
                .unwrap()
                .into_inner()
                .manifest_json
        }
    };
    assert!(!describe(read.clone()).await.contains("secret"));
    assert!(describe(admin.clone()).await.contains("secret"));
    let hidden = call(&ch, Some(&read), "echo", "secret").await.unwrap_err();
    let missing = call(&ch, Some(&read), "echo", "secrez").await.unwrap_err();
    assert_eq!(hidden.code(), Code::NotFound);
    assert_eq!(hidden.code(), missing.code());
    assert_eq!(
        hidden.message().replace("secret", "X"),
        missing.message().replace("secrez", "X")
    );
    assert!(call(&ch, Some(&admin), "echo", "secret").await.is_ok());

    // An admin command without an admin token.
    let stderr = spoke_refused(&hub, &writer, &["pending"]);
    assert!(stderr.contains("error[permission_denied]"));
    hub.wait_log(&["admin ListPending refused", "permission_denied"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_client_token_is_refused_from_its_next_call() {
    let (hub, _dir) = start();
    let _echo = approved(&hub, "", "echo", "c1", &new_key()).await;
    let ch = channel(&hub).await;
    let token = spoke(
        &hub,
        &[
            "client-token",
            "create",
            "--connectors",
            "echo",
            "--label",
            "leaked",
        ],
    );
    let other = spoke(
        &hub,
        &[
            "client-token",
            "create",
            "--connectors",
            "echo",
            "--label",
            "kept",
        ],
    );
    assert!(call(&ch, Some(&token), "echo", "echo").await.is_ok());

    // Listed by id and grant, never the token itself.
    let listed = spoke(&hub, &["client-token", "ls"]);
    assert!(
        !listed.contains(&token) && !listed.contains(&other),
        "{listed}"
    );
    let tokens: serde_json::Value = serde_json::from_str(&listed).unwrap();
    let entry = |label: &str| {
        tokens["tokens"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["label"] == label)
            .unwrap_or_else(|| panic!("no token labelled {label}: {tokens}"))
            .clone()
    };
    let leaked = entry("leaked");
    assert_eq!(leaked["connectors"], serde_json::json!(["echo"]));
    assert_eq!(
        (&leaked["write"], &leaked["revoked"]),
        (&false.into(), &false.into())
    );
    assert_eq!(entry("kept")["revoked"], false);
    let id = leaked["id"].as_str().unwrap().to_owned();
    let operator = tokens["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["operator"] == true)
        .count();
    assert_eq!(operator, 1, "{tokens}");

    let said = spoke(&hub, &["client-token", "revoke", &id]);
    assert!(said.contains(&id) && said.contains("revoked"), "{said}");
    hub.wait_log(&["client token", &id, "revoked"]);
    let err = call(&ch, Some(&token), "echo", "echo").await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
    assert!(call(&ch, Some(&other), "echo", "echo").await.is_ok());
    let listed: serde_json::Value =
        serde_json::from_str(&spoke(&hub, &["client-token", "ls"])).unwrap();
    let now = listed["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == id.as_str())
        .cloned()
        .unwrap();
    assert_eq!(now["revoked"], true);
    let table = spoke(&hub, &["client-token", "ls", "--table"]);
    let row = table.lines().find(|l| l.starts_with(&id)).unwrap();
    assert!(row.trim_end().ends_with("revoked"), "{table}");

    // Still refused after a restart of the hub (the store keeps it).
    let dir = _dir.path().to_owned();
    drop(hub);
    let hub = Hub::start_secure(&dir, &["--insecure", "--heartbeat-interval", "500ms"]);
    let _echo = approved(&hub, "", "echo", "c2", &new_key()).await;
    let ch = channel(&hub).await;
    let err = call(&ch, Some(&token), "echo", "echo").await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    assert!(call(&ch, Some(&other), "echo", "echo").await.is_ok());

    // An unknown id, and a tenant admin revoking another tenant's token:
    // the same not_found.
    let op = hub.operator_token.clone().unwrap();
    let unknown = spoke_refused(&hub, &op, &["client-token", "revoke", "c-nosuch"]);
    assert!(
        unknown.contains("error[not_found]: no client token `c-nosuch`"),
        "{unknown}"
    );
    let acme_admin = spoke(
        &hub,
        &[
            "client-token",
            "create",
            "--tenant",
            "acme",
            "--connectors",
            "*",
            "--admin",
        ],
    );
    let stderr = spoke_refused(
        &hub,
        &acme_admin,
        &[
            "client-token",
            "revoke",
            entry("kept")["id"].as_str().unwrap(),
        ],
    );
    assert!(
        stderr.contains("error[not_found]: no client token"),
        "{}",
        stderr
    );
    assert!(call(&ch, Some(&other), "echo", "echo").await.is_ok());
    // And a tenant admin lists only its tenant's tokens.
    let out = hub
        .cli()
        .env("SPOKE_TOKEN", &acme_admin)
        .args(["client-token", "ls"])
        .output()
        .unwrap();
    let acme: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let tenants: Vec<_> = acme["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["tenant"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(tenants, ["acme"], "{acme}");

    // The operator revoking its own token is locked out until a restart,
    // which writes a new operator token.
    let listed: serde_json::Value =
        serde_json::from_str(&spoke(&hub, &["client-token", "ls"])).unwrap();
    let operator_id = listed["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["operator"] == true)
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let old_operator = hub.operator_token.clone().unwrap();
    spoke(&hub, &["client-token", "revoke", &operator_id]);
    let err = call(&ch, Some(&old_operator), "echo", "echo")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    drop(hub);
    let hub = Hub::start_secure(&dir, &["--insecure", "--heartbeat-interval", "500ms"]);
    let new_operator = hub.operator_token.clone().unwrap();
    assert_ne!(new_operator, old_operator);
    assert!(spoke(&hub, &["client-token", "ls"]).contains("\"operator\": true"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_see_and_call_only_their_own() {
    let (hub, _dir) = start();
    let _acme = approved(&hub, "acme", "crm", "a1", &new_key()).await;
    let ch = channel(&hub).await;
    let acme = spoke(
        &hub,
        &[
            "client-token",
            "create",
            "--tenant",
            "acme",
            "--connectors",
            "*",
        ],
    );
    let beta = spoke(
        &hub,
        &[
            "client-token",
            "create",
            "--tenant",
            "beta",
            "--connectors",
            "*",
        ],
    );
    assert!(call(&ch, Some(&acme), "crm", "echo").await.is_ok());

    let theirs = call(&ch, Some(&beta), "crm", "echo").await.unwrap_err();
    let nobody = call(&ch, Some(&beta), "cra", "echo").await.unwrap_err();
    assert_eq!(theirs.code(), Code::NotFound);
    assert_eq!(theirs.code(), nobody.code());
    assert_eq!(
        theirs.message().replace("crm", "X"),
        nobody.message().replace("cra", "X")
    );
    hub.wait_log(&["call", "connector=crm", "outcome=not_found"]);
    let listed = HubClient::new(ch.clone())
        .list_connectors(bearer(ListConnectorsRequest {}, Some(&beta)))
        .await
        .unwrap()
        .into_inner();
    assert!(listed.connectors.is_empty(), "{listed:?}");
    let err = HubClient::new(ch.clone())
        .describe(bearer(
            DescribeRequest {
                connector: "crm".into(),
            },
            Some(&beta),
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);

    // A tenant admin acts on its own tenant only.
    let beta_admin = spoke(
        &hub,
        &[
            "client-token",
            "create",
            "--tenant",
            "beta",
            "--connectors",
            "*",
            "--admin",
        ],
    );
    let stderr = spoke_refused(&hub, &beta_admin, &["revoke", "a1"]);
    assert!(stderr.contains("error[not_found]"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ambiguous_instance_id_lists_its_matches() {
    let (hub, _dir) = start();
    let _a = attach(
        channel(&hub).await,
        Attach::new(
            "echo",
            "same",
            Some(credentials(&new_key(), "", "echo", "same")),
        ),
    )
    .await
    .unwrap();
    let _b = attach(
        channel(&hub).await,
        Attach::new(
            "files",
            "same",
            Some(credentials(&new_key(), "", "files", "same")),
        ),
    )
    .await
    .unwrap();
    let op = hub.operator_token.clone().unwrap();
    let stderr = spoke_refused(&hub, &op, &["approve", "same"]);
    assert!(
        stderr.contains("ambiguous") && stderr.contains("`echo`") && stderr.contains("`files`"),
        "{stderr}"
    );
    assert!(spoke(&hub, &["approve", "same", "--connector", "files"]).contains("approved"));
}

#[test]
fn the_hub_refuses_to_start_without_tls_or_insecure() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(common::spoke_bin())
        .args(["hub", "--listen", "127.0.0.1:0", "--data"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--tls-cert") && stderr.contains("--insecure"),
        "{stderr}"
    );

    let missing = dir.path().join("nope.pem");
    let out = std::process::Command::new(common::spoke_bin())
        .args(["hub", "--listen", "127.0.0.1:0", "--data"])
        .arg(dir.path())
        .arg("--tls-cert")
        .arg(&missing)
        .arg("--tls-key")
        .arg(&missing)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--tls-cert") && stderr.contains("nope.pem"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_clients_need_the_right_ca() {
    let dir = tempfile::tempdir().unwrap();
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    std::fs::write(&cert, made.cert.pem()).unwrap();
    std::fs::write(&key, made.key_pair.serialize_pem()).unwrap();
    let data = dir.path().join("data");
    let hub = Hub::start_secure(
        &data,
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    assert!(!hub.log_text().contains("serving without TLS"));
    let url = format!("https://{}", hub.authority());
    let dial = |ca: String| {
        let url = url.clone();
        async move {
            Endpoint::from_shared(url)
                .unwrap()
                .tls_config(
                    ClientTlsConfig::new()
                        .ca_certificate(Certificate::from_pem(ca))
                        .domain_name("localhost"),
                )
                .unwrap()
                .connect()
                .await
        }
    };
    let good = dial(made.cert.pem()).await.expect("the right CA connects");
    let op = hub.operator_token.clone().unwrap();
    let listed = HubClient::new(good)
        .list_connectors(bearer(ListConnectorsRequest {}, Some(&op)))
        .await;
    assert!(listed.is_ok(), "{listed:?}");

    let other = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let refused = match dial(other.cert.pem()).await {
        Err(e) => Err(e.to_string()),
        Ok(channel) => HubClient::new(channel)
            .list_connectors(bearer(ListConnectorsRequest {}, Some(&op)))
            .await
            .map(|_| ())
            .map_err(|s| s.to_string()),
    };
    assert!(refused.is_err(), "an untrusted certificate must fail");
}

/// Polls `spoke <args>` (with the hub's CA and operator token) until its
/// stdout contains `needle`.
fn wait_cli(hub: &Hub, env: &[(&str, &str)], args: &[&str], needle: &str) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let out = hub
            .cli()
            .env("SPOKE_TOKEN", hub.operator_token.as_deref().unwrap())
            .envs(env.iter().copied())
            .args(args)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if stdout.contains(needle) {
            return stdout;
        }
        assert!(
            Instant::now() < deadline,
            "spoke {args:?} never printed {needle:?}; last: {stdout} {}; hub log:\n{}",
            String::from_utf8_lossy(&out.stderr),
            hub.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_real_connector_over_tls_waits_for_approval_then_serves() {
    let dir = tempfile::tempdir().unwrap();
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    std::fs::write(&cert, made.cert.pem()).unwrap();
    std::fs::write(&key, made.key_pair.serialize_pem()).unwrap();
    let hub = Hub::start_secure(
        &dir.path().join("data"),
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
            "--heartbeat-interval",
            "500ms",
        ],
    );
    let url = format!(
        "https://localhost:{}",
        hub.authority().rsplit(':').next().unwrap()
    );
    let ca = cert.to_str().unwrap();
    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let env = [("SPOKE_HUB_URL", url.as_str()), ("SPOKE_TLS_CA", ca)];

    // A real SDK connector: it makes its key, attaches over TLS, waits.
    let mut connector = common::example("echo");
    connector
        .arg("serve")
        .envs(env)
        .env("HOME", &home)
        .env("SPOKE_INSTANCE_ID", "echo-1")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let _connector = common::ChildGuard {
        child: connector.spawn().unwrap(),
    };
    let pending = wait_cli(&hub, &env, &["pending"], "echo-1");
    assert!(pending.contains("\"connector\": \"echo\""), "{pending}");
    assert!(home.join(".spoke/keys/echo_echo-1.pem").exists());

    spoke_with(&hub, &env, &["approve", "echo-1"]);
    let out = wait_cli(
        &hub,
        &env,
        &["call", "echo", "echo", r#"{"text":"hi"}"#],
        "hi",
    );
    assert!(out.contains("hi"), "{out}");

    // A second instance with a registration token is active at once.
    let token = spoke_with(&hub, &env, &["token", "create", "--connector", "echo"]);
    let mut second = common::example("echo");
    second
        .arg("serve")
        .envs(env)
        .env("HOME", &home)
        .env("SPOKE_INSTANCE_ID", "echo-2")
        .env("SPOKE_REGISTRATION_TOKEN", &token)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let _second = common::ChildGuard {
        child: second.spawn().unwrap(),
    };
    wait_cli(
        &hub,
        &env,
        &[
            "call",
            "echo",
            "echo",
            r#"{"text":"two"}"#,
            "--instance",
            "echo-2",
        ],
        "two",
    );
    // No token in the log.
    assert!(!hub.log_text().contains(&token));
    assert!(
        !hub.log_text()
            .contains(hub.operator_token.as_deref().unwrap())
    );
}

/// Runs `spoke` with extra environment and the operator token; its stdout.
fn spoke_with(hub: &Hub, env: &[(&str, &str)], args: &[&str]) -> String {
    hub.operator(env, args)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approvals_survive_a_restart_and_the_data_dir_is_private() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let key = new_key();
    let first_token;
    {
        let hub = Hub::start_secure(&data, &["--insecure"]);
        first_token = hub.operator_token.clone().unwrap();
        let c = approved(&hub, "", "echo", "p1", &key).await;
        drop(c);
        hub.wait_log(&["serving without TLS"]);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&data), 0o700);
        assert_eq!(mode(&data.join("operator.token")), 0o600);
    }
    let hub = Hub::start_secure(&data, &["--insecure"]);
    assert_eq!(
        hub.operator_token.as_deref(),
        Some(first_token.as_str()),
        "kept"
    );
    assert!(
        !hub.log_text().contains(&first_token),
        "the token is never logged"
    );
    let (_c, registered) = attach(
        channel(&hub).await,
        Attach::new("echo", "p1", Some(credentials(&key, "", "echo", "p1"))),
    )
    .await
    .unwrap();
    assert_eq!(registered.status, RegistrationStatus::Active as i32);
}
