use spoke::prelude::*;

#[connector(name = "files")]
pub struct Files {}

#[connector]
impl Files {
    #[action(read, timeout = "10 parsecs")]
    fn list(&self) -> Vec<String> {
        Vec::new()
    }
}

fn main() {}
