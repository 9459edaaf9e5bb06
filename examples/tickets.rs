//! A ticket tracker over SQLite: state built by the init hook (a database
//! connection, no `Default`), a secret typed `Secret<_>`, a duration in
//! human form, and tests through `spoke::testing` (`cargo test --example
//! tickets`).
//!
//! ```text
//! cargo run --example tickets -- call create '{"title":"Printer on fire"}'
//! TICKETS_PATH=/tmp/t.db cargo run --example tickets -- call list '{"status":"open"}'
//! ```
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};
use spoke::prelude::*;

/// A ticket tracker in one SQLite file.
#[connector(name = "tickets", init = Self::open)]
pub struct Tickets {
    /// The database file (`:memory:` for a throwaway one).
    #[config_field(default = ":memory:", example = "/var/lib/tickets.db")]
    path: String,
    /// How long a write waits for a locked database.
    #[config_field(default = "5s", advanced)]
    busy_timeout: Duration,
    /// Signs the links `link` returns. A `Secret` is secret by its type:
    /// never printed, masked in errors, a password box in forms.
    #[config_field(example = "s3cr3t")]
    signing_key: Option<Secret<String>>,
    /// The connection, opened by `open`.
    db: Mutex<Connection>,
}

/// Where the tickets are kept.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Database {
    /// The database file.
    pub path: String,
    /// How long a write waits for a locked database (`5s`).
    pub busy_timeout: String,
}

/// Open or closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Needs work.
    Open,
    /// Done.
    Closed,
}

/// One ticket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Ticket {
    /// Its number.
    pub id: i64,
    /// One line.
    pub title: String,
    /// Open or closed.
    pub status: Status,
}

impl Tickets {
    /// The init hook: builds the whole connector from its config, so the
    /// connection is a plain field, complete before any call.
    async fn open(config: spoke::Config<Self>) -> Result<Self, rusqlite::Error> {
        let db = Connection::open(&config.path)?;
        db.busy_timeout(config.busy_timeout)?;
        db.execute_batch(
            "CREATE TABLE IF NOT EXISTS tickets (
                id INTEGER PRIMARY KEY,
                title TEXT NOT NULL,
                status TEXT NOT NULL DEFAULT 'open'
            )",
        )?;
        Ok(Tickets {
            path: config.path,
            busy_timeout: config.busy_timeout,
            signing_key: config.signing_key,
            db: Mutex::new(db),
        })
    }

    fn db(&self) -> Result<std::sync::MutexGuard<'_, Connection>, ActionError> {
        self.db
            .lock()
            .map_err(|_| ActionError::internal("the database lock is poisoned"))
    }
}

fn ticket(row: &rusqlite::Row<'_>) -> rusqlite::Result<Ticket> {
    let status: String = row.get(2)?;
    Ok(Ticket {
        id: row.get(0)?,
        title: row.get(1)?,
        status: if status == "closed" {
            Status::Closed
        } else {
            Status::Open
        },
    })
}

fn db_error(e: rusqlite::Error) -> ActionError {
    ActionError::unavailable(format!("database: {e}"))
}

#[connector]
impl Tickets {
    /// Open a ticket.
    ///
    /// # Arguments
    /// * `title` - One line saying what is wrong.
    #[action(write, destructive = false)]
    fn create(&self, title: String) -> Result<Ticket, ActionError> {
        let title = title.trim();
        if title.is_empty() {
            return Err(ActionError::invalid_input_at(
                "title",
                "a title cannot be empty",
            ));
        }
        let db = self.db()?;
        db.execute("INSERT INTO tickets (title) VALUES (?1)", params![title])
            .map_err(db_error)?;
        Ok(Ticket {
            id: db.last_insert_rowid(),
            title: title.to_owned(),
            status: Status::Open,
        })
    }

    /// One ticket by its number.
    #[action(read)]
    fn get(&self, id: i64) -> Result<Ticket, ActionError> {
        self.db()?
            .query_row(
                "SELECT id, title, status FROM tickets WHERE id = ?1",
                params![id],
                ticket,
            )
            .optional()
            .map_err(db_error)?
            .ok_or_else(|| ActionError::not_found(format!("no ticket #{id}")))
    }

    /// Tickets, newest first, optionally only those with one status.
    #[action(read)]
    fn list(&self, status: Option<Status>, limit: Option<u32>) -> Result<Vec<Ticket>, ActionError> {
        let db = self.db()?;
        let mut query = db
            .prepare(
                "SELECT id, title, status FROM tickets
                 WHERE ?1 IS NULL OR status = ?1 ORDER BY id DESC LIMIT ?2",
            )
            .map_err(db_error)?;
        let status = status.map(|s| match s {
            Status::Open => "open",
            Status::Closed => "closed",
        });
        let rows = query
            .query_map(params![status, limit.unwrap_or(100)], ticket)
            .map_err(db_error)?;
        rows.collect::<Result<_, _>>().map_err(db_error)
    }

    /// Close tickets, reporting progress after each.
    #[action(write, destructive = false, idempotent)]
    async fn close(&self, ctx: &Context, ids: Vec<i64>) -> Result<u32, ActionError> {
        let total = ids.len() as f64;
        let mut closed = 0;
        for (done, id) in ids.iter().enumerate() {
            let changed = self
                .db()?
                .execute(
                    "UPDATE tickets SET status = 'closed' WHERE id = ?1 AND status = 'open'",
                    params![id],
                )
                .map_err(db_error)?;
            closed += changed as u32;
            // `?` works on a failed emit: it ends the action as `cancelled`.
            ctx.progress((done + 1) as f64, Some(total), format!("ticket #{id}"))
                .await?;
        }
        Ok(closed)
    }

    /// Where the tickets are kept, and how long a write waits for a lock.
    #[action(read)]
    fn database(&self) -> Result<Database, ActionError> {
        Ok(Database {
            path: self.path.clone(),
            busy_timeout: spoke::duration::format(self.busy_timeout),
        })
    }

    /// A link to a ticket, signed with the signing key.
    #[action(read)]
    fn link(&self, id: i64) -> Result<String, ActionError> {
        let key = self
            .signing_key
            .as_ref()
            .ok_or_else(|| ActionError::failed_precondition("no signing_key is configured"))?;
        let signature = key.expose().bytes().fold(id as u64, |h, b| {
            h.wrapping_mul(31).wrapping_add(u64::from(b))
        });
        Ok(format!("tickets://{id}?sig={signature:x}"))
    }

    /// Tickets whose title contains the value.
    #[search_operator(attribute = "title", value_type = "text")]
    fn title(&self, value: String) -> Result<Vec<i64>, ActionError> {
        let db = self.db()?;
        let mut query = db
            .prepare("SELECT id FROM tickets WHERE instr(lower(title), lower(?1)) > 0 ORDER BY id")
            .map_err(db_error)?;
        let ids = query
            .query_map(params![value], |row| row.get(0))
            .map_err(db_error)?;
        ids.collect::<Result<_, _>>().map_err(db_error)
    }
}

fn main() -> std::process::ExitCode {
    spoke::main()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};
    use spoke::testing::{TestConnector, check_manifest};

    async fn tickets() -> TestConnector<Tickets> {
        TestConnector::<Tickets>::start(json!({})).await.unwrap()
    }

    #[test]
    fn manifest_follows_every_rule() {
        check_manifest().unwrap();
    }

    #[tokio::test]
    async fn create_get_list_and_close() {
        let t = tickets().await;
        let first: Ticket = t
            .call("create", json!({"title": "Printer on fire"}))
            .await
            .unwrap();
        let _: Ticket = t.call("create", json!({"title": "Coffee"})).await.unwrap();
        assert_eq!(
            t.call::<Ticket>("get", json!({"id": first.id}))
                .await
                .unwrap(),
            first
        );

        let outcome = t.run("close", json!({"ids": [first.id, 99]})).await;
        assert_eq!(outcome.output::<u32>().unwrap(), 1);
        let progress = outcome.progress();
        assert_eq!(progress.len(), 2);
        assert_eq!(progress[1].message.as_deref(), Some("ticket #99"));

        let open: Vec<Ticket> = t.call("list", json!({"status": "open"})).await.unwrap();
        assert_eq!(
            open.iter().map(|t| t.title.as_str()).collect::<Vec<_>>(),
            ["Coffee"]
        );
    }

    #[tokio::test]
    async fn errors_say_what_and_where() {
        let t = tickets().await;
        let missing = t.call::<Ticket>("get", json!({"id": 7})).await.unwrap_err();
        assert_eq!(missing.code(), ErrorCode::NotFound);
        let empty = t
            .call::<Ticket>("create", json!({"title": " "}))
            .await
            .unwrap_err();
        assert_eq!(empty.details().unwrap()["path"], "title");
        let typo = t.call::<Value>("lsit", json!({})).await.unwrap_err();
        assert!(typo.message().contains("did you mean `list`?"), "{typo}");
        let no_key = t
            .call::<String>("link", json!({"id": 1}))
            .await
            .unwrap_err();
        assert_eq!(no_key.code(), ErrorCode::FailedPrecondition);
    }

    #[tokio::test]
    async fn search_operators_resolve() {
        let t = tickets().await;
        for title in ["Printer on fire", "Printer jam", "Coffee"] {
            let _: Ticket = t.call("create", json!({"title": title})).await.unwrap();
        }
        let ids: Vec<i64> = t.resolve("title", "printer").await.unwrap();
        assert_eq!(ids, [1, 2]);
    }

    #[tokio::test]
    async fn config_reads_durations_and_secrets_by_type() {
        let t = TestConnector::<Tickets>::start(
            json!({"busy_timeout": "1m30s", "signing_key": "k3y-k3y"}),
        )
        .await
        .unwrap();
        assert_eq!(t.connector().busy_timeout, Duration::from_secs(90));
        let link: String = t.call("link", json!({"id": 1})).await.unwrap();
        assert!(link.starts_with("tickets://1?sig="), "{link}");
        let config = &t.manifest().config["properties"];
        assert_eq!(config["busy_timeout"]["default"], "5s");
        assert_eq!(config["signing_key"]["writeOnly"], true);

        let err = TestConnector::<Tickets>::start(json!({"busy_timeout": "soon", "pathh": "x"}))
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`busy_timeout`: invalid value \"soon\""),
            "{err}"
        );
        assert!(
            err.contains("`pathh`: unknown config key; did you mean `path`?"),
            "{err}"
        );
    }
}
