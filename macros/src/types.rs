//! Small questions about types and identifiers.

use syn::{GenericArgument, PathArguments, Type};

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
