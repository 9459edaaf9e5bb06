use spoke::prelude::*;

pub struct Client {
    _url: String,
}

/// State with no `Default` and no init hook to build it.
#[connector(name = "api")]
pub struct Api {
    #[config_field(default = "x")]
    url: String,
    client: Client,
}

fn main() {}
