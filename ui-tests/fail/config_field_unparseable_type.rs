use spoke::prelude::*;

pub struct Region {
    pub code: String,
}

#[connector(name = "cloud")]
pub struct Cloud {
    #[config_field(env = "CLOUD_REGION")]
    region: Region,
}

fn main() {}
