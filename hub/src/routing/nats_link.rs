//! The hub's connection to NATS (`spoke hub --nats`), where calls to
//! connectors with no instance here go, and the manifests of the
//! connectors read there (kept a few seconds).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use spoke_runtime::manifest::Manifest;
use spoke_runtime::nats::async_nats::Client;
use spoke_runtime::nats::client::request;
use spoke_runtime::nats::subjects::Subjects;
use spoke_runtime::{ActionError, ErrorCode};

/// How long a manifest read from NATS is trusted before it is asked again.
const MANIFEST_FRESH: Duration = Duration::from_secs(5);
/// How long asking for a manifest on NATS may take.
const DESCRIBE_TIMEOUT: Duration = Duration::from_secs(2);

/// The manifests read on NATS, by (tenant, connector), with when they were
/// read.
type Manifests = HashMap<(String, String), (Instant, Arc<Manifest>)>;

/// The hub's connection to NATS, and what it learnt there.
#[derive(Debug)]
pub(crate) struct NatsLink {
    client: Client,
    /// The manifests of connectors on NATS, by (tenant, connector), with
    /// when they were read.
    manifests: Mutex<Manifests>,
}

impl NatsLink {
    pub(crate) fn new(client: Client) -> NatsLink {
        NatsLink {
            client,
            manifests: Mutex::default(),
        }
    }

    pub(crate) fn client(&self) -> &Client {
        &self.client
    }

    /// The manifest of `connector` as it is served on NATS for `tenant`;
    /// `None` when nothing serves it there.
    pub(crate) async fn manifest(
        &self,
        subjects: &Subjects,
        tenant: &str,
        connector: &str,
    ) -> Result<Option<Arc<Manifest>>, ActionError> {
        let key = (tenant.to_owned(), connector.to_owned());
        if let Some((at, manifest)) = self.lock().get(&key)
            && at.elapsed() < MANIFEST_FRESH
        {
            return Ok(Some(Arc::clone(manifest)));
        }
        let body = match request(
            &self.client,
            subjects,
            subjects.describe(),
            Default::default(),
            Some(DESCRIBE_TIMEOUT),
        )
        .await
        {
            Ok(body) => body,
            Err(e) if e.code() == ErrorCode::Unavailable => {
                self.lock().remove(&key);
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        let manifest: Manifest = serde_json::from_slice(&body).map_err(|e| {
            ActionError::internal(format!(
                "the manifest {} answers is not one: {e}",
                subjects.describe()
            ))
        })?;
        let manifest = Arc::new(manifest);
        self.lock()
            .insert(key, (Instant::now(), Arc::clone(&manifest)));
        Ok(Some(manifest))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Manifests> {
        self.manifests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}
