use spoke::prelude::*;

#[connector(name = "files")]
pub struct Files {}

impl Files {
    #[action(read)]
    fn list(&self) -> Vec<String> {
        Vec::new()
    }
}

fn main() {}
