//! Small questions about types and identifiers.

use quote::quote;
use syn::{FnArg, GenericArgument, PathArguments, Signature, Type};

use crate::errors::Errors;

/// `T` if `ty` is written `Option<T>` (any path ending in `Option`).
pub fn option_inner(ty: &Type) -> Option<&Type> {
    single_generic(ty, "Option")
}

/// The generic arguments of `ty` if it is written `Result<...>`.
pub fn result_args(ty: &Type) -> Option<Vec<&Type>> {
    let seg = last_segment(ty)?;
    if seg.ident != "Result" {
        return None;
    }
    let PathArguments::AngleBracketed(args) = &seg.arguments else {
        return None;
    };
    let tys: Vec<&Type> = args
        .args
        .iter()
        .filter_map(|a| {
            if let GenericArgument::Type(t) = a {
                Some(t)
            } else {
                None
            }
        })
        .collect();
    (!tys.is_empty()).then_some(tys)
}

/// Whether `ty` is written `Duration` (any path ending in `Duration`).
pub fn is_duration(ty: &Type) -> bool {
    last_segment(ty).is_some_and(|seg| seg.ident == "Duration" && seg.arguments.is_none())
}

fn last_segment(ty: &Type) -> Option<&syn::PathSegment> {
    match ty {
        Type::Path(p) if p.qself.is_none() => p.path.segments.last(),
        Type::Group(g) => last_segment(&g.elem),
        Type::Paren(p) => last_segment(&p.elem),
        _ => None,
    }
}

fn single_generic<'a>(ty: &'a Type, name: &str) -> Option<&'a Type> {
    let seg = last_segment(ty)?;
    if seg.ident != name {
        return None;
    }
    let PathArguments::AngleBracketed(args) = &seg.arguments else {
        return None;
    };
    match args.args.iter().collect::<Vec<_>>().as_slice() {
        [GenericArgument::Type(t)] => Some(t),
        _ => None,
    }
}

/// The identifier without a leading `r#`.
pub fn unraw(ident: &syn::Ident) -> String {
    let s = ident.to_string();
    s.strip_prefix("r#").map(str::to_owned).unwrap_or(s)
}

/// Why and how a method the runtime starts itself (a producer, a sync)
/// must be written, for the errors of [`check_started_method`].
pub(crate) struct StartedMethod<'a> {
    /// `a producer`, `a sync`.
    pub(crate) kind: &'a str,
    /// Why it must be `async`.
    pub(crate) why_async: &'a str,
    /// What to do instead of generics (`; ...`), or nothing.
    pub(crate) generic_hint: &'a str,
    /// Why it takes `&self`, and what to do with mutable state.
    pub(crate) why_shared: &'a str,
    /// The signature to write.
    pub(crate) suggested: &'a str,
}

/// Checks that a method the runtime starts is `async`, not generic, and
/// takes `&self` first; the inputs after the receiver.
pub(crate) fn check_started_method<'s>(
    errors: &mut Errors,
    sig: &'s Signature,
    m: &StartedMethod<'_>,
) -> impl Iterator<Item = &'s FnArg> + use<'s> {
    let StartedMethod {
        kind,
        why_async,
        generic_hint,
        why_shared,
        suggested,
    } = m;
    if sig.asyncness.is_none() {
        let (fn_token, ident) = (&sig.fn_token, &sig.ident);
        errors.spanned(
            quote!(#fn_token #ident),
            format!("{kind} must be an `async fn`: {why_async}; write `{suggested}`"),
        );
    }
    if !sig.generics.params.is_empty() {
        errors.spanned(
            &sig.generics,
            format!("{kind} cannot be generic: the runtime starts it with no type to choose{generic_hint}"),
        );
    }
    let mut inputs = sig.inputs.iter().peekable();
    match inputs.peek() {
        Some(FnArg::Receiver(r)) => {
            if r.reference.is_none() || r.mutability.is_some() || r.colon_token.is_some() {
                let what = if r.reference.is_some() && r.mutability.is_some() {
                    "`&mut self`"
                } else if r.reference.is_none() && r.colon_token.is_none() {
                    "`self` by value"
                } else {
                    "this receiver"
                };
                errors.spanned(
                    r,
                    format!("{what} is not allowed: {kind} takes `&self`, because {why_shared}"),
                );
            }
            inputs.next();
        }
        _ => errors.at(
            sig.paren_token.span.join(),
            format!(
                "`{}` has no `self`: {kind} in a `#[connector]` impl is a method, so it takes `&self` first: `{suggested}`",
                sig.ident
            ),
        ),
    }
    inputs
}
