use spoke::prelude::*;

#[connector(name = "github")]
pub struct GitHub {
    #[config_field(secret)]
    token: String,
}

fn main() {}
