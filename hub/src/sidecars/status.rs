//! What is known about each supervised sidecar (starting, attached or
//! broken, and why it last failed): written by the supervisor and the
//! sidecar bridge, read by `ListConnectors` for the sidecars that are not
//! attached.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// What the supervisor knows about one sidecar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SidecarStatus {
    /// The connector name it registered (or its sidecar name until it has).
    pub(crate) connector: String,
    /// `starting`, `attached` or `broken`.
    pub(crate) state: &'static str,
    /// Why it last failed.
    pub(crate) last_error: Option<String>,
}

/// The status of every supervised sidecar, by sidecar name.
#[derive(Debug, Clone, Default)]
pub(crate) struct StatusMap(Arc<Mutex<BTreeMap<String, SidecarStatus>>>);

impl StatusMap {
    pub(crate) fn lock(&self) -> MutexGuard<'_, BTreeMap<String, SidecarStatus>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn update(&self, name: &str, f: impl FnOnce(&mut SidecarStatus)) {
        if let Some(status) = self.lock().get_mut(name) {
            f(status);
        }
    }
}
