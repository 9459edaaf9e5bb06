use spoke::prelude::*;

/// A bucket named in upper case, one declared twice, and TTLs that are
/// not durations or too short.
#[connector(
    name = "cache",
    buckets(Pages, seen, seen, hot(ttl = "5 minutes"), warm(ttl = "100ms"))
)]
pub struct Cache {}

/// A bucket written as a string.
#[connector(name = "other", buckets("pages"))]
pub struct Other {}

/// A misspelt option.
#[connector(name = "third", buckets(cold(ttll = "1h")))]
pub struct Third {}

fn main() {}
