//! Work shared among a connector's instances: each account is refreshed by
//! exactly one of the instances serving on NATS, and when one leaves, only
//! its accounts go to the others.
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

use schemars::JsonSchema;
use serde::Serialize;
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

/// Accounts, each refreshed by one instance.
#[connector(name = "accounts")]
pub struct Accounts {}

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

fn main() -> std::process::ExitCode {
    spoke::main()
}
