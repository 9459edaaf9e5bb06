//! Procedural macros of the Spoke connector SDK. Use them through the `spoke`
//! crate: `#[connector]`, `#[action]`, `#[search_operator]`, `#[producer]`,
//! `#[sync]`, and the `#[config_field]` helper on connector fields.
//!
//! Each entry point is a thin shell over ordinary modules that parse (and
//! check) the input into a model, then expand the model into code. On error
//! the item is still emitted, without our attributes, so the IDE keeps
//! working and one mistake gives one error.

use proc_macro::TokenStream;
use proc_macro2::TokenStream as TokenStream2;
use quote::quote;

mod action;
mod attrs;
mod connector_impl;
mod connector_struct;
mod docs;
// The runtime's duration parser, so `timeout = "..."` is checked at compile
// time exactly as the runtime reads it. Its doc examples are the runtime's
// (they run in the runtime crate): when rustdoc collects this crate's
// doctests, a stub stands in, so they do not run twice.
#[cfg(not(doctest))]
#[path = "../../runtime/src/duration.rs"]
#[allow(dead_code, missing_docs)]
mod duration;
#[cfg(doctest)]
mod duration {
    pub fn parse(_: &str) -> Result<std::time::Duration, String> {
        unreachable!("doctest stub")
    }
}
mod errors;
mod free_action;
mod names;
mod params;
mod producer;
mod spans;
mod stray;
mod sync;
mod types;

#[cfg(test)]
mod snapshot_tests;

/// Declares a connector: on a struct, its name, configuration and state; on
/// that struct's `impl` block, its actions, search operators and producers.
///
/// # On the struct: `#[connector(name = "...", ...)]`
///
/// A struct with named fields and no generic parameters (the registry needs
/// one concrete type). Keys:
///
/// - `name = "files"`: **required**. The connector's name, `[a-z][a-z0-9_-]*`;
///   its config fields' environment variables start with it.
/// - `version = "1.2.0"`: its version. Default: the crate's
///   `CARGO_PKG_VERSION`.
/// - `display_name = "Files"`: a human-friendly name. Default: the name in
///   Title Case (`my-files` is `My Files`).
/// - `description = "..."`: what it does. Default: the struct's doc comment.
/// - `source_types = "jira, confluence"`: the kinds of source it serves
///   (each `[a-z][a-z0-9_]*`, as Omni names them): Omni routes a source to
///   the connector that lists its type, and an action lists them all. The
///   manifest adds the `source_type`s of its syncs. Default: none.
/// - `init = Self::init`: an async hook run once, after the config is loaded;
///   default: none. Either `async fn init(&mut self) -> Result<(), E>` (the
///   state fields start from `Default` first) or
///   `async fn init(config: spoke::Config<Self>) -> Result<Self, E>` (it
///   builds the whole connector, state included), with `E: Display`. If it
///   fails or panics the connector does not start (the CLI exits with code 2).
/// - `buckets(cursors, cache(ttl = "1h"))`: the key-value buckets of its
///   store, which its actions reach through `ctx.store().bucket("cursors")`
///   (names `[a-z][a-z0-9_]*`, each once; `ttl`: how long a value lives
///   after its last write, `1s` or more). On NATS each is a JetStream KV
///   bucket made at start-up; elsewhere a local file. Default: none.
/// - `crate = ::spoke`: the path of the `spoke` crate, for a crate that
///   re-exports it under another name. Default: `::spoke`.
///
/// Fields marked `#[config_field]` are configuration; every other field is
/// state (a client, a cache, a counter), which starts from `Default` unless
/// an init hook that takes the config builds it.
///
/// # Config fields: `#[config_field(...)]`
///
/// A helper attribute on the struct's fields (it has no export of its own).
/// `#[config_field]` alone takes every default. Keys:
///
/// - `env = "FILES_ROOT"`: the environment variable it is read from.
///   Default: `<NAME>_<FIELD>` in upper snake case (`my-files`' `root` is
///   `MY_FILES_ROOT`).
/// - `default = <value>`, or `default` alone for `Default::default()`: the
///   value when unset. A string literal converts through `From<&str>`; any
///   other expression is of the field's type (`default = 30`,
///   `default = Duration::from_secs(5)`). Default: none, so the field is
///   required, unless its type is `Option<T>`.
/// - `secret`: the value is a secret; the type must be `spoke::Secret<T>`
///   (or `Option<Secret<T>>`).
///   It is never printed, never echoed in config errors, `writeOnly` in the
///   schema, and its default is never shown. Default: not secret.
/// - `description = "..."`: what it is for. Default: the field's doc comment.
/// - `label = "Root"`: its label in config forms (the schema's `title`).
///   Default: the field's name in Title Case.
/// - `placeholder = "/srv/data"`: what an empty form box shows
///   (`x-placeholder`). Default: the default as typed, else `example`.
/// - `example = "/srv/data"`: an example value (the schema's `examples`).
///   Default: none.
/// - `advanced`: shown under "advanced" in forms (`x-advanced`); not on a
///   required field. Default: not advanced.
///
/// Scalars (`FromStr` types: numbers, `bool`, `String`, `PathBuf`, ...) parse
/// from their text; other types (lists, maps, types deriving `Deserialize`)
/// from JSON, lists also from `a, b, c`. Field types need
/// `schemars::JsonSchema`. Every missing or invalid field is reported at once.
///
/// # On the impl block: `#[connector]`
///
/// On the struct's own (inherent) `impl` block, it collects the
/// [`#[action]`](macro@action), [`#[search_operator]`](macro@search_operator),
/// [`#[producer]`](macro@producer) and [`#[sync]`](macro@sync) methods and
/// registers them. Keys, both optional:
///
/// - `actions = NAME`: also names the block's actions, operators, producers
///   and syncs as an associated const, `Self::NAME`, for registering by hand
///   where `inventory` registers nothing:
///   `spoke::Registry::builder().action_set(&Files::NAME)`. Default: none.
/// - `crate = ::spoke`: as on the struct. Default: `::spoke`.
///
/// `#[cfg(...)]` on a config field or a method applies to everything
/// generated for it.
///
/// # Example
///
/// ```no_run
/// use std::path::PathBuf;
///
/// use spoke::prelude::*;
///
/// /// Serves a directory tree.
/// #[connector(name = "files", version = "1.2.0", init = Self::init)]
/// pub struct Files {
///     /// The directory served.
///     #[config_field(env = "FILES_ROOT", example = "/srv/data")]
///     root: PathBuf,
///     /// The largest file read, in bytes.
///     #[config_field(default = 1048576, advanced)]
///     max_bytes: u64,
///     /// The token of the outside system.
///     #[config_field(secret, label = "API token")]
///     token: Option<Secret<String>>,
///     // State: not configuration; starts from `Default`.
///     reads: std::sync::atomic::AtomicU64,
/// }
///
/// impl Files {
///     async fn init(&mut self) -> Result<(), std::io::Error> {
///         self.root = self.root.canonicalize()?;
///         Ok(())
///     }
/// }
///
/// #[connector]
/// impl Files {
///     /// The root directory.
///     #[action(read)]
///     async fn root(&self) -> Result<String, ActionError> {
///         Ok(self.root.display().to_string())
///     }
/// }
///
/// fn main() -> std::process::ExitCode {
///     spoke::main()
/// }
/// ```
///
/// What the defaults come to, in the manifest:
///
/// ```standalone_crate
/// use spoke::prelude::*;
///
/// /// Serves a directory tree.
/// #[connector(name = "my-files")]
/// pub struct Files {
///     /// The directory served.
///     #[config_field]
///     root: String,
///     /// Follow symbolic links.
///     #[config_field(default)]
///     follow_links: bool,
/// }
///
/// # fn main() {
/// let registry = spoke::Registry::from_inventory().unwrap();
/// let manifest = registry.get("my-files").unwrap().manifest();
/// assert_eq!(manifest.display_name, "My Files");
/// assert_eq!(manifest.description, "Serves a directory tree.");
/// let root = &manifest.config["properties"]["root"];
/// assert_eq!(root["x-env"], "MY_FILES_ROOT");
/// assert_eq!(root["description"], "The directory served.");
/// assert_eq!(manifest.config["properties"]["follow_links"]["default"], false);
/// assert_eq!(manifest.config["required"], serde_json::json!(["root"]));
/// # }
/// ```
#[proc_macro_attribute]
pub fn connector(args: TokenStream, item: TokenStream) -> TokenStream {
    expand_connector(args.into(), item.into()).into()
}

/// Declares an action: a typed operation a caller invokes by name, with a
/// JSON input and output whose schemas are generated.
///
/// Inside a [`#[connector]`](macro@connector) impl block, on a method taking
/// `&self`; or on a free function anywhere in the crate, with
/// `connector = Type` and `conn: &Type` as its first parameter. Bare
/// `#[action]` is a `write` action named after the fn. Keys:
///
/// - `read` or `write`: the mode, `read` if it only looks, `write` if it
///   changes anything (not both). Default: `write`.
/// - `admin_only`: marked in the manifest as for administrators only.
///   Default: anyone may call it.
/// - `hidden`: not listed to callers (still callable by name). Default:
///   listed.
/// - `destructive = false`: a write that destroys or overwrites nothing
///   (it only adds). Hosts that ask before destructive calls (MCP's
///   `destructiveHint`) need not ask. Default: a write is destructive.
/// - `idempotent`: a write that, called again with the same input,
///   changes nothing more (MCP's `idempotentHint`). Default: not.
/// - `timeout = "30s"`: its own deadline: a number and a unit (`ms`, `s`,
///   `m`, `h`), combined as `1m30s`; checked at compile time. A call runs
///   until the earlier of this and the caller's deadline. Default: none.
/// - `name = "list"`: the action's name. Default: the fn's name.
/// - `description = "..."`: what it does. Default: the fn's doc comment
///   (without its `# Arguments` section).
/// - `connector = Files`: the connector a free function belongs to;
///   required on a free function, not allowed in an impl block (there it
///   is `Self`).
/// - `crate = ::spoke`: the path of the `spoke` crate, on a free function.
///   Default: `::spoke`. (In an impl block, `#[connector(crate = ...)]` on
///   the block sets it.)
///
/// The signature:
///
/// - Optionally `ctx: &Context` (the request id, deadline, cancellation,
///   progress and events).
/// - Then either named parameters, which become the properties of the input
///   object (`Option<T>` ones optional; owned types that are
///   `Deserialize + JsonSchema`), or one parameter marked `#[input]` whose
///   type is the whole input object. No input may be named `ctx` or
///   `context`.
/// - It returns `Result<T, E>` with `T: Serialize + JsonSchema` and
///   `E: Into<ActionError>` (`ActionError`, `anyhow::Error`,
///   `std::io::Error`), a plain `T`, or nothing.
/// - An `async fn` runs on the async workers; a plain `fn` on the blocking
///   pool.
///
/// # Parameter descriptions: `# Arguments`
///
/// A `# Arguments` section of the doc comment describes the named
/// parameters: each entry, `` * `name` - text `` or `` - `name`: text ``
/// (continued on the lines below it), becomes that input property's
/// `description` in the schema. The section is left out of the action's
/// description. An entry that names no parameter is a compile error.
///
/// # Parameter constraints: `#[schemars(...)]`, `#[serde(...)]`
///
/// On a named parameter, `#[schemars(range(min = .., max = ..))]` (numbers),
/// `#[schemars(length(min = .., max = ..))]` (strings in characters, lists,
/// sets and maps) and `#[schemars(regex(pattern = "..."))]` (strings) are
/// published in the input schema and checked on every call before the fn
/// runs: a value outside them is `invalid_input` at the parameter's path
/// (`$.limit`). On an `Option<T>` they apply when the value is present.
/// `#[schemars(description = "...")]`, `#[serde(rename = "...")]` and
/// `#[serde(default)]` (or `default = "path"`) shape the schema. Any other
/// key is a compile error at the key.
///
/// # Example
///
/// ```no_run
/// use spoke::prelude::*;
///
/// /// Files in a directory.
/// #[connector(name = "files")]
/// pub struct Files {
///     /// Prefix of every listed name.
///     #[config_field(default = "")]
///     prefix: String,
/// }
///
/// #[derive(serde::Deserialize, schemars::JsonSchema)]
/// pub struct Rename {
///     from: String,
///     to: String,
/// }
///
/// #[connector]
/// impl Files {
///     /// List a directory.
///     ///
///     /// # Arguments
///     /// * `dir` - Directory relative to the root.
///     /// * `limit` - At most this many entries.
///     #[action(read, timeout = "30s")]
///     async fn list(
///         &self,
///         ctx: &Context,
///         dir: String,
///         limit: Option<usize>,
///     ) -> Result<Vec<String>, ActionError> {
///         ctx.progress(0.0, None, format!("listing {dir}")).await?;
///         let names = vec![format!("{}{dir}/a.txt", self.prefix)];
///         Ok(names.into_iter().take(limit.unwrap_or(usize::MAX)).collect())
///     }
///
///     /// Rename a file.
///     #[action(write, admin_only, name = "rename")]
///     fn rename_file(&self, #[input] op: Rename) -> Result<(), std::io::Error> {
///         std::fs::rename(op.from, op.to)
///     }
/// }
///
/// /// Count the characters of a text (an action of `Files` declared apart).
/// #[action(connector = Files, read, hidden)]
/// async fn count(conn: &Files, text: String) -> usize {
///     conn.prefix.len() + text.chars().count()
/// }
///
/// fn main() -> std::process::ExitCode {
///     spoke::main()
/// }
/// ```
///
/// What the keys and the `# Arguments` section come to, in the manifest:
///
/// ```standalone_crate
/// use spoke::prelude::*;
///
/// /// Files in a directory.
/// #[connector(name = "files")]
/// pub struct Files {}
///
/// #[connector]
/// impl Files {
///     /// List a directory.
///     ///
///     /// # Arguments
///     /// * `dir` - Directory relative to the root,
///     ///   `.` for the root itself.
///     #[action(read, timeout = "1m30s")]
///     async fn list(&self, dir: String, limit: Option<usize>) -> Vec<String> {
///         vec![dir; limit.unwrap_or(1)]
///     }
/// }
///
/// # fn main() {
/// let registry = spoke::Registry::from_inventory().unwrap();
/// let manifest = registry.get("files").unwrap().manifest();
/// let list = manifest.action("list").unwrap();
/// assert_eq!(list.description, "List a directory.");
/// assert_eq!(list.mode, spoke::Mode::Read);
/// assert_eq!(list.timeout_ms, Some(90_000));
/// let dir = &list.input_schema["properties"]["dir"];
/// assert_eq!(dir["description"], "Directory relative to the root, `.` for the root itself.");
/// assert_eq!(list.input_schema["required"], serde_json::json!(["dir"]));
/// # }
/// ```
#[proc_macro_attribute]
pub fn action(args: TokenStream, item: TokenStream) -> TokenStream {
    expand_free_action(args.into(), item.into()).into()
}

/// Declares a search operator: a filter users type in a host's search as
/// `<operator>:<value>` (`ext:rs`), on one attribute of the documents
/// (`extension`); the host resolves the value with this method.
///
/// Only on a method in a [`#[connector]`](macro@connector) impl block (on its
/// own it is a compile error that says so). The method takes `&self`,
/// optionally `ctx: &Context`, and exactly one value parameter (the input's
/// `value` property, whatever its Rust name); it returns like an
/// [`#[action]`](macro@action). Hosts invoke it with `{"value": "..."}`, the
/// CLI with `resolve <operator> <value>`. Keys:
///
/// - `attribute = "extension"`: **required**. The document attribute it
///   filters on (the manifest's `attribute_key`).
/// - `value_type = "text"`: the kind of value, `text`, `person` or
///   `datetime`. Default: `text`.
/// - `name = "ext"`: the operator, as users type it. Default: the fn's name.
/// - `description = "..."`: what it matches. Default: the fn's doc comment.
///
/// # Example
///
/// ```no_run
/// use spoke::prelude::*;
///
/// /// Files in a directory.
/// #[connector(name = "files")]
/// pub struct Files {}
///
/// #[connector]
/// impl Files {
///     /// Files with this extension.
///     #[search_operator(attribute = "extension", value_type = "text")]
///     fn ext(&self, value: String) -> Result<Vec<String>, ActionError> {
///         Ok(vec![format!("report.{value}")])
///     }
///
///     /// Files last changed by this person.
///     #[search_operator(attribute = "author", value_type = "person", name = "by")]
///     async fn changed_by(&self, person: String) -> Vec<String> {
///         vec![format!("{person}.txt")]
///     }
/// }
///
/// fn main() -> std::process::ExitCode {
///     spoke::main()
/// }
/// ```
#[proc_macro_attribute]
pub fn search_operator(_args: TokenStream, item: TokenStream) -> TokenStream {
    let item = TokenStream2::from(item);
    if stray::is_method(&item) && !stray::report_here() {
        return item.into();
    }
    let error = syn::Error::new(
        proc_macro2::Span::call_site(),
        "`#[search_operator]` works only on a method in a `#[connector]` impl block: `#[connector] impl MyConnector { #[search_operator(attribute = \"...\")] fn op(&self, value: String) ... }`",
    )
    .to_compile_error();
    quote!(#error #item).into()
}

/// Declares a producer: a long-running `async fn` of the connector that
/// emits events for as long as the connector runs (a chat connector
/// listening for messages, a watcher tailing a directory).
///
/// Only on a method in a [`#[connector]`](macro@connector) impl block (on its
/// own it is a compile error that says so): an `async fn` taking `&self` and
/// optionally `ctx: &Context`, nothing else, returning `()` or
/// `Result<(), E>` with `E: Into<ActionError>` (`anyhow::Result<()>` works).
/// The transport starts it once the connector is built; it emits through
/// `ctx.emit_custom(...)` / `ctx.emit(...)` and should return when
/// `ctx.cancelled()` fires (on shutdown, after a grace period, it is
/// dropped). An error or a panic is reported as a log event and the producer
/// restarted after a backoff (500 ms, doubling up to 30 s, with jitter).
/// Keys, all optional:
///
/// - `name = "inbox"`: the producer's name. Default: the fn's name.
///   Producers are a namespace of their own: an action may share it.
/// - `description = "..."`: what it emits. Default: the fn's doc comment.
/// - `restart = "on_failure"`: when to restart it. `"on_failure"`: after it
///   returns an error or panics; `"always"`: also after it returns `Ok`.
///   Default: `"on_failure"`.
///
/// # Example
///
/// ```no_run
/// use std::time::Duration;
///
/// use spoke::prelude::*;
///
/// /// A clock.
/// #[connector(name = "clock")]
/// pub struct Clock {
///     /// Seconds between ticks.
///     #[config_field(default = 60)]
///     every_secs: u64,
/// }
///
/// #[connector]
/// impl Clock {
///     /// Emits a `tick` event every `every_secs` seconds.
///     #[producer(name = "ticks", restart = "always")]
///     async fn tick(&self, ctx: &Context) -> Result<(), ActionError> {
///         let mut n: u64 = 0;
///         loop {
///             tokio::select! {
///                 () = ctx.cancelled() => return Ok(()),
///                 () = tokio::time::sleep(Duration::from_secs(self.every_secs)) => {}
///             }
///             n += 1;
///             ctx.emit_custom("tick", serde_json::json!({ "n": n })).await?;
///         }
///     }
/// }
///
/// fn main() -> std::process::ExitCode {
///     spoke::main()
/// }
/// ```
#[proc_macro_attribute]
pub fn producer(_args: TokenStream, item: TokenStream) -> TokenStream {
    let item = TokenStream2::from(item);
    if stray::is_method(&item) && !stray::report_here() {
        return item.into();
    }
    // The attribute itself is what is misplaced: no narrower user token.
    let error = syn::Error::new(
        proc_macro2::Span::call_site(),
        "`#[producer]` works only on a method in a `#[connector]` impl block: `#[connector] impl MyConnector { #[producer] async fn listen(&self, ctx: &Context) -> Result<(), ActionError> { ... } }`",
    )
    .to_compile_error();
    quote!(#error #item).into()
}

/// Declares a sync: an `async fn` of the connector that walks an outside
/// system into a host's index (everything on a full run, what changed on an
/// incremental one), storing a checkpoint as it goes so that a run killed
/// half-way resumes where it stopped.
///
/// Only on a method in a [`#[connector]`](macro@connector) impl block (on its
/// own it is a compile error that says so): an `async fn` taking `&self` and
/// `ctx: &SyncContext<C>`, nothing else, returning `()` or `Result<(), E>`
/// with `E: Into<ActionError>`. `C` is the sync's checkpoint type, any
/// `Serialize + Deserialize + JsonSchema` type (`&SyncContext` alone: `()`,
/// no checkpoint). The host starts a run; the sync reads where the last one
/// got to with `ctx.last_checkpoint()`, emits documents with
/// `ctx.created(...)` / `ctx.updated(...)` / `ctx.deleted(...)`, stores its
/// progress with `ctx.checkpoint(&c)`, and should return when
/// `ctx.cancelled()` fires. Keys, all optional:
///
/// - `name = "files"`: the sync's name. Default: the fn's name. Syncs are a
///   namespace of their own: an action may share it.
/// - `description = "..."`: what it syncs. Default: the fn's doc comment.
/// - `modes = "full, incremental"`: the modes it runs in, `full`,
///   `incremental` and `realtime`, the default first. Default: `"full"`.
/// - `source_type = "file_system"`: the kind of source it syncs,
///   `[a-z][a-z0-9_]*`. Default: none.
/// - `version = 2`: the version of the checkpoint type, from 1; raise it
///   when the type changes, so that stored checkpoints of the old type are
///   migrated (or refused) instead of misread. Default: 1.
/// - `migrate = Self::upgrade`: brings an older checkpoint over, a
///   `fn(from: u32, old: serde_json::Value) -> Result<C, E>` with
///   `E: Display`; only with `version` 2 or more. Default: none (an older
///   checkpoint stops the run with an error that says so).
/// - `error_budget = "5%"` (or a fraction, `0.05`): the share of a run's
///   items that may fail (`ctx.fail_item(...)`) with the run still
///   completing. Default: 0.
/// - `sweep`: at the end of a complete full run, documents the host holds
///   that the run neither emitted nor marked seen are reported deleted.
///   Default: off.
/// - `extra = Fields` / `attributes = Fields`: the types of its documents'
///   `metadata.extra` and `attributes` (`Serialize + JsonSchema`, serializing
///   as an object; a generic type as a string, `"BTreeMap<String, u64>"`).
///   Their schemas go in the manifest (Omni's `extra_schema` and
///   `attributes_schema`); fill documents with `Document::extra_from(&v)` /
///   `attributes_from(&v)`. Default: none.
///
/// # Example
///
/// ```no_run
/// use spoke::prelude::*;
/// use spoke::sync::Document;
///
/// #[derive(Serialize, Deserialize, JsonSchema, Default)]
/// struct Cursor {
///     page: u32,
/// }
///
/// /// Pages of a wiki.
/// #[connector(name = "wiki")]
/// pub struct Wiki {}
///
/// #[connector]
/// impl Wiki {
///     /// Every page.
///     #[sync(modes = "full, incremental", sweep, error_budget = "1%", source_type = "wiki")]
///     async fn pages(&self, ctx: &SyncContext<Cursor>) -> Result<(), ActionError> {
///         let mut page = ctx.last_checkpoint().map_or(0, |c| c.page);
///         while page < 3 && !ctx.is_cancelled() {
///             ctx.created(Document::new(format!("page-{page}")).text("...")).await?;
///             page += 1;
///             ctx.checkpoint(&Cursor { page }).await?;
///         }
///         Ok(())
///     }
/// }
///
/// fn main() -> std::process::ExitCode {
///     spoke::main()
/// }
/// ```
#[proc_macro_attribute]
pub fn sync(_args: TokenStream, item: TokenStream) -> TokenStream {
    let item = TokenStream2::from(item);
    if stray::is_method(&item) && !stray::report_here() {
        return item.into();
    }
    // The attribute itself is what is misplaced: no narrower user token.
    let error = syn::Error::new(
        proc_macro2::Span::call_site(),
        "`#[sync]` works only on a method in a `#[connector]` impl block: `#[connector] impl MyConnector { #[sync] async fn files(&self, ctx: &SyncContext<MyCheckpoint>) -> Result<(), ActionError> { ... } }`",
    )
    .to_compile_error();
    quote!(#error #item).into()
}

/// `#[connector]` on a struct or an impl block.
pub(crate) fn expand_connector(args: TokenStream2, item: TokenStream2) -> TokenStream2 {
    match syn::parse2::<syn::Item>(item.clone()) {
        Ok(syn::Item::Struct(s)) => match connector_struct::parse(args.clone(), &s) {
            Ok(model) => {
                let stripped = connector_struct::strip(&s);
                let generated = connector_struct::expand(&model);
                quote!(#stripped #generated)
            }
            Err(e) => {
                let fallback = connector_struct::fallback(&s, args);
                let errors = e.to_compile_error();
                quote!(#errors #fallback)
            }
        },
        Ok(syn::Item::Impl(i)) if !i.generics.params.is_empty() => {
            connector_impl::expand_generic(args, &i)
        }
        Ok(syn::Item::Impl(i)) => match connector_impl::parse(args, &i) {
            Ok(model) => {
                let stripped = connector_impl::strip(&i);
                let generated = connector_impl::expand(&model);
                quote!(#stripped #generated)
            }
            Err(e) => {
                let stripped = connector_impl::strip(&i);
                let errors = e.to_compile_error();
                quote!(#errors #stripped)
            }
        },
        Ok(other) => {
            let what = match &other {
                syn::Item::Enum(_) => "an enum",
                syn::Item::Union(_) => "a union",
                syn::Item::Fn(_) => "a function",
                _ => "this item",
            };
            // `#[config_field]`s inside (on a variant's or a union's fields) are
            // part of the same mistake: say where they go, and strip them so
            // they add no "cannot find attribute" error of their own.
            let mut other = other;
            let fix = connector_struct::strip_nested(&mut other)
                .map(|fix| format!("; config fields are that struct's named fields: `{fix}`"))
                .unwrap_or_default();
            let error = syn::Error::new_spanned(
                item_keyword(&other),
                format!("`#[connector]` goes on a struct with named fields (its config and state) or on that struct's impl block, not on {what}{fix}"),
            )
            .to_compile_error();
            let stand_in = match &other {
                syn::Item::Enum(e) => connector_struct::fallback_impl(&e.ident, &e.generics, args),
                syn::Item::Union(u) => connector_struct::fallback_impl(&u.ident, &u.generics, args),
                _ => TokenStream2::new(),
            };
            quote!(#error #other #stand_in)
        }
        Err(e) => {
            let error = e.to_compile_error();
            quote!(#error #item)
        }
    }
}

fn item_keyword(item: &syn::Item) -> TokenStream2 {
    match item {
        syn::Item::Enum(e) => {
            let (kw, ident) = (&e.enum_token, &e.ident);
            quote!(#kw #ident)
        }
        syn::Item::Union(u) => {
            let (kw, ident) = (&u.union_token, &u.ident);
            quote!(#kw #ident)
        }
        syn::Item::Fn(f) => {
            let (kw, ident) = (&f.sig.fn_token, &f.sig.ident);
            quote!(#kw #ident)
        }
        other => quote!(#other),
    }
}

/// `#[action]` on a free function (or stray on a method).
pub(crate) fn expand_free_action(args: TokenStream2, item: TokenStream2) -> TokenStream2 {
    let f = match syn::parse2::<syn::ItemFn>(item.clone()) {
        Ok(f) => f,
        Err(e) => {
            let error = e.to_compile_error();
            return quote!(#error #item);
        }
    };
    match free_action::parse(args, &f) {
        Ok(None) => {
            let stripped = free_action::strip(&f);
            quote!(#stripped)
        }
        Ok(Some((model, krate))) => {
            let connector = match &model.owner {
                action::Owner::Free(path) => path.clone(),
                action::Owner::Method(_) => unreachable!("free actions have a free owner"),
            };
            free_action::expand(&f, &model, &krate, &connector)
        }
        Err(e) => {
            let errors = e.to_compile_error();
            let stripped = free_action::strip(&f);
            quote!(#errors #stripped)
        }
    }
}
