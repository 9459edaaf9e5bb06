//! Procedural macros of the Spoke connector SDK. Use them through the `spoke`
//! crate: `#[connector]`, `#[action]`, `#[search_operator]`, `#[producer]`,
//! and the `#[config_field]` helper on connector fields.
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
// time exactly as the runtime reads it. Its doc examples name `spoke_runtime`,
// which this crate does not depend on: when rustdoc collects doctests, a stub
// stands in (the runtime's own doctests run in the runtime crate).
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
mod producer;
mod types;

#[cfg(test)]
mod snapshot_tests;

/// Declares a connector.
///
/// On a struct with named fields: `#[connector(name = "files", version = "1.0.0",
/// display_name = "Files", description = "...", init = Self::init, crate = ::spoke)]`;
/// fields marked `#[config_field(...)]` are configuration, the rest is state.
///
/// On the struct's `impl` block: collects its `#[action]`,
/// `#[search_operator]` and `#[producer]` methods. See the `spoke` crate's docs.
#[proc_macro_attribute]
pub fn connector(args: TokenStream, item: TokenStream) -> TokenStream {
    expand_connector(args.into(), item.into()).into()
}

/// Declares an action. Inside a `#[connector]` impl it needs no arguments;
/// on a free function it needs `connector = Type`.
#[proc_macro_attribute]
pub fn action(args: TokenStream, item: TokenStream) -> TokenStream {
    expand_free_action(args.into(), item.into()).into()
}

/// Declares a search operator; only valid inside a `#[connector]` impl.
#[proc_macro_attribute]
pub fn search_operator(_args: TokenStream, item: TokenStream) -> TokenStream {
    let item = TokenStream2::from(item);
    let error = syn::Error::new(
        proc_macro2::Span::call_site(),
        "`#[search_operator]` works only on a method in a `#[connector]` impl block: `#[connector] impl MyConnector { #[search_operator(attribute = \"...\")] fn op(&self, value: String) ... }`",
    )
    .to_compile_error();
    quote!(#error #item).into()
}

/// Declares a producer: an `async fn` of the connector that runs for as long
/// as the connector does and emits events. Only valid inside a `#[connector]`
/// impl, which reads it; on its own it explains where it belongs.
#[proc_macro_attribute]
pub fn producer(_args: TokenStream, item: TokenStream) -> TokenStream {
    let item = TokenStream2::from(item);
    // The attribute itself is what is misplaced: no narrower user token.
    let error = syn::Error::new(
        proc_macro2::Span::call_site(),
        "`#[producer]` works only on a method in a `#[connector]` impl block: `#[connector] impl MyConnector { #[producer] async fn listen(&self, ctx: &Context) -> Result<(), ActionError> { ... } }`",
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
        Ok((model, krate)) => {
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
