//! `#[action]` (or `#[search_operator]`) outside a `#[connector]` impl.
//!
//! With `connector = Type` it declares a free function as an action of that
//! connector; without it, it explains what is missing.

use proc_macro2::{Span, TokenStream};
use quote::quote;
use syn::{FnArg, ItemFn, Type};

use crate::action::{self, ActionFn, Owner};
use crate::attrs::{self, ActionArgs};
use crate::errors::Errors;

/// Parses `#[action(connector = Type, ...)] fn ...`. `None` for a method
/// of an impl block without `#[connector]` whose mistake an earlier method
/// of the file reports (see [`crate::stray`]).
pub fn parse(args: TokenStream, item: &ItemFn) -> syn::Result<Option<(ActionFn, syn::Path)>> {
    let mut errors = Errors::new();
    let args: ActionArgs = errors.handle(attrs::from_tokens(args)).unwrap_or_default();
    let Some(connector) = args.connector.clone() else {
        let is_method = matches!(item.sig.inputs.first(), Some(FnArg::Receiver(_)));
        if is_method && !crate::stray::report_here() {
            return errors.finish_with(None);
        }
        // The attribute is what to change, and the macro's call site is the
        // attribute: no narrower user token says "this needs a connector".
        errors.at(Span::call_site(), missing_connector(item));
        return Err(errors.finish_with(()).expect_err("an error was reported"));
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
    errors.finish_with(())?;
    Ok(Some((parsed.expect("no errors, so parsed"), krate)))
}

/// What to say when `#[action]` on a fn has no `connector = ...`.
fn missing_connector(item: &ItemFn) -> String {
    match item.sig.inputs.first() {
        Some(FnArg::Receiver(_)) => "`#[action]` on a method needs `#[connector]` on its impl block: `#[connector] impl MyConnector { #[action] fn ... }`".to_owned(),
        Some(FnArg::Typed(pt)) if matches!(&*pt.ty, Type::Reference(_)) => {
            let Type::Reference(r) = &*pt.ty else { unreachable!() };
            let conn = &r.elem;
            let conn = quote!(#conn).to_string().replace(' ', "");
            format!(
                "`#[action]` outside a `#[connector]` impl needs its connector: `#[action(connector = {conn})]`"
            )
        }
        _ => "`#[action]` outside a `#[connector]` impl needs its connector: `#[action(connector = MyConnector)]`, with the connector as the first parameter: `fn name(conn: &MyConnector, ...)`".to_owned(),
    }
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
    let mut imports = action::block_imports(krate);
    imports.extend(action::param_imports(krate, [model]));
    let mut item = item.clone();
    action::strip_param_attrs(&mut item.sig);
    let cfg = &model.cfg;
    quote! {
        #item

        #(#cfg)*
        const _: () = {
            #imports
            #items
            #p::inventory::submit! {
                #p::ActionSet {
                    connector: <#connector as #p::Connector>::NAME,
                    actions: &[#entry],
                    operators: &[],
                    producers: &[],
                    syncs: &[],
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
