use spoke::prelude::*;

#[connector(name = "users")]
pub struct Users {}

#[connector]
impl Users {
    /// Find a user by login.
    #[action(read)]
    async fn find(&self, #[schemars(regex(pattern = "^[a-z+$"))] login: String) -> String {
        login
    }
}

fn main() {}
