// Constraints, descriptions, defaults and renames on named parameters, in
// every place a named parameter goes: methods (async and blocking), free
// actions, search operators, under `#[cfg]`, next to `ctx`.
use std::collections::HashMap;

use spoke::prelude::*;

/// Constraints everywhere.
#[connector(name = "bounded")]
pub struct Bounded {}

const MAX: u64 = 1_000;

#[connector]
impl Bounded {
    /// Pages through results.
    ///
    /// # Arguments
    /// * `cursor` - Where the last page ended.
    #[action(read)]
    async fn page(
        &self,
        ctx: &Context,
        #[schemars(range(min = 1, max = MAX))] size: u64,
        #[schemars(length(min = 1, max = 64))] cursor: Option<String>,
        #[schemars(range(min = 0.5, max = 2.5))] scale: f32,
        #[schemars(range(equal = 3))] version: i8,
    ) -> Result<Vec<u64>, ActionError> {
        let _ = (ctx, cursor, scale, version);
        Ok(vec![size])
    }

    /// Tags things.
    #[action]
    fn tag(
        &self,
        #[schemars(length(max = 8))] tags: HashMap<String, String>,
        #[schemars(length(min = 1))] ids: Box<[u32]>,
        #[serde(rename = "kind")]
        #[schemars(regex(pattern = r"^\w+$"))]
        r#type: Option<Box<str>>,
        #[serde(default = "default_weight")] weight: u16,
    ) -> usize {
        let _ = (r#type, weight);
        tags.len() + ids.len()
    }

    #[cfg(any())]
    #[action]
    fn never(&self, #[schemars(range(min = 1))] n: u8) -> u8 {
        n
    }

    /// Users by login.
    #[search_operator(attribute = "author", value_type = "person")]
    fn by(&self, #[schemars(length(min = 2), description = "A login.")] login: String) -> Vec<String> {
        vec![login]
    }
}

fn default_weight() -> u16 {
    1
}

/// Counts characters.
#[action(connector = Bounded, read)]
async fn count(_conn: &Bounded, #[schemars(length(max = 100))] text: String) -> usize {
    text.chars().count()
}

fn main() {}
