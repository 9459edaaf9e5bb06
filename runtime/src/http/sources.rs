//! [`Sources`]: one connector instance per Omni source, built from the
//! source's `config` and credentials, kept while they stay the same and
//! replaced when they change; and the process's own instance (config from
//! the environment) for calls that name no source.
//!
//! **Mapping.** A source's `config` object sets the connector's
//! `#[config_field]`s by key (a key that names no field is an error, as in
//! every config, except `read_only`, which is the manager's). Its
//! credential's `credentials` object sets the *secret* fields by key (other
//! keys of the blob, say a `refresh_token` the connector does not declare,
//! are ignored); a credential that is a bare string sets the connector's
//! only secret field. Its credential's `config` object sets fields the
//! source's `config` leaves unset. Every problem is reported at once, by
//! field name, never with a secret's value.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};

use serde_json::{Map, Value};
use tokio::sync::OnceCell;

use super::wire::{ServiceCredential, Source};
use crate::config::{ConfigFieldDef, ConfigSource, mask_secrets};
use crate::connector::StartError;
use crate::error::ActionError;
use crate::instance::Instance;
use crate::registry::ConnectorType;

/// Keys of a source's `config` that are Omni's, not the connector's.
pub const MANAGER_CONFIG_KEYS: [&str; 1] = ["read_only"];

/// The instances of one connector type, by source.
#[derive(Debug)]
pub struct Sources {
    ty: Arc<ConnectorType>,
    by_source: Mutex<HashMap<String, Arc<Built>>>,
    own: OnceCell<Instance>,
}

/// One source's instance, for one config (by its fingerprint).
#[derive(Debug)]
struct Built {
    fingerprint: u64,
    instance: OnceCell<Instance>,
}

impl Sources {
    /// No instance yet.
    pub fn new(ty: Arc<ConnectorType>) -> Self {
        Sources {
            ty,
            by_source: Mutex::default(),
            own: OnceCell::new(),
        }
    }

    /// The instance of `source` with `credential`: the one built before for
    /// the same config, or a new one (which replaces an instance built for
    /// an older config; runs of that one go on with it until they end).
    pub async fn instance(
        &self,
        source: &Source,
        credential: Option<&ServiceCredential>,
    ) -> Result<Instance, ActionError> {
        let fields = self.ty.registration().config_fields;
        let config = source_config(fields, source, credential)
            .map_err(|e| ActionError::invalid_input(format!("source `{}`: {e}", source.id)))?;
        let fingerprint = fingerprint(&config);
        let built = {
            let mut map = self.by_source.lock().unwrap_or_else(|e| e.into_inner());
            let entry = map.entry(source.id.clone()).or_insert_with(|| {
                Arc::new(Built {
                    fingerprint,
                    instance: OnceCell::new(),
                })
            });
            if entry.fingerprint != fingerprint {
                tracing::info!(target: "spoke::http", source = %source.id, "the source's config changed: a new instance serves it");
                *entry = Arc::new(Built {
                    fingerprint,
                    instance: OnceCell::new(),
                });
            }
            Arc::clone(entry)
        };
        let secrets = ConfigSource::Json(config.clone()).secret_values(fields);
        built
            .instance
            .get_or_try_init(|| async {
                Instance::start(Arc::clone(&self.ty), ConfigSource::Json(config))
                    .await
                    .map_err(|e| start_error(&format!("source `{}`", source.id), &e, &secrets))
            })
            .await
            .cloned()
    }

    /// The process's own instance, its config from the environment, for
    /// calls that name no source. Built on first use; a failure is not
    /// kept, so a failing init hook is tried again on the next call.
    pub async fn own(&self) -> Result<Instance, ActionError> {
        let fields = self.ty.registration().config_fields;
        self.own
            .get_or_try_init(|| async {
                let config = ConfigSource::from_env();
                let secrets = config.secret_values(fields);
                Instance::start(Arc::clone(&self.ty), config)
                    .await
                    .map_err(|e| {
                        start_error("this call names no source, so it runs on the connector's own config, from its environment", &e, &secrets)
                    })
            })
            .await
            .cloned()
    }

    /// Every instance built so far (to cancel their runs at shutdown).
    pub fn instances(&self) -> Vec<Instance> {
        let map = self.by_source.lock().unwrap_or_else(|e| e.into_inner());
        map.values()
            .filter_map(|b| b.instance.get().cloned())
            .chain(self.own.get().cloned())
            .collect()
    }
}

/// Why an instance did not start, as an error for the caller: a bad
/// config is `invalid_input` listing every problem; a failing init hook
/// `invalid_input` too (the config it was given does not work); a
/// panicking one `internal`. Secrets are masked.
fn start_error(whose: &str, e: &StartError, secrets: &[String]) -> ActionError {
    let message = mask_secrets(&format!("{whose}: {e}"), secrets);
    match e {
        StartError::Config(errors) => {
            let problems: Vec<Value> = errors
                .problems
                .iter()
                .map(|p| Value::String(p.key.clone()))
                .collect();
            ActionError::invalid_input(message)
                .with_details(serde_json::json!({ "fields": problems }))
        }
        StartError::Init { .. } => ActionError::invalid_input(message),
        StartError::InitPanicked { .. } => ActionError::internal(message),
    }
}

/// The connector's config for `source`, as a JSON object keyed by field
/// (see the [module docs](self)).
pub fn source_config(
    fields: &[ConfigFieldDef],
    source: &Source,
    credential: Option<&ServiceCredential>,
) -> Result<Map<String, Value>, String> {
    let mut config = match &source.config {
        Value::Object(map) => map.clone(),
        Value::Null => Map::new(),
        other => {
            return Err(format!(
                "its config must be a JSON object, got {}",
                crate::decode::json_kind(other)
            ));
        }
    };
    for key in MANAGER_CONFIG_KEYS {
        config.remove(key);
    }
    let Some(credential) = credential else {
        return Ok(config);
    };
    let secret_fields: Vec<&ConfigFieldDef> = fields.iter().filter(|f| f.secret).collect();
    match &credential.credentials {
        Value::Object(blob) => {
            for field in &secret_fields {
                if let Some(value) = blob.get(field.key).filter(|v| !v.is_null()) {
                    config.insert(field.key.to_owned(), value.clone());
                }
            }
        }
        Value::String(token) => match secret_fields.as_slice() {
            [only] => {
                config.insert(only.key.to_owned(), Value::String(token.clone()));
            }
            [] => {}
            several => {
                let names: Vec<&str> = several.iter().map(|f| f.key).collect();
                return Err(format!(
                    "its credential is a single string, but the connector has several secret fields ({}): give an object keyed by field",
                    names.join(", ")
                ));
            }
        },
        _ => {}
    }
    if let Value::Object(settings) = &credential.config {
        for field in fields.iter().filter(|f| !f.secret) {
            if let Some(value) = settings.get(field.key).filter(|v| !v.is_null()) {
                config
                    .entry(field.key.to_owned())
                    .or_insert_with(|| value.clone());
            }
        }
    }
    Ok(config)
}

/// A hash of a config (its keys are sorted), to tell a changed one.
fn fingerprint(config: &Map<String, Value>) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    Value::Object(config.clone()).to_string().hash(&mut hasher);
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn field(key: &'static str, secret: bool) -> ConfigFieldDef {
        ConfigFieldDef {
            key,
            env: "X",
            required: true,
            secret,
            description: "",
            label: None,
            placeholder: None,
            example: None,
            advanced: false,
            schema: |_| schemars::json_schema!({"type": "string"}),
            default: || None,
        }
    }

    fn source(config: Value) -> Source {
        Source {
            id: "s1".into(),
            source_type: "web".into(),
            config,
            checkpoint: None,
        }
    }

    fn credential(credentials: Value, config: Value) -> ServiceCredential {
        ServiceCredential {
            credentials,
            config,
        }
    }

    #[test]
    fn credentials_set_secret_fields_by_name_and_the_managers_keys_are_dropped() {
        let fields = [field("url", false), field("token", true)];
        let cred = credential(
            json!({"token": "t0ps3cret", "refresh_token": "r", "url": "not from here"}),
            json!({"url": "http://cred"}),
        );
        let config = source_config(
            &fields,
            &source(json!({"url": "http://a", "read_only": true})),
            Some(&cred),
        )
        .unwrap();
        assert_eq!(
            Value::Object(config),
            json!({"url": "http://a", "token": "t0ps3cret"})
        );
        // The credential's config fills what the source's leaves unset.
        let config = source_config(&fields, &source(json!({})), Some(&cred)).unwrap();
        assert_eq!(config["url"], "http://cred");
    }

    #[test]
    fn a_bare_string_credential_sets_the_only_secret_field() {
        let fields = [field("url", false), field("token", true)];
        let config = source_config(
            &fields,
            &source(Value::Null),
            Some(&credential(json!("abc"), Value::Null)),
        )
        .unwrap();
        assert_eq!(config["token"], "abc");
        let two = [field("a", true), field("b", true)];
        let err = source_config(
            &two,
            &source(Value::Null),
            Some(&credential(json!("abc"), Value::Null)),
        )
        .unwrap_err();
        assert!(err.contains("several secret fields (a, b)"), "{err}");
        let err = source_config(&two, &source(json!([1])), None).unwrap_err();
        assert!(err.contains("must be a JSON object, got an array"), "{err}");
    }

    #[test]
    fn fingerprints_tell_a_changed_config() {
        let a = source_config(&[], &source(json!({"x": 1})), None).unwrap();
        let b = source_config(&[], &source(json!({"x": 2})), None).unwrap();
        assert_ne!(fingerprint(&a), fingerprint(&b));
        assert_eq!(fingerprint(&a), fingerprint(&a.clone()));
    }
}
