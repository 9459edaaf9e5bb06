//! Checking a connector's `Register` frame before it joins the registry.

use spoke_proto::PROTOCOL_VERSION;
use spoke_proto::v1::Register;
use spoke_runtime::Manifest;
use spoke_runtime::manifest::MANIFEST_VERSION;

use crate::ids::DEFAULT_TENANT;
use crate::routing::registry::Registration;

/// The longest instance id accepted.
const MAX_INSTANCE_ID_LEN: usize = 256;

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
pub(crate) fn check(register: Register, isolate: bool) -> Result<Registration, String> {
    // 0 is proto3's "unset"; the SDK sends 1.
    if register.protocol_version > PROTOCOL_VERSION {
        return Err(format!(
            "Register.protocol_version {} is not supported; this hub speaks version {PROTOCOL_VERSION}",
            register.protocol_version
        ));
    }
    let manifest = parse_manifest(&register.manifest_json)?;
    let info = register
        .instance
        .ok_or("Register.instance is missing; send the instance's id (and display name, tags)")?;
    check_instance_id(&info.id)?;
    if register.tenant.len() > MAX_INSTANCE_ID_LEN || register.tenant.chars().any(char::is_control)
    {
        return Err("Register.tenant is too long or contains control characters".into());
    }
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

/// Parses and checks `Register.manifest_json`.
pub(crate) fn parse_manifest(json: &str) -> Result<Manifest, String> {
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
        ));
    }
    if !valid_name(&manifest.name) {
        return Err(format!(
            "Register.manifest_json: connector name `{}` is invalid; expected [a-z][a-z0-9_-]*",
            manifest.name
        ));
    }
    if manifest.version.trim().is_empty() {
        return Err(format!(
            "Register.manifest_json: connector `{}` has an empty version",
            manifest.name
        ));
    }
    Ok(manifest)
}

fn check_instance_id(id: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err("Register.instance.id is empty; every instance needs a stable id".into());
    }
    if id.len() > MAX_INSTANCE_ID_LEN {
        return Err(format!(
            "Register.instance.id is {} bytes long; at most {MAX_INSTANCE_ID_LEN} are allowed",
            id.len()
        ));
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
    use spoke_proto::v1::InstanceInfo;

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

    fn check_open(r: Register) -> Result<Registration, String> {
        check(r, false)
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
