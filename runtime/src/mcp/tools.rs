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
    /// The tools of `manifest`'s actions that take and give JSON (MCP
    /// carries nothing else; the others are left out, with a warning).
    pub fn new(manifest: &Manifest) -> ToolSet {
        let mut entries: Vec<ToolEntry> = manifest
            .actions
            .iter()
            .filter(|a| ToolEntry::is_tool(a, &manifest.name))
            .map(|a| ToolEntry::of(a, a.name.clone()))
            .collect();
        entries.sort_by(|a, b| a.tool.name.cmp(&b.tool.name));
        ToolSet { entries }
    }

    /// The tools a caller sees: never hidden ones; `admin_only` ones only
    /// for an administrator.
    pub fn listed(&self, admin: bool) -> Vec<Tool> {
        self.entries
            .iter()
            .filter(|e| e.listed_for(admin))
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
            .filter(|e| e.listed_for(admin))
            .map(|e| e.action.as_str())
            .collect()
    }
}

/// The `_meta` entry of a tool whose value comes as `{"result": value}`.
pub const WRAPPED_META: (&str, &str) = ("spoke/output", "wrapped");

/// The longest tool name: what the strictest model APIs accept.
pub const MAX_TOOL_NAME: usize = 64;

/// The name of a connector's action among many connectors' tools (the
/// hub's MCP view): `<connector>__<action>`, checked against what agents
/// and model APIs accept (at most [`MAX_TOOL_NAME`] characters of
/// `[A-Za-z0-9_-]`). The error says which rule the name breaks.
///
/// ```
/// use spoke::mcp::tools::qualified_name;
/// assert_eq!(qualified_name("tickets", "create").unwrap(), "tickets__create");
/// let long = "a".repeat(60);
/// assert!(qualified_name("tickets", &long).unwrap_err().contains("at most 64"));
/// ```
pub fn qualified_name(connector: &str, action: &str) -> Result<String, String> {
    let name = format!("{connector}__{action}");
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
    {
        return Err(format!(
            "its MCP tool name `{name}` contains {bad:?}; tool names are made of [A-Za-z0-9_-]"
        ));
    }
    let length = name.chars().count();
    if length > MAX_TOOL_NAME {
        return Err(format!(
            "its MCP tool name `{name}` is {length} characters; tool names are at most {MAX_TOOL_NAME} (shorten the connector's or the action's name by {})",
            length - MAX_TOOL_NAME
        ));
    }
    Ok(name)
}

impl ToolEntry {
    /// `action` as a tool named `name` (the action's own name for one
    /// connector, [`qualified_name`] among many).
    pub fn of(action: &ActionManifest, name: String) -> ToolEntry {
        entry_of(action, name)
    }

    /// Whether `action` (of connector `connector`) can be an MCP tool: it
    /// takes and gives JSON. Says in the log why not.
    pub fn is_tool(action: &ActionManifest, connector: &str) -> bool {
        // Parameters in (MCP's arguments are an object), JSON out.
        let json = action.speaks_json() && action.takes_parameters();
        if !json {
            tracing::warn!(
                target: "spoke::mcp",
                "action `{}` of connector `{connector}` is left out: MCP tools take an object of parameters and answer JSON, and it takes {} and gives {}",
                action.name,
                crate::encoding::Encoding::join(&action.input_encodings, "or"),
                crate::encoding::Encoding::join(&action.output_encodings, "or"),
            );
        }
        json
    }

    /// Whether a caller sees it listed: never a hidden one, an
    /// `admin_only` one only as an administrator.
    pub fn listed_for(&self, admin: bool) -> bool {
        !self.hidden && (admin || !self.admin_only)
    }
}

fn entry_of(action: &ActionManifest, name: String) -> ToolEntry {
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
    let mut tool = Tool::new(name, action.description.clone(), input)
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

    #[test]
    fn qualified_names_fit_what_agents_accept() {
        assert_eq!(
            qualified_name("my-files", "list_2").unwrap(),
            "my-files__list_2"
        );
        let fits = "a".repeat(MAX_TOOL_NAME - "c__".len());
        assert_eq!(qualified_name("c", &fits).unwrap().len(), MAX_TOOL_NAME);
        let err = qualified_name("c", &format!("{fits}x")).unwrap_err();
        assert!(
            err.contains("is 65 characters") && err.contains("by 1)"),
            "{err}"
        );
        let err = qualified_name("c", "list.files").unwrap_err();
        assert!(err.contains("contains '.'"), "{err}");
    }
}
