use std::time::Duration;

use spoke::prelude::*;

/// A duration default that does not parse.
#[connector(name = "poller")]
pub struct Poller {
    #[config_field(default = "5 seconds")]
    every: Duration,
}

fn main() {}
