use spoke::prelude::*;

pub struct Store<T> {
    items: Vec<T>,
}

#[connector]
impl<T: Send + Sync + 'static> Store<T> {
    #[action(read)]
    fn count(&self) -> usize {
        self.items.len()
    }
}

fn main() {}
