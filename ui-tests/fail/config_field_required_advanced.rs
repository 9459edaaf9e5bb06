use spoke::prelude::*;

#[connector(name = "files")]
pub struct Files {
    /// Where the files are: every start needs it, so a form must show it.
    #[config_field(advanced)]
    root: String,
    /// Fine: it has a default.
    #[config_field(default = 100, advanced)]
    max: u64,
    /// Fine: it may be left out.
    #[config_field(advanced)]
    label: Option<String>,
}

fn main() {}
