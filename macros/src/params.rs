//! `#[schemars(...)]` and `#[serde(...)]` on a named action parameter: the
//! constraints, description, default and rename it carries to the generated
//! input struct's field.
//!
//! Only keys whose meaning the runtime also enforces (or that need no
//! enforcing) are accepted, so the published schema never promises a check
//! that does not happen: `range`, `length` and `regex` are checked after
//! decoding; `description`, `default` and `rename` shape the schema alone.
//! The attributes are forwarded as written (the user's spans, schemars'
//! own rendering); the model keeps what the checks need.

use proc_macro2::{Span, TokenStream};
use syn::meta::ParseNestedMeta;
use syn::{Attribute, Expr, Ident, Lit, LitStr, Token, UnOp};

use crate::errors::Errors;

/// `min`/`max` of a `range(...)` or `length(...)`, at its key.
pub struct Bounds<T> {
    pub key: Ident,
    pub min: Option<T>,
    pub max: Option<T>,
}

/// What `#[schemars(...)]` / `#[serde(...)]` on one parameter say.
#[derive(Default)]
pub struct ParamAttrs {
    /// The attributes as written, for the input struct's field.
    pub forward: Vec<Attribute>,
    /// `range(min = .., max = ..)`: any expressions of numbers.
    pub range: Option<Bounds<Expr>>,
    /// `length(min = .., max = ..)`: whole-number literals.
    pub length: Option<Bounds<u64>>,
    /// `regex(pattern = "...")`, at its key; checked to compile.
    pub pattern: Option<(Ident, LitStr)>,
    /// `description = "..."`.
    pub description: Option<LitStr>,
    /// `#[serde(default)]` or `#[serde(default = "path")]`, at its key.
    pub default: Option<Span>,
    /// `#[serde(rename = "...")]`.
    pub rename: Option<LitStr>,
}

const SCHEMARS_KEYS: [&str; 4] = ["range", "length", "regex", "description"];
const SCHEMARS_SUPPORTED: &str = "`range(min = .., max = ..)`, `length(min = .., max = ..)`, `regex(pattern = \"..\")` and `description = \"..\"`";
const SERDE_KEYS: [&str; 2] = ["default", "rename"];
const SERDE_SUPPORTED: &str = "`default`, `default = \"path\"` and `rename = \"..\"`";

/// Whether `attr` is one this module reads (and strips from the signature).
pub fn is_param_attr(attr: &Attribute) -> bool {
    attr.path().is_ident("schemars") || attr.path().is_ident("serde")
}

impl ParamAttrs {
    /// The attribute to point at for a rule about the whole set.
    pub fn first(&self) -> Option<&Attribute> {
        self.forward.first()
    }
}

/// Reads the parameter's `#[schemars]` and `#[serde]` attributes; every
/// problem is an error at its key.
pub fn parse(errors: &mut Errors, attrs: &[Attribute]) -> ParamAttrs {
    let mut out = ParamAttrs::default();
    for attr in attrs.iter().filter(|a| is_param_attr(a)) {
        out.forward.push(attr.clone());
        let schemars = attr.path().is_ident("schemars");
        let result = attr.parse_nested_meta(|meta| {
            if schemars {
                schemars_key(errors, &mut out, &meta)
            } else {
                serde_key(errors, &mut out, &meta)
            }
        });
        if let Err(e) = result {
            errors.at(e.span(), e);
        }
    }
    out
}

fn key_of(meta: &ParseNestedMeta<'_>) -> (String, Span) {
    let path = &meta.path;
    let key = quote::quote!(#path).to_string().replace(' ', "");
    let span = path
        .segments
        .last()
        .map_or_else(Span::call_site, |s| s.ident.span());
    (key, span)
}

fn schemars_key(
    errors: &mut Errors,
    out: &mut ParamAttrs,
    meta: &ParseNestedMeta<'_>,
) -> syn::Result<()> {
    let (key, span) = key_of(meta);
    let ident = || Ident::new(&key, span);
    match key.as_str() {
        "range" | "length" => {
            let bounds = parse_bounds(errors, meta, &key)?;
            let duplicate = if key == "range" {
                let present = out.range.is_some();
                out.range.get_or_insert(Bounds {
                    key: ident(),
                    min: bounds.0,
                    max: bounds.1,
                });
                present
            } else {
                let mut whole = |e: Option<Expr>| e.and_then(|e| whole_number(errors, &e));
                let (min, max) = (whole(bounds.0), whole(bounds.1));
                if let (Some(min), Some(max)) = (min, max)
                    && min > max
                {
                    errors.at(
                        span,
                        format!(
                            "`length` has `min = {min}` above `max = {max}`: no value could pass"
                        ),
                    );
                }
                let present = out.length.is_some();
                out.length.get_or_insert(Bounds {
                    key: ident(),
                    min,
                    max,
                });
                present
            };
            if duplicate {
                errors.at(span, format!("duplicate `{key}`: give it once"));
            }
        }
        "regex" => {
            let mut pattern = None;
            meta.parse_nested_meta(|inner| {
                let (inner_key, inner_span) = key_of(&inner);
                if inner_key != "pattern" {
                    skip(&inner)?;
                    errors.at(
                        inner_span,
                        format!("unknown key `{inner_key}` in `regex(...)`: write `regex(pattern = \"^[a-z]+$\")`"),
                    );
                    return Ok(());
                }
                let value: Expr = inner.value()?.parse()?;
                match value {
                    Expr::Lit(syn::ExprLit {
                        lit: Lit::Str(lit), ..
                    }) => {
                        if let Err(e) = regex_lite::Regex::new(&lit.value()) {
                            errors.spanned(&lit, format!("this pattern does not compile: {e}"));
                        }
                        pattern = Some(lit);
                    }
                    other => errors.spanned(
                        &other,
                        "the pattern must be a string literal, so that it is checked at compile time: `regex(pattern = \"^[a-z]+$\")`",
                    ),
                }
                Ok(())
            })?;
            match (pattern, &out.pattern) {
                (_, Some(_)) => errors.at(span, "duplicate `regex`: give it once"),
                (Some(lit), None) => out.pattern = Some((ident(), lit)),
                (None, None) => errors.at(
                    span,
                    "`regex` needs its pattern: `regex(pattern = \"^[a-z]+$\")`",
                ),
            }
        }
        "description" => {
            let lit: LitStr = meta.value()?.parse()?;
            if out.description.is_some() {
                errors.at(span, "duplicate `description`: give it once");
            }
            out.description = Some(lit);
        }
        _ => {
            skip(meta)?;
            let hint = if key == "pattern" {
                "; write `regex(pattern = \"...\")`".to_owned()
            } else {
                did_you_mean(&key, &SCHEMARS_KEYS)
            };
            errors.at(
                span,
                format!(
                    "unsupported `#[schemars({key})]` on an action parameter: the keys a parameter takes are {SCHEMARS_SUPPORTED}{hint}"
                ),
            );
        }
    }
    Ok(())
}

fn serde_key(
    errors: &mut Errors,
    out: &mut ParamAttrs,
    meta: &ParseNestedMeta<'_>,
) -> syn::Result<()> {
    let (key, span) = key_of(meta);
    match key.as_str() {
        "default" => {
            if meta.input.peek(Token![=]) {
                let _path: LitStr = meta.value()?.parse()?;
            }
            if out.default.is_some() {
                errors.at(span, "duplicate `default`: give it once");
            }
            out.default = Some(span);
        }
        "rename" => {
            let lit: LitStr = meta.value()?.parse()?;
            if lit.value().is_empty() {
                errors.spanned(&lit, "the name must not be empty");
            }
            if out.rename.is_some() {
                errors.at(span, "duplicate `rename`: give it once");
            }
            out.rename = Some(lit);
        }
        _ => {
            skip(meta)?;
            errors.at(
                span,
                format!(
                    "unsupported `#[serde({key})]` on an action parameter: the keys a parameter takes are {SERDE_SUPPORTED}{}",
                    did_you_mean(&key, &SERDE_KEYS)
                ),
            );
        }
    }
    Ok(())
}

/// `(min, max)` of `range(...)`/`length(...)`; `equal = n` is both.
fn parse_bounds(
    errors: &mut Errors,
    meta: &ParseNestedMeta<'_>,
    outer: &str,
) -> syn::Result<(Option<Expr>, Option<Expr>)> {
    let (mut min, mut max) = (None, None);
    let (_, span) = key_of(meta);
    if !meta.input.peek(syn::token::Paren) {
        skip(meta)?;
        errors.at(
            span,
            format!("write `{outer}(min = .., max = ..)`, with either or both"),
        );
        return Ok((None, None));
    }
    meta.parse_nested_meta(|inner| {
        let (key, inner_span) = key_of(&inner);
        let slots: &mut [&mut Option<Expr>] = match key.as_str() {
            "min" => &mut [&mut min],
            "max" => &mut [&mut max],
            "equal" => &mut [&mut min, &mut max],
            _ => {
                skip(&inner)?;
                errors.at(
                    inner_span,
                    format!("unknown key `{key}` in `{outer}(...)`: write `{outer}(min = .., max = ..)`, with either or both{}", did_you_mean(&key, &["min", "max", "equal"])),
                );
                return Ok(());
            }
        };
        let value: Expr = inner.value()?.parse()?;
        for slot in slots.iter_mut() {
            if slot.is_some() {
                errors.at(inner_span, format!("`{outer}` gives `{key}` twice; give it once"));
            }
            **slot = Some(value.clone());
        }
        Ok(())
    })?;
    if min.is_none() && max.is_none() {
        errors.at(
            span,
            format!("`{outer}` needs a bound: `{outer}(min = .., max = ..)`, with either or both"),
        );
    }
    if outer == "range"
        && let (Some(lo), Some(hi)) = (min.as_ref().and_then(number), max.as_ref().and_then(number))
        && lo > hi
    {
        errors.at(span, "`range` has `min` above `max`: no value could pass");
    }
    Ok((min, max))
}

/// A literal number, possibly negated (for `min <= max`).
fn number(expr: &Expr) -> Option<f64> {
    match expr {
        Expr::Lit(syn::ExprLit {
            lit: Lit::Int(i), ..
        }) => i.base10_parse::<f64>().ok(),
        Expr::Lit(syn::ExprLit {
            lit: Lit::Float(f), ..
        }) => f.base10_parse::<f64>().ok(),
        Expr::Unary(u) if matches!(u.op, UnOp::Neg(_)) => number(&u.expr).map(|n| -n),
        Expr::Group(g) => number(&g.expr),
        Expr::Paren(p) => number(&p.expr),
        _ => None,
    }
}

/// A `length` bound: a whole-number literal.
fn whole_number(errors: &mut Errors, expr: &Expr) -> Option<u64> {
    if let Expr::Lit(syn::ExprLit {
        lit: Lit::Int(i), ..
    }) = expr
        && let Ok(n) = i.base10_parse::<u64>()
    {
        return Some(n);
    }
    errors.spanned(
        expr,
        "a `length` bound is a whole number, written out: `length(min = 1, max = 64)`",
    );
    None
}

/// Consumes a key's value (`= expr` or `(...)`), whatever it is.
fn skip(meta: &ParseNestedMeta<'_>) -> syn::Result<()> {
    if meta.input.peek(Token![=]) {
        meta.value()?.parse::<Expr>()?;
    } else if meta.input.peek(syn::token::Paren) {
        let content;
        syn::parenthesized!(content in meta.input);
        content.parse::<TokenStream>()?;
    }
    Ok(())
}

fn did_you_mean(key: &str, known: &[&str]) -> String {
    known
        .iter()
        .map(|k| (strsim::levenshtein(k, key), k))
        .filter(|(d, _)| *d <= 2)
        .min()
        .map(|(_, k)| format!("; did you mean `{k}`?"))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_attrs(attrs: Vec<Attribute>) -> (ParamAttrs, Vec<String>) {
        let mut errors = Errors::new();
        let parsed = parse(&mut errors, &attrs);
        let messages = match errors.finish_with(()) {
            Ok(()) => Vec::new(),
            Err(e) => e.into_iter().map(|e| e.to_string()).collect(),
        };
        (parsed, messages)
    }

    #[test]
    fn supported_keys_are_read() {
        let (p, errors) = parse_attrs(vec![
            syn::parse_quote!(#[schemars(range(min = 1, max = 100), description = "How many.")]),
            syn::parse_quote!(#[schemars(length(equal = 3), regex(pattern = "^[a-z]+$"))]),
            syn::parse_quote!(#[serde(default, rename = "n")]),
        ]);
        assert!(errors.is_empty(), "{errors:?}");
        let range = p.range.unwrap();
        assert_eq!(range.key, "range");
        assert!(range.min.is_some() && range.max.is_some());
        let length = p.length.unwrap();
        assert_eq!((length.min, length.max), (Some(3), Some(3)));
        assert_eq!(p.pattern.unwrap().1.value(), "^[a-z]+$");
        assert_eq!(p.description.unwrap().value(), "How many.");
        assert!(p.default.is_some());
        assert_eq!(p.rename.unwrap().value(), "n");
        assert_eq!(p.forward.len(), 3);
    }

    #[test]
    fn every_problem_is_reported() {
        let (_, errors) = parse_attrs(vec![
            syn::parse_quote!(#[schemars(email, lenght(min = 1), range(min = 5, max = 1))]),
            syn::parse_quote!(#[schemars(regex(pattern = "(unclosed"), length(min = -1))]),
            syn::parse_quote!(#[serde(skip)]),
        ]);
        assert_eq!(errors.len(), 6, "{errors:#?}");
        assert!(errors[0].starts_with("unsupported `#[schemars(email)]`"));
        assert!(errors[0].contains("`range(min = .., max = ..)`"));
        assert!(errors[1].ends_with("did you mean `length`?"));
        assert!(errors[2].contains("`min` above `max`"));
        assert!(errors[3].starts_with("this pattern does not compile"));
        assert!(errors[4].contains("whole number"));
        assert!(errors[5].starts_with("unsupported `#[serde(skip)]`"));
    }
}
