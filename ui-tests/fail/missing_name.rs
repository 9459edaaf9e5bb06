use spoke::prelude::*;

#[connector(version = "1.0.0")]
pub struct MyFiles {}

fn main() {}
