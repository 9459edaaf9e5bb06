// The item is wrong; its impl block is fine and adds no error.
use spoke::prelude::*;

#[connector(name = "files")]
pub enum Files {
    Local,
    Remote,
}

#[connector]
impl Files {
    #[action(read)]
    fn kind(&self) -> String {
        match self {
            Files::Local => "local".into(),
            Files::Remote => "remote".into(),
        }
    }
}

fn main() {}
