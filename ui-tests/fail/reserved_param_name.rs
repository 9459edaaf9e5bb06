use spoke::prelude::*;

#[connector(name = "files")]
pub struct Files {}

#[connector]
impl Files {
    #[action(read)]
    fn read(&self, ctx: String) -> String {
        ctx
    }
}

fn main() {}
