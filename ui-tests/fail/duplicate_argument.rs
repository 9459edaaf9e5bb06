use spoke::prelude::*;

#[connector(name = "files", name = "files2")]
pub struct Files {}

fn main() {}
