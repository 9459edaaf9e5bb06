//! `#[connector(...)]` on a struct: parse the struct and its `#[config_field]`s,
//! check the rules, generate the `Connector` impl and its registration.

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Attribute, Fields, Ident, ItemStruct, LitStr, Type};

use crate::attrs::{self, ConfigFieldArgs, ConnectorArgs, DefaultArg};
use crate::docs::doc_of;
use crate::errors::Errors;
use crate::spans::respan;
use crate::{names, types};

/// A parsed connector struct.
pub struct ConnectorStruct {
    pub ident: Ident,
    pub vis: syn::Visibility,
    pub krate: syn::Path,
    pub name: String,
    pub version: Option<LitStr>,
    pub display_name: String,
    pub description: String,
    /// The kinds of source it serves (`source_types = "jira, confluence"`).
    pub source_types: Vec<String>,
    pub init: Option<syn::Path>,
    /// The buckets of its store.
    pub buckets: Vec<Bucket>,
    pub fields: Vec<Field>,
}

/// A bucket of the connector's store.
pub struct Bucket {
    pub name: String,
    pub ttl_ms: Option<u64>,
}

/// One field of the struct.
pub struct Field {
    pub ident: Ident,
    pub vis: syn::Visibility,
    pub ty: Type,
    pub cfg: Vec<Attribute>,
    pub kind: FieldKind,
}

/// Config or state.
pub enum FieldKind {
    State,
    Config(Box<ConfigField>),
}

/// A `#[config_field]`.
pub struct ConfigField {
    pub ty: Type,
    /// `T` of `Option<T>`.
    pub optional_inner: Option<Type>,
    pub env: String,
    pub default: Option<DefaultArg>,
    pub secret: Option<Span>,
    pub description: String,
    pub label: Option<String>,
    pub placeholder: Option<String>,
    pub example: Option<String>,
    pub advanced: bool,
}

const HELPER: &str = "config_field";

/// Parses and checks; errors are accumulated, each at the user's token.
pub fn parse(args: TokenStream, item: &ItemStruct) -> syn::Result<ConnectorStruct> {
    let mut errors = Errors::new();
    let parsed = errors.handle(attrs::from_tokens::<ConnectorArgs>(args));
    // When the arguments do not parse (say `nmae = "x"`), their error (with its
    // "did you mean `name`?") is the one to show: a "missing `name`" on top
    // would only repeat it.
    let args_ok = parsed.is_some();
    let args = parsed.unwrap_or_default();
    let krate = args
        .krate
        .map(|p| p.0)
        .unwrap_or_else(|| syn::parse_quote!(::spoke));

    let name = match &args.name {
        Some(lit) => {
            let value = lit.value();
            if !names::is_valid_connector_name(&value) {
                errors.spanned(
                    lit,
                    format!(
                        "invalid connector name `{value}`: names match `[a-z][a-z0-9_-]*`; try `{}`",
                        names::suggest_connector_name(&value)
                    ),
                );
            }
            value
        }
        None => {
            let suggestion = names::suggest_connector_name(&item.ident.to_string());
            if args_ok {
                errors.spanned(
                    &item.ident,
                    format!("missing `name`: write `#[connector(name = \"{suggestion}\")]`"),
                );
            }
            suggestion
        }
    };
    if !item.generics.params.is_empty() || item.generics.where_clause.is_some() {
        errors.spanned(
            &item.generics,
            "a connector cannot be generic: the registry needs one concrete type; put the type parameter in a state field's type instead",
        );
    }

    let named = match &item.fields {
        Fields::Named(named) => Some(&named.named),
        Fields::Unit => None,
        Fields::Unnamed(unnamed) => {
            let message = "`#[config_field]` needs a named field: a connector is a struct with named fields, e.g. `struct Files { root: PathBuf }`";
            match unnamed
                .unnamed
                .iter()
                .flat_map(|f| &f.attrs)
                .find(|a| a.path().is_ident(HELPER))
            {
                Some(attr) => errors.spanned(attr, message),
                None => errors.at(unnamed.paren_token.span.join(), message),
            }
            None
        }
    };

    let mut fields = Vec::new();
    for field in named.into_iter().flatten() {
        let Some(ident) = field.ident.clone() else {
            continue;
        };
        let cfg = field
            .attrs
            .iter()
            .filter(|a| a.path().is_ident("cfg"))
            .cloned()
            .collect();
        let mut helpers = field.attrs.iter().filter(|a| a.path().is_ident(HELPER));
        let kind = match helpers.next() {
            None => FieldKind::State,
            Some(attr) => {
                if let Some(second) = helpers.next() {
                    errors.spanned(
                        second,
                        "duplicate `#[config_field]`: merge the two into one",
                    );
                }
                let args: ConfigFieldArgs =
                    errors.handle(attrs::from_attr(attr)).unwrap_or_default();
                FieldKind::Config(Box::new(config_field(
                    &mut errors,
                    &name,
                    &ident,
                    field,
                    args,
                )))
            }
        };
        fields.push(Field {
            ident,
            vis: field.vis.clone(),
            ty: field.ty.clone(),
            cfg,
            kind,
        });
    }

    let description = args
        .description
        .map(|d| d.value())
        .unwrap_or_else(|| doc_of(&item.attrs));
    let display_name = args
        .display_name
        .map(|d| d.value())
        .unwrap_or_else(|| names::display_name(&name));
    let source_types = match &args.source_types {
        Some(lit) => crate::sync::parse_source_types(&mut errors, lit),
        None => Vec::new(),
    };
    let buckets = args
        .buckets
        .map(|b| buckets(&mut errors, b.0))
        .unwrap_or_default();
    errors.finish_with(ConnectorStruct {
        ident: item.ident.clone(),
        vis: item.vis.clone(),
        krate,
        name,
        version: args.version,
        display_name,
        description,
        source_types,
        init: args.init.map(|p| p.0),
        buckets,
        fields,
    })
}

/// Checks the declared buckets: lower-case names, each once, TTLs of a
/// second or more.
fn buckets(errors: &mut Errors, declared: Vec<attrs::BucketArg>) -> Vec<Bucket> {
    let mut out: Vec<Bucket> = Vec::new();
    for bucket in declared {
        let name = types::unraw(&bucket.name);
        let valid = name.starts_with(|c: char| c.is_ascii_lowercase())
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !valid {
            let suggestion = names::suggest_connector_name(&name).replace('-', "_");
            errors.spanned(
                &bucket.name,
                format!(
                    "invalid bucket name `{name}`: bucket names match `[a-z][a-z0-9_]*`; try `{suggestion}`"
                ),
            );
        }
        if out.iter().any(|b| b.name == name) {
            errors.spanned(
                &bucket.name,
                format!("duplicate bucket `{name}`: declare each bucket once"),
            );
        }
        let ttl_ms = bucket.ttl.as_ref().and_then(|lit| {
            let text = lit.value();
            match crate::duration::parse(&text) {
                Ok(d) if d < std::time::Duration::from_secs(1) => {
                    errors.spanned(
                        lit,
                        format!("a bucket's ttl is at least 1s (`{text}` is shorter); e.g. `ttl = \"1h\"`"),
                    );
                    None
                }
                Ok(d) => Some(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
                Err(e) => {
                    errors.spanned(lit, crate::action::duration_error("ttl", &text, &e));
                    None
                }
            }
        });
        out.push(Bucket { name, ttl_ms });
    }
    out
}

fn config_field(
    errors: &mut Errors,
    connector: &str,
    ident: &Ident,
    field: &syn::Field,
    args: ConfigFieldArgs,
) -> ConfigField {
    let key = types::unraw(ident);
    let env = match &args.env {
        Some(lit) => {
            let env = lit.value();
            if !names::is_valid_env(&env) {
                errors.spanned(lit, format!("invalid environment variable name `{env}`: use letters, digits and `_`, not starting with a digit"));
            }
            env
        }
        None => names::default_env(connector, &key),
    };
    let required = types::option_inner(&field.ty).is_none() && args.default.is_none();
    if required && args.advanced.is_present() {
        errors.at(
            args.advanced.span(),
            format!(
                "config field `{key}` is required, so it cannot be `advanced`: forms hide advanced fields, \
                 and an operator could not fill in what they cannot see; \
                 give it a `default = ...`, make it `Option<_>`, or remove `advanced`"
            ),
        );
    }
    let value_ty = types::option_inner(&field.ty).unwrap_or(&field.ty);
    if let (true, Some(DefaultArg::Expr(syn::Expr::Lit(lit)))) =
        (types::is_duration(value_ty), &args.default)
        && let syn::Lit::Str(text) = &lit.lit
        && let Err(why) = crate::duration::parse(&text.value())
    {
        errors.spanned(text, format!("invalid default for `{key}`: {why}"));
    }
    // A secret may have a default: it stays out of manifests (see `expand`).
    ConfigField {
        ty: field.ty.clone(),
        optional_inner: types::option_inner(&field.ty).cloned(),
        env,
        default: args.default,
        secret: args.secret.is_present().then(|| args.secret.span()),
        description: args
            .description
            .map(|d| d.value())
            .unwrap_or_else(|| doc_of(&field.attrs)),
        label: args.label.map(|l| l.value()),
        placeholder: args.placeholder.map(|l| l.value()),
        example: args.example.map(|l| l.value()),
        advanced: args.advanced.is_present(),
    }
}

/// The struct as the user wrote it, minus our helper attributes.
pub fn strip(item: &ItemStruct) -> ItemStruct {
    let mut item = item.clone();
    for field in item.fields.iter_mut() {
        field.attrs.retain(|a| !a.path().is_ident(HELPER));
    }
    item
}

/// Removes our helper attributes from the fields of an enum's variants or of
/// a union (where `#[connector]` was misplaced). When there were any, returns
/// the struct they belong in, as a fix to show: `struct Files { #[config_field]
/// root: String }`, from the type's name and the first such field.
pub fn strip_nested(item: &mut syn::Item) -> Option<String> {
    let (ident, fields): (&Ident, Vec<&mut syn::Field>) = match item {
        syn::Item::Enum(e) => (
            &e.ident,
            e.variants
                .iter_mut()
                .flat_map(|v| v.fields.iter_mut())
                .collect(),
        ),
        syn::Item::Union(u) => (&u.ident, u.fields.named.iter_mut().collect()),
        _ => return None,
    };
    let mut first = None;
    for field in fields {
        let before = field.attrs.len();
        field.attrs.retain(|a| !a.path().is_ident(HELPER));
        if first.is_none() && field.attrs.len() != before {
            let name = field
                .ident
                .as_ref()
                .map_or_else(|| "field".to_owned(), ToString::to_string);
            let field_ty = &field.ty;
            let ty = quote!(#field_ty).to_string();
            let ty = [
                (" < ", "<"),
                ("< ", "<"),
                (" >", ">"),
                (" :: ", "::"),
                (" ,", ","),
            ]
            .iter()
            .fold(ty, |t, (from, to)| t.replace(from, to));
            first = Some(format!("struct {ident} {{ #[config_field] {name}: {ty} }}"));
        }
    }
    first
}

/// Generates the config struct, the `Connector` impl, the config field
/// table and the registration.
pub fn expand(model: &ConnectorStruct) -> TokenStream {
    let ConnectorStruct {
        ident, krate, name, ..
    } = model;
    let p = quote!(#krate::__private);
    let version = match &model.version {
        Some(v) => quote!(#v),
        None => quote!(::core::env!("CARGO_PKG_VERSION")),
    };
    let (display_name, description) = (&model.display_name, &model.description);
    let source_types = &model.source_types;
    let buckets = model.buckets.iter().map(|b| {
        let name = &b.name;
        let ttl = match b.ttl_ms {
            Some(ms) => quote!(::core::option::Option::Some(#ms)),
            None => quote!(::core::option::Option::None),
        };
        quote!(#p::BucketDef { name: #name, ttl_ms: #ttl })
    });
    let config_ident = format_ident!("{}Config", ident);

    // The dispatch traits, once for the block: the schema, parse, default
    // and secret probes resolve through them.
    let config_probes = quote! {
        #[allow(unused_imports)]
        use #p::{
            ConfigUnsupported as _, ConfigViaFromStr as _, ConfigViaHuman as _, ConfigViaJson as _,
            DefaultTextFrom as _, DefaultTextHuman as _, HideDefault as _, NotSecret as _,
            ShowDefault as _, ShowHumanDefault as _,
        };
    };
    let mut field_consts = Vec::new();
    let mut field_refs = Vec::new();
    let mut loads = Vec::new();
    let mut config_fields = Vec::new();
    let mut config_inits = Vec::new();
    // `field: config.field` for config fields, for every way of building.
    let mut moves = Vec::new();
    let mut state_defaults = Vec::new();
    let mut state_bounds = Vec::new();
    let mut state_values = Vec::new();
    for field in &model.fields {
        let (fident, cfg, fty) = (&field.ident, &field.cfg, &field.ty);
        let FieldKind::Config(cf) = &field.kind else {
            // Spanned at the type: a state type without `Default` (and no
            // init hook building it) is reported there.
            let default = quote_spanned!(fty.span()=> #p::state_default::<#fty>());
            state_defaults.push(quote!(#(#cfg)* #fident: #default));
            if cfg.is_empty() {
                state_bounds
                    .push(quote!(#p::StateDefault<__SpokeM, #fty>: ::core::default::Default));
                state_values.push(quote!(#fident: #p::StateDefault::<__SpokeM, #fty>::value()));
            } else {
                // A where clause cannot carry a `#[cfg]`: such a field needs
                // `Default` whatever the hook.
                state_values.push(quote!(#(#cfg)* #fident: ::core::default::Default::default()));
            }
            continue;
        };
        let fvis = &field.vis;
        config_fields.push(quote!(#(#cfg)* #fvis #fident: #fty));
        moves.push(quote!(#(#cfg)* #fident: __spoke_config.#fident));
        let key = types::unraw(fident);
        let def = format_ident!("__SPOKE_FIELD_{}", key.to_uppercase());
        let value = format_ident!("__spoke_value_{}", key);
        let value_ty = cf.optional_inner.as_ref().unwrap_or(&cf.ty);
        let env = &cf.env;
        let required = cf.optional_inner.is_none() && cf.default.is_none();
        let declared_secret = cf.secret.is_some();
        let fdesc = &cf.description;
        let opt = |o: &Option<String>| match o {
            Some(s) => quote!(::core::option::Option::Some(#s)),
            None => quote!(::core::option::Option::None),
        };
        let (label, placeholder, example) =
            (opt(&cf.label), opt(&cf.placeholder), opt(&cf.example));
        let advanced = cf.advanced;
        let default_value = cf.default.as_ref().map(|d| default_expr(&p, d, value_ty));
        let shown_default = match (&default_value, declared_secret) {
            (Some(dv), false) => quote!(|| {
                let __spoke_default: #value_ty = #dv;
                (&&&#p::DefaultProbe(&__spoke_default)).show_default()
            }),
            _ => quote!(|| ::core::option::Option::None),
        };
        // With its own cfgs: a bare `#[cfg]` before nothing would attach to
        // whatever item comes next.
        let secret_check = cf.secret.map(|span| {
            let ty = &cf.ty;
            quote_spanned!(span=> #(#cfg)* const _: () = #p::assert_secret::<#ty>();)
        });
        field_consts.push(quote! {
            #(#cfg)*
            #[allow(non_upper_case_globals)]
            const #def: #p::ConfigFieldDef = #p::ConfigFieldDef {
                key: #key,
                env: #env,
                required: #required,
                // The type alone makes a field secret: `Secret<_>`, through
                // any alias, with or without the `secret` key.
                secret: #declared_secret || #p::SecretProbe::<#value_ty>::IS_SECRET,
                description: #fdesc,
                label: #label,
                placeholder: #placeholder,
                example: #example,
                advanced: #advanced,
                schema: |__spoke_g| (&&&&#p::ConfigProbe::<#value_ty>::new()).config_schema(__spoke_g),
                default: #shown_default,
            };
            #secret_check
        });
        field_refs.push(quote!(#(#cfg)* #def));
        // Spanned at the type: a type that cannot be a config field is
        // reported here, once, with `ConfigFieldType`'s message.
        let parse = quote_spanned!(value_ty.span()=> |__spoke_raw| (&&&&#p::ConfigProbe::<#value_ty>::new()).parse_config(__spoke_raw));
        loads.push(quote!(#(#cfg)* let #value = __spoke_loader.field(&#def, #parse);));
        let init = match (&default_value, cf.optional_inner.is_some()) {
            (None, true) => quote!(#value),
            (None, false) => quote!(match #value {
                ::core::option::Option::Some(__spoke_v) => __spoke_v,
                ::core::option::Option::None => ::core::unreachable!("spoke: a missing required field is reported by the loader"),
            }),
            (Some(dv), false) => quote!(match #value {
                ::core::option::Option::Some(__spoke_v) => __spoke_v,
                ::core::option::Option::None => #dv,
            }),
            (Some(dv), true) => quote!(::core::option::Option::Some(match #value {
                ::core::option::Option::Some(__spoke_v) => __spoke_v,
                ::core::option::Option::None => #dv,
            })),
        };
        config_inits.push(quote!(#(#cfg)* #fident: #init));
    }

    let (build, default_state) = match &model.init {
        None => (
            quote! {
                fn build(__spoke_config: #config_ident) -> impl ::core::future::Future<Output = ::core::result::Result<Self, #p::String>> + ::core::marker::Send {
                    ::core::future::ready(::core::result::Result::Ok(Self { #(#moves,)* #(#state_defaults,)* }))
                }
            },
            quote!(),
        ),
        Some(path) => {
            // Spanned at the user's path: a hook of the wrong shape is
            // reported there, with `InitHook`'s message.
            let call =
                quote_spanned!(path.span()=> #p::run_init::<Self, _, _>(#path, __spoke_config));
            (
                quote! {
                    fn build(__spoke_config: #config_ident) -> impl ::core::future::Future<Output = ::core::result::Result<Self, #p::String>> + ::core::marker::Send {
                        #call
                    }
                },
                // For an `&mut self` hook: the connector with default state.
                // The bounds mention `__SpokeM`, so they are checked only
                // when such a hook needs them.
                quote! {
                    impl<__SpokeM> #p::DefaultState<__SpokeM> for #ident
                    where #(#state_bounds,)*
                    {
                        fn with_default_state(__spoke_config: #config_ident) -> Self {
                            Self { #(#moves,)* #(#state_values,)* }
                        }
                    }
                },
            )
        }
    };
    let vis = &model.vis;
    let config_doc = format!(
        "The loaded configuration of [`{ident}`]: its `#[config_field]`s. Its init hook takes it as `spoke::Config<{ident}>`."
    );

    quote! {
        const _: () = {
            #config_probes
            #(#field_consts)*

            #[allow(non_upper_case_globals)]
            const __SPOKE_FIELDS: &[#p::ConfigFieldDef] = &[#(#field_refs),*];

            #[doc = #config_doc]
            #[allow(dead_code)]
            #vis struct #config_ident {
                #(#config_fields,)*
            }

            impl #p::Connector for #ident {
                const NAME: &'static str = #name;
                const REGISTRATION: #p::ConnectorRegistration = #p::ConnectorRegistration {
                    name: #name,
                    version: #version,
                    display_name: #display_name,
                    description: #description,
                    source_types: &[#(#source_types),*],
                    config_fields: __SPOKE_FIELDS,
                    buckets: &[#(#buckets),*],
                    build: #p::build::<#ident>,
                    check_config: #p::check_config::<#ident>,
                    location: ::core::concat!(::core::file!(), ":", ::core::line!()),
                };
                type Config = #config_ident;

                fn load_config(__spoke_source: &#p::ConfigSource) -> ::core::result::Result<#config_ident, #p::ConfigErrors> {
                    let mut __spoke_loader = #p::ConfigLoader::new(#name, __spoke_source, __SPOKE_FIELDS);
                    #(#loads)*
                    __spoke_loader.finish()?;
                    ::core::result::Result::Ok(#config_ident { #(#config_inits),* })
                }

                #build
            }

            #default_state

            #p::inventory::submit! {
                <#ident as #p::Connector>::REGISTRATION
            }
        };
    }
}

/// The default value as an expression of type `ty`, spanned at the user's
/// default so a wrong type is reported there. A string literal converts with
/// `From<&str>`, through a call without a turbofish: rustc then reports a type
/// that cannot at the string, with `DefaultFromStr`'s message. Every use is
/// where a value of the field's type is expected.
fn default_expr(p: &TokenStream, default: &DefaultArg, ty: &Type) -> TokenStream {
    match default {
        DefaultArg::Trait => {
            quote_spanned!(ty.span()=> <#ty as ::core::default::Default>::default())
        }
        DefaultArg::Expr(syn::Expr::Lit(syn::ExprLit {
            lit: lit @ syn::Lit::Str(_),
            ..
        })) => {
            // Every token of the call at the string, `#p` included: a path
            // that starts at the call site would move the error there.
            // A human format first (a `Duration` reads `"30s"`), else
            // `From<&str>`, whose absence `DefaultFromStr` reports.
            respan(
                quote!((&&#p::DefaultText::<#ty>::new(#lit)).build()),
                lit.span(),
            )
        }
        DefaultArg::Expr(expr) => {
            quote_spanned!(expr.span()=> { let __spoke_default: #ty = #expr; __spoke_default })
        }
    }
}

/// What to emit when parsing failed: the item without our attributes, and
/// (when possible) a stand-in `Connector` impl so code that names the
/// connector does not fail a second time.
pub fn fallback(item: &ItemStruct, args: TokenStream) -> TokenStream {
    let stripped = strip(item);
    let stand_in = fallback_impl(&item.ident, &item.generics, args);
    quote!(#stripped #stand_in)
}

/// A stand-in `Connector` impl for a type whose `#[connector]` failed (any
/// non-generic struct, enum or union): the impl blocks and free actions of
/// the connector then compile, and the user sees only the first error.
pub fn fallback_impl(ident: &Ident, generics: &syn::Generics, args: TokenStream) -> TokenStream {
    let krate = crate_arg(args).unwrap_or_else(|| syn::parse_quote!(::spoke));
    let p = quote!(#krate::__private);
    // A generic type gets a generic stand-in, and says its genericity was
    // reported, so its `#[connector]` impl blocks add no error of their own.
    let generic = !generics.params.is_empty() || generics.where_clause.is_some();
    let mut bounded = generics.clone();
    if generic {
        bounded
            .make_where_clause()
            .predicates
            .push(syn::parse_quote!(
                Self: ::core::marker::Send + ::core::marker::Sync + 'static
            ));
    }
    let (impl_generics, ty_generics, where_clause) = bounded.split_for_impl();
    let reported = generic.then(|| {
        let (impl_generics, ty_generics, where_clause) = generics.split_for_impl();
        quote!(impl #impl_generics #p::GenericConnectorReported for #ident #ty_generics #where_clause {})
    });
    quote! {
        #reported
        impl #impl_generics #p::Connector for #ident #ty_generics #where_clause {
            const NAME: &'static str = "invalid";
            const REGISTRATION: #p::ConnectorRegistration = #p::ConnectorRegistration {
                name: "invalid", version: "", display_name: "", description: "", source_types: &[], config_fields: &[], buckets: &[],
                build: #p::build::<Self>, check_config: #p::check_config::<Self>, location: "",
            };
            type Config = ();
            fn load_config(_: &#p::ConfigSource) -> ::core::result::Result<(), #p::ConfigErrors> {
                ::core::unimplemented!("this connector failed to compile")
            }
            fn build(_: ()) -> impl ::core::future::Future<Output = ::core::result::Result<Self, #p::String>> + ::core::marker::Send {
                // Never built: this connector failed to compile.
                ::core::future::pending()
            }
        }
    }
}

/// `crate = path` from arguments that may not parse as a whole (`nmae = ..`).
fn crate_arg(args: TokenStream) -> Option<syn::Path> {
    use darling::FromMeta;
    let items = darling::ast::NestedMeta::parse_meta_list(args).ok()?;
    items.iter().find_map(|item| match item {
        darling::ast::NestedMeta::Meta(syn::Meta::NameValue(nv)) if nv.path.is_ident("crate") => {
            attrs::PathArg::from_expr(&nv.value).ok().map(|p| p.0)
        }
        _ => None,
    })
}
