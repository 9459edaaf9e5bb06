//! `#[action]`, `#[search_operator]`, `#[producer]` or `#[sync]` on the
//! methods of an impl block that lacks `#[connector]`: one mistake, so one
//! error.
//!
//! Each of those attributes is expanded on its own, seeing only its method,
//! and no span reaches the impl block; so the first of them in a source file
//! reports the missing `#[connector]` and the ones after it (by line) in the
//! same file stay silent. The first is found through state kept across the
//! expansions of one compilation: rustc expands a file's attributes in
//! source order, each crate in a process of its own. Should an expansion
//! come out of order, a second error appears; none is ever lost under
//! rustc. (An IDE that keeps the macro server across edits may show fewer:
//! `cargo check` still reports the first.)

use std::collections::HashMap;
use std::sync::Mutex;

use proc_macro2::TokenStream;

/// Per source file, the first line where a stray attribute was reported.
static FIRST: Mutex<Option<HashMap<String, usize>>> = Mutex::new(None);

/// Whether `item` is a method (its first parameter is a `self`).
pub fn is_method(item: &TokenStream) -> bool {
    syn::parse2::<syn::ItemFn>(item.clone())
        .is_ok_and(|f| matches!(f.sig.inputs.first(), Some(syn::FnArg::Receiver(_))))
}

/// Whether the stray attribute being expanded is to report: no stray
/// attribute on an earlier line of its file has. Always true outside a
/// macro expansion (unit and snapshot tests).
pub fn report_here() -> bool {
    if !proc_macro::is_available() {
        return true;
    }
    let span = proc_macro::Span::call_site();
    let (file, line) = (span.file(), span.line());
    let mut first = FIRST
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let first = first
        .get_or_insert_with(HashMap::new)
        .entry(file)
        .or_insert(line);
    if line < *first {
        *first = line;
    }
    line <= *first
}
