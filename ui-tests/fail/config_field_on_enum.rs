// Config fields belong to a struct with named fields; on an enum's variant
// they are one error. The impl block is fine and adds no error.
use spoke::prelude::*;

#[connector(name = "files")]
pub enum Files {
    Local {
        #[config_field(env = "FILES_ROOT")]
        root: String,
    },
    Remote {
        url: String,
    },
}

#[connector]
impl Files {
    #[action(read)]
    fn kind(&self) -> String {
        match self {
            Files::Local { .. } => "local".into(),
            Files::Remote { .. } => "remote".into(),
        }
    }
}

fn main() {}
