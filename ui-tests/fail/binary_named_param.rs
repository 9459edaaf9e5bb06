use spoke::prelude::*;

#[connector(name = "blobs")]
pub struct Blobs {}

#[connector]
impl Blobs {
    // Raw bytes are a whole input: `#[input] data: spoke::Bytes`.
    #[action(read)]
    fn size(&self, data: spoke::Bytes) -> usize {
        data.len()
    }
}

fn main() {}
