use spoke::prelude::*;

#[connector(name = "files")]
pub struct Files {
    #[config_field(envv = "FILES_ROOT")]
    root: String,
}

fn main() {}
