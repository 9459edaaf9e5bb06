// A sync's document field types are written as types.
use spoke::prelude::*;

#[connector(name = "files")]
pub struct Files {}

#[connector]
impl Files {
    #[sync(extra = 5)]
    async fn numbers(&self, _ctx: &SyncContext) {}
}

fn main() {}
