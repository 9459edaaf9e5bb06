use spoke::prelude::*;

#[connector(name = "files")]
pub struct Files {}

#[derive(Deserialize, JsonSchema)]
pub struct Page {
    limit: u32,
}

#[connector]
impl Files {
    /// List a page.
    #[action(read)]
    async fn page(&self, #[input] #[schemars(range(min = 1))] page: Page) -> u32 {
        page.limit
    }
}

fn main() {}
