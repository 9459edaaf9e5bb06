//! Expansion snapshots of the examples, in-process: every item carrying a
//! Spoke attribute is expanded, pretty-printed and compared with the snapshot
//! under `macros/src/snapshots/`. Review changes with `cargo insta review`
//! (or `INSTA_UPDATE=always cargo test -p spoke-macros` and read the diff).

use proc_macro2::TokenStream;
use quote::ToTokens;

/// Every `#[connector]` / `#[action]` item of a source file, in order: what
/// the user wrote (the attribute's arguments, then the item without the
/// attribute) and its expansion.
fn expand_items(source: &str) -> Vec<(TokenStream, TokenStream)> {
    let file = syn::parse_file(source).expect("example parses");
    let mut out = Vec::new();
    for mut item in file.items {
        let attrs = match &mut item {
            syn::Item::Struct(s) => &mut s.attrs,
            syn::Item::Impl(i) => &mut i.attrs,
            syn::Item::Fn(f) => &mut f.attrs,
            _ => continue,
        };
        let Some(pos) = attrs
            .iter()
            .position(|a| a.path().is_ident("connector") || a.path().is_ident("action"))
        else {
            continue;
        };
        let attr = attrs.remove(pos);
        let args = match &attr.meta {
            syn::Meta::List(list) => list.tokens.clone(),
            _ => TokenStream::new(),
        };
        let is_action = attr.path().is_ident("action");
        let tokens = item.to_token_stream();
        let expanded = if is_action {
            crate::expand_free_action(args.clone(), tokens.clone())
        } else {
            crate::expand_connector(args.clone(), tokens.clone())
        };
        assert!(
            !expanded.to_string().contains("compile_error"),
            "example expands with errors:\n{expanded}"
        );
        out.push((quote::quote!(#args #tokens), expanded));
    }
    assert!(!out.is_empty(), "no Spoke item found");
    out
}

/// Expands every `#[connector]` / `#[action]` item of a source file, in order.
fn expand_file(source: &str) -> String {
    let mut out = Vec::new();
    for (_, expanded) in expand_items(source) {
        let parsed: syn::File = syn::parse2(expanded.clone())
            .unwrap_or_else(|e| panic!("expansion does not parse: {e}\n{expanded}"));
        out.push(prettyplease::unparse(&parsed));
    }
    out.join("\n// ----\n\n")
}

fn example(name: &str) -> String {
    let path = format!("{}/../examples/{name}.rs", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
}

#[test]
fn echo_expansion() {
    insta::assert_snapshot!("echo", expand_file(&example("echo")));
}

#[test]
fn files_expansion() {
    insta::assert_snapshot!("files", expand_file(&example("files")));
}

#[test]
fn faults_expansion() {
    insta::assert_snapshot!("faults", expand_file(&example("faults")));
}

#[test]
fn accounts_expansion() {
    // Buckets (`ctx.store()`), a sync and config fields with a duration.
    insta::assert_snapshot!("accounts", expand_file(&example("accounts")));
}

/// Producers have no example yet: a small connector, inline.
const PRODUCERS: &str = r#"
#[connector]
impl Chat {
    /// Listens for incoming messages.
    #[producer]
    async fn listen(&self, ctx: &Context) -> Result<(), ActionError> {
        ctx.cancelled().await;
        Ok(())
    }

    #[cfg(feature = "poll")]
    #[producer(name = "poll", restart = "always")]
    async fn poll_once(&self) {}

    #[action(read)]
    fn ping(&self) -> String {
        "pong".into()
    }
}
"#;

#[test]
fn producers_expansion() {
    insta::assert_snapshot!("producers", expand_file(PRODUCERS));
}

/// Syncs: one with every argument (a checkpoint, a `migrate` fn through
/// `Self`), one with the defaults and no checkpoint, one under `#[cfg]`.
const SYNCS: &str = r#"
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
        name = "files"
    )]
    async fn r#files(&self, ctx: &SyncContext<Cursor>) -> Result<(), ActionError> {
        ctx.checkpoint(&Cursor::default()).await
    }

    fn upgrade(from: u32, old: serde_json::Value) -> Result<Cursor, String> {
        Err(format!("cannot read version {from}: {old}"))
    }

    /// Walks the tags.
    #[sync]
    async fn tags(&self, ctx: &SyncContext) {}

    #[cfg(feature = "watch")]
    #[sync(modes = "realtime", error_budget = 0.5)]
    async fn watch(&self, ctx: &SyncContext<Cursor>) -> anyhow::Result<()> {
        Ok(())
    }
}
"#;

#[test]
fn syncs_expansion() {
    insta::assert_snapshot!("syncs", expand_file(SYNCS));
}

/// Constraints, a description, a default and a rename on named parameters.
const CONSTRAINTS: &str = r#"
#[connector]
impl Files {
    /// List a directory.
    ///
    /// # Arguments
    /// * `dir` - Directory relative to the root.
    #[action(read)]
    async fn list(
        &self,
        #[schemars(length(min = 1, max = 64), regex(pattern = "^[a-z/]+$"))] dir: String,
        #[schemars(range(min = 1, max = 100), description = "At most this many.")] limit: Option<u32>,
        #[serde(default, rename = "labels")]
        #[schemars(length(max = 8))]
        tags: std::collections::BTreeMap<String, String>,
    ) -> Vec<String> {
        vec![dir]
    }
}
"#;

#[test]
fn constraints_expansion() {
    insta::assert_snapshot!("constraints", expand_file(CONSTRAINTS));
}

/// Declared Arrow columns: in through a free fn, out through `Self::`.
const ARROW_COLUMNS: &str = r#"
#[connector]
impl Scores {
    /// How many rows.
    #[action(read, input_arrow_schema = scores, output_arrow_schema = Self::counts)]
    fn count(&self, #[input] batch: RecordBatch) -> Result<RecordBatch, ActionError> {
        Ok(batch)
    }
}
"#;

#[test]
fn arrow_columns_expansion() {
    insta::assert_snapshot!("arrow_columns", expand_file(ARROW_COLUMNS));
}

// ------------------------------------------------------------ path hygiene
//
// Generated code must compile in any crate that depends on `spoke` alone: it
// reaches every dependency through `::spoke::__private`, so a user needs no
// `serde`, `schemars`, `inventory` or `tokio` of their own (or of a matching
// version), and a user's `mod serde` cannot capture a path. The rule, over
// every path the macros *generate* (a path that also occurs in what the user
// wrote is theirs, copied through, e.g. a return type `anyhow::Result<u32>`):
//
// 1. An absolute path (`::a::b`) starts with `::spoke::__private` (the default
//    `crate = ::spoke`) or `::core::`. Not `::std::` or `::alloc::`: they are
//    not in the extern prelude of a `#![no_std]` library crate, which may
//    still declare connectors; what generated code needs from std is in core
//    or re-exported by `__private` (`Box`, `String`).
// 2. A relative path (`a::b`) starts with `Self`, `self`, `super`, `crate`, a
//    type (an identifier starting with an uppercase letter or `__Spoke`) or a
//    lint tool (`clippy::`, `rustdoc::`, `rustfmt::` in `#[allow]`), never
//    with a lowercase name: that would be a crate or a module that the user's
//    crate may lack or define differently.
//
// Paths are read from the tokens and from string literals that hold a path
// (`#[serde(crate = "...")]`).

/// Every path of two or more segments (or an absolute one) in `tokens`, as
/// written: `::a::b` or `a::b`, without generic arguments.
fn paths_in(tokens: TokenStream, out: &mut Vec<String>) {
    use proc_macro2::{Spacing, TokenTree};
    const KEYWORDS: [&str; 33] = [
        "as", "async", "await", "break", "const", "continue", "dyn", "else", "enum", "extern",
        "fn", "for", "if", "impl", "in", "let", "loop", "match", "mod", "move", "mut", "pub",
        "ref", "return", "static", "struct", "trait", "type", "unsafe", "use", "where", "while",
        "yield",
    ];
    let tts: Vec<TokenTree> = tokens.into_iter().collect();
    let colons = |i: usize| {
        matches!(
            (tts.get(i), tts.get(i + 1)),
            (Some(TokenTree::Punct(a)), Some(TokenTree::Punct(b)))
                if a.as_char() == ':' && a.spacing() == Spacing::Joint && b.as_char() == ':'
        )
    };
    let ident = |i: usize| match tts.get(i) {
        Some(TokenTree::Ident(id)) => Some(id.to_string()),
        _ => None,
    };
    let keyword = |id: &str| KEYWORDS.contains(&id);
    let mut i = 0;
    while i < tts.len() {
        // `::` starts a path unless it continues one: after an identifier
        // (consumed with its path) or a `>` closing generics (`<T as Tr>::X`,
        // `Probe::<T>::new`), but not the `>` of `->` or `=>`.
        let absolute = colons(i)
            && match i.checked_sub(1).map(|p| &tts[p]) {
                Some(TokenTree::Ident(prev)) => keyword(&prev.to_string()),
                Some(TokenTree::Punct(p)) if p.as_char() == '>' => matches!(
                    i.checked_sub(2).map(|q| &tts[q]),
                    Some(TokenTree::Punct(q))
                        if matches!(q.as_char(), '-' | '=') && q.spacing() == Spacing::Joint
                ),
                _ => true,
            };
        let relative = !(i >= 2 && colons(i - 2)) && ident(i).is_some_and(|id| !keyword(&id));
        if absolute || relative {
            let mut j = if absolute { i + 2 } else { i };
            let mut segments = Vec::new();
            while let Some(id) = ident(j) {
                segments.push(id);
                if !(colons(j + 1) && ident(j + 3).is_some()) {
                    j += 1;
                    break;
                }
                j += 3;
            }
            if segments.len() >= 2 || (absolute && !segments.is_empty()) {
                let lead = if absolute { "::" } else { "" };
                out.push(format!("{lead}{}", segments.join("::")));
            }
            i = j.max(i + 1);
            continue;
        }
        match &tts[i] {
            TokenTree::Group(g) => paths_in(g.stream(), out),
            TokenTree::Literal(lit) => {
                let path = syn::parse_str::<syn::LitStr>(&lit.to_string())
                    .ok()
                    .and_then(|s| syn::parse_str::<syn::Path>(&s.value()).ok());
                if let Some(path) = path
                    && (path.leading_colon.is_some() || path.segments.len() >= 2)
                {
                    let lead = if path.leading_colon.is_some() {
                        "::"
                    } else {
                        ""
                    };
                    let names: Vec<String> =
                        path.segments.iter().map(|s| s.ident.to_string()).collect();
                    out.push(format!("{lead}{}", names.join("::")));
                }
            }
            _ => {}
        }
        i += 1;
    }
}

/// The generated paths of one expansion that break the rule above.
fn hygiene_violations(written: TokenStream, expanded: TokenStream) -> Vec<String> {
    let mut users = Vec::new();
    paths_in(written, &mut users);
    let mut generated = Vec::new();
    paths_in(expanded, &mut generated);
    let allowed = |path: &str| match path.strip_prefix("::") {
        Some(abs) => {
            abs == "spoke::__private"
                || abs.starts_with("spoke::__private::")
                || abs.starts_with("core::")
        }
        None => {
            let first = path.split("::").next().unwrap_or_default();
            [
                "Self", "self", "super", "crate", "clippy", "rustdoc", "rustfmt",
            ]
            .contains(&first)
                || first.starts_with(|c: char| c.is_ascii_uppercase())
                || first.starts_with("__Spoke")
        }
    };
    let mut bad: Vec<String> = generated
        .into_iter()
        .filter(|p| !users.contains(p) && !allowed(p))
        .collect();
    bad.sort();
    bad.dedup();
    bad
}

#[test]
fn expansions_reach_dependencies_only_through_spoke_private() {
    let sources = [
        ("echo", example("echo")),
        ("files", example("files")),
        ("faults", example("faults")),
        ("producers", PRODUCERS.to_owned()),
        ("syncs", SYNCS.to_owned()),
        ("constraints", CONSTRAINTS.to_owned()),
        ("arrow_columns", ARROW_COLUMNS.to_owned()),
    ];
    for (name, source) in sources {
        for (written, expanded) in expand_items(&source) {
            let bad = hygiene_violations(written, expanded);
            assert!(
                bad.is_empty(),
                "{name}: generated paths break the rule: {bad:?}"
            );
        }
    }
}

#[test]
fn the_hygiene_check_flags_stray_dependency_paths() {
    let written = quote::quote! {
        impl Files { fn f(&self) -> anyhow::Result<u32> { std::fs::read("x") } }
    };
    let expanded = quote::quote! {
        impl Files { fn f(&self) -> anyhow::Result<u32> { std::fs::read("x") } }
        #[derive(::serde::Deserialize, ::spoke::__private::schemars::JsonSchema)]
        #[serde(crate = "::serde")]
        struct __SpokeInput_f<T>(T);
        #[allow(clippy::needless_borrow)]
        fn g() -> ::core::option::Option<::std::sync::Arc<u8>> {
            let _ = serde_json::to_value(1);
            let _ = <Files as ::spoke::__private::Connector>::NAME;
            let _ = Self::NAME;
            let _ = ::spoke::Registry::builder();
            let _ = ::spoke::__private::Probe::<u8>::new();
            ::core::option::Option::None
        }
    };
    assert_eq!(
        hygiene_violations(written, expanded),
        [
            "::serde",
            "::serde::Deserialize",
            "::spoke::Registry::builder",
            "::std::sync::Arc",
            "serde_json::to_value",
        ]
    );
}
