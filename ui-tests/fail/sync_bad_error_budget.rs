use spoke::prelude::*;

#[connector(name = "wiki")]
pub struct Wiki {}

#[connector]
impl Wiki {
    #[sync(error_budget = 5)]
    async fn pages(&self, ctx: &SyncContext) {
        ctx.cancelled().await;
    }

    #[sync(error_budget = "150%")]
    async fn tags(&self, ctx: &SyncContext) {
        ctx.cancelled().await;
    }
}

fn main() {}
