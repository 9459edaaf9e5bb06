use spoke::prelude::*;

#[connector(name = "files")]
pub struct Files {}

#[connector]
impl Files {
    #[action(raed)]
    fn list(&self) -> Vec<String> {
        Vec::new()
    }
}

fn main() {}
