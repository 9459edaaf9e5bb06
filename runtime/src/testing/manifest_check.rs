//! [`check_manifest`]: every rule Spoke knows, over every connector in the
//! test binary, as one failing `cargo test` instead of a surprise at start-up
//! or at a host's registration.

use std::fmt;

use serde_json::Value;

use crate::manifest::Manifest;
use crate::registry::Registry;
use crate::schema::{check_input_schema, for_each_key};

/// The longest MCP tool name the common LLM APIs accept.
pub const MCP_TOOL_NAME_MAX: usize = 64;

pub use crate::schema::OMNI_FORBIDDEN_KEYWORDS;

/// Runs every rule Spoke knows over every connector registered in this
/// binary (the test binary: the connectors of the crate under test):
///
/// - **registration**: no two connectors, or two actions, search operators
///   or producers of one connector, share a name, wherever they were
///   declared (modules, free functions); nothing belongs to a connector that
///   does not exist;
/// - **schemas**: the config schema and every action's input and output
///   schema is valid JSON Schema draft 2020-12 (checked against the
///   meta-schema) and self-contained (every `$ref` points inside it); input
///   schemas follow Spoke's rules (an object at the root, no `$ref`/`$defs`,
///   no top-level `anyOf`/`oneOf`/`allOf`);
/// - **Omni**: no input schema uses a keyword Omni rejects
///   ([`OMNI_FORBIDDEN_KEYWORDS`]) at any depth, nor names a parameter
///   after one;
/// - **MCP**: every tool name `connector__action` is at most
///   [`MCP_TOOL_NAME_MAX`] characters of `[A-Za-z0-9_-]`, starting with a
///   letter; a connector name has no `__` (the separator); every action has
///   a description (its doc comment: what an agent reads to choose it).
///
/// Returns every problem at once.
///
/// In a connector crate's tests (`#[test] fn manifest() { ... }`):
///
/// ```
/// spoke::testing::check_manifest().unwrap();
/// ```
pub fn check_manifest() -> Result<(), ManifestProblems> {
    let registry = match Registry::from_inventory() {
        Ok(registry) => registry,
        Err(e) => {
            return Err(ManifestProblems(vec![Problem {
                place: "registration".into(),
                what: e.to_string(),
            }]));
        }
    };
    let mut problems = Vec::new();
    for ty in registry.connectors() {
        check_one(ty.manifest(), &mut problems);
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(ManifestProblems(problems))
    }
}

/// Runs the rules of [`check_manifest`] (but the registration's) over one
/// manifest, as a host received it.
pub fn check_manifest_of(manifest: &Manifest) -> Result<(), ManifestProblems> {
    let mut problems = Vec::new();
    check_one(manifest, &mut problems);
    if problems.is_empty() {
        Ok(())
    } else {
        Err(ManifestProblems(problems))
    }
}

fn check_one(manifest: &Manifest, problems: &mut Vec<Problem>) {
    let connector = &manifest.name;
    let mut problem = |place: String, what: String| problems.push(Problem { place, what });
    if connector.contains("__") {
        problem(
            format!("connector `{connector}`"),
            "its name contains `__`, the separator of MCP tool names (`connector__action`)".into(),
        );
    }
    for (what, schema) in [("config schema", &manifest.config)] {
        for why in schema_problems(schema) {
            problem(format!("connector `{connector}`, {what}"), why);
        }
    }
    for action in &manifest.actions {
        let place = |part: &str| format!("action `{}` of `{connector}`, {part}", action.name);
        for why in schema_problems(&action.input_schema) {
            problem(place("input schema"), why);
        }
        // Parameters are an object every host reads; a binary input is not.
        if action.takes_parameters() {
            for violation in check_input_schema(&action.input_schema) {
                problem(place("input schema"), violation.to_string());
            }
            for why in omni_keywords(&action.input_schema) {
                problem(place("input schema"), why);
            }
        }
        for why in schema_problems(&action.output_schema) {
            problem(place("output schema"), why);
        }
        let tool = format!("{connector}__{}", action.name);
        if let Some(why) = mcp_tool_name_problem(&tool) {
            problem(place("MCP tool name"), why);
        }
        if action.description.trim().is_empty() {
            problem(
                place("description"),
                "it has none: write a doc comment on the action (agents choose tools by it)".into(),
            );
        }
    }
}

/// Why `name` is not a portable MCP tool name, if it is not.
pub fn mcp_tool_name_problem(name: &str) -> Option<String> {
    let count = name.chars().count();
    if count > MCP_TOOL_NAME_MAX {
        return Some(format!(
            "`{name}` is {count} characters; MCP clients and LLM APIs accept at most {MCP_TOOL_NAME_MAX}: shorten the connector or action name"
        ));
    }
    if !name.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return Some(format!("`{name}` must start with a letter"));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
    {
        return Some(format!(
            "`{name}` contains `{bad}`; MCP tool names are letters, digits, `_` and `-`"
        ));
    }
    None
}

/// Meta-schema validity and self-containment.
fn schema_problems(schema: &Value) -> Vec<String> {
    let mut out = Vec::new();
    if let Err(e) = jsonschema::draft202012::meta::validate(schema) {
        out.push(format!(
            "not valid JSON Schema 2020-12 at {}: {e}",
            pointer_or_root(&e.instance_path().to_string())
        ));
    }
    let mut refs = Vec::new();
    collect_refs(schema, &mut refs);
    for reference in refs {
        let resolves = reference
            .strip_prefix('#')
            .is_some_and(|pointer| pointer.is_empty() || schema.pointer(pointer).is_some());
        if !resolves {
            out.push(format!(
                "`$ref: {reference}` does not point inside the schema: it is not self-contained"
            ));
        }
    }
    out
}

fn pointer_or_root(pointer: &str) -> &str {
    if pointer.is_empty() { "/" } else { pointer }
}

fn collect_refs<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                if key == "$ref"
                    && let Value::String(r) = child
                {
                    out.push(r);
                }
                collect_refs(child, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}

/// Omni's keyword rule, with Omni's own path spelling (`.properties.if`,
/// `.items[0].not`).
fn omni_keywords(schema: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for_each_key(schema, &mut String::new(), &mut |pointer, key| {
        if OMNI_FORBIDDEN_KEYWORDS.contains(&key) {
            out.push(format!(
                "Omni rejects `{key}` at input_schema{} (at any depth, a parameter's name included)",
                omni_path(pointer)
            ));
        }
    });
    out
}

/// A JSON pointer as Omni writes paths: `/properties/x/0` → `.properties.x[0]`.
fn omni_path(pointer: &str) -> String {
    pointer
        .split('/')
        .skip(1)
        .map(|part| match part.parse::<usize>() {
            Ok(i) => format!("[{i}]"),
            Err(_) => format!(".{}", part.replace("~1", "/").replace("~0", "~")),
        })
        .collect()
}

/// One broken rule: where, and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The connector, action and part (`action `get` of `tickets`, input schema`).
    pub place: String,
    /// What is wrong, and how to fix it.
    pub what: String,
}

/// Every rule [`check_manifest`] found broken.
#[derive(Clone, PartialEq, Eq)]
pub struct ManifestProblems(pub Vec<Problem>);

impl fmt::Display for ManifestProblems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        write!(f, "{n} manifest problem{}:", if n == 1 { "" } else { "s" })?;
        for p in &self.0 {
            write!(f, "\n  - {}: {}", p.place, p.what)?;
        }
        Ok(())
    }
}

// `check_manifest().unwrap()` prints this: the list, not a struct dump.
impl fmt::Debug for ManifestProblems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for ManifestProblems {}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn mcp_tool_names_follow_the_portable_rules() {
        assert_eq!(mcp_tool_name_problem("tickets__get"), None);
        assert!(
            mcp_tool_name_problem("9lives__x")
                .unwrap()
                .contains("letter")
        );
        assert!(mcp_tool_name_problem("a.b__c").unwrap().contains("`.`"));
        let long = format!("c__{}", "a".repeat(62));
        assert!(
            mcp_tool_name_problem(&long)
                .unwrap()
                .contains("65 characters")
        );
    }

    #[test]
    fn omni_keywords_are_found_at_any_depth_with_omni_paths() {
        let schema = json!({"type": "object", "properties": {"if": {"type": "string"},
            "x": {"type": "array", "items": [{"not": {}}]}}});
        let found = omni_keywords(&schema);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found[0].contains("input_schema.properties.if"), "{found:?}");
        assert!(found[1].contains(".properties.x.items[0].not"), "{found:?}");
    }

    #[test]
    fn schemas_must_be_valid_and_self_contained() {
        assert!(schema_problems(&json!({"type": "object"})).is_empty());
        let bad_type = schema_problems(&json!({"type": "objekt"}));
        assert_eq!(bad_type.len(), 1);
        assert!(
            bad_type[0].contains("not valid JSON Schema 2020-12"),
            "{bad_type:?}"
        );
        let outside = schema_problems(&json!({"$ref": "https://example.invalid/x.json"}));
        assert!(outside[0].contains("not self-contained"), "{outside:?}");
        let inside = json!({"$ref": "#/$defs/A", "$defs": {"A": {"type": "string"}}});
        assert!(schema_problems(&inside).is_empty());
        let dangling = schema_problems(&json!({"$ref": "#/$defs/B", "$defs": {}}));
        assert_eq!(dangling.len(), 1, "{dangling:?}");
    }
}
