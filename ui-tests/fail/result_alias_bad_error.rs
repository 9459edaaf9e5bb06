use spoke::prelude::*;

#[derive(Debug)]
pub struct LookupError;

pub type Lookup<T> = Result<T, LookupError>;

#[connector(name = "dns")]
pub struct Dns {}

#[connector]
impl Dns {
    #[action(read)]
    fn resolve(&self, host: String) -> Lookup<String> {
        Ok(host)
    }
}

fn main() {}
