use spoke::prelude::*;

#[connector(name = "files")]
pub struct Files {}

#[connector]
impl Files {
    #[action(read)]
    fn read(&self, path: &str) -> String {
        path.to_owned()
    }
}

fn main() {}
