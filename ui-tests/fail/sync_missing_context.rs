use spoke::prelude::*;

#[connector(name = "wiki")]
pub struct Wiki {}

#[connector]
impl Wiki {
    #[sync]
    async fn pages(&self) -> Result<(), ActionError> {
        Ok(())
    }
}

fn main() {}
