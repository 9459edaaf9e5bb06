use spoke::prelude::*;

#[connector(name = "wiki")]
pub struct Wiki {}

#[connector]
impl Wiki {
    #[sync]
    async fn pages(&self, ctx: &SyncContext) {
        ctx.cancelled().await;
    }

    /// An action may share a sync's name; a second sync may not.
    #[action(read)]
    fn pages_action(&self) {}

    #[sync(name = "pages", modes = "incremental")]
    async fn recent_pages(&self, ctx: &SyncContext) {
        ctx.cancelled().await;
    }
}

fn main() {}
