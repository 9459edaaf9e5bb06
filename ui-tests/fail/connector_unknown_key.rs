// An unknown key: one error with a suggestion, and no "missing `name`" on
// top. The impl block still sees a `Connector` impl through `crate = ...`.
extern crate spoke as my_spoke;

use my_spoke::prelude::*;

#[connector(crate = my_spoke, nmae = "files")]
pub struct Files {}

#[connector(crate = my_spoke)]
impl Files {
    #[action(read)]
    fn list(&self) -> Vec<String> {
        Vec::new()
    }
}

fn main() {}
