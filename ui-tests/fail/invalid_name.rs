use spoke::prelude::*;

#[connector(name = "Bad Name")]
pub struct Files {}

fn main() {}
