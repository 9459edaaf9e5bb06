use spoke::prelude::*;

#[connector(name = "files")]
pub struct Files {}

#[connector]
impl Files {
    #[search_operator(attribute = "owner", value_type = "persn")]
    fn owner(&self, value: String) -> Vec<String> {
        vec![value]
    }
}

fn main() {}
