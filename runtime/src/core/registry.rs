//! The registry: every connector type in this binary, with its actions,
//! search operators and producers merged from all the places that declared
//! them.
//!
//! [`Registry::from_inventory`] reads what the macros registered through
//! `inventory`. On targets where `inventory` registers nothing, build the
//! registry by hand with [`Registry::builder`]:
//!
//! ```standalone_crate
//! use spoke::prelude::*;
//!
//! /// Echoes text back.
//! #[connector(name = "echo")]
//! pub struct Echo {}
//!
//! // `actions = ECHO_ACTIONS` names the impl block's action set.
//! #[connector(actions = ECHO_ACTIONS)]
//! impl Echo {
//!     /// Return the text.
//!     #[action(read)]
//!     async fn echo(&self, text: String) -> String {
//!         text
//!     }
//! }
//!
//! # fn main() -> Result<(), spoke::RegistryError> {
//! let registry = spoke::Registry::builder()
//!     .connector(&<Echo as spoke::Connector>::REGISTRATION)
//!     .action_set(&Echo::ECHO_ACTIONS)
//!     .build()?;
//! assert_eq!(registry.names(), ["echo"]);
//! # Ok(())
//! # }
//! ```

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use crate::config::config_schema;
use crate::connector::{
    ActionDef, ActionSet, ConnectorRegistration, ProducerDef, SearchOperatorDef, SyncDef,
};
use crate::encoding::ActionEncodings;
use crate::manifest::{
    ActionManifest, MANIFEST_VERSION, Manifest, Mode, SearchOperatorManifest, SyncManifest,
};
use crate::payload::PayloadSpec;
use crate::schema::check_input_schema;

/// A problem with what was registered, found at start-up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    /// Two connectors share a name.
    #[error("two connectors are named `{name}`: one at {first}, one at {second}")]
    DuplicateConnector {
        /// The name.
        name: String,
        /// Where the first was declared.
        first: String,
        /// Where the second was declared.
        second: String,
    },
    /// Two actions (or operators, producers, syncs) of one connector share a name.
    #[error(
        "connector `{connector}` has two {kind}s named `{name}`: one at {first}, one at {second}"
    )]
    DuplicateAction {
        /// The connector.
        connector: String,
        /// `action`, `search operator`, `producer` or `sync`.
        kind: &'static str,
        /// The name.
        name: String,
        /// Where the first was declared.
        first: String,
        /// Where the second was declared.
        second: String,
    },
    /// Actions (or operators, or producers) were declared for a connector that
    /// was never declared.
    #[error(
        "{count} declaration(s) (actions, search operators or producers) at {location} belong to connector `{connector}`, which is not registered"
    )]
    OrphanActions {
        /// The connector named.
        connector: String,
        /// How many actions, operators and producers.
        count: usize,
        /// Where.
        location: String,
    },
    /// A sync's declaration is inconsistent (only possible by hand:
    /// `#[sync]` checks the same at compile time).
    #[error("sync `{sync}` of connector `{connector}` (at {location}): {problem}")]
    BadSync {
        /// The connector.
        connector: String,
        /// The sync.
        sync: String,
        /// Where it was declared.
        location: String,
        /// What is wrong.
        problem: String,
    },
    /// A generated input schema breaks the schema rules.
    #[error(
        "input schema of action `{action}` of connector `{connector}` (at {location}) breaks the schema rules: {problems}"
    )]
    BadInputSchema {
        /// The connector.
        connector: String,
        /// The action.
        action: String,
        /// Where the action was declared.
        location: String,
        /// Every violation, joined.
        problems: String,
    },
}

/// Every connector type known to this binary.
#[derive(Debug, Clone)]
pub struct Registry {
    connectors: Vec<Arc<ConnectorType>>,
}

/// One connector type: its registration, merged actions, operators and
/// producers, and manifest.
#[derive(Debug)]
pub struct ConnectorType {
    registration: &'static ConnectorRegistration,
    actions: Vec<&'static ActionDef>,
    /// Each action's place in `actions` and its encodings (a call checks
    /// them: computed once here, not per call).
    action_index: HashMap<&'static str, (usize, ActionEncodings)>,
    operators: Vec<&'static SearchOperatorDef>,
    producers: Vec<&'static ProducerDef>,
    syncs: Vec<&'static SyncDef>,
    manifest: OnceLock<Manifest>,
}

impl Registry {
    /// The registry of everything the macros registered in this binary,
    /// validated (duplicate names, orphan actions, schema rules).
    pub fn from_inventory() -> Result<Registry, RegistryError> {
        let mut builder = Registry::builder();
        for reg in inventory::iter::<ConnectorRegistration> {
            builder = builder.connector(reg);
        }
        for set in inventory::iter::<ActionSet> {
            builder = builder.action_set(set);
        }
        builder.build()
    }

    /// A builder for manual registration.
    pub fn builder() -> RegistryBuilder {
        RegistryBuilder::default()
    }

    /// The connector types, sorted by name.
    pub fn connectors(&self) -> &[Arc<ConnectorType>] {
        &self.connectors
    }

    /// The connector type with this name.
    pub fn get(&self, name: &str) -> Option<&Arc<ConnectorType>> {
        self.connectors.iter().find(|c| c.name() == name)
    }

    /// Whether nothing was registered.
    pub fn is_empty(&self) -> bool {
        self.connectors.is_empty()
    }

    /// The names of every connector type.
    pub fn names(&self) -> Vec<&'static str> {
        self.connectors.iter().map(|c| c.name()).collect()
    }
}

/// Collects registrations by hand; see [`Registry::builder`].
#[derive(Debug, Default)]
pub struct RegistryBuilder {
    connectors: Vec<&'static ConnectorRegistration>,
    sets: Vec<&'static ActionSet>,
}

impl RegistryBuilder {
    /// Adds a connector type.
    pub fn connector(mut self, registration: &'static ConnectorRegistration) -> Self {
        self.connectors.push(registration);
        self
    }

    /// Adds actions, operators and producers to a connector type.
    pub fn action_set(mut self, set: &'static ActionSet) -> Self {
        self.sets.push(set);
        self
    }

    /// Merges and validates everything.
    pub fn build(mut self) -> Result<Registry, RegistryError> {
        self.connectors.sort_by_key(|r| (r.name, r.location));
        for pair in self.connectors.windows(2) {
            if pair[0].name == pair[1].name {
                return Err(RegistryError::DuplicateConnector {
                    name: pair[0].name.into(),
                    first: pair[0].location.into(),
                    second: pair[1].location.into(),
                });
            }
        }
        for set in &self.sets {
            if !self.connectors.iter().any(|c| c.name == set.connector) {
                let location = set
                    .actions
                    .first()
                    .map(|a| a.location)
                    .or(set.operators.first().map(|o| o.location))
                    .or(set.producers.first().map(|p| p.location))
                    .or(set.syncs.first().map(|s| s.location));
                return Err(RegistryError::OrphanActions {
                    connector: set.connector.into(),
                    count: set.actions.len()
                        + set.operators.len()
                        + set.producers.len()
                        + set.syncs.len(),
                    location: location.unwrap_or("?").into(),
                });
            }
        }
        let mut connectors = Vec::with_capacity(self.connectors.len());
        for registration in self.connectors {
            let sets = self
                .sets
                .iter()
                .filter(|s| s.connector == registration.name);
            let mut actions: Vec<&'static ActionDef> =
                sets.clone().flat_map(|s| s.actions.iter()).collect();
            let mut operators: Vec<&'static SearchOperatorDef> =
                sets.clone().flat_map(|s| s.operators.iter()).collect();
            let mut producers: Vec<&'static ProducerDef> =
                sets.clone().flat_map(|s| s.producers.iter()).collect();
            let mut syncs: Vec<&'static SyncDef> = sets.flat_map(|s| s.syncs.iter()).collect();
            actions.sort_by_key(|a| (a.name, a.location));
            operators.sort_by_key(|o| (o.operator, o.location));
            producers.sort_by_key(|p| (p.name, p.location));
            syncs.sort_by_key(|s| (s.name, s.location));
            let dup =
                |kind, name: &str, first: &str, second: &str| RegistryError::DuplicateAction {
                    connector: registration.name.into(),
                    kind,
                    name: name.into(),
                    first: first.into(),
                    second: second.into(),
                };
            if let Some(p) = actions.windows(2).find(|p| p[0].name == p[1].name) {
                return Err(dup("action", p[0].name, p[0].location, p[1].location));
            }
            if let Some(p) = operators
                .windows(2)
                .find(|p| p[0].operator == p[1].operator)
            {
                return Err(dup(
                    "search operator",
                    p[0].operator,
                    p[0].location,
                    p[1].location,
                ));
            }
            if let Some(p) = producers.windows(2).find(|p| p[0].name == p[1].name) {
                return Err(dup("producer", p[0].name, p[0].location, p[1].location));
            }
            if let Some(p) = syncs.windows(2).find(|p| p[0].name == p[1].name) {
                return Err(dup("sync", p[0].name, p[0].location, p[1].location));
            }
            for sync in &syncs {
                if let Some(problem) = sync_problem(sync) {
                    return Err(RegistryError::BadSync {
                        connector: registration.name.into(),
                        sync: sync.name.into(),
                        location: sync.location.into(),
                        problem,
                    });
                }
            }
            // A binary input (bytes, a batch, a message) has no parameters.
            for action in actions
                .iter()
                .filter(|a| (a.input_payload)() == PayloadSpec::SERDE)
            {
                let schema = (action.input_schema)().to_value();
                let problems = check_input_schema(&schema);
                if !problems.is_empty() {
                    return Err(RegistryError::BadInputSchema {
                        connector: registration.name.into(),
                        action: action.name.into(),
                        location: action.location.into(),
                        problems: problems
                            .iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join("; "),
                    });
                }
            }
            let action_index = actions
                .iter()
                .enumerate()
                .map(|(i, a)| {
                    let encodings = ActionEncodings {
                        input: (a.input_payload)().encodings,
                        output: (a.output_payload)().encodings,
                    };
                    (a.name, (i, encodings))
                })
                .collect();
            connectors.push(Arc::new(ConnectorType {
                registration,
                actions,
                action_index,
                operators,
                producers,
                syncs,
                manifest: OnceLock::new(),
            }));
        }
        Ok(Registry { connectors })
    }
}

/// What is wrong with a sync's declaration, if anything.
fn sync_problem(sync: &SyncDef) -> Option<String> {
    use crate::sync::SyncMode;
    if sync.modes.is_empty() {
        return Some("it has no modes".into());
    }
    if let Some(m) = sync
        .modes
        .iter()
        .enumerate()
        .find_map(|(i, m)| sync.modes[..i].contains(m).then_some(m))
    {
        return Some(format!("mode `{m}` is listed twice"));
    }
    if !(0.0..=1.0).contains(&sync.error_budget) {
        return Some(format!(
            "its error budget {} is not between 0 and 1",
            sync.error_budget
        ));
    }
    if sync.checkpoint_version == 0 {
        return Some("checkpoint versions start at 1".into());
    }
    if sync.migrates && sync.checkpoint_version == 1 {
        return Some("it migrates checkpoints, but is at version 1: there is nothing older".into());
    }
    if let Some(m) = sync
        .sweep
        .iter()
        .find(|m| **m == SyncMode::Realtime || !sync.modes.contains(m))
    {
        return Some(format!(
            "it sweeps in the `{m}` mode, which it does not have or which never walks everything"
        ));
    }
    for (what, schema) in [
        ("extra", sync.extra_schema),
        ("attributes", sync.attributes_schema),
    ] {
        if let Some(schema) = schema
            && schema().get("type").and_then(|t| t.as_str()) != Some("object")
        {
            return Some(format!(
                "its `{what}` type is not a struct or a map: a document's {what} are named fields, so the type must serialize as a JSON object"
            ));
        }
    }
    None
}

impl ConnectorType {
    /// The connector's name.
    pub fn name(&self) -> &'static str {
        self.registration.name
    }

    /// What `#[connector]` registered.
    pub fn registration(&self) -> &'static ConnectorRegistration {
        self.registration
    }

    /// Every action, sorted by name (hidden ones included).
    pub fn actions(&self) -> &[&'static ActionDef] {
        &self.actions
    }

    /// The action with this name.
    pub fn action(&self, name: &str) -> Option<&'static ActionDef> {
        self.action_index.get(name).map(|&(i, _)| self.actions[i])
    }

    /// The action with this name, and the encodings it takes and gives.
    pub fn action_with_encodings(
        &self,
        name: &str,
    ) -> Option<(&'static ActionDef, ActionEncodings)> {
        self.action_index
            .get(name)
            .map(|&(i, encodings)| (self.actions[i], encodings))
    }

    /// Every search operator, sorted.
    pub fn operators(&self) -> &[&'static SearchOperatorDef] {
        &self.operators
    }

    /// The search operator with this name.
    pub fn operator(&self, name: &str) -> Option<&'static SearchOperatorDef> {
        self.operators.iter().copied().find(|o| o.operator == name)
    }

    /// Every producer, sorted by name.
    pub fn producers(&self) -> &[&'static ProducerDef] {
        &self.producers
    }

    /// The producer with this name.
    pub fn producer(&self, name: &str) -> Option<&'static ProducerDef> {
        self.producers.iter().copied().find(|p| p.name == name)
    }

    /// Every sync, sorted by name.
    pub fn syncs(&self) -> &[&'static SyncDef] {
        &self.syncs
    }

    /// The sync with this name.
    pub fn sync(&self, name: &str) -> Option<&'static SyncDef> {
        self.syncs.iter().copied().find(|s| s.name == name)
    }

    /// The manifest (built once, on first use).
    pub fn manifest(&self) -> &Manifest {
        self.manifest.get_or_init(|| self.build_manifest())
    }

    fn build_manifest(&self) -> Manifest {
        let r = self.registration;
        let actions: Vec<ActionManifest> = self
            .actions
            .iter()
            .map(|a| {
                let (input, output) = ((a.input_payload)(), (a.output_payload)());
                ActionManifest {
                    name: a.name.into(),
                    description: a.description.into(),
                    mode: a.mode,
                    admin_only: a.admin_only,
                    hidden: a.hidden,
                    destructive: a.destructive,
                    idempotent: a.idempotent,
                    timeout_ms: a.timeout_ms,
                    input_schema: (a.input_schema)().to_value(),
                    output_schema: (a.output_schema)().to_value(),
                    input_encodings: input.encodings.to_vec(),
                    output_encodings: output.encodings.to_vec(),
                    input_message_type: input.message_type,
                    output_message_type: output.message_type,
                    input_arrow_schema: input.arrow_schema,
                    output_arrow_schema: output.arrow_schema,
                }
            })
            .collect();
        let search_operators: Vec<SearchOperatorManifest> = self
            .operators
            .iter()
            .map(|o| SearchOperatorManifest {
                operator: o.operator.into(),
                attribute_key: o.attribute_key.into(),
                value_type: o.value_type,
                description: o.description.into(),
            })
            .collect();
        let syncs: Vec<SyncManifest> = self
            .syncs
            .iter()
            .map(|s| SyncManifest {
                name: s.name.into(),
                description: s.description.into(),
                modes: s.modes.to_vec(),
                source_type: s.source_type.map(Into::into),
                checkpoint_schema: (s.checkpoint_schema)().to_value(),
                checkpoint_version: s.checkpoint_version,
                error_budget: s.error_budget,
                sweep_modes: s.sweep.to_vec(),
                extra_schema: s.extra_schema.map(|f| f().to_value()),
                attributes_schema: s.attributes_schema.map(|f| f().to_value()),
            })
            .collect();
        let mut capabilities = vec!["cancellation", "deadlines", "events"];
        if !syncs.is_empty() {
            capabilities.push("syncs");
        }
        if !r.buckets.is_empty() {
            capabilities.push("store");
        }
        if !actions.is_empty() {
            capabilities.push("actions");
        }
        if actions.iter().any(|a| a.mode == Mode::Write) {
            capabilities.push("write_actions");
        }
        if !search_operators.is_empty() {
            capabilities.push("search_operators");
        }
        // Producers are not listed in the manifest; hosts learn that the
        // connector emits events unprompted from this capability.
        if !self.producers.is_empty() {
            capabilities.push("producers");
        }
        capabilities.sort_unstable();
        // The connector's own, then those of its syncs, each once.
        let mut source_types: Vec<String> = Vec::new();
        let declared = r.source_types.iter().copied();
        for t in declared.chain(self.syncs.iter().filter_map(|s| s.source_type)) {
            if !source_types.iter().any(|known| known == t) {
                source_types.push(t.to_owned());
            }
        }
        Manifest {
            spoke: MANIFEST_VERSION,
            name: r.name.into(),
            version: r.version.into(),
            display_name: r.display_name.into(),
            description: r.description.into(),
            source_types,
            config: config_schema(r.config_fields),
            actions,
            search_operators,
            syncs,
            buckets: r
                .buckets
                .iter()
                .map(|b| crate::manifest::BucketManifest {
                    name: b.name.to_owned(),
                    ttl_ms: b.ttl_ms,
                })
                .collect(),
            capabilities: capabilities.into_iter().map(String::from).collect(),
        }
    }

    /// The visible action names (for error messages and listings).
    pub fn visible_action_names(&self) -> Vec<&'static str> {
        self.actions
            .iter()
            .filter(|a| !a.hidden)
            .map(|a| a.name)
            .collect()
    }
}
