//! Expansion snapshots of the examples, in-process: every item carrying a
//! Spoke attribute is expanded, pretty-printed and compared with the snapshot
//! under `macros/src/snapshots/`. Review changes with `cargo insta review`
//! (or `INSTA_UPDATE=always cargo test -p spoke-macros` and read the diff).

use proc_macro2::TokenStream;
use quote::ToTokens;

/// Expands every `#[connector]` / `#[action]` item of a source file, in order.
fn expand_file(source: &str) -> String {
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
            crate::expand_free_action(args, tokens)
        } else {
            crate::expand_connector(args, tokens)
        };
        let parsed: syn::File = syn::parse2(expanded.clone())
            .unwrap_or_else(|e| panic!("expansion does not parse: {e}\n{expanded}"));
        assert!(
            !expanded.to_string().contains("compile_error"),
            "example expands with errors:\n{expanded}"
        );
        out.push(prettyplease::unparse(&parsed));
    }
    assert!(!out.is_empty(), "no Spoke item found");
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
