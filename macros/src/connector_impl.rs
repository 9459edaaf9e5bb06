//! `#[connector]` on an impl block: collect its `#[action]`,
//! `#[search_operator]`, `#[producer]` and `#[sync]` methods, check them,
//! and register them.

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned};
use syn::{Attribute, Ident, ImplItem, ItemImpl};

use crate::action::{self, ActionFn, Owner};
use crate::attrs::{
    self, ActionArgs, ConnectorImplArgs, ProducerArgs, SearchOperatorArgs, SyncArgs,
};
use crate::errors::Errors;
use crate::producer::{self, ProducerFn};
use crate::spans::respan;
use crate::sync::{self, SyncFn};

/// A parsed `#[connector] impl` block.
pub struct ConnectorImpl {
    pub self_ty: syn::Type,
    pub krate: syn::Path,
    pub actions_const: Option<syn::Ident>,
    pub fns: Vec<ActionFn>,
    pub producers: Vec<ProducerFn>,
    pub syncs: Vec<SyncFn>,
    /// Name clashes between fns under different `#[cfg]`s: errors only when
    /// both are compiled in, so they are emitted behind both cfgs.
    pub conditional_clashes: Vec<TokenStream>,
}

fn is_ours(attr: &syn::Attribute) -> bool {
    attr.path().is_ident("action")
        || attr.path().is_ident("search_operator")
        || attr.path().is_ident("producer")
        || attr.path().is_ident("sync")
}

/// Parses and checks the impl block.
pub fn parse(args: TokenStream, item: &ItemImpl) -> syn::Result<ConnectorImpl> {
    let mut errors = Errors::new();
    let args: ConnectorImplArgs = errors.handle(attrs::from_tokens(args)).unwrap_or_default();
    if let Some((_, path, _)) = &item.trait_ {
        errors.spanned(
            path,
            "`#[connector]` goes on the connector's own `impl` block, not on a trait impl",
        );
    }
    let owner = Owner::Method((*item.self_ty).clone());
    let mut fns = Vec::new();
    let mut producers = Vec::new();
    let mut syncs = Vec::new();
    for impl_item in &item.items {
        let ImplItem::Fn(method) = impl_item else {
            continue;
        };
        let mut ours = method.attrs.iter().filter(|a| is_ours(a));
        let Some(attr) = ours.next() else { continue };
        if let Some(second) = ours.next() {
            errors.spanned(
                second,
                "a fn is one of `#[action]`, `#[search_operator]`, `#[producer]` or `#[sync]`, once",
            );
        }
        if attr.path().is_ident("producer") {
            let args: ProducerArgs = errors.handle(attrs::from_attr(attr)).unwrap_or_default();
            producers.extend(producer::parse(
                &mut errors,
                args,
                &method.attrs,
                &method.sig,
            ));
            continue;
        }
        if attr.path().is_ident("sync") {
            let args: SyncArgs = errors.handle(attrs::from_attr(attr)).unwrap_or_default();
            syncs.extend(sync::parse(&mut errors, args, &method.attrs, &method.sig));
            continue;
        }
        let parsed = if attr.path().is_ident("action") {
            let args: ActionArgs = errors.handle(attrs::from_attr(attr)).unwrap_or_default();
            if let Some(conn) = &args.connector {
                errors.spanned(&conn.0, "`connector = ...` is for free functions; inside a `#[connector]` impl the connector is `Self`");
            }
            action::parse_action(&mut errors, args, &method.attrs, &method.sig, owner.clone())
        } else {
            let args: SearchOperatorArgs =
                errors.handle(attrs::from_attr(attr)).unwrap_or_default();
            action::parse_operator(
                &mut errors,
                args,
                attr,
                &method.attrs,
                &method.sig,
                owner.clone(),
            )
        };
        fns.extend(parsed);
    }
    let names: Vec<Named<'_>> = fns
        .iter()
        .map(|f| Named {
            kind: if f.is_operator() {
                "search operator"
            } else {
                "action"
            },
            name: &f.name,
            span: f.name_span,
            cfg: &f.cfg,
            fn_ident: &f.fn_ident,
        })
        .chain(producers.iter().map(|p| Named {
            kind: "producer",
            name: &p.name,
            span: p.name_span,
            cfg: &p.cfg,
            fn_ident: &p.fn_ident,
        }))
        .chain(syncs.iter().map(|s| Named {
            kind: "sync",
            name: &s.name,
            span: s.name_span,
            cfg: &s.cfg,
            fn_ident: &s.fn_ident,
        }))
        .collect();
    let conditional_clashes = check_unique(&mut errors, &names);
    errors.finish_with(ConnectorImpl {
        self_ty: (*item.self_ty).clone(),
        krate: args
            .krate
            .map(|p| p.0)
            .unwrap_or_else(|| syn::parse_quote!(::spoke)),
        actions_const: args.actions,
        fns,
        producers,
        syncs,
        conditional_clashes,
    })
}

/// A registered name, for [`check_unique`]: actions, search operators,
/// producers and syncs are four namespaces.
struct Named<'a> {
    kind: &'static str,
    name: &'a str,
    span: Span,
    cfg: &'a [Attribute],
    fn_ident: &'a Ident,
}

/// Two actions (or two operators, producers, syncs) with one name in one
/// impl block: an error at the second name. When `#[cfg]`s are involved the
/// clash may never be compiled (`#[cfg(unix)]` / `#[cfg(windows)]`), so it
/// becomes a `compile_error!` behind both fns' cfgs, returned for the
/// expansion.
fn check_unique(errors: &mut Errors, names: &[Named<'_>]) -> Vec<TokenStream> {
    let mut conditional = Vec::new();
    for (i, f) in names.iter().enumerate() {
        let Some(first) = names[..i]
            .iter()
            .find(|g| g.kind == f.kind && g.name == f.name)
        else {
            continue;
        };
        let kind = f.kind;
        let message = format!(
            "duplicate {kind} name `{}`: `fn {}` above already has it; rename one with `name = \"...\"`",
            f.name, first.fn_ident
        );
        if f.cfg.is_empty() && first.cfg.is_empty() {
            errors.at(f.span, message);
            continue;
        }
        let predicates = first
            .cfg
            .iter()
            .chain(f.cfg)
            .filter_map(|attr| match &attr.meta {
                syn::Meta::List(list) => Some(&list.tokens),
                _ => None,
            });
        conditional.push(quote_spanned! {f.span=>
            #[cfg(all(#(#predicates),*))]
            ::core::compile_error! { #message }
        });
    }
    conditional
}

/// A generic `#[connector]` impl block: the registry cannot take it, and
/// there is nothing to generate. Its other errors are reported; the
/// genericity itself is reported by the type system, through
/// `GenericConnectorReported`, which the stand-in of a generic connector
/// struct implements: a generic `#[connector]` struct has said it already
/// (one error, not one per block), and any other generic block (a plain
/// struct's, a lifetime on a concrete connector's) gets the trait's message
/// at its generics.
pub fn expand_generic(args: TokenStream, item: &ItemImpl) -> TokenStream {
    let errors = match parse(args.clone(), item) {
        Ok(_) => TokenStream::new(),
        Err(e) => e.to_compile_error(),
    };
    let stripped = strip(item);
    let krate = attrs::from_tokens::<ConnectorImplArgs>(args)
        .ok()
        .and_then(|a| a.krate)
        .map_or_else(|| syn::parse_quote!(::spoke), |p| p.0);
    let self_ty = &item.self_ty;
    let (impl_generics, _, where_clause) = item.generics.split_for_impl();
    // At the first generic parameter, so the error points at what to remove.
    let at = item
        .generics
        .params
        .first()
        .map_or_else(Span::call_site, syn::spanned::Spanned::span);
    let check = respan(
        quote!(#krate::__private::assert_generic_connector_reported::<#self_ty>()),
        at,
    );
    quote! {
        #errors
        #stripped
        const _: () = {
            #[allow(dead_code, non_snake_case)]
            fn __spoke_generic_connector #impl_generics () #where_clause {
                #check;
            }
        };
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

/// Generates the input types, invoke fns, producer run fns, sync start fns
/// and the registered action set.
pub fn expand(model: &ConnectorImpl) -> TokenStream {
    let krate = &model.krate;
    let p = quote!(#krate::__private);
    let self_ty = &model.self_ty;
    let clashes = &model.conditional_clashes;
    let mut imports = action::block_imports(krate);
    imports.extend(action::param_imports(krate, &model.fns));
    if !model.producers.is_empty() {
        imports.extend(producer::block_imports(krate));
    }
    if !model.syncs.is_empty() {
        imports.extend(sync::block_imports(krate));
    }
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
    let mut producers = Vec::new();
    for f in &model.producers {
        let (item, entry) = f.expand(krate, self_ty);
        items.push(item);
        producers.push(entry);
    }
    let mut syncs = Vec::new();
    for f in &model.syncs {
        let (item, entry) = f.expand(krate, self_ty);
        items.push(item);
        syncs.push(entry);
    }
    let set = quote! {
        #p::ActionSet {
            connector: <#self_ty as #p::Connector>::NAME,
            actions: &[#(#actions),*],
            operators: &[#(#operators),*],
            producers: &[#(#producers),*],
            syncs: &[#(#syncs),*],
        }
    };
    match &model.actions_const {
        None => quote! {
            #(#clashes)*
            const _: () = {
                #imports
                #(#items)*
                #p::inventory::submit! { #set }
            };
        },
        Some(name) => quote! {
            #(#clashes)*
            impl #self_ty {
                /// The actions, search operators, producers and syncs of this impl block, for manual registration.
                pub const #name: #p::ActionSet = {
                    #imports
                    #(#items)*
                    #set
                };
            }
            #p::inventory::submit! { <#self_ty>::#name }
        },
    }
}
