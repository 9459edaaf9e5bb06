//! The connector of path 8: one sync, `docs`, that emits `BULK_COUNT`
//! small documents (default 100,000), a checkpoint every 1,000. Run as
//! `sync-source sync --out /dev/null`.

use spoke::prelude::*;
use spoke::sync::{Document, Permissions};

/// Where `docs` got to.
#[derive(Debug, Default, Serialize, Deserialize, JsonSchema)]
struct Cursor {
    next: u64,
}

/// Many small documents.
#[connector(name = "bulk")]
pub struct Bulk {
    /// How many documents `docs` emits.
    #[config_field(env = "BULK_COUNT", default = 100_000)]
    count: u64,
}

#[connector]
impl Bulk {
    /// `count` small documents.
    #[sync(modes = "full")]
    async fn docs(&self, ctx: &SyncContext<Cursor>) -> Result<(), ActionError> {
        let mut next = ctx.last_checkpoint().map_or(0, |c| c.next);
        while next < self.count {
            ctx.created(document(next)).await?;
            next += 1;
            if next.is_multiple_of(1000) {
                ctx.checkpoint(&Cursor { next }).await?;
            }
        }
        ctx.checkpoint(&Cursor { next }).await
    }
}

/// Document `n`: what the baseline (`raw-docs`) writes too.
pub fn document(n: u64) -> Document {
    Document::new(format!("doc-{n}"))
        .title(format!("Document {n}"))
        .text("A small document: a line of text.")
        .permissions(Permissions::public())
}

fn main() -> std::process::ExitCode {
    spoke::main()
}
