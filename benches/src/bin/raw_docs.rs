//! The baseline of path 8: the same documents `sync-source` emits, as the
//! same JSON lines, serialised with serde_json straight to stdout (a pipe),
//! with no runtime, buffer, checkpoint or sink around them.

use std::io::{BufWriter, Write};

use spoke::sync::{Document, Permissions, SyncEvent};

fn main() -> std::io::Result<()> {
    let count: u64 = std::env::var("BULK_COUNT")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(100_000);
    let mut out = BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
    for n in 0..count {
        let event = SyncEvent::DocumentCreated(
            Document::new(format!("doc-{n}"))
                .title(format!("Document {n}"))
                .text("A small document: a line of text.")
                .permissions(Permissions::public()),
        );
        serde_json::to_writer(&mut out, &event)?;
        out.write_all(b"\n")?;
    }
    out.flush()
}
