//! The manual-registration fallback for targets where `inventory` registers
//! nothing: name the action set with `#[connector(actions = NAME)]` and build
//! the registry by hand. Also: secrets never reach the manifest.

use serde_json::json;
use spoke::prelude::*;
use spoke::{Connector, Input, Instance, Registry};

/// A connector registered by hand.
#[connector(name = "manual")]
pub struct Manual {
    /// An API key with a (bad-practice) default that must never be shown.
    #[config_field(secret, default = "hunter2-default")]
    api_key: Secret<String>,
}

#[connector(actions = MANUAL_ACTIONS)]
impl Manual {
    /// Says whether the key is set.
    #[action(read)]
    async fn key_len(&self) -> usize {
        self.api_key.expose().len()
    }
}

#[tokio::test]
async fn a_hand_built_registry_serves_the_connector() {
    let registry = Registry::builder()
        .connector(&<Manual as Connector>::REGISTRATION)
        .action_set(&Manual::MANUAL_ACTIONS)
        .build()
        .expect("valid");
    assert_eq!(registry.names(), ["manual"]);
    let ty = registry.get("manual").unwrap().clone();
    let instance = Instance::start(
        ty,
        spoke::ConfigSource::from_vars([("MANUAL_API_KEY", "abc")]),
    )
    .await
    .unwrap();
    let out = instance
        .invoke(
            "key_len",
            Input::Value(&json!({})),
            Context::new("r", "key_len"),
        )
        .await
        .unwrap();
    assert_eq!(out.to_value(), json!(3));
}

#[test]
fn the_set_is_also_registered_through_inventory() {
    let registry = Registry::from_inventory().unwrap();
    assert_eq!(registry.get("manual").unwrap().actions().len(), 1);
}

#[test]
fn secret_defaults_never_reach_the_manifest() {
    let registry = Registry::from_inventory().unwrap();
    let manifest = serde_json::to_string(registry.get("manual").unwrap().manifest()).unwrap();
    assert!(!manifest.contains("hunter2"), "{manifest}");
    assert!(manifest.contains("\"writeOnly\":true"), "{manifest}");
}
