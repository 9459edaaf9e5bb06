// `crate = path` lets a crate reach Spoke through a re-export.
extern crate spoke as my_spoke;

mod sdk {
    pub use ::spoke as reexported;
}

use my_spoke::prelude::{ActionError, Context};

#[my_spoke::connector(crate = my_spoke, name = "renamed")]
pub struct Renamed {
    #[config_field(default = 3)]
    retries: u32,
    #[config_field(secret)]
    token: Option<my_spoke::Secret<String>>,
}

#[my_spoke::connector(crate = my_spoke)]
impl Renamed {
    #[action(read)]
    async fn retries(&self, ctx: &Context) -> Result<u32, ActionError> {
        let _ = (ctx, &self.token);
        Ok(self.retries)
    }
}

#[my_spoke::action(connector = Renamed, crate = my_spoke)]
fn double(conn: &Renamed, by: Option<u32>) -> u32 {
    conn.retries * by.unwrap_or(2)
}

#[sdk::reexported::connector(crate = crate::sdk::reexported, name = "nested")]
pub struct Nested {}

#[sdk::reexported::connector(crate = crate::sdk::reexported)]
impl Nested {
    #[action]
    fn hello(&self, name: String) -> String {
        name
    }
}

fn main() {}
