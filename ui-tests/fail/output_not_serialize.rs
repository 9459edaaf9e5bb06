use spoke::prelude::*;

pub struct Hit {
    pub title: String,
}

#[connector(name = "search")]
pub struct Search {}

#[connector]
impl Search {
    #[action(read)]
    fn find(&self, text: String) -> Vec<Hit> {
        vec![Hit { title: text }]
    }
}

fn main() {}
