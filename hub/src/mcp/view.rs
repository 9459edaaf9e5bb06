//! The hub's connectors as one list of tools: each action of each
//! connector in a caller's [`Catalog`] becomes the tool
//! `<connector>__<action>` (the hub checks at registration that every name
//! fits), with the mapping of a single connector's tools
//! ([`spoke_runtime::mcp::tools`]), its description prefixed with the
//! connector's display name in brackets and its title with the name.
//!
//! Listed are the tools the caller's token may call: not `hidden`, not
//! `admin_only` unless it is an admin token, not `write` unless it was made
//! with `--write`. The others in the catalog (hidden ones reach only an
//! admin's) can still be called by name; the hub decides, as for `spoke
//! call`.

use std::sync::Arc;

use spoke_proto::v1::{Catalog, InstanceState};
use spoke_runtime::Mode;
use spoke_runtime::manifest::Manifest;
use spoke_runtime::mcp::rmcp::model::Tool;
use spoke_runtime::mcp::tools::{ToolEntry, qualified_name};

/// One action of one connector, as a tool.
#[derive(Debug)]
pub(crate) struct HubTool {
    /// The tool and what it maps.
    pub(crate) entry: ToolEntry,
    /// Its connector.
    pub(crate) connector: String,
    /// Read or write.
    pub(crate) mode: Mode,
    /// Its connector's approved instances.
    pub(crate) instances: Arc<Vec<InstanceState>>,
}

/// The tools of a caller's catalog, sorted by name.
#[derive(Debug)]
pub(crate) struct ToolView {
    tools: Vec<HubTool>,
    write: bool,
    admin: bool,
}

impl ToolView {
    /// The tools of `catalog`. A manifest that does not read, or an action
    /// whose name does not fit (a hub the name rules predate), is left out
    /// with a warning.
    pub(crate) fn of(catalog: &Catalog) -> ToolView {
        let mut tools = Vec::new();
        for connector in &catalog.connectors {
            let manifest: Manifest = match serde_json::from_str(&connector.manifest_json) {
                Ok(manifest) => manifest,
                Err(e) => {
                    tracing::warn!(
                        target: "spoke::mcp",
                        "connector `{}` is left out: its manifest does not read: {e}",
                        connector.name
                    );
                    continue;
                }
            };
            let instances = Arc::new(connector.instances.clone());
            for action in &manifest.actions {
                if !ToolEntry::is_tool(action, &connector.name) {
                    continue;
                }
                let name = match qualified_name(&connector.name, &action.name) {
                    Ok(name) => name,
                    Err(why) => {
                        tracing::warn!(
                            target: "spoke::mcp",
                            "action `{}` of connector `{}` is left out: {why}",
                            action.name,
                            connector.name
                        );
                        continue;
                    }
                };
                let mut entry = ToolEntry::of(action, name);
                let display = &manifest.display_name;
                let tool = &mut entry.tool;
                tool.description = Some(if action.description.is_empty() {
                    format!("[{display}]").into()
                } else {
                    format!("[{display}] {}", action.description).into()
                });
                let title = format!("{display}: {}", tool.title.as_deref().unwrap_or_default());
                if let Some(annotations) = &mut tool.annotations {
                    annotations.title = Some(title.clone());
                }
                tool.title = Some(title);
                tools.push(HubTool {
                    entry,
                    connector: connector.name.clone(),
                    mode: action.mode,
                    instances: Arc::clone(&instances),
                });
            }
        }
        tools.sort_by(|a, b| a.entry.tool.name.cmp(&b.entry.tool.name));
        // `a__b` + `c` and `a` + `b__c` would share a name: the first stays.
        tools.dedup_by(|later, first| {
            let same = later.entry.tool.name == first.entry.tool.name;
            if same {
                tracing::warn!(
                    target: "spoke::mcp",
                    "tool `{}` of connector `{}` is left out: connector `{}` has a tool of that name",
                    later.entry.tool.name,
                    later.connector,
                    first.connector
                );
            }
            same
        });
        ToolView {
            tools,
            write: catalog.write,
            admin: catalog.admin,
        }
    }

    fn granted(&self, tool: &HubTool) -> bool {
        (self.admin || !tool.entry.admin_only) && (self.write || tool.mode == Mode::Read)
    }

    /// The tools listed to the caller.
    pub(crate) fn listed(&self) -> Vec<Tool> {
        self.tools
            .iter()
            .filter(|t| !t.entry.hidden && self.granted(t))
            .map(|t| t.entry.tool.clone())
            .collect()
    }

    /// The names of the tools listed to the caller.
    pub(crate) fn listed_names(&self) -> Vec<&str> {
        self.tools
            .iter()
            .filter(|t| !t.entry.hidden && self.granted(t))
            .map(|t| t.entry.tool.name.as_ref())
            .collect()
    }

    /// The tool named `name`, if the catalog has it.
    pub(crate) fn find(&self, name: &str) -> Option<&HubTool> {
        self.tools
            .binary_search_by(|t| t.entry.tool.name.as_ref().cmp(name))
            .ok()
            .map(|i| &self.tools[i])
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use spoke_proto::v1::{CatalogConnector, InstanceInfo};

    use super::*;

    fn connector(name: &str, display: &str, actions: serde_json::Value) -> CatalogConnector {
        CatalogConnector {
            name: name.into(),
            manifest_json: json!({
                "spoke": 1, "name": name, "version": "1.0.0", "display_name": display,
                "description": "", "config": {}, "actions": actions, "search_operators": [],
                "capabilities": [],
            })
            .to_string(),
            instances: vec![InstanceState {
                info: Some(InstanceInfo {
                    id: format!("{name}-1"),
                    ..InstanceInfo::default()
                }),
                state: "ready".into(),
                ..InstanceState::default()
            }],
        }
    }

    fn action(name: &str, mode: &str, admin_only: bool, hidden: bool) -> serde_json::Value {
        json!({
            "name": name, "description": format!("Does {name}."), "mode": mode,
            "admin_only": admin_only, "hidden": hidden, "timeout_ms": null,
            "input_schema": {"type": "object"}, "output_schema": {"type": "object"},
        })
    }

    fn catalog(write: bool, admin: bool) -> Catalog {
        Catalog {
            write,
            admin,
            connectors: vec![
                connector(
                    "tickets",
                    "Tickets",
                    json!([
                        action("create", "write", false, false),
                        action("list", "read", false, false),
                        action("purge", "write", true, false),
                        action("reindex", "read", false, true),
                    ]),
                ),
                connector(
                    "echo",
                    "Echo",
                    json!([action("echo", "read", false, false)]),
                ),
            ],
        }
    }

    #[test]
    fn tools_are_prefixed_sorted_and_filtered_by_the_grants() {
        let read = ToolView::of(&catalog(false, false));
        assert_eq!(read.listed_names(), ["echo__echo", "tickets__list"]);
        // Known (the hub refuses it with the reason), not listed.
        assert!(read.find("tickets__create").is_some());
        assert!(read.find("tickets__nope").is_none());
        let write = ToolView::of(&catalog(true, false));
        assert_eq!(
            write.listed_names(),
            ["echo__echo", "tickets__create", "tickets__list"]
        );
        let admin = ToolView::of(&catalog(true, true));
        assert_eq!(
            admin.listed_names(),
            [
                "echo__echo",
                "tickets__create",
                "tickets__list",
                "tickets__purge"
            ]
        );
        let list = serde_json::to_value(&admin.find("tickets__list").unwrap().entry.tool).unwrap();
        assert_eq!(list["description"], "[Tickets] Does list.");
        assert_eq!(list["title"], "Tickets: List");
        assert_eq!(list["annotations"]["title"], "Tickets: List");
        assert_eq!(list["annotations"]["readOnlyHint"], true);
        let tool = admin.find("tickets__create").unwrap();
        assert_eq!(tool.connector, "tickets");
        assert_eq!(tool.entry.action, "create");
        assert_eq!(tool.instances.len(), 1);
    }

    #[test]
    fn a_manifest_that_does_not_read_is_left_out() {
        let mut c = catalog(true, true);
        c.connectors[0].manifest_json = "{".into();
        assert_eq!(ToolView::of(&c).listed_names(), ["echo__echo"]);
    }
}
