use spoke::prelude::*;

#[connector(name = "wiki")]
pub struct Wiki {}

#[connector]
impl Wiki {
    #[sync(modes = "full, incremental, realtme")]
    async fn pages(&self, ctx: &SyncContext) -> Result<(), ActionError> {
        ctx.cancelled().await;
        Ok(())
    }
}

fn main() {}
