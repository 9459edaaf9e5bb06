//! The Omni manifest (`ConnectorManifest`) of a connector, derived from its
//! Spoke manifest, and the rules Omni's connector-manager applies to action
//! input schemas before it accepts a registration.

use serde_json::{Value, json};

use crate::manifest::{Manifest, Mode, SyncManifest};
use crate::schema::OMNI_FORBIDDEN_KEYWORDS;

/// The manifest `GET /manifest` answers and `POST /sdk/register` sends:
/// Omni's `ConnectorManifest`, every field present.
///
/// - `sync_modes`: every mode of the connector's syncs, in the order
///   full, incremental, realtime (empty when it has none);
/// - `source_types`: the manifest's (the connector's, then its syncs');
///   every action lists them all (Omni refuses an action whose list is
///   empty);
/// - `read_only`: true when no action writes;
/// - `extra_schema` / `attributes_schema`: the schemas of the types the
///   syncs declare (`#[sync(extra = T, attributes = T)]`); when several
///   syncs declare one, an object schema with all their fields (see
///   [`manifest_schema_problems`] for fields they disagree on); `null`
///   when none does;
/// - actions: name, description, input schema, mode, `admin_only`,
///   `hidden`; search operators: operator, attribute key, value type.
///
/// ```
/// use spoke::http::omni_manifest;
/// # let manifest: spoke::Manifest = serde_json::from_value(serde_json::json!({
/// #     "spoke": 1, "name": "echo", "version": "1.0.0", "display_name": "Echo",
/// #     "description": "Echoes.", "config": {}, "actions": [], "search_operators": [],
/// #     "capabilities": []})).unwrap();
/// let omni = omni_manifest(&manifest, "http://echo:8080");
/// assert_eq!(omni["connector_id"], "echo");
/// assert_eq!(omni["connector_url"], "http://echo:8080");
/// ```
pub fn omni_manifest(manifest: &Manifest, connector_url: &str) -> Value {
    let mut sync_modes: Vec<crate::sync::SyncMode> = manifest
        .syncs
        .iter()
        .flat_map(|s| s.modes.iter().copied())
        .collect();
    sync_modes.sort();
    sync_modes.dedup();
    let source_types = &manifest.source_types;
    // Omni's `/action` takes an object of parameters and answers JSON:
    // actions with other inputs or outputs are not offered to it.
    let actions: Vec<Value> = manifest
        .actions
        .iter()
        .filter(|a| omni_can_call(a))
        .map(|a| {
            json!({
                "name": a.name,
                "description": a.description,
                "input_schema": a.input_schema,
                "mode": a.mode.as_str(),
                "required_scopes": null,
                "source_types": source_types,
                "admin_only": a.admin_only,
                "hidden": a.hidden,
            })
        })
        .collect();
    let operators: Vec<Value> = manifest
        .search_operators
        .iter()
        .map(|o| {
            json!({
                "operator": o.operator,
                "attribute_key": o.attribute_key,
                "value_type": o.value_type.as_str(),
            })
        })
        .collect();
    json!({
        "name": manifest.name,
        "display_name": manifest.display_name,
        "version": manifest.version,
        "sync_modes": sync_modes,
        "connector_id": manifest.name,
        "connector_url": connector_url,
        "integration_type": "connector",
        "source_types": source_types,
        "description": manifest.description,
        "actions": actions,
        "search_operators": operators,
        "read_only": manifest.actions.iter().all(|a| a.mode == Mode::Read),
        "extra_schema": document_fields_schema(manifest, |s| s.extra_schema.as_ref()).0,
        "attributes_schema": document_fields_schema(manifest, |s| s.attributes_schema.as_ref()).0,
        "mcp_enabled": false,
        "mcp_catalog_loaded": false,
        "resources": [],
        "prompts": [],
        "skills": [],
        "oauth": null,
    })
}

/// What Omni's connector-manager would refuse in the input schema of action
/// `action` of connector `connector` (its `validate_action_input_schema`),
/// each in the manager's words: a JSON object, no top-level `anyOf`,
/// `oneOf` or `allOf`, a top-level `type` (if any) of `"object"`, and none
/// of `$ref`, `$defs`, `definitions`, `dependentRequired`,
/// `dependentSchemas`, `if`, `then`, `else`, `not` as a key at any depth
/// (so no parameter may have one of those names either). One refused
/// schema makes the manager refuse the whole registration, so `<bin> http`
/// checks every action before it starts.
///
/// ```
/// use serde_json::json;
/// use spoke::http::omni_schema_problems;
/// assert!(omni_schema_problems("c", "a", &json!({"type": "object"})).is_empty());
/// let problems = omni_schema_problems("c", "a", &json!({"type": "object", "properties": {"not": {}}}));
/// assert_eq!(problems, ["c.a input_schema.properties.not is not supported"]);
/// ```
pub fn omni_schema_problems(connector: &str, action: &str, schema: &Value) -> Vec<String> {
    let at = format!("{connector}.{action} input_schema");
    let Some(object) = schema.as_object() else {
        return vec![format!("{at} must be a JSON object")];
    };
    let mut problems = Vec::new();
    for keyword in ["anyOf", "oneOf", "allOf"] {
        if object.contains_key(keyword) {
            problems.push(format!("{at}.{keyword} is not supported at the top level"));
        }
    }
    if let Some(t) = object.get("type")
        && t != "object"
    {
        problems.push(format!("{at}.type must be \"object\""));
    }
    walk(schema, &mut at.clone(), &mut problems);
    problems
}

fn walk(value: &Value, path: &mut String, problems: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                let len = path.len();
                path.push('.');
                path.push_str(key);
                if OMNI_FORBIDDEN_KEYWORDS.contains(&key.as_str()) {
                    problems.push(format!("{path} is not supported"));
                }
                walk(child, path, problems);
                path.truncate(len);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                walk(child, path, problems);
                path.truncate(len);
            }
        }
        _ => {}
    }
}

/// Every problem [`omni_schema_problems`] finds in the connector's
/// actions, and every document field two syncs declare with different
/// schemas (Omni keeps one `extra_schema` and one `attributes_schema` per
/// connector).
pub fn manifest_schema_problems(manifest: &Manifest) -> Vec<String> {
    let mut problems: Vec<String> = manifest
        .actions
        .iter()
        .filter(|a| omni_can_call(a))
        .flat_map(|a| omni_schema_problems(&manifest.name, &a.name, &a.input_schema))
        .collect();
    problems.extend(document_fields_schema(manifest, |s| s.extra_schema.as_ref()).1);
    problems.extend(document_fields_schema(manifest, |s| s.attributes_schema.as_ref()).1);
    problems
}

/// One schema for the document fields (`extra` or `attributes`, picked by
/// `pick`) of every sync that declares them, and the fields two syncs
/// declare differently.
///
/// One sync's schema (or several equal ones) is kept whole. Several
/// different ones become an object with every sync's properties; a field
/// is required only where every sync requires it, since a document comes
/// from one sync.
fn document_fields_schema(
    manifest: &Manifest,
    pick: fn(&SyncManifest) -> Option<&Value>,
) -> (Value, Vec<String>) {
    let declared: Vec<(&str, &Value)> = manifest
        .syncs
        .iter()
        .filter_map(|s| pick(s).map(|schema| (s.name.as_str(), schema)))
        .collect();
    let Some((_, first)) = declared.first() else {
        return (Value::Null, Vec::new());
    };
    if declared.iter().all(|(_, schema)| schema == first) {
        return ((*first).clone(), Vec::new());
    }
    let mut properties = serde_json::Map::new();
    let mut owners: std::collections::BTreeMap<String, &str> = Default::default();
    let mut problems = Vec::new();
    let mut required: Option<Vec<Value>> = None;
    for (sync, schema) in &declared {
        for (field, field_schema) in schema["properties"].as_object().into_iter().flatten() {
            match properties.get(field) {
                Some(seen) if seen != field_schema => problems.push(format!(
                    "syncs `{}` and `{sync}` of {} give the document field `{field}` different schemas; Omni keeps one schema per connector: give the field one type in both, or another name in one",
                    owners[field], manifest.name
                )),
                Some(_) => {}
                None => {
                    properties.insert(field.clone(), field_schema.clone());
                    owners.insert(field.clone(), sync);
                }
            }
        }
        let theirs = schema["required"].as_array().cloned().unwrap_or_default();
        required = Some(match required {
            None => theirs,
            Some(so_far) => so_far.into_iter().filter(|f| theirs.contains(f)).collect(),
        });
    }
    let mut merged = json!({"type": "object", "properties": properties});
    if let Some(required) = required.filter(|r| !r.is_empty()) {
        merged["required"] = Value::Array(required);
    }
    (merged, problems)
}

/// Whether Omni's `/action` can call it: parameters in, JSON out.
fn omni_can_call(action: &crate::manifest::ActionManifest) -> bool {
    action.takes_parameters()
        && action
            .output_encodings
            .contains(&crate::encoding::Encoding::Json)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_syncs(syncs: Value) -> Manifest {
        serde_json::from_value(json!({
            "spoke": 1, "name": "c", "version": "1.0.0", "display_name": "C",
            "description": "", "config": {}, "actions": [], "search_operators": [],
            "capabilities": [], "syncs": syncs,
        }))
        .unwrap()
    }

    fn sync(name: &str, extra: Value) -> Value {
        json!({"name": name, "description": "", "modes": ["full"], "checkpoint_schema": {},
               "checkpoint_version": 1, "error_budget": 0.0, "extra_schema": extra})
    }

    #[test]
    fn document_field_schemas_come_from_the_syncs_and_merge() {
        let email = json!({"type": "string", "format": "email"});
        let one = json!({"type": "object", "properties": {"owner": email}, "required": ["owner"]});
        // None declared: null, as Omni's default.
        let none = with_syncs(json!([]));
        assert_eq!(omni_manifest(&none, "u")["extra_schema"], Value::Null);
        // One sync (or equal ones): its schema whole.
        let m = with_syncs(json!([sync("a", one.clone()), sync("b", one.clone())]));
        assert_eq!(omni_manifest(&m, "u")["extra_schema"], one);
        assert_eq!(omni_manifest(&m, "u")["attributes_schema"], Value::Null);
        assert!(manifest_schema_problems(&m).is_empty());
        // Different ones: every field, required only where all require it.
        let two = json!({"type": "object", "properties": {"owner": email, "size": {"type": "integer"}},
                         "required": ["owner", "size"]});
        let m = with_syncs(json!([sync("a", one.clone()), sync("b", two)]));
        assert_eq!(
            omni_manifest(&m, "u")["extra_schema"],
            json!({"type": "object", "properties": {"owner": email, "size": {"type": "integer"}},
                   "required": ["owner"]})
        );
        assert!(manifest_schema_problems(&m).is_empty());
        // A field two syncs type differently cannot have one schema.
        let clash = json!({"type": "object", "properties": {"owner": {"type": "integer"}}});
        let m = with_syncs(json!([sync("a", one), sync("b", clash)]));
        assert_eq!(
            manifest_schema_problems(&m),
            [
                "syncs `a` and `b` of c give the document field `owner` different schemas; Omni keeps one schema per connector: give the field one type in both, or another name in one"
            ]
        );
    }

    #[test]
    fn the_managers_rules_report_every_problem_with_its_path() {
        let schema = json!({
            "type": "array",
            "oneOf": [{"if": {}}],
            "properties": {"a": {"items": [{"$ref": "#"}]}},
        });
        let problems = omni_schema_problems("c", "a", &schema);
        assert_eq!(
            problems,
            [
                "c.a input_schema.oneOf is not supported at the top level",
                "c.a input_schema.type must be \"object\"",
                "c.a input_schema.oneOf[0].if is not supported",
                "c.a input_schema.properties.a.items[0].$ref is not supported",
            ]
        );
        assert_eq!(
            omni_schema_problems("c", "a", &json!(true)),
            ["c.a input_schema must be a JSON object"]
        );
        // Omni accepts an empty schema and nested anyOf.
        assert!(omni_schema_problems("c", "a", &json!({})).is_empty());
        let nested =
            json!({"properties": {"x": {"anyOf": [{"type": "string"}, {"type": "null"}]}}});
        assert!(omni_schema_problems("c", "a", &nested).is_empty());
    }
}
