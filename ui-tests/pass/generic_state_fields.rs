// State fields may have any type that is `Default`, generic ones included.
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use spoke::prelude::*;

#[derive(Debug, Default)]
pub struct Session<T> {
    pub value: T,
}

#[connector(name = "cache")]
pub struct Cache {
    #[config_field(default = 10)]
    capacity: usize,
    entries: Mutex<HashMap<String, Vec<u8>>>,
    session: Arc<Mutex<Option<Session<String>>>>,
    counts: HashMap<String, Arc<Mutex<Option<u64>>>>,
    nested: Vec<HashMap<u8, (String, Option<Vec<u32>>)>>,
}

#[connector]
impl Cache {
    #[action(read)]
    fn size(&self) -> usize {
        let _ = (&self.session, &self.counts, &self.nested, self.capacity);
        self.entries.lock().unwrap().len()
    }

    #[action(write)]
    fn put(&self, key: String, value: Vec<u8>) -> Option<Vec<u8>> {
        self.entries.lock().unwrap().insert(key, value)
    }

    #[action(read)]
    fn all(&self) -> HashMap<String, Vec<u8>> {
        self.entries.lock().unwrap().clone()
    }
}

fn main() {}
