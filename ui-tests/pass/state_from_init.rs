// State fields need not be `Default` when the init hook builds the connector
// from its config; an `&mut self` hook still works where state is `Default`.
#![deny(warnings)]
use std::sync::Mutex;
use std::time::Duration;

use spoke::prelude::*;

/// A database handle without `Default`.
pub struct Db {
    url: String,
}

/// Tickets in a database.
#[connector(name = "tickets", init = Self::open)]
pub struct Tickets {
    /// Where the database is.
    #[config_field(default = "tickets.db")]
    path: String,
    /// How long a query may take.
    #[config_field(default = "5s")]
    query_timeout: Duration,
    /// Built by `open`.
    db: Mutex<Db>,
}

impl Tickets {
    async fn open(config: spoke::Config<Self>) -> Result<Self, std::io::Error> {
        let db = Db { url: format!("sqlite://{}", config.path) };
        Ok(Tickets { path: config.path, query_timeout: config.query_timeout, db: Mutex::new(db) })
    }
}

#[connector]
impl Tickets {
    /// The database URL.
    #[action(read)]
    async fn url(&self) -> Result<String, ActionError> {
        let _ = (&self.path, self.query_timeout);
        Ok(self.db.lock().map_err(|_| ActionError::internal("poisoned"))?.url.clone())
    }
}

/// Counts its starts.
#[connector(name = "counter", init = Self::init)]
pub struct Counter {
    /// A label.
    #[config_field(default = "")]
    label: String,
    starts: u32,
}

impl Counter {
    async fn init(&mut self) -> Result<(), String> {
        self.starts += 1;
        Ok(())
    }
}

#[connector]
impl Counter {
    /// How many starts.
    #[action(read)]
    async fn starts(&self) -> Result<String, ActionError> {
        Ok(format!("{}{}", self.label, self.starts))
    }
}

fn main() {}
