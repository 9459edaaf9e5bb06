use spoke::prelude::*;

/// A source type Omni could not name, one listed twice.
#[connector(name = "wiki", source_types = "Confluence, jira, jira")]
pub struct Wiki {}

/// No source type at all.
#[connector(name = "tracker", source_types = " , ")]
pub struct Tracker {}

fn main() {}
