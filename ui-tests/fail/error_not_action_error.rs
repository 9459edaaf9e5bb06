use spoke::prelude::*;

#[derive(Debug)]
pub struct MyError;

#[connector(name = "search")]
pub struct Search {}

#[connector]
impl Search {
    #[action(read)]
    fn find(&self, text: String) -> Result<String, MyError> {
        Ok(text)
    }
}

fn main() {}
