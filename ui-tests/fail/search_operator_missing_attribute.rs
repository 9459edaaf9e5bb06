use spoke::prelude::*;

#[connector(name = "files")]
pub struct Files {}

#[connector]
impl Files {
    #[search_operator]
    fn ext(&self, value: String) -> Vec<String> {
        vec![value]
    }
}

fn main() {}
