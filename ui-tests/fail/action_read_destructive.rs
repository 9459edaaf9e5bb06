// `destructive` and `idempotent` describe writes: a read is neither.
use spoke::prelude::*;

#[connector(name = "files")]
pub struct Files {}

#[connector]
impl Files {
    #[action(read, destructive = false)]
    fn list(&self) -> Vec<String> {
        Vec::new()
    }

    #[action(read, idempotent)]
    fn stat(&self) -> u64 {
        0
    }
}

fn main() {}
