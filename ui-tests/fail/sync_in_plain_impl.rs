use spoke::prelude::*;

#[connector(name = "wiki")]
pub struct Wiki {}

impl Wiki {
    #[sync]
    async fn pages(&self, ctx: &SyncContext) {
        ctx.cancelled().await;
    }

    /// One mistake, one error: the syncs after the first add none.
    #[sync(modes = "incremental")]
    async fn recent(&self, ctx: &SyncContext) {
        ctx.cancelled().await;
    }
}

fn main() {}
