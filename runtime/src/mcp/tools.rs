//! The MCP view of a connector's actions: one tool per action, derived
//! from the manifest (nothing MCP-specific is declared, so nothing drifts).
//!
//! | Spoke | MCP |
//! |---|---|
//! | action name | tool `name` |
//! | the name in words (`list_files` → "List files") | `title` (and `annotations.title`) |
//! | description | `description` |
//! | input schema | `inputSchema`, with `properties: {}` when it has none |
//! | output schema | `outputSchema` when its root is an object; otherwise `{"type":"object","properties":{"result": <schema>},"required":["result"]}`, the value comes as `{"result": value}`, and the tool's `_meta` says `{"spoke/output": "wrapped"}` |
//! | `read` | `readOnlyHint: true` |
//! | `write` | `readOnlyHint: false`, `destructiveHint` (true unless `destructive = false`), `idempotentHint` |
//! | `hidden` | never listed; callable by name by an administrator |
//! | `admin_only` | listed and callable for an administrator only |

use std::sync::Arc;

use rmcp::model::{JsonObject, MetaObject, Tool, ToolAnnotations};
use serde_json::{Value, json};

use crate::manifest::{ActionManifest, Manifest, Mode};

/// One action as a tool.
#[derive(Debug, Clone)]
pub struct ToolEntry {
    /// The tool, as listed.
    pub tool: Tool,
    /// The action's name.
    pub action: String,
    /// For administrators only.
    pub admin_only: bool,
    /// Never listed.
    pub hidden: bool,
    /// The output is wrapped as `{"result": value}`.
    pub wraps_output: bool,
}

/// Every action of a connector as a tool, sorted by name.
#[derive(Debug, Clone)]
pub struct ToolSet {
    entries: Vec<ToolEntry>,
}

/// What a caller may do with a tool it names.
#[derive(Debug)]
pub enum Lookup<'a> {
    /// Call it.
    Callable(&'a ToolEntry),
    /// It exists, but is for administrators.
    AdminOnly(&'a ToolEntry),
    /// No such tool for this caller: the names it may call.
    Unknown(Vec<&'a str>),
}

impl ToolSet {
    /// The tools of `manifest`'s actions.
    pub fn new(manifest: &Manifest) -> ToolSet {
        let mut entries: Vec<ToolEntry> = manifest.actions.iter().map(entry_of).collect();
        entries.sort_by(|a, b| a.tool.name.cmp(&b.tool.name));
        ToolSet { entries }
    }

    /// The tools a caller sees: never hidden ones; `admin_only` ones only
    /// for an administrator.
    pub fn listed(&self, admin: bool) -> Vec<Tool> {
        self.entries
            .iter()
            .filter(|e| !e.hidden && (admin || !e.admin_only))
            .map(|e| e.tool.clone())
            .collect()
    }

    /// The tool named `name`, whatever the caller may do with it.
    pub fn get(&self, name: &str) -> Option<&ToolEntry> {
        self.entries.iter().find(|e| e.tool.name == name)
    }

    /// What a caller may do with the tool named `name`. A hidden tool is
    /// unknown to a caller who is not an administrator.
    pub fn lookup(&self, name: &str, admin: bool) -> Lookup<'_> {
        match self.get(name) {
            Some(e) if admin => Lookup::Callable(e),
            Some(e) if e.hidden => Lookup::Unknown(self.names(admin)),
            Some(e) if e.admin_only => Lookup::AdminOnly(e),
            Some(e) => Lookup::Callable(e),
            None => Lookup::Unknown(self.names(admin)),
        }
    }

    fn names(&self, admin: bool) -> Vec<&str> {
        self.entries
            .iter()
            .filter(|e| !e.hidden && (admin || !e.admin_only))
            .map(|e| e.action.as_str())
            .collect()
    }
}

/// The `_meta` entry of a tool whose value comes as `{"result": value}`.
pub const WRAPPED_META: (&str, &str) = ("spoke/output", "wrapped");

fn entry_of(action: &ActionManifest) -> ToolEntry {
    let title = title_of(&action.name);
    let mut input = object_of(&action.input_schema);
    if input.get("type").is_none_or(|t| t == "object") {
        input.insert("type".into(), json!("object"));
        input.entry("properties").or_insert_with(|| json!({}));
    }
    let wraps_output = action.output_schema.get("type") != Some(&json!("object"));
    let output = if wraps_output {
        let mut result = action.output_schema.clone();
        // The dialect belongs at the root.
        let dialect = result.as_object_mut().and_then(|o| o.remove("$schema"));
        let mut wrapped = json!({
            "type": "object",
            "properties": {"result": result},
            "required": ["result"],
        });
        if let Some(dialect) = dialect {
            wrapped["$schema"] = dialect;
        }
        object_of(&wrapped)
    } else {
        object_of(&action.output_schema)
    };
    let annotations = match action.mode {
        Mode::Read => ToolAnnotations::with_title(title.clone()).read_only(true),
        Mode::Write => ToolAnnotations::with_title(title.clone())
            .read_only(false)
            .destructive(action.destructive)
            .idempotent(action.idempotent),
    };
    let mut tool = Tool::new(action.name.clone(), action.description.clone(), input)
        .with_title(title)
        .with_raw_output_schema(Arc::new(output))
        .with_annotations(annotations);
    if wraps_output {
        // So a client can tell a wrapped value from an object that has a
        // `result` field.
        let mut meta = JsonObject::new();
        meta.insert(WRAPPED_META.0.into(), json!(WRAPPED_META.1));
        tool = tool.with_meta(MetaObject(meta));
    }
    ToolEntry {
        tool,
        action: action.name.clone(),
        admin_only: action.admin_only,
        hidden: action.hidden,
        wraps_output,
    }
}

/// A schema as a JSON object (`true`, the schema that takes anything, is `{}`).
fn object_of(schema: &Value) -> JsonObject {
    match schema {
        Value::Object(map) => map.clone(),
        _ => JsonObject::new(),
    }
}

/// `list_files` → "List files".
fn title_of(name: &str) -> String {
    let words = name.replace(['_', '-'], " ");
    let mut chars = words.trim().chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(actions: Value) -> Manifest {
        serde_json::from_value(json!({
            "spoke": 1, "name": "c", "version": "1.0.0", "display_name": "C",
            "description": "", "config": {}, "actions": actions, "search_operators": [],
            "capabilities": [],
        }))
        .unwrap()
    }

    fn action(name: &str, mode: &str, extra: Value) -> Value {
        let mut a = json!({
            "name": name, "description": format!("{name}s"), "mode": mode,
            "admin_only": false, "hidden": false, "timeout_ms": null,
            "input_schema": {"type": "object", "properties": {"x": {"type": "string"}}},
            "output_schema": {"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "string"},
        });
        a.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        a
    }

    #[test]
    fn actions_become_sorted_tools_with_hints_and_object_schemas() {
        let m = manifest(json!([
            action(
                "write_file",
                "write",
                json!({"destructive": false, "idempotent": true})
            ),
            action("delete", "write", json!({"hidden": true})),
            action(
                "list_files",
                "read",
                json!({"output_schema": {"type": "object"}, "input_schema": {"type": "object"}})
            ),
            action("purge", "write", json!({"admin_only": true})),
        ]));
        let set = ToolSet::new(&m);
        let names = |tools: Vec<Tool>| -> Vec<String> {
            tools.into_iter().map(|t| t.name.into_owned()).collect()
        };
        assert_eq!(names(set.listed(false)), ["list_files", "write_file"]);
        assert_eq!(
            names(set.listed(true)),
            ["list_files", "purge", "write_file"]
        );
        let list = serde_json::to_value(&set.get("list_files").unwrap().tool).unwrap();
        assert_eq!(list["title"], "List files");
        assert_eq!(list["annotations"]["readOnlyHint"], true);
        assert_eq!(
            list["inputSchema"],
            json!({"type": "object", "properties": {}})
        );
        assert_eq!(list["outputSchema"], json!({"type": "object"}));
        assert!(!set.get("list_files").unwrap().wraps_output);
        assert!(list.get("_meta").is_none(), "{list}");
        let write = serde_json::to_value(&set.get("write_file").unwrap().tool).unwrap();
        assert_eq!(write["annotations"]["readOnlyHint"], false);
        assert_eq!(write["annotations"]["destructiveHint"], false);
        assert_eq!(write["annotations"]["idempotentHint"], true);
        assert_eq!(
            write["outputSchema"],
            json!({"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object",
                   "properties": {"result": {"type": "string"}}, "required": ["result"]})
        );
        assert_eq!(write["_meta"], json!({"spoke/output": "wrapped"}));
        let purge = serde_json::to_value(&set.get("purge").unwrap().tool).unwrap();
        assert_eq!(purge["annotations"]["destructiveHint"], true);
        // Who may call what.
        assert!(matches!(set.lookup("purge", false), Lookup::AdminOnly(_)));
        assert!(matches!(set.lookup("purge", true), Lookup::Callable(_)));
        assert!(matches!(set.lookup("delete", true), Lookup::Callable(_)));
        match set.lookup("delete", false) {
            Lookup::Unknown(names) => assert_eq!(names, ["list_files", "write_file"]),
            other => panic!("{other:?}"),
        }
        assert!(matches!(set.lookup("nope", true), Lookup::Unknown(n) if n.len() == 3));
    }
}
