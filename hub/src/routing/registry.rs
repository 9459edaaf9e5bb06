//! Connector types by tenant and name, and their live instances.
//!
//! Everything is keyed by tenant first: a connector type is known by its
//! tenant and its manifest's `name`, and tenants never see each other's
//! (with `--no-auth` every instance is in tenant "default"). Every instance
//! of a type shares one manifest (the latest registered wins, with a
//! warning when it differs for the same version). An instance is known by
//! its tenant, connector and id; it holds its session (id, token), its
//! state (ready, draining, disconnected, or pending an administrator's
//! approval, which routes nothing to it) and the link to its current
//! Attach stream.
//!
//! Instance ids are unique per connector: a second stream for an attached
//! instance id is refused unless it resumes with the session token (and then
//! takes over the session) or proves the key the attached session proved (a
//! restart of the same instance, whose old stream may be half-open: the old
//! session ends and the new one takes its place at once). A stream for an instance id whose stream ended and
//! whose session is still in its resume window, without that token, ends the
//! old session (its calls fail as if the window had passed) and starts a new one.
//! Connector types stay known after their last instance leaves: calling them
//! is then `UNAVAILABLE`, not `NOT_FOUND`.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;

use spoke_proto::v1::{Credentials, HubFrame, InstanceInfo};
use spoke_runtime::Manifest;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use crate::ids::{DEFAULT_TENANT, new_session_id, new_token, unix_ms};

/// Names one instance: its tenant, its connector and its id.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct InstanceKey {
    /// The tenant it serves (never empty: "" is "default").
    pub(crate) tenant: String,
    /// The connector type's name.
    pub(crate) connector: String,
    /// The instance id.
    pub(crate) id: String,
}

impl fmt::Display for InstanceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "instance `{}` of connector `{}`",
            self.id, self.connector
        )?;
        if self.tenant != DEFAULT_TENANT {
            write!(f, " (tenant `{}`)", self.tenant)?;
        }
        Ok(())
    }
}

/// A checked `Register`.
#[derive(Debug, Clone)]
pub(crate) struct Registration {
    /// The parsed manifest.
    pub(crate) manifest: Manifest,
    /// The manifest exactly as sent, served back by `Describe`.
    pub(crate) manifest_json: String,
    /// Who the instance is (non-empty id).
    pub(crate) info: InstanceInfo,
    /// The tenant it says it serves, as shown in listings.
    pub(crate) tenant: String,
    /// The tenant it is isolated in: its tenant ("" is "default"), or
    /// "default" for every instance of a hub without auth.
    pub(crate) scope: String,
    /// Its proof of identity, if sent.
    pub(crate) credentials: Option<Credentials>,
    /// The SDK version it reports.
    pub(crate) sdk_version: String,
    /// The token of the session it wants to resume; empty for a new one.
    pub(crate) session_token: String,
    /// How many invocations it runs at once; 0 means it declared no limit.
    pub(crate) max_in_flight: u32,
}

impl Registration {
    /// The instance it registers.
    pub(crate) fn key(&self) -> InstanceKey {
        InstanceKey {
            tenant: self.scope.clone(),
            connector: self.manifest.name.clone(),
            id: self.info.id.clone(),
        }
    }
}

/// Where an instance stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum InstanceStatus {
    /// Attached; calls are routed to it.
    Ready,
    /// Asked to finish its work and leave; nothing more is routed to it.
    Draining,
    /// Its stream ended; its session waits out the resume window.
    Disconnected,
    /// Attached, waiting for an administrator's approval; nothing is routed to it.
    Pending,
}

impl InstanceStatus {
    /// `"ready"`, `"draining"` or `"disconnected"`.
    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            InstanceStatus::Ready => "ready",
            InstanceStatus::Draining => "draining",
            InstanceStatus::Disconnected => "disconnected",
            InstanceStatus::Pending => "pending",
        }
    }
}

/// The hub's end of one Attach stream.
#[derive(Debug, Clone)]
pub(crate) struct Link {
    /// Frames to the connector.
    pub(crate) tx: mpsc::Sender<HubFrame>,
    /// Cancelled when a resumed stream takes the session over.
    pub(crate) replaced: CancellationToken,
    /// Cancelled when an administrator rejects or revokes the instance:
    /// the stream ends with `PERMISSION_DENIED`.
    pub(crate) denied: CancellationToken,
}

/// A live instance.
#[derive(Debug)]
pub(crate) struct Instance {
    /// Its identity as it registered.
    pub(crate) info: InstanceInfo,
    /// The tenant it serves.
    pub(crate) tenant: String,
    /// The session id.
    pub(crate) session_id: String,
    /// The secret that resumes the session.
    pub(crate) token: String,
    /// Ready, draining or disconnected.
    pub(crate) status: InstanceStatus,
    /// When the session started.
    pub(crate) connected_unix_ms: u64,
    /// One permit per invocation it accepts at once; `None` when it declared no limit.
    pub(crate) slots: Option<Arc<Semaphore>>,
    /// Its current stream, if attached.
    pub(crate) link: Option<Link>,
    /// The generation of its latest stream.
    pub(crate) generation: u64,
    /// The public key its registration proved, if it proved one.
    pub(crate) public_key: Option<[u8; 32]>,
}

/// A connector type.
#[derive(Debug)]
pub(crate) struct ConnectorType {
    /// The manifest all its instances share.
    pub(crate) manifest: Arc<Manifest>,
    /// The manifest as sent by the instance that registered it last.
    pub(crate) manifest_json: Arc<str>,
    /// The round-robin cursor of unrouted calls.
    cursor: usize,
    /// The round-robin cursors of calls routed by display name.
    name_cursors: HashMap<String, usize>,
    /// The ids of its ready instances, sorted: round-robin picks from here
    /// in constant time. Rebuilt whenever an instance's state changes.
    ready: Vec<String>,
}

impl ConnectorType {
    /// The ids of its ready instances, sorted.
    pub(crate) fn ready(&self) -> &[String] {
        &self.ready
    }
}

/// What a successful registration produced.
#[derive(Debug)]
pub(crate) struct Admitted {
    /// The instance.
    pub(crate) key: InstanceKey,
    /// The session id (the old one when resumed).
    pub(crate) session_id: String,
    /// The session token (the old one when resumed).
    pub(crate) token: String,
    /// Whether an existing session was resumed.
    pub(crate) resumed: bool,
    /// This stream's generation.
    pub(crate) generation: u64,
    /// Cancelled when another stream takes this session over.
    pub(crate) replaced: CancellationToken,
    /// Cancelled when the instance is rejected or revoked.
    pub(crate) denied: CancellationToken,
    /// Set when this registration ended an older, disconnected session of the
    /// same instance id; its pending calls must fail.
    pub(crate) ended_previous: bool,
    /// When resumed: the Invokes (and Cancels) of the calls still pending on
    /// the session, to send again on this stream before anything else (see
    /// `Pending::resend`); filled in by `HubState::admit`.
    pub(crate) resend: Vec<HubFrame>,
}

/// Every connector type and live instance.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    /// Connector types by tenant, then by name (looked up without allocating).
    types: BTreeMap<String, BTreeMap<String, ConnectorType>>,
    instances: BTreeMap<InstanceKey, Instance>,
    tokens: HashMap<String, InstanceKey>,
    generations: u64,
    /// Bumped on every change of an instance's presence or state.
    changes: Changes,
}

/// A counter bumped on every change of the registry's instances, for the
/// clients that watch what they may call (`Hub.WatchCatalog`).
#[derive(Debug)]
pub(crate) struct Changes(tokio::sync::watch::Sender<u64>);

impl Default for Changes {
    fn default() -> Self {
        Changes(tokio::sync::watch::channel(0).0)
    }
}

impl Registry {
    /// A receiver that sees every later change of the instances (their
    /// presence, approval and state).
    pub(crate) fn watch_changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.0.subscribe()
    }

    fn changed(&self) {
        self.changes.0.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Admits a registration whose stream sends through `tx`: resumes the
    /// session its token names, or starts a new one; `approved` says
    /// whether calls may be routed to it (otherwise it is pending), and
    /// `proven_key` is the public key the registration proved, if any. The
    /// error is the reason the stream is refused.
    pub(crate) fn admit(
        &mut self,
        reg: Registration,
        tx: mpsc::Sender<HubFrame>,
        approved: bool,
        proven_key: Option<[u8; 32]>,
    ) -> Result<Admitted, String> {
        let key = reg.key();
        let live = if approved {
            InstanceStatus::Ready
        } else {
            InstanceStatus::Pending
        };
        self.changed();
        self.generations += 1;
        let generation = self.generations;
        let link = Link {
            tx,
            replaced: CancellationToken::new(),
            denied: CancellationToken::new(),
        };
        let replaced = link.replaced.clone();
        let denied = link.denied.clone();

        if !reg.session_token.is_empty()
            && let Some(owner) = self.tokens.get(&reg.session_token)
        {
            if *owner != key {
                return Err(format!(
                    "this session token belongs to {owner}, not to {key}; \
                     register without a token to start a new session"
                ));
            }
            if let Some(instance) = self.instances.get_mut(&key) {
                if let Some(old) = instance.link.replace(link) {
                    tracing::info!(
                        "{key}: a new stream resumes session {} while the old one is still open; closing the old one",
                        instance.session_id
                    );
                    old.replaced.cancel();
                }
                instance.status = live;
                instance.generation = generation;
                instance.public_key = proven_key.or(instance.public_key);
                instance.info = reg.info;
                instance.tenant = reg.tenant;
                let admitted = Admitted {
                    key: key.clone(),
                    session_id: instance.session_id.clone(),
                    token: instance.token.clone(),
                    resumed: true,
                    generation,
                    replaced,
                    denied,
                    ended_previous: false,
                    resend: Vec::new(),
                };
                self.upsert_type(&key.tenant, reg.manifest, reg.manifest_json);
                self.refresh_ready(&key.tenant, &key.connector);
                return Ok(admitted);
            }
        } else if !reg.session_token.is_empty() {
            tracing::info!(
                "{key} presented a session token this hub does not know (expired, or the hub restarted); starting a new session"
            );
        }

        let mut ended_previous = false;
        if let Some(existing) = self.instances.get(&key) {
            let same_key = proven_key.is_some() && existing.public_key == proven_key;
            if existing.link.is_some() && same_key {
                tracing::warn!(
                    "{key} registers again, proving the key of its session {}, while that session still has a \
                     stream (half-open, or the old process is still going): the new registration takes over and \
                     the old session ends now",
                    existing.session_id
                );
                self.remove_instance(&key);
                ended_previous = true;
            } else if existing.link.is_some() {
                return Err(format!(
                    "{key} is already attached (session {}); a second stream may take it over \
                     only by resuming with that session's token or by proving its key, otherwise pick \
                 another instance id",
                    existing.session_id
                ));
            } else {
                tracing::warn!(
                    "{key} registers again without the token of its session {} (still in its resume window); \
                     that session ends now",
                    existing.session_id
                );
                self.remove_instance(&key);
                ended_previous = true;
            }
        }

        let session_id = new_session_id();
        let token = new_token();
        let slots =
            (reg.max_in_flight > 0).then(|| Arc::new(Semaphore::new(reg.max_in_flight as usize)));
        self.tokens.insert(token.clone(), key.clone());
        self.instances.insert(
            key.clone(),
            Instance {
                info: reg.info,
                tenant: reg.tenant,
                session_id: session_id.clone(),
                token: token.clone(),
                status: live,
                connected_unix_ms: unix_ms(),
                slots,
                link: Some(link),
                generation,
                public_key: proven_key,
            },
        );
        self.upsert_type(&key.tenant, reg.manifest, reg.manifest_json);
        self.refresh_ready(&key.tenant, &key.connector);
        Ok(Admitted {
            key,
            session_id,
            token,
            resumed: false,
            generation,
            replaced,
            denied,
            ended_previous,
            resend: Vec::new(),
        })
    }

    /// Records a connector type's manifest; the latest wins.
    fn upsert_type(&mut self, tenant: &str, manifest: Manifest, json: String) {
        let name = manifest.name.clone();
        let types = self.types.entry(tenant.to_owned()).or_default();
        match types.get_mut(&name) {
            Some(existing) if *existing.manifest == manifest => {}
            Some(existing) => {
                if existing.manifest.version == manifest.version {
                    tracing::warn!(
                        "connector `{name}` version {} registered again with a different manifest; \
                         the latest one now applies to all its instances",
                        manifest.version
                    );
                } else {
                    tracing::info!(
                        "connector `{name}` changes from version {} to {}; the latest manifest now applies \
                         to all its instances",
                        existing.manifest.version,
                        manifest.version
                    );
                }
                existing.manifest = Arc::new(manifest);
                existing.manifest_json = json.into();
            }
            None => {
                types.insert(
                    name,
                    ConnectorType {
                        manifest: Arc::new(manifest),
                        manifest_json: json.into(),
                        cursor: 0,
                        name_cursors: HashMap::new(),
                        ready: Vec::new(),
                    },
                );
            }
        }
    }

    /// A connector type of a tenant by name.
    pub(crate) fn connector(&self, tenant: &str, name: &str) -> Option<&ConnectorType> {
        self.types.get(tenant)?.get(name)
    }

    /// Every connector type of a tenant, by name.
    pub(crate) fn connectors<'a>(
        &'a self,
        tenant: &'a str,
    ) -> impl Iterator<Item = (&'a str, &'a ConnectorType)> + 'a {
        self.types
            .get(tenant)
            .into_iter()
            .flatten()
            .map(|(name, v)| (name.as_str(), v))
    }

    /// Every connector type of every tenant, by (tenant, name).
    pub(crate) fn all_connectors(&self) -> impl Iterator<Item = (&str, &str, &ConnectorType)> {
        self.types.iter().flat_map(|(t, types)| {
            types
                .iter()
                .map(move |(name, v)| (t.as_str(), name.as_str(), v))
        })
    }

    /// The instances of one connector of a tenant, sorted by id.
    pub(crate) fn instances_of<'a>(
        &'a self,
        tenant: &'a str,
        connector: &'a str,
    ) -> impl Iterator<Item = (&'a InstanceKey, &'a Instance)> + 'a {
        // Keys sort by tenant and connector first: its instances are one range.
        let first = InstanceKey {
            tenant: tenant.to_owned(),
            connector: connector.to_owned(),
            id: String::new(),
        };
        self.instances
            .range(first..)
            .take_while(move |(k, _)| k.tenant == tenant && k.connector == connector)
    }

    /// Lets a pending instance's calls in; returns its stream and session
    /// (id, token) to tell it, `None` if it is not attached and pending.
    pub(crate) fn approve(
        &mut self,
        key: &InstanceKey,
    ) -> Option<(mpsc::Sender<HubFrame>, String, String)> {
        self.changed();
        let instance = self.instances.get_mut(key)?;
        if instance.status != InstanceStatus::Pending {
            return None;
        }
        let tx = instance.link.as_ref()?.tx.clone();
        instance.status = InstanceStatus::Ready;
        let answer = (tx, instance.session_id.clone(), instance.token.clone());
        self.refresh_ready(&key.tenant, &key.connector);
        Some(answer)
    }

    /// Ends the instance's session because it was rejected or revoked: its
    /// live stream ends with `PERMISSION_DENIED`, its session token dies.
    pub(crate) fn deny(&mut self, key: &InstanceKey) -> Option<Instance> {
        self.changed();
        if let Some(link) = self.instances.get(key).and_then(|i| i.link.as_ref()) {
            link.denied.cancel();
        }
        self.remove_instance(key)
    }

    /// One instance.
    pub(crate) fn instance(&self, key: &InstanceKey) -> Option<&Instance> {
        self.instances.get(key)
    }

    /// The sender of the instance's current stream, if it is attached.
    pub(crate) fn link_tx(&self, key: &InstanceKey) -> Option<mpsc::Sender<HubFrame>> {
        self.instances
            .get(key)
            .and_then(|i| i.link.as_ref())
            .map(|l| l.tx.clone())
    }

    /// The next round-robin position for calls to `connector`: of its
    /// unrouted calls, or with `display_name` of the calls routed by that
    /// name (a route's `Target::cursor_name`).
    pub(crate) fn next_cursor(
        &mut self,
        tenant: &str,
        connector: &str,
        display_name: Option<&str>,
    ) -> usize {
        let Some(ty) = self
            .types
            .get_mut(tenant)
            .and_then(|t| t.get_mut(connector))
        else {
            return 0;
        };
        let cursor = match display_name {
            None => &mut ty.cursor,
            Some(name) => match ty.name_cursors.get_mut(name) {
                Some(cursor) => cursor,
                None => ty.name_cursors.entry(name.to_owned()).or_insert(0),
            },
        };
        let now = *cursor;
        *cursor = cursor.wrapping_add(1);
        now
    }

    /// Marks the instance disconnected if `generation` is still its stream;
    /// returns whether it was.
    pub(crate) fn disconnect(&mut self, key: &InstanceKey, generation: u64) -> bool {
        self.changed();
        match self.instances.get_mut(key) {
            Some(instance) if instance.generation == generation && instance.link.is_some() => {
                instance.link = None;
                instance.status = InstanceStatus::Disconnected;
                self.refresh_ready(&key.tenant, &key.connector);
                true
            }
            _ => false,
        }
    }

    /// Marks the instance draining if `generation` is still its stream.
    pub(crate) fn set_draining(&mut self, key: &InstanceKey, generation: u64) {
        self.changed();
        if let Some(instance) = self.instances.get_mut(key)
            && instance.generation == generation
            && instance.link.is_some()
        {
            instance.status = InstanceStatus::Draining;
            self.refresh_ready(&key.tenant, &key.connector);
        }
    }

    /// Ends the session if `generation` is still the instance's latest
    /// stream; returns the instance if it did.
    pub(crate) fn end(&mut self, key: &InstanceKey, generation: u64) -> Option<Instance> {
        self.changed();
        if self.instances.get(key)?.generation != generation {
            return None;
        }
        self.remove_instance(key)
    }

    /// Ends the session if the instance is still disconnected from stream
    /// `generation` (it did not resume in the meantime).
    pub(crate) fn expire(&mut self, key: &InstanceKey, generation: u64) -> Option<Instance> {
        self.changed();
        let instance = self.instances.get(key)?;
        if instance.generation != generation || instance.status != InstanceStatus::Disconnected {
            return None;
        }
        self.remove_instance(key)
    }

    /// Rebuilds the list of `connector`'s ready instances.
    fn refresh_ready(&mut self, tenant: &str, connector: &str) {
        let ready: Vec<String> = self
            .instances_of(tenant, connector)
            .filter(|(_, i)| i.status == InstanceStatus::Ready)
            .map(|(k, _)| k.id.clone())
            .collect();
        if let Some(ty) = self
            .types
            .get_mut(tenant)
            .and_then(|t| t.get_mut(connector))
        {
            ty.ready = ready;
        }
    }

    fn remove_instance(&mut self, key: &InstanceKey) -> Option<Instance> {
        let instance = self.instances.remove(key)?;
        self.refresh_ready(&key.tenant, &key.connector);
        self.tokens.remove(&instance.token);
        if let Some(slots) = &instance.slots {
            // Calls waiting for a slot learn the instance is gone.
            slots.close();
        }
        if let Some(link) = &instance.link {
            link.replaced.cancel();
        }
        Some(instance)
    }
}
