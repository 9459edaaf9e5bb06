use spoke::prelude::*;

#[connector(name = "wiki")]
pub struct Wiki {
    pages_seen: u64,
}

#[connector]
impl Wiki {
    #[sync]
    async fn pages(&mut self, ctx: &SyncContext) {
        self.pages_seen += 1;
        ctx.cancelled().await;
    }
}

fn main() {}
