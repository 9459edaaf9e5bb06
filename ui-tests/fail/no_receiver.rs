use spoke::prelude::*;

#[connector(name = "clock")]
pub struct Clock {}

#[connector]
impl Clock {
    #[action(read)]
    fn now(zone: String) -> String {
        zone
    }
}

fn main() {}
