// A sync's document field types must be `Serialize + JsonSchema`.
use spoke::prelude::*;

struct NotSerializable;

#[derive(Serialize)]
struct NoSchema {
    owner: String,
}

#[connector(name = "files")]
pub struct Files {}

#[connector]
impl Files {
    #[sync(extra = NotSerializable, attributes = NoSchema)]
    async fn files(&self, _ctx: &SyncContext) {}
}

fn main() {}
