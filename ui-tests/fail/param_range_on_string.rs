use spoke::prelude::*;

#[connector(name = "files")]
pub struct Files {}

#[connector]
impl Files {
    /// Read a file.
    #[action(read)]
    async fn read(&self, #[schemars(range(min = 1))] path: String) -> String {
        path
    }
}

fn main() {}
