use spoke::prelude::*;

#[connector(name = "users")]
pub struct Users {}

#[connector]
impl Users {
    /// Invite someone.
    #[action]
    async fn invite(&self, #[schemars(email)] address: String) -> String {
        address
    }
}

fn main() {}
