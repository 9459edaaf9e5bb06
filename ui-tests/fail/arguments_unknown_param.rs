use spoke::prelude::*;

#[connector(name = "files")]
pub struct Files {}

#[connector]
impl Files {
    /// List a directory.
    ///
    /// # Arguments
    /// * `dir` - Directory relative to the root.
    /// * `limt` - At most this many entries.
    #[action(read)]
    async fn list(&self, dir: String, limit: Option<usize>) -> Vec<String> {
        vec![dir; limit.unwrap_or(1)]
    }
}

fn main() {}
