//! Checking a connector's `Register` frame before it joins the registry:
//! first its sizes, against the limits of `spoke_proto::limits` (every string, list and map
//! of the frame and its nested messages, then the whole frame), before any
//! of it is parsed, verified or stored; then what it says (protocol
//! version, manifest, instance id, tenant).
//!
//! The limits are far above what a real connector sends (the largest
//! manifest among the examples is about 17 KB) and small enough that a
//! peer cannot make the hub keep, log or store megabytes with one frame.

use spoke_proto::PROTOCOL_VERSION;
use spoke_proto::prost::Message;
use spoke_proto::v1::Register;
use spoke_runtime::Manifest;
use spoke_runtime::manifest::MANIFEST_VERSION;
use spoke_runtime::mcp::tools::qualified_name;

use crate::ids::DEFAULT_TENANT;
use crate::routing::registry::Registration;

pub(crate) use spoke_proto::limits::{
    MAX_ASSERTION_BYTES, MAX_CONNECTOR_NAME_BYTES, MAX_CONNECTOR_VERSION_BYTES,
    MAX_DISPLAY_NAME_BYTES, MAX_INSTANCE_ID_BYTES, MAX_MANIFEST_JSON_BYTES, MAX_METADATA_ENTRIES,
    MAX_METADATA_KEY_BYTES, MAX_METADATA_VALUE_BYTES, MAX_PUBLIC_KEY_BYTES, MAX_REGISTER_BYTES,
    MAX_REGISTRATION_TOKEN_BYTES, MAX_SDK_VERSION_BYTES, MAX_SESSION_TOKEN_BYTES,
    MAX_SIGNATURE_BYTES, MAX_TAG_BYTES, MAX_TAGS, MAX_TENANT_BYTES,
};

/// Why a `Register` is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Invalid {
    /// A field, or the whole frame, is over its limit: the stream ends with
    /// INVALID_ARGUMENT and this message (the field, the limit, the size).
    TooLarge(String),
    /// Within the limits, but not a Register the hub can use (a bad
    /// manifest, no instance id, ...): answered with a Goodbye naming the
    /// problem.
    Unusable(String),
}

impl From<String> for Invalid {
    fn from(message: String) -> Self {
        Invalid::Unusable(message)
    }
}

impl From<&str> for Invalid {
    fn from(message: &str) -> Self {
        Invalid::Unusable(message.to_owned())
    }
}

/// The tenant "" stands for: "default".
pub(crate) fn tenant_name(tenant: &str) -> &str {
    if tenant.is_empty() {
        DEFAULT_TENANT
    } else {
        tenant
    }
}

/// Checks a `Register`; the error is the reason it is refused. With
/// `isolate` (a hub with auth) the instance lives in its own tenant,
/// otherwise every instance is in "default".
pub(crate) fn check(register: Register, isolate: bool) -> Result<Registration, Invalid> {
    check_limits(&register).map_err(Invalid::TooLarge)?;
    // 0 is proto3's "unset"; the SDK sends 1.
    if register.protocol_version > PROTOCOL_VERSION {
        return Err(format!(
            "Register.protocol_version {} is not supported; this hub speaks version {PROTOCOL_VERSION}",
            register.protocol_version
        )
        .into());
    }
    let manifest = parse_manifest(&register.manifest_json)?;
    let info = register
        .instance
        .ok_or("Register.instance is missing; send the instance's id (and display name, tags)")?;
    check_instance_id(&info.id)?;
    if register.tenant.chars().any(char::is_control) {
        return Err("Register.tenant contains control characters".into());
    }
    // Shown in `spoke ls` and `spoke pending`: no terminal escapes.
    printable("Register.instance.display_name", &info.display_name)?;
    for (n, tag) in info.tags.iter().enumerate() {
        printable(&format!("Register.instance.tags[{n}]"), tag)?;
    }
    printable("Register.sdk_version", &register.sdk_version)?;
    let (tenant, scope) = if isolate {
        let name = tenant_name(&register.tenant).to_owned();
        (name.clone(), name)
    } else {
        (register.tenant, DEFAULT_TENANT.to_owned())
    };
    Ok(Registration {
        manifest,
        manifest_json: register.manifest_json,
        info,
        tenant,
        scope,
        credentials: register.credentials,
        sdk_version: register.sdk_version,
        session_token: register.session_token,
        max_in_flight: register.max_in_flight,
    })
}

/// `value` of `field` has no control characters (a terminal escape in a
/// name would reach the administrator's terminal through a listing).
fn printable(field: &str, value: &str) -> Result<(), String> {
    match value.char_indices().find(|(_, c)| c.is_control()) {
        Some((at, c)) => Err(format!(
            "{field} contains the control character {c:?} at byte {at}; names and tags must be printable"
        )),
        None => Ok(()),
    }
}

/// `field` of `len` bytes is at most `max` bytes long.
fn at_most(field: &str, len: usize, max: usize) -> Result<(), String> {
    if len > max {
        return Err(format!(
            "{field} is {len} bytes long; at most {max} are allowed"
        ));
    }
    Ok(())
}

/// `field` has at most `max` entries.
fn at_most_entries(field: &str, count: usize, max: usize) -> Result<(), String> {
    if count > max {
        return Err(format!(
            "{field} has {count} entries; at most {max} are allowed"
        ));
    }
    Ok(())
}

/// Checks every string, list and map of a `Register` (and of its nested
/// messages) against its limit, then the whole frame's encoded size; the
/// error names the field, the limit and the size. Cheap: lengths only.
pub(crate) fn check_limits(register: &Register) -> Result<(), String> {
    at_most(
        "Register.manifest_json",
        register.manifest_json.len(),
        MAX_MANIFEST_JSON_BYTES,
    )?;
    at_most(
        "Register.sdk_version",
        register.sdk_version.len(),
        MAX_SDK_VERSION_BYTES,
    )?;
    at_most("Register.tenant", register.tenant.len(), MAX_TENANT_BYTES)?;
    at_most(
        "Register.session_token",
        register.session_token.len(),
        MAX_SESSION_TOKEN_BYTES,
    )?;
    if let Some(info) = &register.instance {
        at_most("Register.instance.id", info.id.len(), MAX_INSTANCE_ID_BYTES)?;
        at_most(
            "Register.instance.display_name",
            info.display_name.len(),
            MAX_DISPLAY_NAME_BYTES,
        )?;
        at_most_entries("Register.instance.tags", info.tags.len(), MAX_TAGS)?;
        for (n, tag) in info.tags.iter().enumerate() {
            at_most(
                &format!("Register.instance.tags[{n}]"),
                tag.len(),
                MAX_TAG_BYTES,
            )?;
        }
        at_most_entries(
            "Register.instance.metadata",
            info.metadata.len(),
            MAX_METADATA_ENTRIES,
        )?;
        for (key, value) in &info.metadata {
            // The key is not quoted in the message: it is the long part.
            at_most(
                "a key of Register.instance.metadata",
                key.len(),
                MAX_METADATA_KEY_BYTES,
            )?;
            at_most(
                &format!("Register.instance.metadata[{key:?}]"),
                value.len(),
                MAX_METADATA_VALUE_BYTES,
            )?;
        }
    }
    if let Some(credentials) = &register.credentials {
        at_most(
            "Register.credentials.public_key",
            credentials.public_key.len(),
            MAX_PUBLIC_KEY_BYTES,
        )?;
        at_most(
            "Register.credentials.assertion",
            credentials.assertion.len(),
            MAX_ASSERTION_BYTES,
        )?;
        at_most(
            "Register.credentials.signature",
            credentials.signature.len(),
            MAX_SIGNATURE_BYTES,
        )?;
        at_most(
            "Register.credentials.registration_token",
            credentials.registration_token.len(),
            MAX_REGISTRATION_TOKEN_BYTES,
        )?;
    }
    let total = register.encoded_len();
    if total > MAX_REGISTER_BYTES {
        return Err(format!(
            "Register is {total} bytes encoded; at most {MAX_REGISTER_BYTES} are allowed"
        ));
    }
    Ok(())
}

/// Parses and checks `Register.manifest_json` (at most
/// [`MAX_MANIFEST_JSON_BYTES`], checked before).
pub(crate) fn parse_manifest(json: &str) -> Result<Manifest, Invalid> {
    if json.trim().is_empty() {
        return Err(
            "Register.manifest_json is empty; send the connector's manifest as JSON".into(),
        );
    }
    let manifest: Manifest = serde_json::from_str(json)
        .map_err(|e| format!("Register.manifest_json is not a valid Spoke manifest: {e}"))?;
    if manifest.spoke != MANIFEST_VERSION {
        return Err(format!(
            "Register.manifest_json: manifest format `\"spoke\": {}` is not supported; this hub reads version {MANIFEST_VERSION}",
            manifest.spoke
        )
        .into());
    }
    // Before any message quotes them.
    at_most(
        "Register.manifest_json: the connector name",
        manifest.name.len(),
        MAX_CONNECTOR_NAME_BYTES,
    )
    .map_err(Invalid::TooLarge)?;
    at_most(
        "Register.manifest_json: the connector version",
        manifest.version.len(),
        MAX_CONNECTOR_VERSION_BYTES,
    )
    .map_err(Invalid::TooLarge)?;
    if !valid_name(&manifest.name) {
        return Err(format!(
            "Register.manifest_json: connector name `{}` is invalid; expected [a-z][a-z0-9_-]*",
            manifest.name
        )
        .into());
    }
    if manifest.version.trim().is_empty() {
        return Err(format!(
            "Register.manifest_json: connector `{}` has an empty version",
            manifest.name
        )
        .into());
    }
    // Every action is a tool of the hub's MCP view (`spoke mcp`).
    for action in &manifest.actions {
        if let Err(why) = qualified_name(&manifest.name, &action.name) {
            return Err(format!(
                "Register.manifest_json: action `{}` of connector `{}` cannot be offered as an MCP tool: {why}",
                action.name, manifest.name
            )
            .into());
        }
    }
    Ok(manifest)
}

/// Checks a non-empty instance id without control characters (its length
/// is checked with the limits).
fn check_instance_id(id: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err("Register.instance.id is empty; every instance needs a stable id".into());
    }
    if id.chars().any(char::is_control) {
        return Err(format!(
            "Register.instance.id {id:?} contains control characters"
        ));
    }
    Ok(())
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

#[cfg(test)]
mod tests {
    use spoke_proto::v1::{Credentials, InstanceInfo};

    use super::*;

    fn manifest() -> serde_json::Value {
        serde_json::json!({
            "spoke": 1, "name": "echo", "version": "1.0.0", "display_name": "Echo",
            "description": "", "config": {}, "actions": [], "search_operators": [],
            "capabilities": []
        })
    }

    fn register(manifest: &serde_json::Value, id: &str) -> Register {
        Register {
            manifest_json: manifest.to_string(),
            protocol_version: 1,
            instance: Some(InstanceInfo {
                id: id.into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// Checks on a hub without auth; the error of a Register the hub
    /// cannot use (a size refusal fails the test).
    fn check_open(r: Register) -> Result<Registration, String> {
        match check(r, false) {
            Ok(reg) => Ok(reg),
            Err(Invalid::Unusable(message)) => Err(message),
            Err(Invalid::TooLarge(message)) => panic!("refused for its size: {message}"),
        }
    }

    /// A Register with every string, list and map at its limit, and a
    /// manifest of `manifest_bytes` (padded in its description).
    fn at_every_limit(manifest_bytes: usize) -> Register {
        let mut m = manifest();
        m["name"] = "c".repeat(MAX_CONNECTOR_NAME_BYTES).into();
        m["version"] = "1".repeat(MAX_CONNECTOR_VERSION_BYTES).into();
        let pad = manifest_bytes - m.to_string().len();
        m["description"] = "d".repeat(pad).into();
        let manifest_json = m.to_string();
        assert_eq!(manifest_json.len(), manifest_bytes);
        Register {
            manifest_json,
            protocol_version: 1,
            sdk_version: "s".repeat(MAX_SDK_VERSION_BYTES),
            tenant: "t".repeat(MAX_TENANT_BYTES),
            instance: Some(InstanceInfo {
                id: "i".repeat(MAX_INSTANCE_ID_BYTES),
                display_name: "n".repeat(MAX_DISPLAY_NAME_BYTES),
                tags: (0..MAX_TAGS)
                    .map(|n| format!("{n:0>MAX_TAG_BYTES$}"))
                    .collect(),
                metadata: (0..MAX_METADATA_ENTRIES)
                    .map(|n| {
                        (
                            format!("{n:0>MAX_METADATA_KEY_BYTES$}"),
                            "v".repeat(MAX_METADATA_VALUE_BYTES),
                        )
                    })
                    .collect(),
            }),
            session_token: "k".repeat(MAX_SESSION_TOKEN_BYTES),
            credentials: Some(Credentials {
                public_key: vec![1; MAX_PUBLIC_KEY_BYTES].into(),
                assertion: vec![2; MAX_ASSERTION_BYTES].into(),
                signature: vec![3; MAX_SIGNATURE_BYTES].into(),
                registration_token: "r".repeat(MAX_REGISTRATION_TOKEN_BYTES),
            }),
            max_in_flight: 8,
        }
    }

    /// The size refusal of `r`; anything else fails the test.
    fn too_large(r: Register) -> String {
        match check(r, true) {
            Err(Invalid::TooLarge(message)) => message,
            Err(Invalid::Unusable(message)) => panic!("refused, not for its size: {message}"),
            Ok(_) => panic!("accepted"),
        }
    }

    #[test]
    fn a_register_at_every_limit_is_accepted() {
        let r = at_every_limit(900 * 1024);
        assert!(r.encoded_len() <= MAX_REGISTER_BYTES, "{}", r.encoded_len());
        let reg = check(r, true).expect("every field at its limit is accepted");
        assert_eq!(reg.manifest.name.len(), MAX_CONNECTOR_NAME_BYTES);
        assert_eq!(reg.info.tags.len(), MAX_TAGS);
        assert_eq!(reg.info.metadata.len(), MAX_METADATA_ENTRIES);
    }

    #[test]
    fn each_field_over_its_limit_is_refused_naming_the_field_limit_and_size() {
        type Grow = fn(&mut Register);
        fn info(r: &mut Register) -> &mut InstanceInfo {
            r.instance.as_mut().unwrap()
        }
        fn creds(r: &mut Register) -> &mut Credentials {
            r.credentials.as_mut().unwrap()
        }
        fn grow(text: &mut String) {
            text.push('x');
        }
        let value_key = format!("{:0>MAX_METADATA_KEY_BYTES$}", 3);
        let cases: [(String, usize, Grow); 13] = [
            ("Register.sdk_version".into(), MAX_SDK_VERSION_BYTES, |r| {
                grow(&mut r.sdk_version)
            }),
            ("Register.tenant".into(), MAX_TENANT_BYTES, |r| {
                grow(&mut r.tenant)
            }),
            (
                "Register.session_token".into(),
                MAX_SESSION_TOKEN_BYTES,
                |r| grow(&mut r.session_token),
            ),
            ("Register.instance.id".into(), MAX_INSTANCE_ID_BYTES, |r| {
                grow(&mut info(r).id)
            }),
            (
                "Register.instance.display_name".into(),
                MAX_DISPLAY_NAME_BYTES,
                |r| grow(&mut info(r).display_name),
            ),
            ("Register.instance.tags[7]".into(), MAX_TAG_BYTES, |r| {
                grow(&mut info(r).tags[7])
            }),
            (
                "a key of Register.instance.metadata".into(),
                MAX_METADATA_KEY_BYTES,
                |r| {
                    let key = "x".repeat(MAX_METADATA_KEY_BYTES + 1);
                    let metadata = &mut info(r).metadata;
                    let first = metadata.keys().next().unwrap().clone();
                    let value = metadata.remove(&first).unwrap();
                    metadata.insert(key, value);
                },
            ),
            (
                format!("Register.instance.metadata[{value_key:?}]"),
                MAX_METADATA_VALUE_BYTES,
                |r| {
                    let key = format!("{:0>MAX_METADATA_KEY_BYTES$}", 3);
                    grow(info(r).metadata.get_mut(&key).unwrap())
                },
            ),
            (
                "Register.credentials.public_key".into(),
                MAX_PUBLIC_KEY_BYTES,
                |r| creds(r).public_key = vec![1; MAX_PUBLIC_KEY_BYTES + 1].into(),
            ),
            (
                "Register.credentials.assertion".into(),
                MAX_ASSERTION_BYTES,
                |r| creds(r).assertion = vec![2; MAX_ASSERTION_BYTES + 1].into(),
            ),
            (
                "Register.credentials.signature".into(),
                MAX_SIGNATURE_BYTES,
                |r| creds(r).signature = vec![3; MAX_SIGNATURE_BYTES + 1].into(),
            ),
            (
                "Register.credentials.registration_token".into(),
                MAX_REGISTRATION_TOKEN_BYTES,
                |r| grow(&mut creds(r).registration_token),
            ),
            (
                "Register.manifest_json".into(),
                MAX_MANIFEST_JSON_BYTES,
                |r| r.manifest_json = format!("{{}}{}", " ".repeat(MAX_MANIFEST_JSON_BYTES - 1)),
            ),
        ];
        for (field, limit, grow) in cases {
            let mut r = at_every_limit(64 * 1024);
            grow(&mut r);
            let message = too_large(r);
            assert_eq!(
                message,
                format!(
                    "{field} is {} bytes long; at most {limit} are allowed",
                    limit + 1
                )
            );
        }
    }

    #[test]
    fn too_many_entries_and_an_oversized_manifest_name_or_version_are_refused() {
        let mut r = at_every_limit(64 * 1024);
        r.instance.as_mut().unwrap().tags.push("one more".into());
        assert_eq!(
            too_large(r),
            format!(
                "Register.instance.tags has {} entries; at most {MAX_TAGS} are allowed",
                MAX_TAGS + 1
            )
        );

        let mut r = at_every_limit(64 * 1024);
        r.instance
            .as_mut()
            .unwrap()
            .metadata
            .insert("one more".into(), String::new());
        assert_eq!(
            too_large(r),
            format!(
                "Register.instance.metadata has {} entries; at most {MAX_METADATA_ENTRIES} are allowed",
                MAX_METADATA_ENTRIES + 1
            )
        );

        let mut m = manifest();
        m["name"] = "c".repeat(MAX_CONNECTOR_NAME_BYTES + 1).into();
        assert_eq!(
            too_large(register(&m, "a")),
            format!(
                "Register.manifest_json: the connector name is {} bytes long; at most {MAX_CONNECTOR_NAME_BYTES} are allowed",
                MAX_CONNECTOR_NAME_BYTES + 1
            )
        );
        let mut m = manifest();
        m["version"] = "1".repeat(MAX_CONNECTOR_VERSION_BYTES + 1).into();
        assert_eq!(
            too_large(register(&m, "a")),
            format!(
                "Register.manifest_json: the connector version is {} bytes long; at most {MAX_CONNECTOR_VERSION_BYTES} are allowed",
                MAX_CONNECTOR_VERSION_BYTES + 1
            )
        );
    }

    #[test]
    fn the_whole_register_is_limited_too() {
        // Every field within its limit, together over the total.
        let r = at_every_limit(MAX_MANIFEST_JSON_BYTES - 1024);
        let total = r.encoded_len();
        assert!(total > MAX_REGISTER_BYTES, "{total}");
        assert_eq!(
            too_large(r),
            format!("Register is {total} bytes encoded; at most {MAX_REGISTER_BYTES} are allowed")
        );
    }

    #[test]
    fn names_and_tags_with_control_characters_are_refused() {
        let manifest = manifest();
        let mut r = register(&manifest, "x-1");
        r.instance.as_mut().unwrap().display_name = "ok\u{1b}[2Jwiped".into();
        let err = check_open(r).unwrap_err();
        assert_eq!(
            err,
            "Register.instance.display_name contains the control character '\\u{1b}' at byte 2; names and tags must be printable"
        );
        let mut r = register(&manifest, "x-1");
        r.instance.as_mut().unwrap().tags = vec!["fine".into(), "line\nbreak".into()];
        assert!(
            check_open(r)
                .unwrap_err()
                .starts_with("Register.instance.tags[1] contains")
        );
    }

    #[test]
    fn a_one_mebibyte_display_name_is_refused_before_the_manifest_is_read() {
        let mut r = register(&manifest(), "a");
        r.manifest_json = "not json, never parsed".into();
        r.instance.as_mut().unwrap().display_name = "n".repeat(1024 * 1024);
        let message = too_large(r);
        assert_eq!(
            message,
            format!(
                "Register.instance.display_name is 1048576 bytes long; at most {MAX_DISPLAY_NAME_BYTES} are allowed"
            )
        );
    }

    #[test]
    fn accepts_a_valid_register() {
        let reg = check_open(register(&manifest(), "echo-1")).unwrap();
        assert_eq!(reg.manifest.name, "echo");
        assert_eq!(reg.info.id, "echo-1");
    }

    #[test]
    fn rejects_bad_manifests_with_the_reason() {
        let err = check_open(register(&serde_json::json!({"spoke": 1}), "a")).unwrap_err();
        assert!(err.contains("not a valid Spoke manifest"), "{err}");
        assert!(err.contains("missing field"), "{err}");

        let mut m = manifest();
        m["spoke"] = 2.into();
        assert!(
            check_open(register(&m, "a"))
                .unwrap_err()
                .contains("\"spoke\": 2")
        );

        let mut m = manifest();
        m["name"] = "Echo".into();
        assert!(
            check_open(register(&m, "a"))
                .unwrap_err()
                .contains("`Echo` is invalid")
        );

        let mut r = register(&manifest(), "a");
        r.manifest_json = "  ".into();
        assert!(check_open(r).unwrap_err().contains("empty"));

        // Every action must fit a tool name of the hub's MCP view.
        let mut m = manifest();
        let action = |name: String| {
            serde_json::json!({
                "name": name, "description": "", "mode": "read", "admin_only": false,
                "hidden": true, "timeout_ms": null, "input_schema": {}, "output_schema": {},
            })
        };
        m["actions"] = serde_json::json!([action("a".repeat(58))]);
        assert!(check_open(register(&m, "a")).is_ok());
        m["actions"] = serde_json::json!([action("ok".into()), action("a".repeat(59))]);
        let err = check_open(register(&m, "a")).unwrap_err();
        assert!(
            err.contains(&format!(
                "action `{}` of connector `echo` cannot be offered as an MCP tool",
                "a".repeat(59)
            )) && err.contains("is 65 characters; tool names are at most 64"),
            "{err}"
        );
    }

    #[test]
    fn rejects_bad_instances_and_versions() {
        assert!(
            check_open(register(&manifest(), ""))
                .unwrap_err()
                .contains("instance.id is empty")
        );
        let mut r = register(&manifest(), "a");
        r.instance = None;
        assert!(check_open(r).unwrap_err().contains("instance is missing"));
        let mut r = register(&manifest(), "a");
        r.protocol_version = 7;
        assert!(check_open(r).unwrap_err().contains("protocol_version 7"));
    }
}
