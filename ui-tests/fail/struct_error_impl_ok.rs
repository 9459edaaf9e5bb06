// The struct's attribute is wrong, its impl block and a free action are fine:
// only the struct's error shows (they still see a `Connector` impl, the
// fallback, through the `crate = ...` re-export).
extern crate spoke as my_spoke;

use my_spoke::prelude::*;

#[connector(crate = my_spoke, name = "Files")]
pub struct Files {
    #[config_field(env = "FILES_ROOT")]
    root: String,
}

#[connector(crate = my_spoke)]
impl Files {
    #[action(read)]
    fn root(&self) -> String {
        self.root.clone()
    }
}

#[action(connector = Files, crate = my_spoke)]
fn size(conn: &Files) -> usize {
    conn.root.len()
}

fn main() {}
