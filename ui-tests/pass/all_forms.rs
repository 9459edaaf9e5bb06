// Every argument form the macros accept, in one connector.
#![deny(warnings)]
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};
use spoke::prelude::*;

/// Lists and edits files.
#[connector(
    name = "files",
    version = "1.2.3",
    display_name = "Files",
    description = "Lists and edits files.",
    init = Self::init,
    crate = ::spoke
)]
pub struct Files {
    /// Root directory.
    #[config_field(
        env = "FILES_ROOT",
        description = "Where the files live.",
        label = "Root",
        placeholder = "/srv/files",
        example = "/data"
    )]
    root: PathBuf,
    /// At most this many bytes per read.
    #[config_field(default = 1_048_576, advanced)]
    max_bytes: u64,
    /// Extensions to hide.
    #[config_field(default)]
    hidden: Vec<String>,
    /// A greeting.
    #[config_field(default = "hello")]
    greeting: String,
    /// Optional label.
    #[config_field]
    tag: Option<String>,
    /// API token.
    #[config_field(secret, env = "FILES_TOKEN")]
    token: Secret<String>,
    /// Optional second token, with a default that never shows.
    #[config_field(secret, default = "dev-token")]
    fallback_token: Secret<String>,
    #[config_field(secret)]
    maybe_token: Option<Secret<String>>,
    calls: AtomicU64,
}

impl Files {
    async fn init(&mut self) -> Result<(), String> {
        if self.root.as_os_str().is_empty() {
            return Err("root is empty".into());
        }
        Ok(())
    }
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Rename {
    from: String,
    to: String,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Entry {
    name: String,
    size: u64,
}

#[derive(Debug)]
pub struct FsError(String);

impl From<FsError> for ActionError {
    fn from(e: FsError) -> Self {
        ActionError::invalid_input(e.0)
    }
}

#[connector]
impl Files {
    /// Lists the files.
    ///
    /// # Arguments
    /// * `glob` - Only names matching this.
    /// * `limit` - At most this many.
    #[action(read, timeout = "30s")]
    async fn list(
        &self,
        ctx: &Context,
        glob: Option<String>,
        limit: Option<u32>,
    ) -> Result<Vec<Entry>, ActionError> {
        let _ = (ctx, glob, limit, &self.hidden, self.max_bytes, &self.tag);
        Ok(Vec::new())
    }

    /// Renames a file (the whole input is one struct).
    #[action(write, admin_only)]
    async fn rename(&self, #[input] rename: Rename) -> anyhow::Result<String> {
        Ok(format!("{} -> {}", rename.from, rename.to))
    }

    /// A plain sync fn with a plain return.
    #[action(read, name = "count", description = "How many calls so far.")]
    fn call_count(&self) -> u64 {
        self.calls.fetch_add(1, Ordering::Relaxed)
    }

    /// Returns nothing.
    #[action(hidden)]
    fn touch(&self, path: String) {
        let _ = (path, &self.token, &self.fallback_token, &self.maybe_token);
    }

    /// A sync fn returning a Result with a custom error.
    #[action]
    fn check(&self, name: String, ctx: &Context) -> Result<bool, FsError> {
        let _ = ctx;
        if name.is_empty() {
            return Err(FsError("empty".into()));
        }
        Ok(true)
    }

    /// Returns an anyhow error.
    #[action]
    async fn fail(&self) -> Result<(), anyhow::Error> {
        anyhow::bail!("{}", self.greeting)
    }

    /// Raw identifiers as parameter names.
    #[action]
    fn raw(&self, r#type: String, r#match: Option<bool>) -> String {
        format!("{type}{match:?}", type = r#type, match = r#match)
    }

    /// Files with this extension.
    #[search_operator(attribute = "extension")]
    fn ext(&self, value: String) -> Vec<String> {
        vec![value]
    }

    /// Files owned by someone.
    #[search_operator(attribute = "owner", value_type = "person", name = "owned_by")]
    async fn owner(&self, who: String) -> Result<Vec<String>, ActionError> {
        Ok(vec![who])
    }

    /// Files changed since.
    #[search_operator(attribute = "modified", value_type = "datetime")]
    fn since(&self, ctx: &Context, when: String) -> anyhow::Result<Vec<String>> {
        let _ = ctx;
        Ok(vec![when])
    }

    /// Not an action: untouched.
    fn helper(&self) -> usize {
        self.hidden.len()
    }
}

/// Manual registration: the impl's action set as an associated const.
#[connector(name = "manual")]
pub struct Manual {}

#[connector(actions = ACTIONS)]
impl Manual {
    #[action]
    fn ping(&self) -> &'static str {
        "pong"
    }
}

fn main() {
    let _ = Files::helper;
    let _ = &Manual::ACTIONS;
}
