use spoke::prelude::*;

#[connector(name = "files")]
pub struct Files {}

#[connector]
impl Files {
    #[action]
    fn list(&self) -> Vec<String> {
        Vec::new()
    }

    #[action(name = "list")]
    fn list_all(&self) -> Vec<String> {
        Vec::new()
    }
}

fn main() {}
