//! Property tests of what the hub decodes from a connector's Attach stream:
//! any bytes as a `ConnectorFrame` (as tonic hands them to prost), any
//! `Register` through the hub's checks, and any `Register.credentials`
//! through the proof of the instance's key. No panic on any input, and a
//! refusal names the `Register` field that is wrong.

use ed25519_dalek::{Signer, SigningKey};
use proptest::prelude::*;
use proptest::test_runner::Config;
use serde_json::{Value, json};
use spoke_proto::prost::Message;
use spoke_proto::v1::{
    Assertion, Chunk, ConnectorFrame, Credentials, Event, Goodbye, InstanceInfo, Ping, Pong,
    Register, connector_frame,
};

use crate::sessions::register;
use crate::trust::assertion::{Claim, MAX_LIFETIME_MS, ReplayCache, SKEW_MS, verify};

/// proptest's default case count, and no failure files.
fn config() -> Config {
    Config {
        failure_persistence: None,
        ..Config::default()
    }
}

/// Text of any kind: ids and names as the SDK sends them, control
/// characters, any Unicode, and now and then longer than any limit.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => "[a-z0-9_-]{0,12}",
        2 => any::<String>(),
        1 => "[\\x00-\\x1f\\x7f a-z]{0,4}",
        1 => "[a-z]{0,300}",
    ]
}

/// A manifest that is valid, one with a field changed, or any JSON text.
fn manifest_json() -> impl Strategy<Value = String> {
    let valid = |name: String, version: String, spoke: u64| {
        json!({
            "spoke": spoke, "name": name, "version": version, "display_name": "D",
            "description": "", "config": {}, "actions": [], "search_operators": [],
            "capabilities": []
        })
    };
    prop_oneof![
        4 => ("[a-z][a-z0-9_-]{0,10}", "[0-9.]{1,6}")
            .prop_map(move |(n, v)| valid(n, v, 1).to_string()),
        2 => (text(), text(), prop_oneof![Just(1u64), any::<u64>()])
            .prop_map(move |(n, v, s)| valid(n, v, s).to_string()),
        1 => ("[a-z]{1,6}", "[a-z_]{1,12}", text()).prop_map(move |(n, key, junk)| {
            let mut m = valid(n, "1".into(), 1);
            m[key] = Value::from(junk);
            m.to_string()
        }),
        1 => text(),
    ]
}

fn instance() -> impl Strategy<Value = InstanceInfo> {
    (
        text(),
        text(),
        prop::collection::vec(text(), 0..4),
        prop::collection::hash_map(text(), text(), 0..4),
    )
        .prop_map(|(id, display_name, tags, metadata)| InstanceInfo {
            id,
            display_name,
            tags,
            metadata,
        })
}

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..max)
}

fn credentials() -> impl Strategy<Value = Credentials> {
    (bytes(40), bytes(80), bytes(70), text()).prop_map(
        |(public_key, assertion, signature, registration_token)| Credentials {
            public_key: public_key.into(),
            assertion: assertion.into(),
            signature: signature.into(),
            registration_token,
        },
    )
}

fn register() -> impl Strategy<Value = Register> {
    (
        manifest_json(),
        prop_oneof![4 => Just(1u32), 1 => any::<u32>()],
        text(),
        text(),
        prop::option::weighted(0.9, instance()),
        text(),
        prop::option::of(credentials()),
        any::<u32>(),
    )
        .prop_map(
            |(
                manifest_json,
                protocol_version,
                sdk_version,
                tenant,
                instance,
                session_token,
                credentials,
                max_in_flight,
            )| Register {
                manifest_json,
                protocol_version,
                sdk_version,
                tenant,
                instance,
                session_token,
                credentials,
                max_in_flight,
            },
        )
}

/// Any frame a connector may send.
fn frame() -> impl Strategy<Value = ConnectorFrame> {
    use connector_frame::Frame;
    let frame = prop_oneof![
        4 => register().prop_map(Frame::Register),
        1 => (text(), any::<u64>(), bytes(64))
            .prop_map(|(request_id, seq, data)| Frame::Chunk(Chunk { request_id, seq, data: data.into() })),
        1 => (text(), text(), text())
            .prop_map(|(request_id, kind, json)| Frame::Event(Event { request_id, kind, json })),
        1 => any::<u64>().prop_map(|nonce| Frame::Ping(Ping { nonce })),
        1 => any::<u64>().prop_map(|nonce| Frame::Pong(Pong { nonce })),
        1 => text().prop_map(|reason| Frame::Goodbye(Goodbye { reason })),
    ];
    prop::option::weighted(0.95, frame).prop_map(|frame| ConnectorFrame { frame })
}

/// A frame's bytes: as encoded, cut short, with a byte changed or added;
/// or any bytes.
fn wire() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => (frame(), 0..5u8, any::<prop::sample::Index>(), any::<u8>()).prop_map(
            |(frame, how, at, byte)| {
                let mut bytes = frame.encode_to_vec();
                let at = at.index(bytes.len() + 1);
                match how {
                    0 | 1 => {}
                    2 => bytes.truncate(at),
                    3 => bytes.insert(at, byte),
                    _ => {
                        if let Some(b) = bytes.get_mut(at) {
                            *b = byte;
                        }
                    }
                }
                bytes
            }
        ),
        1 => bytes(256),
    ]
}

/// The hub's verdict on a Register: accepted, or a refusal that names the
/// Register field that is wrong.
fn assert_checked(r: Register, isolate: bool) -> Result<(), TestCaseError> {
    match register::check(r, isolate) {
        Ok(registration) => {
            let id = &registration.info.id;
            prop_assert!(
                !id.is_empty() && !id.chars().any(char::is_control),
                "{:?}",
                id
            );
            let name = &registration.manifest.name;
            prop_assert!(
                name.starts_with(|c: char| c.is_ascii_lowercase()),
                "{:?}",
                name
            );
            if isolate {
                prop_assert_eq!(&registration.scope, &registration.tenant);
            }
        }
        Err(refusal) => {
            // Debug: the refusal as a message or as a kind of refusal
            // holding one.
            let reason = format!("{refusal:?}");
            prop_assert!(reason.contains("Register."), "which field? {}", reason);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    /// Any bytes decode as a frame or fail with prost's error; what decodes
    /// encodes back to a frame that decodes the same; a Register among them
    /// goes through the checks.
    #[test]
    fn any_bytes_decode_as_a_frame_or_fail(bytes in wire()) {
        match ConnectorFrame::decode(bytes.as_slice()) {
            Ok(frame) => {
                let again = ConnectorFrame::decode(frame.encode_to_vec().as_slice());
                prop_assert_eq!(again.as_ref(), Ok(&frame));
                if let Some(connector_frame::Frame::Register(r)) = frame.frame {
                    assert_checked(r.clone(), false)?;
                    assert_checked(r, true)?;
                }
            }
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }

    /// Any Register: accepted with a usable instance id and connector
    /// name, or refused naming the field.
    #[test]
    fn any_register_is_accepted_or_refused_naming_the_field(
        r in register(),
        isolate in any::<bool>(),
    ) {
        assert_checked(r, isolate)?;
    }

    /// Any credentials: refused with a reason (they do not verify); and a
    /// correctly signed assertion at any time: accepted exactly when its
    /// window holds `now` (60 s of skew) and is at most 300 s long.
    #[test]
    fn any_credentials_are_proven_or_refused(
        junk in credentials(),
        seed in any::<[u8; 32]>(),
        now in any::<u64>(),
        issued_offset in prop_oneof![any::<i64>(), -400_000i64..400_000],
        lifetime in prop_oneof![any::<i64>(), -1000i64..400_000],
        nonce in bytes(70),
    ) {
        let claim = Claim { tenant: "default", connector: "echo", instance_id: "e1" };
        let cache = ReplayCache::default();
        let refused = verify(Some(&junk), claim, now, &cache);
        prop_assert!(refused.is_err_and(|e| !e.is_empty()));

        let issued = now.saturating_add_signed(issued_offset);
        let expires = issued.saturating_add_signed(lifetime);
        let assertion = Assertion {
            tenant: String::new(),
            connector: "echo".into(),
            instance_id: "e1".into(),
            issued_at_unix_ms: issued,
            expires_at_unix_ms: expires,
            nonce: nonce.into(),
        };
        let key = SigningKey::from_bytes(&seed);
        let encoded = assertion.encode_to_vec();
        let mut signed = spoke_runtime::grpc::identity::SIGNING_CONTEXT.to_vec();
        signed.extend_from_slice(&encoded);
        let credentials = Credentials {
            public_key: key.verifying_key().to_bytes().to_vec().into(),
            assertion: encoded.into(),
            signature: key.sign(&signed).to_bytes().to_vec().into(),
            registration_token: String::new(),
        };
        let in_window = issued <= now.saturating_add(SKEW_MS)
            && expires.saturating_add(SKEW_MS) >= now
            && expires >= issued
            && expires - issued <= MAX_LIFETIME_MS;
        match verify(Some(&credentials), claim, now, &cache) {
            Ok(proven) => {
                prop_assert!(in_window);
                prop_assert_eq!(proven.public_key, key.verifying_key().to_bytes());
            }
            Err(e) => prop_assert!(!in_window || e.contains("nonce"), "{}", e),
        }
    }
}
