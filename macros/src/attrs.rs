//! The arguments of Spoke's attributes, as darling reads them.
//!
//! Unknown keys are errors with a "did you mean" (darling's `suggestions`).

use darling::ast::NestedMeta;
use darling::util::Flag;
use darling::{Error, FromMeta};
use syn::{Expr, Lit, LitStr, Meta};

/// A path given as `key = some::path` (or the legacy `key = "some::path"`).
#[derive(Debug, Clone)]
pub struct PathArg(pub syn::Path);

impl FromMeta for PathArg {
    fn from_expr(expr: &Expr) -> darling::Result<Self> {
        match expr {
            Expr::Path(p) if p.qself.is_none() => Ok(PathArg(p.path.clone())),
            Expr::Lit(syn::ExprLit {
                lit: Lit::Str(s), ..
            }) => s
                .parse()
                .map(PathArg)
                .map_err(|e| Error::custom(e).with_span(s)),
            Expr::Group(g) => Self::from_expr(&g.expr),
            other => Err(
                Error::custom("expected a path, e.g. `Self::init` or `MyConnector`")
                    .with_span(other),
            ),
        }
    }
}

/// A type: `Ticket`, `crate::Ticket`, or any type as a string,
/// `"BTreeMap<String, String>"`.
#[derive(Debug, Clone)]
pub struct TypeArg(pub syn::Type);

impl FromMeta for TypeArg {
    fn from_expr(expr: &Expr) -> darling::Result<Self> {
        match expr {
            Expr::Path(p) => Ok(TypeArg(syn::Type::Path(syn::TypePath {
                qself: p.qself.clone(),
                path: p.path.clone(),
            }))),
            Expr::Lit(syn::ExprLit {
                lit: Lit::Str(s), ..
            }) => s
                .parse()
                .map(TypeArg)
                .map_err(|e| Error::custom(e).with_span(s)),
            Expr::Group(g) => Self::from_expr(&g.expr),
            other => Err(Error::custom(
                "expected a type, e.g. `extra = TicketFields`; write a generic type as a string: `extra = \"BTreeMap<String, String>\"`",
            )
            .with_span(other)),
        }
    }
}

/// A value taken verbatim, for a parser that checks it itself (darling's
/// own `Expr` would parse the text of a string literal as an expression).
#[derive(Debug, Clone)]
pub struct RawExpr(pub Expr);

impl FromMeta for RawExpr {
    fn from_expr(expr: &Expr) -> darling::Result<Self> {
        match expr {
            Expr::Group(g) => Self::from_expr(&g.expr),
            other => Ok(RawExpr(other.clone())),
        }
    }
}

/// `default` (use `Default::default()`) or `default = <expr>`, taken verbatim.
#[derive(Debug, Clone)]
pub enum DefaultArg {
    /// `default`
    Trait,
    /// `default = <expr>`
    Expr(Expr),
}

impl FromMeta for DefaultArg {
    fn from_meta(item: &Meta) -> darling::Result<Self> {
        match item {
            Meta::Path(_) => Ok(DefaultArg::Trait),
            Meta::NameValue(nv) => Ok(DefaultArg::Expr(nv.value.clone())),
            Meta::List(list) => {
                Err(Error::custom("write `default` or `default = <value>`").with_span(list))
            }
        }
    }
}

/// `#[connector(...)]` on a struct.
#[derive(Debug, Default, FromMeta)]
pub struct ConnectorArgs {
    pub name: Option<LitStr>,
    pub version: Option<LitStr>,
    pub display_name: Option<LitStr>,
    pub description: Option<LitStr>,
    pub source_types: Option<LitStr>,
    pub init: Option<PathArg>,
    /// `buckets(cursors, cache(ttl = "1h"))`: the buckets of `ctx.store()`.
    pub buckets: Option<BucketsArg>,
    #[darling(rename = "crate")]
    pub krate: Option<PathArg>,
}

/// `buckets(name, name(ttl = "1h"), ...)`.
#[derive(Debug, Default)]
pub struct BucketsArg(pub Vec<BucketArg>);

/// One bucket: its name (as written) and its options.
#[derive(Debug)]
pub struct BucketArg {
    pub name: syn::Ident,
    pub ttl: Option<LitStr>,
}

/// The options of one bucket.
#[derive(Debug, Default, FromMeta)]
struct BucketOptions {
    ttl: Option<LitStr>,
}

const BUCKET_FORM: &str = "write each bucket as `name` or `name(ttl = \"1h\")`, e.g. `buckets(cursors, cache(ttl = \"1h\"))`";

impl FromMeta for BucketsArg {
    fn from_list(items: &[NestedMeta]) -> darling::Result<Self> {
        let mut out = Vec::new();
        let mut errors = Error::accumulator();
        for item in items {
            let bucket = match item {
                NestedMeta::Meta(Meta::Path(path)) => match path.get_ident() {
                    Some(name) => Ok(BucketArg {
                        name: name.clone(),
                        ttl: None,
                    }),
                    None => Err(Error::custom(BUCKET_FORM).with_span(path)),
                },
                NestedMeta::Meta(Meta::List(list)) => match list.path.get_ident() {
                    Some(name) => NestedMeta::parse_meta_list(list.tokens.clone())
                        .map_err(Error::from)
                        .and_then(|items| BucketOptions::from_list(&items))
                        .map_err(|e| e.with_span(list))
                        .map(|options| BucketArg {
                            name: name.clone(),
                            ttl: options.ttl,
                        }),
                    None => Err(Error::custom(BUCKET_FORM).with_span(&list.path)),
                },
                NestedMeta::Meta(other) => Err(Error::custom(BUCKET_FORM).with_span(other)),
                NestedMeta::Lit(lit) => Err(Error::custom(BUCKET_FORM).with_span(lit)),
            };
            if let Some(bucket) = errors.handle(bucket) {
                out.push(bucket);
            }
        }
        errors.finish_with(BucketsArg(out))
    }

    fn from_word() -> darling::Result<Self> {
        Err(Error::custom(BUCKET_FORM))
    }
}

/// `#[connector(...)]` on an impl block.
#[derive(Debug, Default, FromMeta)]
pub struct ConnectorImplArgs {
    /// Also emit the action set as an associated const with this name (manual registration).
    pub actions: Option<syn::Ident>,
    #[darling(rename = "crate")]
    pub krate: Option<PathArg>,
}

/// `#[config_field(...)]` on a struct field.
#[derive(Debug, Default, FromMeta)]
pub struct ConfigFieldArgs {
    pub env: Option<LitStr>,
    pub default: Option<DefaultArg>,
    pub secret: Flag,
    pub description: Option<LitStr>,
    pub label: Option<LitStr>,
    pub placeholder: Option<LitStr>,
    pub example: Option<LitStr>,
    pub advanced: Flag,
}

/// `#[action(...)]`.
#[derive(Debug, Default, FromMeta)]
pub struct ActionArgs {
    pub name: Option<LitStr>,
    pub description: Option<LitStr>,
    pub read: Flag,
    pub write: Flag,
    pub admin_only: Flag,
    pub hidden: Flag,
    /// `destructive = false`: a write that destroys nothing.
    pub destructive: Option<syn::LitBool>,
    /// Calling it again with the same input changes nothing more.
    pub idempotent: Flag,
    pub timeout: Option<LitStr>,
    /// A fn that returns the Arrow schema of the `#[input]` batch.
    pub input_arrow_schema: Option<PathArg>,
    /// A fn that returns the Arrow schema of the output batch.
    pub output_arrow_schema: Option<PathArg>,
    pub connector: Option<PathArg>,
    #[darling(rename = "crate")]
    pub krate: Option<PathArg>,
}

/// `#[search_operator(...)]`.
#[derive(Debug, Default, FromMeta)]
pub struct SearchOperatorArgs {
    pub name: Option<LitStr>,
    pub attribute: Option<LitStr>,
    pub value_type: Option<LitStr>,
    pub description: Option<LitStr>,
}

/// `#[producer(...)]`.
#[derive(Debug, Default, FromMeta)]
pub struct ProducerArgs {
    pub name: Option<LitStr>,
    pub description: Option<LitStr>,
    /// `"always"` or `"on_failure"` (the default); checked by the producer parser.
    pub restart: Option<LitStr>,
}

/// `#[sync(...)]`. The values are checked by the sync parser, which knows
/// what each may be and says so at the value.
#[derive(Debug, Default, FromMeta)]
pub struct SyncArgs {
    pub name: Option<LitStr>,
    pub description: Option<LitStr>,
    /// `"full, incremental"`: the modes, the default first.
    pub modes: Option<LitStr>,
    pub source_type: Option<LitStr>,
    /// The checkpoint version, an integer from 1.
    pub version: Option<RawExpr>,
    pub migrate: Option<PathArg>,
    /// `"5%"` or a fraction `0.05`.
    pub error_budget: Option<RawExpr>,
    pub sweep: Option<SweepArg>,
    /// The type of its documents' `metadata.extra`.
    pub extra: Option<TypeArg>,
    /// The type of its documents' `attributes`.
    pub attributes: Option<TypeArg>,
}

/// `sweep` (the full mode) or `sweep = "full, incremental"`.
#[derive(Debug, Clone)]
pub enum SweepArg {
    /// The bare word, at its span.
    Word(proc_macro2::Span),
    /// The modes listed.
    Modes(LitStr),
}

impl FromMeta for SweepArg {
    fn from_meta(item: &syn::Meta) -> darling::Result<Self> {
        match item {
            syn::Meta::Path(path) => Ok(SweepArg::Word(syn::spanned::Spanned::span(path))),
            syn::Meta::NameValue(nv) => match &nv.value {
                Expr::Lit(syn::ExprLit {
                    lit: Lit::Str(s), ..
                }) => Ok(SweepArg::Modes(s.clone())),
                other => Err(Error::custom(
                    "write `sweep` (for the full mode) or `sweep = \"full, incremental\"`",
                )
                .with_span(other)),
            },
            syn::Meta::List(list) => Err(Error::custom(
                "write `sweep` (for the full mode) or `sweep = \"full, incremental\"`",
            )
            .with_span(list)),
        }
    }
}

/// Reads the arguments of an attribute macro (`#[connector(...)]` itself).
pub fn from_tokens<T: FromMeta + Default>(tokens: proc_macro2::TokenStream) -> darling::Result<T> {
    if tokens.is_empty() {
        return Ok(T::default());
    }
    let items = NestedMeta::parse_meta_list(tokens)?;
    T::from_list(&items)
}

/// Reads the arguments of a helper attribute (`#[config_field]`, `#[action]` inside an impl).
pub fn from_attr<T: FromMeta + Default>(attr: &syn::Attribute) -> darling::Result<T> {
    match &attr.meta {
        Meta::Path(_) => Ok(T::default()),
        Meta::List(list) => from_tokens(list.tokens.clone()).map_err(|e| e.with_span(list)),
        Meta::NameValue(nv) => {
            Err(Error::custom("expected `#[attr]` or `#[attr(...)]`").with_span(nv))
        }
    }
}
