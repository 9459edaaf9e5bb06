//! Syncs: `async fn`s of a connector that walk an outside system into a
//! host's index, checkpointing as they go. From a method's signature and
//! `#[sync]` attribute to the generated start fn and table entry.
//!
//! A sync is `async fn name(&self, ctx: &SyncContext<C>) -> R` in a
//! `#[connector]` impl, where `C` is its checkpoint type (`()` when written
//! `&SyncContext`) and `R` is `()` or `Result<(), E: Into<ActionError>>`.
//!
//! Three steps, as for the other attributes:
//!
//! - **parse** ([`parse`]): the attribute's arguments and the signature,
//!   every mistake reported at once, at the user's token;
//! - **check types**: left to the type system, one `const _: () =
//!   assert_*::<T>();` per rule at the user's type (the checkpoint type,
//!   the return type) and the `migrate` fn through `run_migrate`; every
//!   other use of those types goes through `__private::Probe`, which falls
//!   back silently when a rule is broken, so each mistake is one error;
//! - **expand** ([`SyncFn::expand`]): a start fn that decodes the stored
//!   checkpoint into a `SyncContext<C>` and calls the method, a migrate fn
//!   when there is one, and a `SyncDef` for the impl block's `ActionSet`.

use proc_macro2::{Literal, Span, TokenStream};
use quote::{ToTokens, format_ident, quote, quote_spanned};
use syn::visit_mut::VisitMut;
use syn::{
    Attribute, Expr, FnArg, GenericArgument, Ident, Lit, LitStr, PathArguments, ReturnType,
    Signature, Type, UnOp,
};

use crate::attrs::{SweepArg, SyncArgs};
use crate::docs::doc_of;
use crate::errors::Errors;
use crate::spans::respan;
use crate::types;

/// How much of the outside system a run walks (the runtime's `SyncMode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Full,
    Incremental,
    Realtime,
}

impl Mode {
    const ALL: [Mode; 3] = [Mode::Full, Mode::Incremental, Mode::Realtime];

    fn as_str(self) -> &'static str {
        match self {
            Mode::Full => "full",
            Mode::Incremental => "incremental",
            Mode::Realtime => "realtime",
        }
    }
}

/// A parsed `#[sync]` method.
pub struct SyncFn {
    pub fn_ident: Ident,
    pub name: String,
    pub name_span: Span,
    pub description: String,
    /// At least one, no duplicates, the default first.
    pub modes: Vec<Mode>,
    pub source_type: Option<String>,
    /// The checkpoint version, from 1.
    pub version: u32,
    /// The `migrate = ...` fn, as written.
    pub migrate: Option<syn::Path>,
    /// The share of items that may fail, 0 to 1.
    pub error_budget: f64,
    /// The modes whose complete runs sweep deletions.
    pub sweep: Vec<Mode>,
    pub cfg: Vec<Attribute>,
    /// The checkpoint type as written in `&SyncContext<C>`; `None` for
    /// `&SyncContext` (`()`).
    pub checkpoint: Option<Type>,
    /// The type of its documents' `metadata.extra`, when declared.
    pub extra: Option<Type>,
    /// The type of its documents' `attributes`, when declared.
    pub attributes: Option<Type>,
    /// The return type as written; `None` when omitted (`()`).
    pub output: Option<Type>,
}

/// What the parameters say about the context.
enum CtxParam {
    /// `&SyncContext<C>` (`None`: `&SyncContext`).
    Found(Option<Box<Type>>),
    /// A context-like parameter written wrong (already reported).
    Wrong,
}

/// Parses and checks a `#[sync]` method's arguments and signature.
pub fn parse(
    errors: &mut Errors,
    args: SyncArgs,
    attrs: &[Attribute],
    sig: &Signature,
) -> Option<SyncFn> {
    let fn_name = &sig.ident;
    let (name, name_span) = match &args.name {
        Some(lit) => {
            if lit.value().is_empty() {
                errors.spanned(lit, "the name must not be empty");
            }
            (lit.value(), lit.span())
        }
        None => (types::unraw(fn_name), fn_name.span()),
    };
    let modes = match &args.modes {
        None => vec![Mode::Full],
        Some(lit) => parse_modes(errors, lit),
    };
    let source_type = args.source_type.as_ref().map(|lit| {
        let value = lit.value();
        check_source_type(errors, lit, &value);
        value
    });
    let version = match &args.version {
        None => 1,
        Some(expr) => parse_version(errors, &expr.0),
    };
    let migrate = args.migrate.map(|p| p.0);
    if let Some(path) = &migrate
        && version == 1
        && args.version.as_ref().is_none_or(|v| is_one(&v.0))
    {
        errors.spanned(
            path,
            "`migrate` has nothing older to migrate from: the checkpoint is at version 1 (the default); when the checkpoint type changes, raise the version with `version = 2` and keep `migrate` to bring version-1 checkpoints over",
        );
    }
    let error_budget = match &args.error_budget {
        None => 0.0,
        Some(expr) => parse_error_budget(errors, &expr.0),
    };
    let sweep = match &args.sweep {
        None => Vec::new(),
        Some(SweepArg::Word(span)) => {
            if !modes.contains(&Mode::Full) {
                errors.at(
                    *span,
                    "`sweep` would never run: alone it sweeps deletions at the end of a complete `full` run, and this sync has no `full` mode; add `full` to `modes`, or name the modes that see everything: `sweep = \"incremental\"`",
                );
            }
            vec![Mode::Full]
        }
        Some(SweepArg::Modes(lit)) => {
            let swept = parse_modes(errors, lit);
            for mode in &swept {
                if *mode == Mode::Realtime {
                    errors.spanned(
                        lit,
                        "a `realtime` run never completes a walk of everything, so it cannot sweep: list `full` or `incremental` only",
                    );
                } else if !modes.contains(mode) {
                    errors.spanned(
                        lit,
                        format!(
                            "`sweep` names the `{}` mode, which this sync does not have (its modes: {}); add it to `modes` or drop it here",
                            mode.as_str(),
                            modes.iter().map(|m| m.as_str()).collect::<Vec<_>>().join(", ")
                        ),
                    );
                }
            }
            swept
        }
    };

    // The checkpoint type first, for the suggestions below.
    let written_checkpoint = sig.inputs.iter().find_map(|input| match input {
        FnArg::Typed(pt) => sync_context_arg(&pt.ty).map(|(_, args)| args),
        FnArg::Receiver(_) => None,
    });
    let checkpoint_text = match written_checkpoint {
        Some(PathArguments::AngleBracketed(a)) => {
            format!("SyncContext<{}>", a.args.to_token_stream())
        }
        Some(_) => "SyncContext".to_owned(),
        None => "SyncContext<MyCheckpoint>".to_owned(),
    };
    let suggested = format!("async fn {fn_name}(&self, ctx: &{checkpoint_text})");

    let inputs = types::check_started_method(
        errors,
        sig,
        &types::StartedMethod {
            kind: "a sync",
            why_async: "it awaits the outside system and the host that stores what it emits",
            generic_hint: "; name the checkpoint type in `ctx: &SyncContext<MyCheckpoint>`",
            why_shared: "it runs beside the connector's actions and other syncs; keep mutable state behind a `Mutex` or an atomic, and progress in the checkpoint",
            suggested: &suggested,
        },
    );

    let mut ctx: Option<CtxParam> = None;
    for input in inputs {
        let FnArg::Typed(pt) = input else {
            errors.spanned(input, "`self` must come first");
            continue;
        };
        if !is_action_context(&pt.ty) && sync_context_arg(&pt.ty).is_none() {
            errors.spanned(
                input,
                "a sync takes no parameters besides `ctx: &SyncContext<C>`: the runtime starts it, nobody calls it with input; read settings from the connector's config fields, and where the last run got to from `ctx.last_checkpoint()`",
            );
        } else if ctx.is_some() {
            errors.spanned(&pt.ty, "the sync's context is taken twice; keep one");
        } else {
            ctx = context_param(errors, &pt.ty);
        }
    }
    let checkpoint = match ctx {
        Some(CtxParam::Found(checkpoint)) => checkpoint.map(|ty| *ty),
        Some(CtxParam::Wrong) => None,
        None => {
            errors.at(
                sig.paren_token.span.join(),
                format!(
                    "`{fn_name}` takes no `ctx: &SyncContext<C>`: a sync reads where the last run got to, emits documents and stores checkpoints through it; write `{suggested}` (`&SyncContext` alone when it keeps no checkpoint)"
                ),
            );
            None
        }
    };

    let output = match &sig.output {
        ReturnType::Default => None,
        ReturnType::Type(_, ty) => Some((**ty).clone()),
    };

    Some(SyncFn {
        fn_ident: sig.ident.clone(),
        name,
        name_span,
        description: args
            .description
            .map(|d| d.value())
            .unwrap_or_else(|| doc_of(attrs)),
        modes,
        source_type,
        version,
        migrate,
        error_budget,
        sweep,
        cfg: attrs
            .iter()
            .filter(|a| a.path().is_ident("cfg"))
            .cloned()
            .collect(),
        checkpoint,
        extra: args.extra.map(|t| t.0),
        attributes: args.attributes.map(|t| t.0),
        output,
    })
}

/// `(by_ref, generic arguments)` if `ty` is written `SyncContext<...>`,
/// `&SyncContext<...>` or `&mut SyncContext<...>` (any path ending in
/// `SyncContext`); `by_ref` is `Some(mutable)` for a reference.
fn sync_context_arg(ty: &Type) -> Option<(Option<bool>, &PathArguments)> {
    let (by_ref, inner) = match ty {
        Type::Reference(r) => (Some(r.mutability.is_some()), &*r.elem),
        other => (None, other),
    };
    match inner {
        Type::Path(p) if p.qself.is_none() => {
            let seg = p.path.segments.last()?;
            (seg.ident == "SyncContext").then_some((by_ref, &seg.arguments))
        }
        Type::Group(g) => sync_context_arg(&g.elem),
        Type::Paren(p) => sync_context_arg(&p.elem),
        _ => None,
    }
}

/// Whether `ty` is written `&Context` (a producer's or an action's context).
fn is_action_context(ty: &Type) -> bool {
    matches!(ty, Type::Reference(r)
        if matches!(&*r.elem, Type::Path(p) if p.path.segments.last().is_some_and(|s| s.ident == "Context")))
}

/// The context parameter's checkpoint type, or `None` when `ty` is no
/// context at all. A context written wrong is reported here.
fn context_param(errors: &mut Errors, ty: &Type) -> Option<CtxParam> {
    if is_action_context(ty) {
        errors.spanned(
            ty,
            "a sync's context is `&SyncContext<C>`, not `&Context`: it carries the run (its mode, last checkpoint, cancellation) and takes the documents; write `ctx: &SyncContext<MyCheckpoint>`, or `ctx: &SyncContext` when the sync keeps no checkpoint",
        );
        return Some(CtxParam::Wrong);
    }
    let (by_ref, arguments) = sync_context_arg(ty)?;
    let mut ok = true;
    match by_ref {
        Some(false) => {}
        Some(true) => {
            ok = false;
            errors.spanned(
                ty,
                "take the sync's context by shared reference, `&SyncContext<C>`: its methods take `&self`, and the runtime keeps its own handle on the run",
            );
        }
        None => {
            ok = false;
            errors.spanned(
                ty,
                "take the sync's context by reference: `ctx: &SyncContext<C>`",
            );
        }
    }
    let checkpoint = match arguments {
        PathArguments::None => None,
        PathArguments::AngleBracketed(a) => match a.args.iter().collect::<Vec<_>>().as_slice() {
            [GenericArgument::Type(t)] => Some(Box::new(t.clone())),
            _ => {
                ok = false;
                errors.spanned(
                    a,
                    "`SyncContext` takes one type, the sync's checkpoint type: `SyncContext<MyCheckpoint>` (or `SyncContext` alone when it keeps none)",
                );
                None
            }
        },
        PathArguments::Parenthesized(p) => {
            ok = false;
            errors.spanned(
                p,
                "`SyncContext` takes one type, the sync's checkpoint type: `SyncContext<MyCheckpoint>`",
            );
            None
        }
    };
    Some(if ok {
        CtxParam::Found(checkpoint)
    } else {
        CtxParam::Wrong
    })
}

fn parse_modes(errors: &mut Errors, lit: &LitStr) -> Vec<Mode> {
    let value = lit.value();
    let mut modes = Vec::new();
    for word in value.split(',').map(str::trim).filter(|w| !w.is_empty()) {
        let Some(mode) = Mode::ALL.into_iter().find(|m| m.as_str() == word) else {
            let hint = Mode::ALL
                .into_iter()
                .map(Mode::as_str)
                .min_by_key(|m| strsim::levenshtein(m, &word.to_ascii_lowercase()))
                .unwrap_or("full");
            errors.spanned(
                lit,
                format!(
                    "unknown sync mode `{word}`: expected `full`, `incremental` or `realtime`; did you mean `{hint}`?"
                ),
            );
            continue;
        };
        if modes.contains(&mode) {
            errors.spanned(
                lit,
                format!("sync mode `{word}` is listed twice: list each mode once"),
            );
            continue;
        }
        modes.push(mode);
    }
    if value.split(',').all(|w| w.trim().is_empty()) {
        errors.spanned(
            lit,
            "a sync needs at least one mode: `modes = \"full\"`, `\"full, incremental\"`, ...; the first is the default (leave `modes` out for `\"full\"` alone)",
        );
    }
    if modes.is_empty() {
        modes.push(Mode::Full);
    }
    modes
}

/// Reports `value` (written at `lit`) unless it is a valid source type.
fn check_source_type(errors: &mut Errors, lit: &LitStr, value: &str) {
    if !is_valid_source_type(value) {
        errors.spanned(
            lit,
            format!(
                "invalid source type `{value}`: a source type is `[a-z][a-z0-9_]*`, like `file_system` or `jira`; try `{}`",
                suggest_source_type(value)
            ),
        );
    }
}

/// `"jira, confluence"`: comma-separated source types, each valid, none
/// twice, at least one.
pub fn parse_source_types(errors: &mut Errors, lit: &LitStr) -> Vec<String> {
    let mut types: Vec<String> = Vec::new();
    for part in lit.value().split(',').map(str::trim) {
        if part.is_empty() {
            continue;
        }
        check_source_type(errors, lit, part);
        if types.iter().any(|t| t == part) {
            errors.spanned(lit, format!("source type `{part}` is listed twice"));
        } else {
            types.push(part.to_owned());
        }
    }
    if types.is_empty() {
        errors.spanned(
            lit,
            "list at least one source type, e.g. `source_types = \"jira, confluence\"`",
        );
    }
    types
}

/// Whether `name` matches `[a-z][a-z0-9_]*`.
fn is_valid_source_type(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some('a'..='z'))
        && chars.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '_'))
}

/// A valid source type near `name`: `File System` -> `file_system`,
/// `GoogleDrive` -> `google_drive`.
fn suggest_source_type(name: &str) -> String {
    crate::names::suggest_connector_name(name).replace('-', "_")
}

/// Whether `expr` is the literal `1` (an explicit `version = 1`).
fn is_one(expr: &Expr) -> bool {
    matches!(expr, Expr::Lit(l) if matches!(&l.lit, Lit::Int(i) if i.base10_parse::<u32>().ok() == Some(1)))
}

fn parse_version(errors: &mut Errors, expr: &Expr) -> u32 {
    match expr {
        Expr::Lit(syn::ExprLit {
            lit: Lit::Int(int), ..
        }) => match int.base10_parse::<u32>() {
            Ok(0) => {
                errors.spanned(
                    int,
                    "checkpoint versions start at 1: `version = 1` is the default; raise it to 2 when the checkpoint type changes",
                );
                1
            }
            Ok(n) => n,
            Err(_) => {
                errors.spanned(
                    int,
                    "the checkpoint version must fit a `u32`: it counts the changes of the checkpoint type, from 1",
                );
                1
            }
        },
        Expr::Lit(syn::ExprLit {
            lit: Lit::Str(s), ..
        }) if s.value().trim().parse::<u32>().is_ok() => {
            errors.spanned(
                s,
                format!(
                    "write the checkpoint version as an integer: `version = {}`",
                    s.value().trim()
                ),
            );
            1
        }
        other => {
            errors.spanned(
                other,
                "expected the checkpoint version as an integer from 1: `version = 2`",
            );
            1
        }
    }
}

/// `"5%"`, `"0.5%"`, or a fraction `0.05` (an integer is read as a fraction:
/// `0` or `1`), as a fraction in 0..=1.
fn parse_error_budget(errors: &mut Errors, expr: &Expr) -> f64 {
    const EXPECTED: &str = "expected a percentage, `error_budget = \"5%\"`, or a fraction from 0.0 to 1.0, `error_budget = 0.05`";
    let (negative, inner) = match expr {
        Expr::Unary(u) if matches!(u.op, UnOp::Neg(_)) => (true, &*u.expr),
        other => (false, other),
    };
    let Expr::Lit(syn::ExprLit { lit, .. }) = inner else {
        errors.spanned(expr, EXPECTED);
        return 0.0;
    };
    let sign = if negative { "-" } else { "" };
    match lit {
        Lit::Str(s) if !negative => {
            let text = s.value();
            let Some(number) = text.trim().strip_suffix('%').map(str::trim) else {
                let hint = text
                    .trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|f| f.is_finite())
                    .map(|f| format!("; for a fraction drop the quotes (`error_budget = {f}`), for a percentage add `%` (`\"{f}%\"`)"))
                    .unwrap_or_default();
                errors.spanned(
                    s,
                    format!("`\"{text}\"` is not a percentage: {EXPECTED}{hint}"),
                );
                return 0.0;
            };
            // Parsed as `<number>e-2`: exactly the decimal the author wrote.
            let fraction = number
                .parse::<f64>()
                .ok()
                .filter(|f| f.is_finite())
                .and_then(|_| format!("{number}e-2").parse::<f64>().ok());
            match fraction {
                None => {
                    errors.spanned(s, format!("`\"{text}\"` is not a percentage: {EXPECTED}"));
                    0.0
                }
                Some(f) if !(0.0..=1.0).contains(&f) => {
                    errors.spanned(
                        s,
                        format!(
                            "error budget `{text}` is out of range: it is the share of a run's items that may fail, from 0% to 100%"
                        ),
                    );
                    0.0
                }
                Some(f) => f,
            }
        }
        Lit::Float(f) => {
            let value = f.base10_parse::<f64>().unwrap_or(f64::NAN);
            let value = if negative { -value } else { value };
            budget_fraction(errors, expr, &format!("{sign}{}", f.base10_digits()), value)
        }
        Lit::Int(i) => {
            let value = i.base10_parse::<f64>().unwrap_or(f64::NAN);
            let value = if negative { -value } else { value };
            budget_fraction(errors, expr, &format!("{sign}{}", i.base10_digits()), value)
        }
        _ => {
            errors.spanned(expr, EXPECTED);
            0.0
        }
    }
}

fn budget_fraction(errors: &mut Errors, expr: &Expr, written: &str, value: f64) -> f64 {
    if (0.0..=1.0).contains(&value) {
        return value;
    }
    let hint = if value > 1.0 && value <= 100.0 {
        format!(
            "; for {written} percent write `error_budget = \"{written}%\"` (or `{}`)",
            value / 100.0
        )
    } else {
        String::new()
    };
    errors.spanned(
        expr,
        format!(
            "error budget `{written}` is out of range: as a number it is the share of a run's items that may fail, from 0.0 to 1.0{hint}"
        ),
    );
    0.0
}

/// The `Probe` traits a block of generated syncs calls through.
pub fn block_imports(krate: &syn::Path) -> TokenStream {
    quote! {
        #[allow(unused_imports)]
        use #krate::__private::{
            ProbeCheckpoint as _, ProbeCheckpointFallback as _, ProbeDocumentFields as _,
            ProbeDocumentFieldsFallback as _, ProbeSync as _, ProbeSyncFallback as _,
        };
    }
}

/// Replaces `Self` (as a whole type) with the impl block's type, spanned
/// where `Self` was written: generated items sit outside the impl block.
struct ReplaceSelf<'a>(&'a Type);

impl VisitMut for ReplaceSelf<'_> {
    fn visit_type_mut(&mut self, ty: &mut Type) {
        if let Type::Path(p) = ty
            && p.qself.is_none()
            && p.path.is_ident("Self")
        {
            let span = p.path.segments[0].ident.span();
            let self_ty = self.0;
            *ty = syn::parse2(respan(quote!(#self_ty), span)).expect("a type respanned");
            return;
        }
        syn::visit_mut::visit_type_mut(self, ty);
    }
}

/// `path` with a leading `Self` replaced by `<SelfTy>`, spanned at `Self`.
fn path_without_self(path: &syn::Path, self_ty: &Type) -> TokenStream {
    match path.segments.first() {
        Some(first) if path.leading_colon.is_none() && first.ident == "Self" => {
            let head = respan(quote!(<#self_ty>), first.ident.span());
            let rest = path.segments.iter().skip(1);
            quote!(#head #(:: #rest)*)
        }
        _ => quote!(#path),
    }
}

impl SyncFn {
    /// The generated items (type checks, start fn, migrate fn) and the
    /// table entry, for a sync of `self_ty`. They go in a block that starts
    /// with [`block_imports`].
    pub fn expand(&self, krate: &syn::Path, self_ty: &Type) -> (TokenStream, TokenStream) {
        let p = quote!(#krate::__private);
        let cfg = &self.cfg;
        let fn_ident = &self.fn_ident;
        let start_ident = format_ident!("__spoke_sync_{}", fn_ident);
        let migrate_ident = format_ident!("__spoke_migrate_{}", fn_ident);

        let checkpoint = self.checkpoint.clone().map(|mut ty| {
            ReplaceSelf(self_ty).visit_type_mut(&mut ty);
            ty
        });
        let checkpoint_check = checkpoint.as_ref().map(|ty| {
            quote! {
                #(#cfg)*
                const _: () = #p::assert_checkpoint::<#ty>();
            }
        });
        let checkpoint = checkpoint.map_or_else(|| quote!(()), |ty| quote!(#ty));
        // The document field types: checked at the user's type, and their
        // schemas taken through the probe (no second error when a check fails).
        let mut fields_checks = Vec::new();
        let mut fields_schema = |ty: &Option<Type>| match ty {
            None => quote!(::core::option::Option::None),
            Some(ty) => {
                let mut ty = ty.clone();
                ReplaceSelf(self_ty).visit_type_mut(&mut ty);
                fields_checks.push(quote! {
                    #(#cfg)*
                    const _: () = #p::assert_document_fields::<#ty>();
                });
                quote!(::core::option::Option::Some(
                    || (&#p::Probe::<#ty>::new()).document_fields_schema()
                ))
            }
        };
        let extra_schema = fields_schema(&self.extra);
        let attributes_schema = fields_schema(&self.attributes);
        let return_check = self.output.as_ref().map(|ty| {
            quote! {
                #(#cfg)*
                const _: () = #p::assert_sync_return::<#ty>();
            }
        });
        let (migrate_fn, migrate_arg) = match &self.migrate {
            None => (None, quote!(::core::option::Option::None)),
            Some(path) => {
                let hook = path_without_self(path, self_ty);
                let call = quote_spanned! {path.segments.first().map_or_else(Span::call_site, |s| s.ident.span())=>
                    #p::run_migrate::<#checkpoint, _, _>(#hook, __spoke_from, __spoke_old)
                };
                (
                    Some(quote! {
                        #(#cfg)*
                        #[allow(non_snake_case)]
                        fn #migrate_ident(
                            __spoke_from: ::core::primitive::u32,
                            __spoke_old: #p::serde_json::Value,
                        ) -> ::core::result::Result<#checkpoint, #p::String> {
                            #call
                        }
                    }),
                    quote!(::core::option::Option::Some(#migrate_ident)),
                )
            }
        };
        let items = quote! {
            #checkpoint_check
            #(#fields_checks)*
            #return_check
            #migrate_fn

            #(#cfg)*
            #[allow(non_snake_case, unused_variables, clippy::needless_borrow)]
            fn #start_ident(
                __spoke_conn: #p::AnyConnector,
                __spoke_start: #p::SyncStart,
            ) -> ::core::result::Result<#p::SyncFuture, #p::CheckpointError> {
                let __spoke_ctx = (&#p::Probe::<#checkpoint>::new())
                    .sync_context(__spoke_start, #migrate_arg)?;
                let __spoke_conn = #p::downcast::<#self_ty>(__spoke_conn);
                ::core::result::Result::Ok(#p::Box::pin(async move {
                    let __spoke_ret = <#self_ty>::#fn_ident(&*__spoke_conn, &__spoke_ctx).await;
                    (&#p::probe_of(&__spoke_ret)).sync_result(__spoke_ret)
                }))
            }
        };

        let name = &self.name;
        let description = &self.description;
        let modes = self.modes.iter().map(|m| match m {
            Mode::Full => quote!(#p::SyncMode::Full),
            Mode::Incremental => quote!(#p::SyncMode::Incremental),
            Mode::Realtime => quote!(#p::SyncMode::Realtime),
        });
        let source_type = match &self.source_type {
            Some(s) => quote!(::core::option::Option::Some(#s)),
            None => quote!(::core::option::Option::None),
        };
        let version = Literal::u32_unsuffixed(self.version);
        let migrates = self.migrate.is_some();
        let error_budget = Literal::f64_suffixed(self.error_budget);
        let sweep = self.sweep.iter().map(|m| match m {
            Mode::Full => quote!(#p::SyncMode::Full),
            Mode::Incremental => quote!(#p::SyncMode::Incremental),
            Mode::Realtime => quote!(#p::SyncMode::Realtime),
        });
        let location =
            quote_spanned!(self.name_span=> ::core::concat!(::core::file!(), ":", ::core::line!()));
        let entry = quote! {
            #(#cfg)*
            #p::SyncDef {
                name: #name,
                description: #description,
                modes: &[#(#modes),*],
                source_type: #source_type,
                checkpoint_version: #version,
                migrates: #migrates,
                error_budget: #error_budget,
                sweep: &[#(#sweep),*],
                checkpoint_schema: || (&#p::Probe::<#checkpoint>::new()).checkpoint_schema(),
                extra_schema: #extra_schema,
                attributes_schema: #attributes_schema,
                start: #start_ident,
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

    fn parse_method(attr_args: TokenStream, method: TokenStream) -> syn::Result<SyncFn> {
        crate::errors::parse_method::<SyncArgs, _>(attr_args, method, parse)
    }

    fn only_error(args: TokenStream) -> String {
        let errors = messages(parse_method(
            args,
            quote!(
                async fn files(&self, ctx: &SyncContext<Cursor>) {}
            ),
        ));
        assert_eq!(errors.len(), 1, "{errors:#?}");
        errors.into_iter().next().unwrap()
    }

    fn budget(args: TokenStream) -> f64 {
        parse_method(
            args,
            quote!(
                async fn files(&self, ctx: &SyncContext) {}
            ),
        )
        .unwrap()
        .error_budget
    }

    #[test]
    fn defaults_come_from_the_fn() {
        let s = parse_method(
            quote!(),
            quote! {
                /// Index every file.
                async fn r#files(&self, ctx: &SyncContext<Cursor>) -> Result<(), ActionError> { Ok(()) }
            },
        )
        .unwrap();
        assert_eq!(s.name, "files");
        assert_eq!(s.description, "Index every file.");
        assert_eq!(s.modes, [Mode::Full]);
        assert_eq!(s.source_type, None);
        assert_eq!(s.version, 1);
        assert!(s.migrate.is_none());
        assert_eq!(s.error_budget, 0.0);
        assert!(s.sweep.is_empty());
        let checkpoint = s.checkpoint.unwrap();
        assert_eq!(quote!(#checkpoint).to_string(), "Cursor");
        assert!(s.output.is_some());
    }

    #[test]
    fn arguments_override_the_defaults() {
        let s = parse_method(
            quote!(
                modes = "incremental, full,realtime",
                sweep,
                version = 2,
                migrate = Self::upgrade,
                error_budget = "5%",
                source_type = "file_system",
                name = "docs",
                description = "D."
            ),
            quote!(
                async fn files(&self, ctx: &spoke::sync::SyncContext) {}
            ),
        )
        .unwrap();
        assert_eq!((s.name.as_str(), s.description.as_str()), ("docs", "D."));
        assert_eq!(s.modes, [Mode::Incremental, Mode::Full, Mode::Realtime]);
        assert_eq!(s.source_type.as_deref(), Some("file_system"));
        assert_eq!(s.version, 2);
        assert!(s.migrate.is_some());
        assert_eq!(s.error_budget, 0.05);
        assert_eq!(s.sweep, [Mode::Full]);
        assert!(s.checkpoint.is_none());
        assert!(s.output.is_none());
    }

    #[test]
    fn error_budgets() {
        assert_eq!(budget(quote!(error_budget = "0.5%")), 0.005);
        assert_eq!(budget(quote!(error_budget = "12.3 %")), 0.123);
        assert_eq!(budget(quote!(error_budget = "100%")), 1.0);
        assert_eq!(budget(quote!(error_budget = 0.25)), 0.25);
        assert_eq!(budget(quote!(error_budget = 1)), 1.0);
        assert_eq!(budget(quote!(error_budget = 0)), 0.0);
        let e = only_error(quote!(error_budget = 5));
        assert!(
            e.contains("out of range") && e.contains("error_budget = \"5%\"` (or `0.05`)"),
            "{e}"
        );
        let e = only_error(quote!(error_budget = "150%"));
        assert!(e.contains("out of range"), "{e}");
        let e = only_error(quote!(error_budget = -0.1));
        assert!(e.starts_with("error budget `-0.1` is out of range"), "{e}");
        let e = only_error(quote!(error_budget = "-1%"));
        assert!(e.contains("out of range"), "{e}");
        let e = only_error(quote!(error_budget = "0.05"));
        assert!(e.contains("drop the quotes (`error_budget = 0.05`)"), "{e}");
        let e = only_error(quote!(error_budget = "five%"));
        assert!(e.contains("is not a percentage"), "{e}");
        let e = only_error(quote!(error_budget = true));
        assert!(e.starts_with("expected a percentage"), "{e}");
    }

    #[test]
    fn argument_values_are_checked() {
        let e = only_error(quote!(modes = "full, incremental, realtme"));
        assert!(
            e.starts_with("unknown sync mode `realtme`") && e.ends_with("did you mean `realtime`?"),
            "{e}"
        );
        let e = only_error(quote!(modes = "full, full"));
        assert!(e.contains("listed twice"), "{e}");
        let e = only_error(quote!(modes = " , "));
        assert!(e.contains("at least one mode"), "{e}");
        let e = only_error(quote!(source_type = "File System"));
        assert!(e.ends_with("try `file_system`"), "{e}");
        let e = only_error(quote!(version = 0));
        assert!(e.starts_with("checkpoint versions start at 1"), "{e}");
        let e = only_error(quote!(version = "2"));
        assert!(e.contains("`version = 2`"), "{e}");
        let e = only_error(quote!(migrate = Self::upgrade));
        assert!(e.contains("nothing older to migrate from"), "{e}");
        let e = only_error(quote!(version = 1, migrate = Self::upgrade));
        assert!(e.contains("nothing older to migrate from"), "{e}");
        let e = only_error(quote!(modes = "incremental", sweep));
        assert!(e.starts_with("`sweep` would never run"), "{e}");
        let e = only_error(quote!(modes = "full", sweep = "full, incremental"));
        assert!(e.starts_with("`sweep` names the `incremental` mode, which this sync does not have (its modes: full)"), "{e}");
        let e = only_error(quote!(modes = "full, realtime", sweep = "realtime"));
        assert!(e.starts_with("a `realtime` run never completes"), "{e}");
        let s = parse_method(
            quote!(modes = "full, incremental", sweep = "full, incremental"),
            quote!(
                async fn files(&self, ctx: &SyncContext) {}
            ),
        )
        .unwrap();
        assert_eq!(s.sweep, [Mode::Full, Mode::Incremental]);
    }

    #[test]
    fn every_mistake_is_reported() {
        let errors = messages(parse_method(
            quote!(
                name = "",
                modes = "ful",
                migrate = upgrade,
                error_budget = 2.0
            ),
            quote!(
                fn files<T>(&mut self, ctx: &SyncContext<Cursor>, ctx2: &SyncContext, n: u32) {}
            ),
        ));
        assert_eq!(errors.len(), 9, "{errors:#?}");
        assert!(errors[0].contains("must not be empty"), "{}", errors[0]);
        assert!(errors[1].ends_with("did you mean `full`?"), "{}", errors[1]);
        assert!(errors[2].contains("nothing older"), "{}", errors[2]);
        assert!(errors[3].contains("out of range"), "{}", errors[3]);
        assert!(
            errors[4].contains("must be an `async fn`")
                && errors[4].ends_with("write `async fn files(&self, ctx: &SyncContext<Cursor>)`"),
            "{}",
            errors[4]
        );
        assert!(errors[5].contains("cannot be generic"), "{}", errors[5]);
        assert!(
            errors[6].starts_with("`&mut self` is not allowed"),
            "{}",
            errors[6]
        );
        assert!(errors[7].contains("taken twice"), "{}", errors[7]);
        assert!(
            errors[8].starts_with("a sync takes no parameters besides"),
            "{}",
            errors[8]
        );
    }

    #[test]
    fn the_context_is_required_and_written_one_way() {
        let errors = messages(parse_method(
            quote!(),
            quote!(
                async fn files(ctx: &Context) {}
            ),
        ));
        assert_eq!(errors.len(), 2, "{errors:#?}");
        assert!(
            errors[0].starts_with("`files` has no `self`"),
            "{}",
            errors[0]
        );
        assert!(errors[1].contains("not `&Context`"), "{}", errors[1]);

        let errors = messages(parse_method(
            quote!(),
            quote!(
                async fn files(&self) {}
            ),
        ));
        assert_eq!(errors.len(), 1, "{errors:#?}");
        assert!(
            errors[0].starts_with("`files` takes no `ctx: &SyncContext<C>`")
                && errors[0].contains("`async fn files(&self, ctx: &SyncContext<MyCheckpoint>)`"),
            "{}",
            errors[0]
        );

        let errors = messages(parse_method(
            quote!(),
            quote!(
                async fn files(self, ctx: SyncContext<A, B>, other: &mut SyncContext) {}
            ),
        ));
        assert_eq!(errors.len(), 4, "{errors:#?}");
        assert!(
            errors[0].starts_with("`self` by value is not allowed"),
            "{}",
            errors[0]
        );
        assert!(errors[1].contains("by reference"), "{}", errors[1]);
        assert!(errors[2].contains("takes one type"), "{}", errors[2]);
        assert!(errors[3].contains("taken twice"), "{}", errors[3]);
    }

    #[test]
    fn self_is_replaced_in_generated_items() {
        let s = parse_method(
            quote!(version = 2, migrate = Self::upgrade),
            quote!(
                async fn files(&self, ctx: &SyncContext<Option<Self>>) {}
            ),
        )
        .unwrap();
        let self_ty: Type = syn::parse_quote!(Files);
        let (items, _) = s.expand(&syn::parse_quote!(::spoke), &self_ty);
        let text = items.to_string();
        assert!(!text.contains("Self"), "{text}");
        assert!(text.contains("< Files > :: upgrade"), "{text}");
        assert!(text.contains("Option < Files >"), "{text}");
    }

    #[test]
    fn document_field_types_are_types_or_strings_of_types() {
        let s = parse_method(
            quote!(
                extra = crate::Fields,
                attributes = "BTreeMap<String, Vec<Self>>"
            ),
            quote!(
                async fn files(&self, ctx: &SyncContext) {}
            ),
        )
        .unwrap();
        let extra = s.extra.as_ref().unwrap();
        assert_eq!(quote!(#extra).to_string(), "crate :: Fields");
        let self_ty: Type = syn::parse_quote!(Files);
        let (items, entry) = s.expand(&syn::parse_quote!(::spoke), &self_ty);
        let items = items.to_string();
        assert!(
            items.contains("assert_document_fields :: < crate :: Fields >"),
            "{items}"
        );
        assert!(
            items.contains("BTreeMap < String , Vec < Files > >"),
            "{items}"
        );
        assert!(
            entry.to_string().contains("document_fields_schema"),
            "{entry}"
        );
        let error = crate::attrs::from_tokens::<SyncArgs>(quote!(extra = 5))
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with("expected a type, e.g. `extra = TicketFields`"),
            "{error}"
        );
        let error = crate::attrs::from_tokens::<SyncArgs>(quote!(attributes = "Vec<"))
            .unwrap_err()
            .to_string();
        assert!(error.contains("unexpected end of input"), "{error}");
    }
}
