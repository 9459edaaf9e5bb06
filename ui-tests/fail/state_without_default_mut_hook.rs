use spoke::prelude::*;

pub struct Client {
    url: String,
}

/// An `&mut self` hook cannot build state that has no `Default`.
#[connector(name = "api", init = Self::init)]
pub struct Api {
    #[config_field(default = "x")]
    url: String,
    client: Client,
}

impl Api {
    async fn init(&mut self) -> Result<(), String> {
        self.client.url = self.url.clone();
        Ok(())
    }
}

fn main() {}
