use spoke::prelude::*;

#[connector(name = "store")]
pub struct Store<T> {
    items: Vec<T>,
}

fn main() {}
