use spoke::prelude::*;

#[connector(name = "files")]
pub struct Files {
    #[config_field(default = "abc")]
    max: u64,
}

fn main() {}
