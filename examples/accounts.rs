//! Work shared among a connector's instances: each account is refreshed by
//! exactly one of the instances serving on NATS, and when one leaves, only
//! its accounts go to the others; notes on accounts kept in the
//! connector's store, written with compare-and-swap so that of two writers
//! racing exactly one wins.
//!
//! ```text
//! nats-server -js &
//! SPOKE_INSTANCE_ID=accounts-a cargo run --example accounts -- nats &
//! SPOKE_INSTANCE_ID=accounts-b cargo run --example accounts -- nats &
//! spoke call --nats nats://127.0.0.1:4222 accounts refresh '{"accounts": ["a-1", "a-2", "a-3"]}'
//! ```
//!
//! Each instance asks [`Context::partition`] which accounts are its own:
//! the live instances come from the status bucket every instance puts its
//! heartbeat in, and an account goes to the instance that scores highest
//! for it (rendezvous hashing, [`spoke::partition`]). Run anywhere else
//! (`cargo run --example accounts -- call refresh ...`) the one instance
//! owns every account.
//!
//! `note` and `notes` use `ctx.store()`: the `notes` bucket the connector
//! declares. On NATS it is the JetStream KV bucket `spoke_accounts_notes`,
//! shared by every instance; elsewhere a file under `SPOKE_STORE_DIR`.
//!
//! ```text
//! cargo run --example accounts -- call note '{"account": "a-1", "text": "first"}'
//! cargo run --example accounts -- call notes '{"account": "a-1"}'
//! cargo run --example accounts -- call note '{"account": "a-1", "text": "second", "revision": 1}'
//! ```

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use spoke::prelude::*;

/// What one instance did.
#[derive(Debug, Serialize, JsonSchema)]
struct Refreshed {
    /// The instance that answered.
    instance: String,
    /// The live instances it shares the work with (itself among them).
    members: Vec<String>,
    /// The accounts it owns, of those asked about: it refreshed these.
    refreshed: Vec<String>,
    /// The others, each with the instance that owns it.
    elsewhere: Vec<(String, String)>,
}

/// A note on an account, as stored.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
struct Note {
    /// What it says.
    text: String,
    /// The instance that wrote it.
    by: String,
}

/// A note and its revision.
#[derive(Debug, Serialize, JsonSchema)]
struct Noted {
    /// What it says.
    text: String,
    /// The instance that wrote it.
    by: String,
    /// Its revision: give it to `note` to change the note.
    revision: u64,
}

/// Where the `ledger` sync got to: the next account to walk.
#[derive(Debug, Default, Clone, Serialize, Deserialize, JsonSchema)]
struct LedgerCursor {
    next: u64,
}

/// Accounts, each refreshed by one instance, with notes.
#[connector(name = "accounts", buckets(notes))]
pub struct Accounts {
    /// How many accounts the `ledger` sync walks.
    #[config_field(env = "ACCOUNTS_COUNT", default = 100)]
    count: u64,
    /// How long the `ledger` sync waits between two pages (a slow API).
    #[config_field(env = "ACCOUNTS_PAGE_DELAY", default = "0ms", advanced)]
    page_delay: std::time::Duration,
}

/// Accounts per page of the `ledger` sync: a checkpoint after each.
const LEDGER_PAGE: u64 = 10;

#[connector]
impl Accounts {
    /// Refresh the given accounts this instance owns; say who owns the rest.
    #[action(write, idempotent)]
    async fn refresh(
        &self,
        ctx: &Context,
        accounts: Vec<String>,
    ) -> Result<Refreshed, ActionError> {
        let partition = ctx.partition();
        let mut refreshed = Vec::new();
        let mut elsewhere = Vec::new();
        for account in accounts {
            let owner = partition.owner(&account);
            if owner == partition.me() {
                // A real connector would fetch the account here.
                refreshed.push(account);
            } else {
                elsewhere.push((account, owner));
            }
        }
        Ok(Refreshed {
            instance: partition.me().to_owned(),
            members: partition.instances(),
            refreshed,
            elsewhere,
        })
    }
}

#[connector]
impl Accounts {
    /// Write an account's note: a new one when no `revision` is given
    /// (`failed_precondition` if there is one), else only if the note is
    /// still at `revision` (`failed_precondition` if someone wrote since).
    #[action(write)]
    async fn note(
        &self,
        ctx: &Context,
        account: String,
        text: String,
        revision: Option<u64>,
    ) -> Result<Noted, ActionError> {
        let notes = ctx.store().bucket("notes")?;
        let by = ctx.partition().me().to_owned();
        let note = Note {
            text: text.clone(),
            by: by.clone(),
        };
        let revision = match revision {
            None => notes.create(&account, &note).await?,
            Some(revision) => notes.update(&account, &note, revision).await?,
        };
        Ok(Noted { text, by, revision })
    }

    /// Walk the accounts, a page of ten at a time, storing a checkpoint
    /// after each page: a run stopped half-way (its process killed) is
    /// resumed after the last page stored, by whichever instance runs it
    /// next (served on NATS, the checkpoint is in JetStream KV).
    #[sync(modes = "full", source_type = "ledger")]
    async fn ledger(&self, ctx: &SyncContext<LedgerCursor>) -> Result<(), ActionError> {
        let mut next = ctx.last_checkpoint().map_or(0, |c| c.next);
        while next < self.count {
            let end = (next + LEDGER_PAGE).min(self.count);
            for n in next..end {
                let document = spoke::sync::Document::new(format!("account-{n}"))
                    .title(format!("Account {n}"));
                ctx.created(document).await?;
            }
            next = end;
            ctx.checkpoint(&LedgerCursor { next }).await?;
            if next < self.count && !self.page_delay.is_zero() {
                tokio::select! {
                    () = tokio::time::sleep(self.page_delay) => {}
                    () = ctx.cancelled() => return Err(ActionError::cancelled("the ledger walk was cancelled")),
                }
            }
        }
        Ok(())
    }

    /// An account's note, or `null`.
    #[action(read)]
    async fn notes(&self, ctx: &Context, account: String) -> Result<Option<Noted>, ActionError> {
        let notes = ctx.store().bucket("notes")?;
        Ok(notes.get::<Note>(&account).await?.map(|n| Noted {
            text: n.value.text,
            by: n.value.by,
            revision: n.revision,
        }))
    }
}

fn main() -> std::process::ExitCode {
    spoke::main()
}
