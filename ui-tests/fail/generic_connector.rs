use spoke::prelude::*;

#[connector(name = "store")]
pub struct Store<T> {
    items: Vec<T>,
}

// The struct's error is the one: its `#[connector]` impl blocks add none.
#[connector]
impl<T: Send + Sync + 'static> Store<T> {
    #[action(read)]
    fn count(&self) -> usize {
        self.items.len()
    }
}

#[connector]
impl Store<u8> {
    #[action(read)]
    fn first(&self) -> Option<u8> {
        self.items.first().copied()
    }
}

fn main() {}
