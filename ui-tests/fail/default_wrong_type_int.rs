use spoke::prelude::*;

#[connector(name = "files")]
pub struct Files {
    #[config_field(default = 5)]
    root: String,
}

fn main() {}
