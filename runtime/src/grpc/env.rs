//! The environment variables `serve` reads to attach to a hub (the shared
//! ones are [`env`](crate::env)'s).
//!
//! | Variable | Meaning | Default |
//! |---|---|---|
//! | `SPOKE_HUB_URL` | the hub's gRPC address, `https://host:port` (TLS) or `http://host:port` (plain text; a warning unless the host is loopback); see [`hub_tls`](crate::grpc::tls) | `http://127.0.0.1:7700` |
//! | `SPOKE_TLS_CA` | a PEM file of the CA certificates that sign the hub's certificate, trusted instead of the system's roots; must exist and hold a certificate | the system's roots |
//! | `SPOKE_KEY_PATH` | this instance's private key, a PKCS#8 PEM Ed25519 key accessible to its owner only (mode 0600 or 0400), e.g. a mounted secret; the file must exist (see [`identity`](crate::grpc::identity)) | `~/.spoke/keys/<connector>_<instance>.pem`, made on first use |
//! | `SPOKE_REGISTRATION_TOKEN` | a one-time token from `spoke token create --connector NAME` that approves this instance when it first attaches (never logged) | none: the instance waits for `spoke approve <instance>` |
//! | `SPOKE_INSTANCE_ID` | this instance's id, unique among the connector's instances; keep it stable across restarts, so that a restarted instance takes its old place at once (the old session ends and its calls fail over right away) and routes by instance keep working; on a hub with approval the id names the key file and the approval, so a new id is a new instance to approve | `<connector name>-<unix millis>`, with a warning |
//! | `SPOKE_DISPLAY_NAME` | a human-friendly name for this instance | the connector's display name |
//! | `SPOKE_TAGS` | comma-separated tags, e.g. `eu, blue` (trimmed; empty entries dropped) | none |
//! | `SPOKE_METADATA_<KEY>` | one metadata entry `<key>` (lowercased) = value, e.g. `SPOKE_METADATA_REGION=eu-west-1` | none |
//! | `SPOKE_TENANT` | the tenant this instance serves | none |
//! | `SPOKE_MAX_IN_FLIGHT` | how many invocations run at once, a positive integer | `64` |
//! | `SPOKE_SHUTDOWN_GRACE` | how long running invocations may take to finish on shutdown, e.g. `30s`, `500ms`, `1m` | `10s` |
//!
//! A variable set to the empty string counts as unset. A value that does not
//! parse is an [`EnvError`] naming the variable; the command line reports it
//! as a usage error (exit code 2). So is a `SPOKE_KEY_PATH` whose file is
//! missing, unreadable, malformed or readable by others, found when `serve`
//! loads the key before it first dials the hub.
//!
//! ```
//! use spoke::grpc::serve::AttachOptions;
//! # let manifest: spoke::Manifest = serde_json::from_value(serde_json::json!({
//! #     "spoke": 1, "name": "echo", "version": "1.0.0", "display_name": "Echo",
//! #     "description": "", "config": {}, "actions": [], "search_operators": [], "capabilities": []
//! # })).unwrap();
//! let options = AttachOptions::from_vars(
//!     [
//!         ("SPOKE_INSTANCE_ID", "echo-1"),
//!         ("SPOKE_TAGS", " eu, blue ,,"),
//!         ("SPOKE_METADATA_REGION", "eu-west-1"),
//!         ("SPOKE_MAX_IN_FLIGHT", "8"),
//!     ],
//!     &manifest,
//! )?;
//! assert_eq!(options.instance.id, "echo-1");
//! assert_eq!(options.instance.display_name, "Echo");
//! assert_eq!(options.instance.tags, ["eu", "blue"]);
//! assert_eq!(options.instance.metadata["region"], "eu-west-1");
//! assert_eq!(options.max_in_flight, 8);
//! # Ok::<(), spoke::env::EnvError>(())
//! ```

use std::collections::BTreeMap;

use std::path::{Path, PathBuf};

pub use crate::env::{EnvError, MAX_IN_FLIGHT, SHUTDOWN_GRACE};
use crate::grpc::identity::KeySource;
use crate::grpc::options::{AttachOptions, generated_instance_id};
use crate::grpc::tls::{HubTls, check_hub_url};
use crate::manifest::Manifest;
use crate::secret::Secret;

/// `SPOKE_HUB_URL`: the hub's gRPC address.
pub const HUB_URL: &str = "SPOKE_HUB_URL";
/// `SPOKE_INSTANCE_ID`: this instance's stable id.
pub const INSTANCE_ID: &str = "SPOKE_INSTANCE_ID";
/// `SPOKE_DISPLAY_NAME`: this instance's human-friendly name.
pub const DISPLAY_NAME: &str = "SPOKE_DISPLAY_NAME";
/// `SPOKE_TAGS`: comma-separated tags.
pub const TAGS: &str = "SPOKE_TAGS";
/// `SPOKE_METADATA_<KEY>`: one metadata entry per variable.
pub const METADATA_PREFIX: &str = "SPOKE_METADATA_";
pub use crate::env::TENANT;
/// `SPOKE_TLS_CA`: the CA certificates that sign the hub's certificate.
pub const TLS_CA: &str = crate::grpc::tls::TLS_CA;
/// `SPOKE_KEY_PATH`: this instance's private key file.
pub const KEY_PATH: &str = crate::grpc::identity::KEY_PATH_VAR;
/// `SPOKE_REGISTRATION_TOKEN`: a one-time token approving this instance.
pub const REGISTRATION_TOKEN: &str = "SPOKE_REGISTRATION_TOKEN";

const KNOWN: [&str; 10] = [
    HUB_URL,
    INSTANCE_ID,
    DISPLAY_NAME,
    TAGS,
    TENANT,
    MAX_IN_FLIGHT,
    SHUTDOWN_GRACE,
    TLS_CA,
    KEY_PATH,
    REGISTRATION_TOKEN,
];

impl AttachOptions {
    /// Reads the `SPOKE_*` variables of this process; see the [module docs](self).
    pub fn from_env(manifest: &Manifest) -> Result<AttachOptions, EnvError> {
        let mut vars = Vec::new();
        for (key, value) in std::env::vars_os() {
            let Ok(key) = key.into_string() else { continue };
            if !key.starts_with("SPOKE_") {
                continue;
            }
            match value.into_string() {
                Ok(value) => vars.push((key, value)),
                Err(_) => return Err(EnvError::new(key, "the value is not valid UTF-8")),
            }
        }
        AttachOptions::from_vars(vars, manifest)
    }

    /// Reads the `SPOKE_*` variables among `vars` (others are ignored); see
    /// the [module docs](self).
    pub fn from_vars<K: AsRef<str>, V: AsRef<str>>(
        vars: impl IntoIterator<Item = (K, V)>,
        manifest: &Manifest,
    ) -> Result<AttachOptions, EnvError> {
        let mut options = AttachOptions::new(manifest);
        let mut metadata = BTreeMap::new();
        let mut instance_id = None;
        for (key, value) in vars {
            let (key, value) = (key.as_ref(), value.as_ref());
            if !key.starts_with("SPOKE_") || value.is_empty() {
                continue;
            }
            match key {
                HUB_URL => {
                    let url = value.trim();
                    check_hub_url(url).map_err(|e| {
                        EnvError::new(key, format!("`{value}` is not a usable hub URL: {e}"))
                    })?;
                    options.hub_url = url.to_owned();
                }
                TLS_CA => options.tls = HubTls::from_ca_file(key, Path::new(value.trim()))?,
                KEY_PATH => options.key = KeySource::File(PathBuf::from(value.trim())),
                REGISTRATION_TOKEN => {
                    options.registration_token = Some(Secret::new(value.trim().to_owned()));
                }
                INSTANCE_ID => instance_id = Some(value.trim().to_owned()),
                DISPLAY_NAME => options.instance.display_name = value.trim().to_owned(),
                TAGS => options.instance.tags = crate::env::list(value),
                TENANT => options.tenant = value.trim().to_owned(),
                MAX_IN_FLIGHT => options.max_in_flight = crate::env::positive(key, value)?,
                SHUTDOWN_GRACE => options.shutdown_grace = crate::env::duration(key, value)?,
                _ => {
                    if let Some(name) = key.strip_prefix(METADATA_PREFIX) {
                        if name.is_empty() {
                            return Err(EnvError::new(
                                key,
                                "no metadata key after SPOKE_METADATA_ (e.g. SPOKE_METADATA_REGION=eu)",
                            ));
                        }
                        metadata.insert(name.to_lowercase(), value.to_owned());
                    } else if let Some(known) =
                        crate::suggest::did_you_mean(key, KNOWN.iter().copied())
                    {
                        tracing::warn!("{key} is not a Spoke variable; did you mean {known}?");
                    }
                }
            }
        }
        options.instance.metadata = metadata;
        match instance_id.filter(|id| !id.is_empty()) {
            Some(id) => options.instance.id = id,
            None => {
                options.instance.id = generated_instance_id(&manifest.name);
                tracing::warn!(
                    instance = %options.instance.id,
                    "{INSTANCE_ID} is not set: using a generated id; set a stable one so that this instance takes its own place again after a restart (and, on a hub with approval, keeps its key and approval instead of waiting to be approved as a new instance)"
                );
            }
        }
        check_limits(&options)?;
        Ok(options)
    }
}

/// Checks the instance's settings against the limits a hub puts on a
/// Register ([`spoke_proto::limits`]): a connector the hub would refuse
/// says so at start, naming the variable, instead of retrying.
fn check_limits(options: &AttachOptions) -> Result<(), EnvError> {
    use spoke_proto::limits::{
        MAX_DISPLAY_NAME_BYTES, MAX_INSTANCE_ID_BYTES, MAX_METADATA_ENTRIES,
        MAX_METADATA_KEY_BYTES, MAX_METADATA_VALUE_BYTES, MAX_TAG_BYTES, MAX_TAGS,
        MAX_TENANT_BYTES,
    };
    let text = |variable: &str, what: &str, value: &str, max: usize| {
        if value.len() > max {
            return Err(EnvError::new(
                variable,
                format!(
                    "{what} is {} bytes long; a hub takes at most {max}",
                    value.len()
                ),
            ));
        }
        match value.chars().find(|c| c.is_control()) {
            Some(c) => Err(EnvError::new(
                variable,
                format!(
                    "{what} contains the control character {c:?}; a hub takes printable text only"
                ),
            )),
            None => Ok(()),
        }
    };
    let instance = &options.instance;
    text(
        INSTANCE_ID,
        "the instance id",
        &instance.id,
        MAX_INSTANCE_ID_BYTES,
    )?;
    text(
        DISPLAY_NAME,
        "the display name (by default the connector's)",
        &instance.display_name,
        MAX_DISPLAY_NAME_BYTES,
    )?;
    text(TENANT, "the tenant", &options.tenant, MAX_TENANT_BYTES)?;
    if instance.tags.len() > MAX_TAGS {
        return Err(EnvError::new(
            TAGS,
            format!(
                "{} tags; a hub takes at most {MAX_TAGS}",
                instance.tags.len()
            ),
        ));
    }
    for tag in &instance.tags {
        text(TAGS, &format!("the tag {tag:.40?}"), tag, MAX_TAG_BYTES)?;
    }
    if instance.metadata.len() > MAX_METADATA_ENTRIES {
        return Err(EnvError::new(
            format!("{METADATA_PREFIX}*"),
            format!(
                "{} metadata entries; a hub takes at most {MAX_METADATA_ENTRIES}",
                instance.metadata.len()
            ),
        ));
    }
    for (key, value) in &instance.metadata {
        let variable = format!("{METADATA_PREFIX}{}", key.to_uppercase());
        if key.len() > MAX_METADATA_KEY_BYTES {
            return Err(EnvError::new(
                variable,
                format!(
                    "the metadata key is {} bytes long; a hub takes at most {MAX_METADATA_KEY_BYTES}",
                    key.len()
                ),
            ));
        }
        if value.len() > MAX_METADATA_VALUE_BYTES {
            return Err(EnvError::new(
                variable,
                format!(
                    "the value is {} bytes long; a hub takes at most {MAX_METADATA_VALUE_BYTES}",
                    value.len()
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    use crate::grpc::options::tests::manifest;

    fn parse(vars: &[(&str, &str)]) -> Result<AttachOptions, EnvError> {
        AttachOptions::from_vars(vars.iter().copied(), &manifest())
    }

    #[test]
    fn defaults() {
        let o = parse(&[("PATH", "/bin")]).unwrap();
        assert_eq!(o.hub_url, "http://127.0.0.1:7700");
        assert!(o.instance.id.starts_with("echo-"), "{}", o.instance.id);
        assert!(o.instance.id["echo-".len()..].parse::<u128>().is_ok());
        assert_eq!(o.instance.display_name, "Echo");
        assert!(o.instance.tags.is_empty() && o.instance.metadata.is_empty());
        assert_eq!((o.tenant.as_str(), o.max_in_flight), ("", 64));
        assert_eq!(o.shutdown_grace, Duration::from_secs(10));
    }

    #[test]
    fn settings_a_hub_would_refuse_are_errors_naming_the_variable() {
        let long = "x".repeat(300);
        let cases: [(&str, String, &str); 5] = [
            (
                "SPOKE_INSTANCE_ID",
                long.clone(),
                "the instance id is 300 bytes long; a hub takes at most 256",
            ),
            (
                "SPOKE_DISPLAY_NAME",
                "Echo\u{1b}[2J".into(),
                "the display name (by default the connector's) contains the control character '\\u{1b}'",
            ),
            (
                "SPOKE_TAGS",
                format!("a,{long}"),
                "bytes long; a hub takes at most 128",
            ),
            ("SPOKE_TENANT", long.clone(), "the tenant is 300 bytes long"),
            (
                "SPOKE_METADATA_REGION",
                "r".repeat(2000),
                "the value is 2000 bytes long; a hub takes at most 1024",
            ),
        ];
        for (variable, value, says) in cases {
            let err = parse(&[(variable, value.as_str())]).unwrap_err();
            assert_eq!(err.variable, variable);
            assert!(err.message.contains(says), "{variable}: {}", err.message);
        }
        let tags = (0..65).map(|n| n.to_string()).collect::<Vec<_>>().join(",");
        let err = parse(&[("SPOKE_TAGS", tags.as_str())]).unwrap_err();
        assert_eq!(err.message, "65 tags; a hub takes at most 64");
        // At the limits, fine.
        let id = "i".repeat(256);
        assert!(parse(&[("SPOKE_INSTANCE_ID", id.as_str())]).is_ok());
    }

    #[test]
    fn every_variable() {
        let o = parse(&[
            ("SPOKE_HUB_URL", "http://hub:9000"),
            ("SPOKE_INSTANCE_ID", "i-1"),
            ("SPOKE_DISPLAY_NAME", "Echo One"),
            ("SPOKE_TAGS", " a, b,, c ,"),
            ("SPOKE_METADATA_Region", "eu"),
            ("SPOKE_METADATA_OWNER_TEAM", "core"),
            ("SPOKE_TENANT", "acme"),
            ("SPOKE_MAX_IN_FLIGHT", "3"),
            ("SPOKE_SHUTDOWN_GRACE", "1m30s"),
        ])
        .unwrap();
        assert_eq!(o.hub_url, "http://hub:9000");
        assert_eq!(o.instance.id, "i-1");
        assert_eq!(o.instance.display_name, "Echo One");
        assert_eq!(o.instance.tags, ["a", "b", "c"]);
        assert_eq!(
            o.instance.metadata,
            BTreeMap::from([
                ("region".to_owned(), "eu".to_owned()),
                ("owner_team".to_owned(), "core".to_owned())
            ])
        );
        assert_eq!((o.tenant.as_str(), o.max_in_flight), ("acme", 3));
        assert_eq!(o.shutdown_grace, Duration::from_secs(90));
    }

    #[test]
    fn tls_key_and_registration_token() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        let cert = rcgen::generate_simple_self_signed(vec!["hub.example.com".to_owned()]).unwrap();
        std::fs::write(&ca, cert.cert.pem()).unwrap();
        let ca_path = ca.display().to_string();
        let o = parse(&[
            ("SPOKE_HUB_URL", "https://hub.example.com:7443"),
            ("SPOKE_TLS_CA", &ca_path),
            ("SPOKE_KEY_PATH", "/run/secrets/echo.pem"),
            ("SPOKE_REGISTRATION_TOKEN", "tok-s3cret-value"),
        ])
        .unwrap();
        assert_eq!(o.hub_url, "https://hub.example.com:7443");
        assert_eq!(o.tls.ca_pem.as_deref(), Some(cert.cert.pem().as_bytes()));
        assert!(
            matches!(&o.key, KeySource::File(p) if p == Path::new("/run/secrets/echo.pem")),
            "{:?}",
            o.key
        );
        assert_eq!(
            o.registration_token.as_ref().map(|t| t.expose().as_str()),
            Some("tok-s3cret-value")
        );
        // The token never shows in the options' Debug output.
        let shown = format!("{o:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        // Unset: the system's roots, the default key path, no token.
        let o = parse(&[]).unwrap();
        assert_eq!(o.tls, HubTls::default());
        assert!(matches!(o.key, KeySource::Default));
        assert!(o.registration_token.is_none());
    }

    #[test]
    fn bad_values_name_the_variable() {
        for (var, value, expected) in [
            ("SPOKE_MAX_IN_FLIGHT", "0", "positive whole number"),
            ("SPOKE_MAX_IN_FLIGHT", "lots", "positive whole number"),
            ("SPOKE_SHUTDOWN_GRACE", "10", "missing unit"),
            (
                "SPOKE_HUB_URL",
                "ftp://hub",
                "expected http://host:port or https://",
            ),
            (
                "SPOKE_TLS_CA",
                "/no/such/ca.pem",
                "cannot read `/no/such/ca.pem`",
            ),
            ("SPOKE_HUB_URL", "hub:7700", "not a usable hub URL"),
            ("SPOKE_METADATA_", "x", "no metadata key"),
        ] {
            let err = parse(&[(var, value)]).unwrap_err();
            assert_eq!(err.variable, var);
            assert!(err.to_string().starts_with(&format!("{var}: ")), "{err}");
            assert!(err.message.contains(expected), "{var}={value}: {err}");
        }
    }

    #[test]
    fn empty_values_count_as_unset() {
        let o = parse(&[("SPOKE_MAX_IN_FLIGHT", ""), ("SPOKE_INSTANCE_ID", "")]).unwrap();
        assert_eq!(o.max_in_flight, 64);
        assert!(o.instance.id.starts_with("echo-"));
    }
}
