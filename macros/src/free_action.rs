//! `#[action]` (or `#[search_operator]`) outside a `#[connector]` impl.
//!
//! With `connector = Type` it declares a free function as an action of that
//! connector; without it, it explains what is missing.

use darling::Error;
use proc_macro2::{Span, TokenStream};
use quote::quote;
use syn::{FnArg, ItemFn};

use crate::action::{self, ActionFn, Owner};
use crate::attrs::{self, ActionArgs};

/// Parses `#[action(connector = Type, ...)] fn ...`.
pub fn parse(args: TokenStream, item: &ItemFn) -> darling::Result<(ActionFn, syn::Path)> {
    let mut errors = Error::accumulator();
    let args: ActionArgs = errors.handle(attrs::from_tokens(args)).unwrap_or_default();
    let has_self = matches!(item.sig.inputs.first(), Some(FnArg::Receiver(_)));
    let Some(connector) = args.connector.clone() else {
        let message = if has_self {
            "`#[action]` on a method needs `#[connector]` on its impl block: `#[connector] impl MyConnector { ... }`"
        } else {
            "`#[action]` outside a `#[connector]` impl needs its connector: `#[action(connector = MyConnector)]`, with the connector as the first parameter (`conn: &MyConnector`)"
        };
        errors.push(Error::custom(message).with_span(&Span::call_site()));
        return Err(errors.finish().expect_err("an error was pushed"));
    };
    let krate = args
        .krate
        .clone()
        .map(|p| p.0)
        .unwrap_or_else(|| syn::parse_quote!(::spoke));
    let parsed = action::parse_action(
        &mut errors,
        args,
        &item.attrs,
        &item.sig,
        Owner::Free(connector.0.clone()),
    );
    errors.finish()?;
    Ok((parsed.expect("no errors, so parsed"), krate))
}

/// The fn as written (minus `#[input]`) and its registration as a one-action set.
pub fn expand(
    item: &ItemFn,
    model: &ActionFn,
    krate: &syn::Path,
    connector: &syn::Path,
) -> TokenStream {
    let p = quote!(#krate::__private);
    let (items, entry) = model.expand(krate);
    let mut item = item.clone();
    action::strip_param_attrs(&mut item.sig);
    let cfg = &model.cfg;
    quote! {
        #item

        #(#cfg)*
        const _: () = {
            #items
            #p::inventory::submit! {
                #p::ActionSet {
                    connector: <#connector as #p::Connector>::NAME,
                    actions: &[#entry],
                    operators: &[],
                }
            }
        };
    }
}

/// The fn as written, minus our parameter attributes (for error output).
pub fn strip(item: &ItemFn) -> ItemFn {
    let mut item = item.clone();
    action::strip_param_attrs(&mut item.sig);
    item
}
