use spoke::prelude::*;

pub struct Query;

#[connector(name = "search")]
pub struct Search {}

#[action(connector = Search, read)]
fn find(conn: &Search, query: Query, limit: Option<u32>) -> Vec<String> {
    let _ = (conn, query, limit);
    Vec::new()
}

fn main() {}
