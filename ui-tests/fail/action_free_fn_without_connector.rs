use spoke::prelude::*;

#[action(read)]
fn ping(text: String) -> String {
    text
}

fn main() {}
