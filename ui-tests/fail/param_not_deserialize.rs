use spoke::prelude::*;

pub struct Query {
    pub text: String,
}

#[connector(name = "search")]
pub struct Search {}

#[connector]
impl Search {
    #[action(read)]
    fn find(&self, query: Query) -> Vec<String> {
        vec![query.text]
    }
}

fn main() {}
