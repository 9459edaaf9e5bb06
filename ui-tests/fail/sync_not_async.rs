use spoke::prelude::*;

#[connector(name = "wiki")]
pub struct Wiki {}

#[connector]
impl Wiki {
    #[sync]
    fn pages(&self, ctx: &SyncContext) -> Result<(), ActionError> {
        let _ = ctx;
        Ok(())
    }
}

fn main() {}
