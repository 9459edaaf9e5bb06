//! Syncs through the hub: a client starts a run of a connector's sync
//! (`Hub.Sync`, `spoke sync`), the hub picks an instance, hands it the
//! checkpoint it keeps for (tenant, connector, sync, source), streams the
//! run's events to the caller and stores each checkpoint once every event
//! before it reached the caller; `ListSyncs`, `CancelSync` and the Admin
//! checkpoint calls look at and change what it keeps.
//!
//! | module | what it is |
//! |---|---|
//! | `store` | `<data>/syncs.db` (SQLite): checkpoints, runs, the document ids of syncs that sweep |
//! | `runs` | the runs going on now, one per (tenant, connector, sync, source), and their frames from connectors |
//! | `run` | one run's task: `StartSync`, applying and acknowledging the connector's frames, the end |
//! | `api` | the client calls (`Sync`, `ListSyncs`, `CancelSync`) and the Admin checkpoint calls |
//!
//! It uses the connector sessions (the state, the instances' streams) and
//! routing; the client and admin [`api`](crate::api) call into it.

pub(crate) mod api;
pub(crate) mod run;
pub(crate) mod runs;
pub(crate) mod store;

use std::sync::Arc;

use runs::SyncRuns;
use store::SyncStore;

/// The hub's syncs: the runs going on and the store behind them.
#[derive(Debug)]
pub(crate) struct Syncs {
    /// Checkpoints, runs and known ids.
    pub(crate) store: Arc<SyncStore>,
    /// The runs going on now.
    pub(crate) runs: SyncRuns,
}

impl Syncs {
    /// Syncs kept in `store`.
    pub(crate) fn new(store: SyncStore) -> Self {
        Syncs {
            store: Arc::new(store),
            runs: SyncRuns::default(),
        }
    }
}
