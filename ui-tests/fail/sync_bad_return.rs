use spoke::prelude::*;

#[connector(name = "wiki")]
pub struct Wiki {}

#[connector]
impl Wiki {
    #[sync]
    async fn pages(&self, ctx: &SyncContext) -> Vec<String> {
        ctx.cancelled().await;
        Vec::new()
    }
}

fn main() {}
