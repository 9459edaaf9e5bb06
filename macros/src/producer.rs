//! Producers: long-running `async fn`s of a connector that emit events for as
//! long as it runs. From a method's signature and `#[producer]` attribute to
//! the generated run fn and table entry.
//!
//! A producer is `async fn name(&self[, ctx: &Context]) -> R` in a
//! `#[connector]` impl, where `R` is `()` or `Result<(), E: Into<ActionError>>`.
//! The return type is left to the type system (one
//! `const _: () = assert_producer_return::<R>();` at the user's type); the run
//! fn converts the value through `__private::Probe`, which falls back silently
//! when the rule is broken, so the error is not repeated.

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::{Attribute, FnArg, Ident, LitStr, ReturnType, Signature, Type};

use crate::attrs::ProducerArgs;
use crate::docs::doc_of;
use crate::errors::Errors;
use crate::types;

/// When the runtime restarts a producer that stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restart {
    /// Only after an error or a panic (the default).
    OnFailure,
    /// Also after it returns `Ok`.
    Always,
}

/// The values `restart = "..."` accepts, in the order they are suggested.
const RESTART_VALUES: [&str; 2] = ["on_failure", "always"];

/// A parsed `#[producer]` method.
pub struct ProducerFn {
    pub fn_ident: Ident,
    pub name: String,
    pub name_span: Span,
    pub description: String,
    pub restart: Restart,
    pub cfg: Vec<Attribute>,
    /// Whether it takes `ctx: &Context`.
    pub takes_ctx: bool,
    /// The return type as written; `None` when omitted (`()`).
    pub output: Option<Type>,
}

/// Parses and checks a `#[producer]` method's arguments and signature.
pub fn parse(
    errors: &mut Errors,
    args: ProducerArgs,
    attrs: &[Attribute],
    sig: &Signature,
) -> Option<ProducerFn> {
    let restart = match &args.restart {
        None => Restart::OnFailure,
        Some(lit) => parse_restart(errors, lit),
    };
    let (name, name_span) = match &args.name {
        Some(lit) => {
            if lit.value().is_empty() {
                errors.spanned(lit, "the name must not be empty");
            }
            (lit.value(), lit.span())
        }
        None => (types::unraw(&sig.ident), sig.ident.span()),
    };
    let fn_name = &sig.ident;
    let suggested = format!("async fn {fn_name}(&self, ctx: &Context)");
    let inputs = types::check_started_method(
        errors,
        sig,
        &types::StartedMethod {
            kind: "a producer",
            why_async: "it runs for as long as the connector does, awaiting what it listens to",
            generic_hint: "",
            why_shared: "it runs beside the connector's actions; keep mutable state behind a `Mutex` or an atomic",
            suggested: &suggested,
        },
    );

    let mut takes_ctx = false;
    for input in inputs {
        let FnArg::Typed(pt) = input else {
            errors.spanned(input, "`self` must come first");
            continue;
        };
        let is_context = matches!(&*pt.ty, Type::Reference(r)
            if r.mutability.is_none()
                && matches!(&*r.elem, Type::Path(p) if p.path.segments.last().is_some_and(|s| s.ident == "Context")));
        if !is_context {
            errors.spanned(
                input,
                "a producer takes no parameters besides `ctx: &Context`: the runtime starts it, nobody calls it with input; read settings from the connector's config fields",
            );
        } else if takes_ctx {
            errors.spanned(&pt.ty, "`&Context` is taken twice; keep one");
        }
        takes_ctx |= is_context;
    }

    let output = match &sig.output {
        ReturnType::Default => None,
        ReturnType::Type(_, ty) => Some((**ty).clone()),
    };

    Some(ProducerFn {
        fn_ident: sig.ident.clone(),
        name,
        name_span,
        description: args
            .description
            .map(|d| d.value())
            .unwrap_or_else(|| doc_of(attrs)),
        restart,
        cfg: attrs
            .iter()
            .filter(|a| a.path().is_ident("cfg"))
            .cloned()
            .collect(),
        takes_ctx,
        output,
    })
}

fn parse_restart(errors: &mut Errors, lit: &LitStr) -> Restart {
    let value = lit.value();
    match value.as_str() {
        "on_failure" => Restart::OnFailure,
        "always" => Restart::Always,
        other => {
            let hint = RESTART_VALUES
                .into_iter()
                .min_by_key(|v| strsim::levenshtein(v, &other.to_ascii_lowercase()))
                .unwrap_or("on_failure");
            errors.spanned(
                lit,
                format!(
                    "unknown restart policy `{other}`: expected `on_failure` (the default: restart after an error or a panic) or `always` (also after it returns); did you mean `{hint}`?"
                ),
            );
            Restart::OnFailure
        }
    }
}

/// The `Probe` traits a block of generated producers calls through.
pub fn block_imports(krate: &syn::Path) -> TokenStream {
    quote! {
        #[allow(unused_imports)]
        use #krate::__private::{ProbeProducer as _, ProbeProducerFallback as _};
    }
}

impl ProducerFn {
    /// The generated items (return type check, run fn) and the table entry,
    /// for a producer of `self_ty`. They go in a block that starts with
    /// [`block_imports`].
    pub fn expand(&self, krate: &syn::Path, self_ty: &Type) -> (TokenStream, TokenStream) {
        let p = quote!(#krate::__private);
        let cfg = &self.cfg;
        let fn_ident = &self.fn_ident;
        let run_ident = format_ident!("__spoke_produce_{}", fn_ident);
        let check = self.output.as_ref().map(|ty| {
            quote! {
                #(#cfg)*
                const _: () = #p::assert_producer_return::<#ty>();
            }
        });
        let ctx_arg = self.takes_ctx.then(|| quote!(&__spoke_ctx));
        let items = quote! {
            #check

            #(#cfg)*
            #[allow(non_snake_case, unused_variables, clippy::needless_borrow)]
            fn #run_ident(__spoke_conn: #p::AnyConnector, __spoke_ctx: #p::Context) -> #p::ProducerFuture {
                let __spoke_conn = #p::downcast::<#self_ty>(__spoke_conn);
                #p::Box::pin(async move {
                    let __spoke_ret = <#self_ty>::#fn_ident(&*__spoke_conn, #ctx_arg).await;
                    (&#p::probe_of(&__spoke_ret)).producer_result(__spoke_ret)
                })
            }
        };
        let name = &self.name;
        let description = &self.description;
        let restart = match self.restart {
            Restart::OnFailure => quote!(#p::Restart::OnFailure),
            Restart::Always => quote!(#p::Restart::Always),
        };
        let location =
            quote_spanned!(self.name_span=> ::core::concat!(::core::file!(), ":", ::core::line!()));
        let entry = quote! {
            #(#cfg)*
            #p::ProducerDef {
                name: #name,
                description: #description,
                restart: #restart,
                run: #run_ident,
                location: #location,
            }
        };
        (items, entry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::errors::messages;

    fn parse_method(attr_args: TokenStream, method: TokenStream) -> syn::Result<ProducerFn> {
        crate::errors::parse_method::<ProducerArgs, _>(attr_args, method, parse)
    }

    #[test]
    fn defaults_come_from_the_fn() {
        let p = parse_method(
            quote!(),
            quote! {
                /// Listens for messages.
                async fn r#listen(&self, ctx: &Context) -> Result<(), ActionError> { Ok(()) }
            },
        )
        .unwrap();
        assert_eq!(p.name, "listen");
        assert_eq!(p.description, "Listens for messages.");
        assert_eq!(p.restart, Restart::OnFailure);
        assert!(p.takes_ctx);
        assert!(p.output.is_some());
    }

    #[test]
    fn arguments_override_the_defaults() {
        let p = parse_method(
            quote!(name = "inbox", restart = "always", description = "D."),
            quote!(
                async fn listen(&self) {}
            ),
        )
        .unwrap();
        assert_eq!((p.name.as_str(), p.description.as_str()), ("inbox", "D."));
        assert_eq!(p.restart, Restart::Always);
        assert!(!p.takes_ctx);
        assert!(p.output.is_none());
    }

    #[test]
    fn every_mistake_is_reported() {
        let errors = messages(parse_method(
            quote!(restart = "allways", name = ""),
            quote!(
                fn listen<T>(&mut self, ctx: &Context, ctx2: &Context, n: u32) {}
            ),
        ));
        assert_eq!(errors.len(), 7, "{errors:#?}");
        assert!(
            errors[0].contains("did you mean `always`?"),
            "{}",
            errors[0]
        );
        assert!(errors[1].contains("must not be empty"));
        assert!(errors[2].contains("must be an `async fn`"));
        assert!(errors[3].contains("cannot be generic"));
        assert!(errors[4].starts_with("`&mut self` is not allowed"));
        assert!(errors[5].contains("taken twice"));
        assert!(errors[6].contains("no parameters besides `ctx: &Context`"));
    }

    #[test]
    fn a_missing_receiver_keeps_checking_the_parameters() {
        let errors = messages(parse_method(
            quote!(),
            quote!(
                async fn listen(ctx: &Context, topic: String) {}
            ),
        ));
        assert_eq!(errors.len(), 2, "{errors:#?}");
        assert!(errors[0].starts_with("`listen` has no `self`"));
        assert!(errors[1].contains("no parameters besides"));
    }
}
