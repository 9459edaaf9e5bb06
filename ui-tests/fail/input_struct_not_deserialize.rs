use spoke::prelude::*;

#[derive(serde::Serialize)]
pub struct Query {
    pub text: String,
}

#[connector(name = "search")]
pub struct Search {}

#[connector]
impl Search {
    #[action(read)]
    async fn find(&self, #[input] query: Query) -> Vec<String> {
        vec![query.text]
    }
}

fn main() {}
