//! Collects every error of one macro call, each at the user's tokens.
//!
//! darling's accumulator keeps one span per error, and on stable Rust a span
//! cannot be joined, so an error about `&mut self` would underline only `&`.
//! `syn::Error::new_spanned` keeps the first and the last token instead, and
//! rustc underlines everything in between. darling's own errors (unknown keys
//! with "did you mean", wrong value types) are converted as they come.

use std::fmt::Display;

use proc_macro2::Span;
use quote::ToTokens;

/// The errors of one macro call. Never stops at the first one.
#[derive(Default)]
pub struct Errors(Vec<syn::Error>);

impl Errors {
    /// No errors yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// An error covering `tokens`, from their first to their last token.
    pub fn spanned(&mut self, tokens: impl ToTokens, message: impl Display) {
        self.0.push(syn::Error::new_spanned(tokens, message));
    }

    /// An error at one span.
    pub fn at(&mut self, span: Span, message: impl Display) {
        self.0.push(syn::Error::new(span, message));
    }

    /// Keeps a parse result's errors; the value when there were none.
    pub fn handle<T>(&mut self, result: darling::Result<T>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(e) => {
                for error in e.flatten() {
                    let span = error.span();
                    self.0
                        .push(syn::Error::new(span, reword(error.to_string())));
                }
                None
            }
        }
    }

    /// The value, or every error as one `syn::Error`.
    pub fn finish_with<T>(self, value: T) -> syn::Result<T> {
        let mut errors = self.0.into_iter();
        match errors.next() {
            None => Ok(value),
            Some(mut first) => {
                first.extend(errors);
                Err(first)
            }
        }
    }
}

/// For the parsers' tests: parses `method` (an impl fn, attributes
/// included) with its attribute's arguments `args` through `parse`, with
/// every error it reports.
#[cfg(test)]
pub fn parse_method<A, T>(
    args: proc_macro2::TokenStream,
    method: proc_macro2::TokenStream,
    parse: impl FnOnce(&mut Errors, A, &[syn::Attribute], &syn::Signature) -> Option<T>,
) -> syn::Result<T>
where
    A: darling::FromMeta + Default,
{
    let method: syn::ImplItemFn = syn::parse2(method).unwrap();
    let args: A = crate::attrs::from_tokens(args).unwrap();
    let mut errors = Errors::new();
    let parsed = parse(&mut errors, args, &method.attrs, &method.sig);
    errors.finish_with(parsed.unwrap())
}

/// For the parsers' tests: the messages of a parse, none when it succeeded.
#[cfg(test)]
pub fn messages<T>(result: syn::Result<T>) -> Vec<String> {
    match result {
        Ok(_) => Vec::new(),
        Err(e) => e.into_iter().map(|e| e.to_string()).collect(),
    }
}

/// darling speaks of "fields"; in `#[config_field(envv = "X")]`, which sits
/// on a field, that misleads. Ours are an attribute's arguments.
fn reword(message: String) -> String {
    // darling appends where in the arguments an error arose (` at extra`);
    // the span already shows it.
    let message = match message.rsplit_once(" at ") {
        Some((text, location))
            if !location.is_empty()
                && location
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '/') =>
        {
            text.to_owned()
        }
        _ => message,
    };
    if let Some(rest) = message.strip_prefix("Unknown field: ") {
        format!(
            "unknown argument {}",
            rest.replacen(". Did you mean", "; did you mean", 1)
        )
    } else if let Some(rest) = message.strip_prefix("Duplicate field ") {
        format!("duplicate argument {rest}: give it once")
    } else {
        message
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_errors_are_kept_in_order() {
        let mut errors = Errors::new();
        errors.at(Span::call_site(), "first");
        errors.handle::<()>(Err(darling::Error::custom("second")));
        let combined = errors.finish_with(()).unwrap_err();
        let messages: Vec<String> = combined.into_iter().map(|e| e.to_string()).collect();
        assert_eq!(messages, ["first", "second"]);
    }

    #[test]
    fn darling_wording_is_about_arguments() {
        assert_eq!(
            reword("Unknown field: `nmae`. Did you mean `name`?".into()),
            "unknown argument `nmae`; did you mean `name`?"
        );
        assert_eq!(
            reword("Duplicate field `name`".into()),
            "duplicate argument `name`: give it once"
        );
        assert_eq!(reword("other".into()), "other");
        assert_eq!(reword("expected a type at extra".into()), "expected a type");
        assert_eq!(reword("look at `it`".into()), "look at `it`");
    }
}
