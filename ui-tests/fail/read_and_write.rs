use spoke::prelude::*;

#[connector(name = "files")]
pub struct Files {}

#[connector]
impl Files {
    #[action(read, write)]
    fn touch(&self, path: String) -> String {
        path
    }
}

fn main() {}
