// The struct is wrong; its impl block is fine and adds no error (a stand-in
// `Connector` impl keeps it compiling).
use spoke::prelude::*;

#[connector(name = "files")]
pub struct Files(#[config_field(env = "FILES_ROOT")] String);

#[connector]
impl Files {
    #[action(read)]
    fn root(&self) -> String {
        self.0.clone()
    }
}

fn main() {}
