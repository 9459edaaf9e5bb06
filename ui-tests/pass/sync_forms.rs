// Every argument of `#[sync]`, and every form a sync may take: a checkpoint
// type or none, `()` or a `Result` (spelled out, or through
// `anyhow::Result`), a `migrate` fn through `Self` or a free path, under
// `#[cfg]`, and sharing a name with an action. `spoke::sync` is both the
// attribute (macro namespace) and the module (type namespace).
use spoke::prelude::*;
use spoke::sync::{Document, SyncMode};

#[derive(Serialize, Deserialize, JsonSchema, Default)]
struct Cursor {
    modified_after: Option<u64>,
    last_path: Option<String>,
}

/// A file's attributes: what search operators filter on.
#[derive(Serialize, JsonSchema)]
struct FileAttributes {
    extension: String,
}

/// The document fields of the `tags` sync.
#[derive(Serialize, JsonSchema)]
pub struct TagFields {
    #[schemars(email)]
    owner: String,
}

/// Serves a directory tree.
#[connector(name = "files", source_types = "local_files, file_system")]
pub struct Files {}

#[derive(Debug)]
struct UpgradeError(u32);

impl std::fmt::Display for UpgradeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "no way from version {}", self.0)
    }
}

fn upgrade_tags(_from: u32, _old: serde_json::Value) -> Result<(), String> {
    Ok(())
}

#[connector]
impl Files {
    /// Index every file under the root.
    #[sync(
        modes = "full, incremental",
        sweep,
        version = 2,
        migrate = Self::upgrade,
        error_budget = "5%",
        source_type = "file_system",
        name = "files",
        attributes = FileAttributes,
        extra = "std::collections::BTreeMap<String, u64>"
    )]
    async fn r#files(&self, ctx: &SyncContext<Cursor>) -> Result<(), ActionError> {
        let after = ctx.last_checkpoint().and_then(|c| c.modified_after);
        let attributes = FileAttributes {
            extension: "txt".into(),
        };
        ctx.created(Document::new("a.txt").text("a").attributes_from(&attributes)?)
            .await?;
        let _ = ctx.mode() == SyncMode::Incremental;
        ctx.checkpoint(&Cursor {
            modified_after: after,
            last_path: Some("a.txt".into()),
        })
        .await
    }

    fn upgrade(from: u32, old: serde_json::Value) -> Result<Cursor, UpgradeError> {
        match from {
            1 => Ok(Cursor {
                modified_after: old["since"].as_u64(),
                last_path: None,
            }),
            other => Err(UpgradeError(other)),
        }
    }

    /// Walks the tags; keeps no checkpoint.
    #[sync(
        modes = "incremental, realtime",
        sweep = "incremental",
        version = 3,
        migrate = upgrade_tags,
        error_budget = 0.25,
        description = "Tags.",
        extra = TagFields,
        attributes = crate::TagFields
    )]
    async fn tags(&self, ctx: &spoke::SyncContext) {
        ctx.cancelled().await;
    }

    #[sync(error_budget = "0.5%")]
    async fn watch(&self, _ctx: &SyncContext<Cursor>) -> anyhow::Result<()> {
        Ok(())
    }

    // An action and a sync may share a name.
    #[action(read)]
    fn files_action(&self) -> &'static str {
        "ok"
    }

    #[action(name = "tags")]
    fn tags_action(&self) {}

    #[cfg(any())]
    #[sync(extra = DoesNotExist)]
    async fn gone(&self, ctx: &SyncContext<DoesNotExist>) -> DoesNotExist {
        unreachable!()
    }

    #[cfg(unix)]
    #[sync(name = "platform")]
    async fn platform_unix(&self, _ctx: &SyncContext) {}

    #[cfg(not(unix))]
    #[sync(name = "platform")]
    async fn platform_other(&self, _ctx: &SyncContext) {}
}

#[connector(name = "manual")]
pub struct Manual {}

#[connector(actions = MANUAL_SET)]
impl Manual {
    #[sync]
    async fn everything(&self, ctx: &SyncContext) {
        ctx.cancelled().await;
    }
}

fn main() {
    let registry = spoke::Registry::from_inventory().unwrap();
    let files = registry.get("files").unwrap();
    let manifest = files.manifest();
    let names: Vec<&str> = manifest.syncs.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["files", "platform", "tags", "watch"]);
    // The connector's source types, then its syncs', each once.
    assert_eq!(manifest.source_types, ["local_files", "file_system"]);
    let def = files.sync("files").unwrap();
    assert_eq!(def.modes, [SyncMode::Full, SyncMode::Incremental]);
    assert_eq!(def.source_type, Some("file_system"));
    assert_eq!((def.checkpoint_version, def.migrates), (2, true));
    assert_eq!(def.sweep, [SyncMode::Full]);
    assert_eq!(def.error_budget, 0.05);
    assert_eq!(def.description, "Index every file under the root.");
    assert!(def.location.contains("sync_forms.rs:"), "{}", def.location);
    let schema = (def.checkpoint_schema)().to_value();
    assert!(schema["properties"]["last_path"].is_object(), "{schema}");

    let tags = files.sync("tags").unwrap();
    assert_eq!(tags.modes, [SyncMode::Incremental, SyncMode::Realtime]);
    assert_eq!((tags.description, tags.source_type), ("Tags.", None));
    assert_eq!((tags.checkpoint_version, tags.migrates), (3, true));
    assert_eq!(tags.sweep, [SyncMode::Incremental]);
    assert!(files.sync("watch").unwrap().sweep.is_empty());
    assert_eq!(tags.error_budget, 0.25);
    // The document field types' schemas, in the manifest too.
    let attributes = (def.attributes_schema.unwrap())().to_value();
    assert_eq!(attributes["properties"]["extension"]["type"], "string");
    let extra = (def.extra_schema.unwrap())().to_value();
    assert_eq!(extra["additionalProperties"]["type"], "integer", "{extra}");
    let tag_fields = (tags.extra_schema.unwrap())().to_value();
    assert_eq!(tag_fields["properties"]["owner"]["format"], "email");
    assert_eq!(tag_fields, (tags.attributes_schema.unwrap())().to_value());
    let in_manifest = manifest.syncs.iter().find(|s| s.name == "tags").unwrap();
    assert_eq!(in_manifest.extra_schema.as_ref().unwrap()["properties"]["owner"]["format"], "email");
    assert!(files.sync("watch").unwrap().extra_schema.is_none());
    assert_eq!(files.sync("watch").unwrap().error_budget, 0.005);
    assert_eq!(files.sync("watch").unwrap().modes, [SyncMode::Full]);
    assert_eq!(files.sync("watch").unwrap().checkpoint_version, 1);

    assert_eq!(Manual::MANUAL_SET.syncs.len(), 1);
    assert_eq!(Manual::MANUAL_SET.syncs[0].name, "everything");
}
