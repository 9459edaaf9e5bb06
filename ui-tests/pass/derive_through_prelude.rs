// `JsonSchema` (trait and derive) and the `schemars` it derives through come
// with the prelude: no `schemars` import, no major to keep in step.
#![deny(warnings)]
use spoke::prelude::*;

/// A filter.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
pub struct Filter {
    /// Words to find.
    pub words: Vec<String>,
}

/// Finds things.
#[connector(name = "finder")]
pub struct Finder {}

#[connector]
impl Finder {
    /// Echoes the filter.
    #[action(read)]
    async fn find(&self, filter: Filter) -> Result<Filter, ActionError> {
        Ok(filter)
    }
}

fn main() {
    let schema = spoke::schemars::schema_for!(Filter);
    assert_eq!(schema.get("type"), Some(&spoke::serde_json::json!("object")));
}
