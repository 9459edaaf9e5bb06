use spoke::prelude::*;

/// No derives: not a checkpoint.
#[derive(Default)]
pub struct Cursor {
    pub page: u32,
}

#[connector(name = "wiki")]
pub struct Wiki {}

#[connector]
impl Wiki {
    #[sync(modes = "full, incremental")]
    async fn pages(&self, ctx: &SyncContext<Cursor>) -> Result<(), ActionError> {
        let page = ctx.last_checkpoint().map_or(0, |c| c.page);
        let _ = page;
        // `ctx.checkpoint(&c)` here would add an error of its own, from the
        // `C: Serialize` bound of `SyncContext::checkpoint` (runtime code).
        Ok(())
    }
}

fn main() {}
