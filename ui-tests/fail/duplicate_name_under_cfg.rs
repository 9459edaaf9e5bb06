// A clash between fns under cfgs is reported when both are compiled in.
use spoke::prelude::*;

#[connector(name = "files")]
pub struct Files {}

#[connector]
impl Files {
    #[action]
    fn list(&self) -> Vec<String> {
        Vec::new()
    }

    #[cfg(all())]
    #[action(name = "list")]
    fn list_all(&self) -> Vec<String> {
        Vec::new()
    }
}

fn main() {}
