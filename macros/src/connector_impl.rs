//! `#[connector]` on an impl block: collect its `#[action]` and
//! `#[search_operator]` methods, check them, and register them.

use std::collections::HashMap;

use darling::Error;
use proc_macro2::{Span, TokenStream};
use quote::quote;
use syn::spanned::Spanned;
use syn::{ImplItem, ItemImpl};

use crate::action::{self, ActionFn, Owner};
use crate::attrs::{self, ActionArgs, ConnectorImplArgs, SearchOperatorArgs};

/// A parsed `#[connector] impl` block.
pub struct ConnectorImpl {
    pub self_ty: syn::Type,
    pub krate: syn::Path,
    pub actions_const: Option<syn::Ident>,
    pub fns: Vec<ActionFn>,
}

fn is_ours(attr: &syn::Attribute) -> bool {
    attr.path().is_ident("action") || attr.path().is_ident("search_operator")
}

/// Parses and checks the impl block.
pub fn parse(args: TokenStream, item: &ItemImpl) -> darling::Result<ConnectorImpl> {
    let mut errors = Error::accumulator();
    let args: ConnectorImplArgs = errors.handle(attrs::from_tokens(args)).unwrap_or_default();
    if let Some((_, path, _)) = &item.trait_ {
        errors.push(
            Error::custom(
                "`#[connector]` goes on the connector's own `impl` block, not on a trait impl",
            )
            .with_span(path),
        );
    }
    if !item.generics.params.is_empty() {
        errors.push(
            Error::custom("a connector cannot be generic: the registry needs one concrete type")
                .with_span(&item.generics),
        );
    }
    let owner = Owner::Method((*item.self_ty).clone());
    let mut fns = Vec::new();
    for impl_item in &item.items {
        let ImplItem::Fn(method) = impl_item else {
            continue;
        };
        let mut ours = method.attrs.iter().filter(|a| is_ours(a));
        let Some(attr) = ours.next() else { continue };
        if let Some(second) = ours.next() {
            errors.push(
                Error::custom("a fn is either an `#[action]` or a `#[search_operator]`, once")
                    .with_span(second),
            );
        }
        let parsed = if attr.path().is_ident("action") {
            let args: ActionArgs = errors.handle(attrs::from_attr(attr)).unwrap_or_default();
            if let Some(conn) = &args.connector {
                errors.push(Error::custom("`connector = ...` is for free functions; inside a `#[connector]` impl the connector is `Self`").with_span(&conn.0));
            }
            action::parse_action(&mut errors, args, &method.attrs, &method.sig, owner.clone())
        } else {
            let args: SearchOperatorArgs =
                errors.handle(attrs::from_attr(attr)).unwrap_or_default();
            action::parse_operator(
                &mut errors,
                args,
                attr.span(),
                &method.attrs,
                &method.sig,
                owner.clone(),
            )
        };
        fns.extend(parsed);
    }
    check_unique(&mut errors, &fns);
    errors.finish_with(ConnectorImpl {
        self_ty: (*item.self_ty).clone(),
        krate: args
            .krate
            .map(|p| p.0)
            .unwrap_or_else(|| syn::parse_quote!(::spoke)),
        actions_const: args.actions,
        fns,
    })
}

/// Two actions (or two operators) with one name in one impl block.
fn check_unique(errors: &mut darling::error::Accumulator, fns: &[ActionFn]) {
    let mut seen: HashMap<(bool, &str), Span> = HashMap::new();
    for f in fns {
        if seen
            .insert((f.is_operator(), &f.name), f.name_span)
            .is_some()
        {
            let kind = if f.is_operator() {
                "search operator"
            } else {
                "action"
            };
            errors.push(
                Error::custom(format!("duplicate {kind} name `{}`: another {kind} in this impl already has it; rename one with `name = \"...\"`", f.name))
                    .with_span(&f.name_span),
            );
        }
    }
}

/// The impl block as written, minus our attributes.
pub fn strip(item: &ItemImpl) -> ItemImpl {
    let mut item = item.clone();
    for impl_item in &mut item.items {
        if let ImplItem::Fn(method) = impl_item {
            method.attrs.retain(|a| !is_ours(a));
            action::strip_param_attrs(&mut method.sig);
        }
    }
    item
}

/// Generates the input types, invoke fns and the registered action set.
pub fn expand(model: &ConnectorImpl) -> TokenStream {
    let krate = &model.krate;
    let p = quote!(#krate::__private);
    let self_ty = &model.self_ty;
    let mut items = Vec::new();
    let mut actions = Vec::new();
    let mut operators = Vec::new();
    for f in &model.fns {
        let (item, entry) = f.expand(krate);
        items.push(item);
        if f.is_operator() {
            operators.push(entry);
        } else {
            actions.push(entry);
        }
    }
    let set = quote! {
        #p::ActionSet {
            connector: <#self_ty as #p::Connector>::NAME,
            actions: &[#(#actions),*],
            operators: &[#(#operators),*],
        }
    };
    match &model.actions_const {
        None => quote! {
            const _: () = {
                #(#items)*
                #p::inventory::submit! { #set }
            };
        },
        Some(name) => quote! {
            impl #self_ty {
                /// The actions and search operators of this impl block, for manual registration.
                pub const #name: #p::ActionSet = {
                    #(#items)*
                    #set
                };
            }
            #p::inventory::submit! { <#self_ty>::#name }
        },
    }
}
