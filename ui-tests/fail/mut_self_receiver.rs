use spoke::prelude::*;

#[connector(name = "counter")]
pub struct Counter {
    count: u64,
}

#[connector]
impl Counter {
    #[action(write)]
    fn bump(&mut self) -> u64 {
        self.count += 1;
        self.count
    }
}

fn main() {}
