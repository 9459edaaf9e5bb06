use spoke::prelude::*;

/// A connector whose init hook is not `async`.
#[connector(name = "db", init = Self::open)]
pub struct Db {
    #[config_field(default = "x")]
    path: String,
}

impl Db {
    fn open(config: spoke::Config<Self>) -> Result<Self, String> {
        Ok(Db { path: config.path })
    }
}

fn main() {}
