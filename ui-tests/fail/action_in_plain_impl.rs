use spoke::prelude::*;

#[connector(name = "files")]
pub struct Files {}

impl Files {
    #[action(read)]
    fn list(&self) -> Vec<String> {
        Vec::new()
    }

    /// One mistake, one error: the methods after the first add none.
    #[action(read)]
    fn read(&self, path: String) -> String {
        path
    }

    /// Files with this extension.
    #[search_operator(attribute = "extension")]
    fn ext(&self, value: String) -> Vec<String> {
        vec![value]
    }
}

fn main() {}
