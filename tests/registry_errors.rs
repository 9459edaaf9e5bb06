//! What the registry refuses at start-up, through hand-built registries
//! (`Registry::builder()`): every error names its culprit. (Its own test
//! binary: the connectors here break the rules on purpose, so the
//! `inventory` registry of this binary is invalid and is never built.)

use schemars::JsonSchema;
use serde::Deserialize;
use spoke::prelude::*;
use spoke::{Connector, Registry, RegistryError};

// --------------------------------------------- inputs that are not objects

/// Externally tagged: its schema is a top-level `oneOf`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    ById { id: u64 },
    ByName { name: String },
}

/// Untagged: its schema is a top-level `anyOf`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Lookup {
    Id(u64),
    Name(String),
}

/// A connector whose actions take a whole-input enum.
#[connector(name = "shapes")]
pub struct Shapes {}

#[connector(actions = SHAPES_ACTIONS)]
impl Shapes {
    /// Fine: named parameters make an object.
    #[action(read)]
    fn fine(&self, id: u64) -> u64 {
        id
    }

    /// Its input schema is a `oneOf`.
    #[action(read)]
    fn pick(&self, #[input] target: Target) -> String {
        format!("{target:?}")
    }
}

/// A second set for `shapes`, with an `anyOf` input.
#[connector(actions = SHAPES_LOOKUP_ACTIONS)]
impl Shapes {
    /// Its input schema is an `anyOf`.
    #[action(read)]
    fn lookup(&self, #[input] lookup: Lookup) -> String {
        format!("{lookup:?}")
    }
}

#[test]
fn an_enum_input_with_a_top_level_one_of_is_refused_naming_the_action() {
    let err = Registry::builder()
        .connector(&<Shapes as Connector>::REGISTRATION)
        .action_set(&Shapes::SHAPES_ACTIONS)
        .build()
        .unwrap_err();
    let RegistryError::BadInputSchema {
        connector,
        action,
        location,
        problems,
    } = &err
    else {
        panic!("expected a bad input schema error, got {err}");
    };
    assert_eq!((connector.as_str(), action.as_str()), ("shapes", "pick"));
    assert!(
        location.starts_with("tests/registry_errors.rs:"),
        "{location}"
    );
    assert!(
        problems.contains("at /oneOf: top-level `oneOf` is not allowed"),
        "{problems}"
    );
    assert!(
        problems.contains("at /type: top-level type must be \"object\""),
        "{problems}"
    );
    let text = err.to_string();
    assert!(
        text.starts_with(&format!(
            "input schema of action `pick` of connector `shapes` (at {location}) breaks the schema rules: "
        )),
        "{text}"
    );
    assert!(text.contains("top-level `oneOf`"), "{text}");
}

#[test]
fn an_untagged_enum_input_with_a_top_level_any_of_is_refused_naming_the_action() {
    let err = Registry::builder()
        .connector(&<Shapes as Connector>::REGISTRATION)
        .action_set(&Shapes::SHAPES_LOOKUP_ACTIONS)
        .build()
        .unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(&err, RegistryError::BadInputSchema { action, .. } if action == "lookup"),
        "{text}"
    );
    assert!(
        text.contains("action `lookup` of connector `shapes`"),
        "{text}"
    );
    assert!(
        text.contains("at /anyOf: top-level `anyOf` is not allowed"),
        "{text}"
    );
}

// ------------------------------------------------- connectors and orphans

/// One connector named `twin`...
#[connector(name = "twin")]
pub struct TwinOne {}

/// ...and another, declared elsewhere, with the same name.
#[connector(name = "twin")]
pub struct TwinTwo {}

#[test]
fn two_connectors_with_one_name_are_refused_naming_both_places() {
    let err = Registry::builder()
        .connector(&<TwinOne as Connector>::REGISTRATION)
        .connector(&<TwinTwo as Connector>::REGISTRATION)
        .build()
        .unwrap_err();
    let RegistryError::DuplicateConnector {
        name,
        first,
        second,
    } = &err
    else {
        panic!("expected a duplicate connector error, got {err}");
    };
    assert_eq!(name, "twin");
    assert_ne!(first, second);
    let mut places = [first.as_str(), second.as_str()];
    places.sort();
    let declared = [
        <TwinOne as Connector>::REGISTRATION.location,
        <TwinTwo as Connector>::REGISTRATION.location,
    ];
    let mut declared = declared.to_vec();
    declared.sort();
    assert_eq!(places.to_vec(), declared);
    assert_eq!(
        err.to_string(),
        format!("two connectors are named `twin`: one at {first}, one at {second}")
    );
}

#[test]
fn one_connector_registered_twice_is_refused() {
    let err = Registry::builder()
        .connector(&<TwinOne as Connector>::REGISTRATION)
        .connector(&<TwinOne as Connector>::REGISTRATION)
        .build()
        .unwrap_err();
    assert!(
        matches!(&err, RegistryError::DuplicateConnector { name, .. } if name == "twin"),
        "{err}"
    );
    assert!(
        err.to_string()
            .starts_with("two connectors are named `twin`: one at tests/registry_errors.rs:"),
        "{err}"
    );
}

/// A connector whose actions are registered without it.
#[connector(name = "lonely")]
pub struct Lonely {}

#[connector(actions = LONELY_ACTIONS)]
impl Lonely {
    #[action(read)]
    fn ping(&self) -> String {
        "pong".into()
    }

    #[action(read)]
    fn pong(&self) -> String {
        "ping".into()
    }

    /// Files with this extension.
    #[search_operator(attribute = "extension")]
    fn ext(&self, value: String) -> String {
        value
    }
}

#[test]
fn actions_for_a_connector_that_is_not_registered_are_refused() {
    let err = Registry::builder()
        .connector(&<TwinOne as Connector>::REGISTRATION)
        .action_set(&Lonely::LONELY_ACTIONS)
        .build()
        .unwrap_err();
    let RegistryError::OrphanActions {
        connector,
        count,
        location,
    } = &err
    else {
        panic!("expected an orphan actions error, got {err}");
    };
    assert_eq!(connector, "lonely");
    assert_eq!(*count, 3, "two actions and an operator");
    assert!(
        location.starts_with("tests/registry_errors.rs:"),
        "{location}"
    );
    assert_eq!(
        err.to_string(),
        format!(
            "3 declaration(s) (actions, search operators or producers) at {location} belong to connector `lonely`, which is not registered"
        )
    );
}

// ------------------------------------- two search operators with one name

/// A connector with an `ext` operator in each of two impl blocks.
#[connector(name = "finder")]
pub struct Finder {}

#[connector(actions = FINDER_BY_NAME)]
impl Finder {
    /// Files with this extension, by name.
    #[search_operator(attribute = "extension")]
    fn ext(&self, value: String) -> String {
        value
    }
}

#[connector(actions = FINDER_BY_TYPE)]
impl Finder {
    /// Files with this extension, by content type.
    #[search_operator(name = "ext", attribute = "content_type")]
    fn ext_by_type(&self, value: String) -> String {
        value
    }
}

#[test]
fn two_search_operators_with_one_name_are_refused_naming_both_places() {
    let err = Registry::builder()
        .connector(&<Finder as Connector>::REGISTRATION)
        .action_set(&Finder::FINDER_BY_NAME)
        .action_set(&Finder::FINDER_BY_TYPE)
        .build()
        .unwrap_err();
    let RegistryError::DuplicateAction {
        connector,
        kind,
        name,
        first,
        second,
    } = &err
    else {
        panic!("expected a duplicate operator error, got {err}");
    };
    assert_eq!(
        (connector.as_str(), *kind, name.as_str()),
        ("finder", "search operator", "ext")
    );
    assert_ne!(first, second);
    for place in [first, second] {
        assert!(place.starts_with("tests/registry_errors.rs:"), "{place}");
    }
    assert_eq!(
        err.to_string(),
        format!(
            "connector `finder` has two search operators named `ext`: one at {first}, one at {second}"
        )
    );

    // Each set alone is fine.
    for set in [&Finder::FINDER_BY_NAME, &Finder::FINDER_BY_TYPE] {
        let registry = Registry::builder()
            .connector(&<Finder as Connector>::REGISTRATION)
            .action_set(set)
            .build()
            .expect("one `ext` is fine");
        assert_eq!(registry.get("finder").unwrap().operators().len(), 1);
    }
}

#[test]
fn the_same_registrations_without_the_culprits_are_accepted() {
    // The errors above come from the culprits, not from the builder.
    let registry = Registry::builder()
        .connector(&<Shapes as Connector>::REGISTRATION)
        .connector(&<TwinOne as Connector>::REGISTRATION)
        .connector(&<Lonely as Connector>::REGISTRATION)
        .action_set(&Lonely::LONELY_ACTIONS)
        .build()
        .expect("valid");
    assert_eq!(registry.names(), ["lonely", "shapes", "twin"]);
    let lonely = registry.get("lonely").unwrap();
    assert_eq!(lonely.actions().len(), 2);
    assert_eq!(lonely.operators().len(), 1);
}
