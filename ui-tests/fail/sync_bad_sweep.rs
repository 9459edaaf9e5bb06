use spoke::prelude::*;

/// Syncs.
#[connector(name = "files")]
pub struct Files {}

#[connector]
impl Files {
    /// Modes it does not have, and one that never sees everything.
    #[sync(modes = "full, realtime", sweep = "incremental")]
    async fn files(&self, ctx: &SyncContext) {
        let _ = ctx;
    }

    /// A realtime run cannot sweep.
    #[sync(modes = "full, realtime", sweep = "full, realtime")]
    async fn watch(&self, ctx: &SyncContext) {
        let _ = ctx;
    }
}

fn main() {}
