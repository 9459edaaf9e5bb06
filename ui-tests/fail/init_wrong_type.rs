use spoke::prelude::*;

/// A connector whose init hook returns the wrong thing.
#[connector(name = "db", init = Self::open)]
pub struct Db {
    #[config_field(default = "x")]
    path: String,
}

impl Db {
    async fn open(&self) -> bool {
        self.path.is_empty()
    }
}

fn main() {}
