//! The connector every transport benchmark calls: the README's echo
//! connector, built in-process.

use serde_json::Map;
use spoke::prelude::*;
use spoke::{ConfigSource, Instance, Registry};

/// Echoes text back.
#[connector(name = "echo")]
pub struct Echo {
    /// Prefix added to every reply.
    #[config_field(env = "ECHO_PREFIX", default = "")]
    prefix: String,
}

#[connector]
impl Echo {
    /// Return the text, prefixed.
    #[action(read)]
    async fn echo(&self, text: String) -> Result<String, ActionError> {
        Ok(format!("{}{text}", self.prefix))
    }
}

/// A running echo connector with its default config.
pub async fn instance() -> Instance {
    let registry = Registry::from_inventory().expect("the registry");
    let ty = registry.get("echo").expect("echo is registered").clone();
    Instance::start(ty, ConfigSource::Json(Map::new()))
        .await
        .expect("echo starts")
}
