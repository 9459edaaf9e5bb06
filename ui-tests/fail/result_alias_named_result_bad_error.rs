use spoke::prelude::*;

#[derive(Debug)]
pub struct LookupError;

pub type Result<T> = std::result::Result<T, LookupError>;

#[connector(name = "dns")]
pub struct Dns {}

#[connector]
impl Dns {
    #[action(read)]
    fn resolve(&self, host: String) -> Result<String> {
        Ok(host)
    }
}

fn main() {}
