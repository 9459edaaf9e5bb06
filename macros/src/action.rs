//! Actions and search operators: from a fn's signature and attribute to the
//! generated input type, invoke function and table entry.
//!
//! The same model serves methods in a `#[connector]` impl (`&self`) and free
//! functions declared with `#[action(connector = Type)]` (`conn: &Type`).

use darling::Error;
use darling::error::Accumulator;
use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Attribute, FnArg, Ident, LitStr, Pat, ReturnType, Signature, Type};

use crate::attrs::{ActionArgs, SearchOperatorArgs};
use crate::docs::{doc_of, split_arguments};
use crate::{names, types};

/// How the connector reaches the fn.
#[derive(Clone)]
pub enum Owner {
    /// A method: `&self` of this type.
    Method(Type),
    /// A free fn whose first parameter is `&Type`.
    Free(syn::Path),
}

/// One argument slot of the user's fn, after the receiver.
pub enum Slot {
    Ctx,
    Param(Param),
}

/// One input parameter.
pub struct Param {
    pub ident: Ident,
    pub ty: Type,
    pub doc: Option<String>,
}

/// What the fn returns.
pub enum Output {
    Unit,
    Plain(Type),
    Result(Type),
}

/// Action or search operator specifics.
pub enum Kind {
    Action {
        read: bool,
        admin_only: bool,
        hidden: bool,
        timeout_ms: Option<u64>,
    },
    Operator {
        attribute: String,
        value_type: String,
    },
}

/// A parsed `#[action]` or `#[search_operator]` fn.
pub struct ActionFn {
    pub kind: Kind,
    pub fn_ident: Ident,
    pub name: String,
    pub name_span: Span,
    pub description: String,
    pub cfg: Vec<Attribute>,
    pub owner: Owner,
    pub is_async: bool,
    pub slots: Vec<Slot>,
    /// The single `#[input]` parameter takes the whole input object.
    pub whole_input: bool,
    pub output: Output,
}

const INPUT_ATTR: &str = "input";

/// Parses an action's attribute arguments and signature.
pub fn parse_action(
    errors: &mut Accumulator,
    args: ActionArgs,
    attrs: &[Attribute],
    sig: &Signature,
    owner: Owner,
) -> Option<ActionFn> {
    if let (true, true) = (args.read.is_present(), args.write.is_present()) {
        errors.push(
            Error::custom("an action is `read` or `write`, not both").with_span(&args.write.span()),
        );
    }
    let timeout_ms =
        args.timeout
            .as_ref()
            .and_then(|lit| match crate::duration::parse(&lit.value()) {
                Ok(d) if d.is_zero() => {
                    errors.push(Error::custom("timeout must be greater than zero").with_span(lit));
                    None
                }
                Ok(d) => Some(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
                Err(e) => {
                    errors.push(Error::custom(e).with_span(lit));
                    None
                }
            });
    let kind = Kind::Action {
        read: args.read.is_present(),
        admin_only: args.admin_only.is_present(),
        hidden: args.hidden.is_present(),
        timeout_ms,
    };
    parse_fn(errors, kind, args.name, args.description, attrs, sig, owner)
}

/// Parses a search operator's attribute arguments and signature.
pub fn parse_operator(
    errors: &mut Accumulator,
    args: SearchOperatorArgs,
    attr_span: Span,
    attrs: &[Attribute],
    sig: &Signature,
    owner: Owner,
) -> Option<ActionFn> {
    let attribute = match &args.attribute {
        Some(a) => a.value(),
        None => {
            errors.push(Error::custom(format!("`#[search_operator]` needs the attribute it filters on: `#[search_operator(attribute = \"{}\")]`", sig.ident)).with_span(&attr_span));
            String::new()
        }
    };
    let value_type = match &args.value_type {
        None => "text".to_owned(),
        Some(lit) => {
            let v = lit.value();
            if !["text", "person", "datetime"].contains(&v.as_str()) {
                let hint = ["text", "person", "datetime"]
                    .into_iter()
                    .min_by_key(|k| strsim::levenshtein(k, &v))
                    .unwrap_or("text");
                errors.push(Error::custom(format!("unknown value_type `{v}`: expected `text`, `person` or `datetime`; did you mean `{hint}`?")).with_span(lit));
            }
            v
        }
    };
    let op = parse_fn(
        errors,
        Kind::Operator {
            attribute,
            value_type,
        },
        args.name,
        args.description,
        attrs,
        sig,
        owner,
    )?;
    let inputs: Vec<&Param> = op
        .slots
        .iter()
        .filter_map(|s| {
            if let Slot::Param(p) = s {
                Some(p)
            } else {
                None
            }
        })
        .collect();
    if inputs.len() != 1 || op.whole_input {
        errors.push(Error::custom("a search operator takes exactly one value parameter, e.g. `fn ext(&self, value: String)`").with_span(&sig.paren_token.span.join()));
    }
    Some(op)
}

fn parse_fn(
    errors: &mut Accumulator,
    kind: Kind,
    name: Option<LitStr>,
    description: Option<LitStr>,
    attrs: &[Attribute],
    sig: &Signature,
    owner: Owner,
) -> Option<ActionFn> {
    let (doc_description, arg_docs) = split_arguments(&doc_of(attrs));
    let (name, name_span) = match name {
        Some(lit) => (lit.value(), lit.span()),
        None => (types::unraw(&sig.ident), sig.ident.span()),
    };
    if name.is_empty() {
        errors.push(Error::custom("the name must not be empty").with_span(&name_span));
    }
    if !sig.generics.params.is_empty() {
        errors.push(Error::custom("an action cannot be generic: its input and output types must be known to build its schemas").with_span(&sig.generics));
    }
    if let Some(v) = &sig.variadic {
        errors.push(Error::custom("variadic parameters are not supported").with_span(v));
    }

    let mut inputs = sig.inputs.iter();
    match (&owner, inputs.next()) {
        (Owner::Method(_), Some(FnArg::Receiver(r))) => {
            if r.reference.is_none() || r.mutability.is_some() || r.colon_token.is_some() {
                let what = if r.mutability.is_some() {
                    "`&mut self`"
                } else {
                    "this receiver"
                };
                errors.push(
                    Error::custom(format!(
                        "{what} is not allowed: actions take `&self`, because one connector serves many calls at once; keep mutable state behind a `Mutex` or an atomic"
                    ))
                    .with_span(r),
                );
            }
        }
        (Owner::Method(_), first) => {
            let at = first.map(|f| f.span()).unwrap_or(sig.ident.span());
            errors.push(
                Error::custom(format!(
                    "`{}` has no `self`: an action in a `#[connector]` impl takes `&self` first",
                    sig.ident
                ))
                .with_span(&at),
            );
            // Put the first argument back: it is a parameter.
            inputs = sig.inputs.iter();
        }
        (Owner::Free(path), first) => match first {
            Some(FnArg::Typed(pt)) if matches!(&*pt.ty, Type::Reference(r) if r.mutability.is_none()) =>
                {}
            other => {
                let at = other.map(|f| f.span()).unwrap_or(sig.ident.span());
                let conn = quote!(#path).to_string().replace(' ', "");
                errors.push(
                    Error::custom(format!(
                        "the first parameter of a free action is its connector: `conn: &{conn}`"
                    ))
                    .with_span(&at),
                );
            }
        },
    }

    let mut slots = Vec::new();
    let mut whole_input = false;
    let mut ctx_seen = false;
    for input in inputs {
        let FnArg::Typed(pt) = input else {
            errors.push(Error::custom("`self` must come first").with_span(input));
            continue;
        };
        let is_input = pt.attrs.iter().any(|a| a.path().is_ident(INPUT_ATTR));
        if let Type::Reference(r) = &*pt.ty {
            let names_context = matches!(&*r.elem, Type::Path(p) if p.path.segments.last().is_some_and(|s| s.ident == "Context"));
            if !names_context || r.mutability.is_some() {
                errors.push(Error::custom("inputs are owned values (write `String`, not `&str`); the only reference parameter an action takes is `ctx: &Context`").with_span(&pt.ty));
            } else if ctx_seen {
                errors.push(Error::custom("`&Context` is taken twice; keep one").with_span(&pt.ty));
            }
            ctx_seen = true;
            slots.push(Slot::Ctx);
            continue;
        }
        let ident = match &*pt.pat {
            Pat::Ident(pi) if pi.subpat.is_none() => pi.ident.clone(),
            other => {
                errors.push(Error::custom("an action parameter needs a plain name: it becomes a property of the input object").with_span(other));
                continue;
            }
        };
        let key = types::unraw(&ident);
        if let Some(why) = names::reserved_param(&key) {
            errors.push(Error::custom(format!("parameter name `{key}` {why}")).with_span(&ident));
        }
        if is_input {
            whole_input = true;
        }
        let doc = arg_docs.get(&key).cloned();
        slots.push(Slot::Param(Param {
            ident,
            ty: (*pt.ty).clone(),
            doc,
        }));
    }
    let params = slots.iter().filter(|s| matches!(s, Slot::Param(_))).count();
    if whole_input && params != 1 {
        errors.push(
            Error::custom(
                "`#[input]` takes the whole input object, so it must be the only input parameter",
            )
            .with_span(&sig.paren_token.span.join()),
        );
    }

    let output = match &sig.output {
        ReturnType::Default => Output::Unit,
        ReturnType::Type(_, ty) => match types::result_args(ty) {
            Some(args) => Output::Result(args[0].clone()),
            None => Output::Plain((**ty).clone()),
        },
    };

    Some(ActionFn {
        kind,
        fn_ident: sig.ident.clone(),
        name,
        name_span,
        description: description.map(|d| d.value()).unwrap_or(doc_description),
        cfg: attrs
            .iter()
            .filter(|a| a.path().is_ident("cfg"))
            .cloned()
            .collect(),
        owner,
        is_async: sig.asyncness.is_some(),
        slots,
        whole_input,
        output,
    })
}

/// Removes `#[input]` from parameters (it is ours, not rustc's).
pub fn strip_param_attrs(sig: &mut Signature) {
    for input in sig.inputs.iter_mut() {
        if let FnArg::Typed(pt) = input {
            pt.attrs.retain(|a| !a.path().is_ident(INPUT_ATTR));
        }
    }
}

impl ActionFn {
    fn params(&self) -> impl Iterator<Item = &Param> {
        self.slots.iter().filter_map(|s| {
            if let Slot::Param(p) = s {
                Some(p)
            } else {
                None
            }
        })
    }

    fn conn_ty(&self) -> TokenStream {
        match &self.owner {
            Owner::Method(ty) => quote!(#ty),
            Owner::Free(path) => quote!(#path),
        }
    }

    /// The input type, the items that define it, and how to bind its parts.
    fn input(&self, p: &TokenStream, krate: &syn::Path) -> (TokenStream, TokenStream, TokenStream) {
        if self.whole_input {
            let param = self.params().next().expect("checked: exactly one");
            let (ident, ty) = (&param.ident, &param.ty);
            let check = quote_spanned!(ty.span()=> const _: () = #p::assert_input::<#ty>(););
            return (quote!(#ty), check, quote!(let #ident = __spoke_args;));
        }
        let input_ident = format_ident!("__SpokeInput_{}", self.fn_ident);
        let serde_crate = format!("{}", quote!(#krate::__private::serde));
        let schemars_crate = format!("{}", quote!(#krate::__private::schemars));
        // A search operator's one parameter is always the `value` property.
        let rename = self
            .is_operator()
            .then(|| quote!(#[serde(rename = "value")]));
        let fields = self.params().map(|Param { ident, ty, doc }| {
            let doc = doc.as_ref().map(|d| quote!(#[doc = #d]));
            quote!(#doc #rename #ident: #ty)
        });
        let idents: Vec<&Ident> = self.params().map(|p| &p.ident).collect();
        let def = quote! {
            #[derive(#p::serde::Deserialize, #p::schemars::JsonSchema)]
            #[serde(crate = #serde_crate, deny_unknown_fields)]
            #[schemars(crate = #schemars_crate)]
            #[allow(non_camel_case_types)]
            struct #input_ident { #(#fields),* }
        };
        (
            quote!(#input_ident),
            def,
            quote!(let #input_ident { #(#idents),* } = __spoke_args;),
        )
    }

    /// The generated items (input type, invoke fn) and the table entry.
    pub fn expand(&self, krate: &syn::Path) -> (TokenStream, TokenStream) {
        let p = quote!(#krate::__private);
        let cfg = &self.cfg;
        let fn_ident = &self.fn_ident;
        let invoke_ident = format_ident!("__spoke_invoke_{}", fn_ident);
        let conn_ty = self.conn_ty();
        let (input_ty, input_def, bind) = self.input(&p, krate);

        let args = self.slots.iter().map(|slot| match slot {
            Slot::Ctx => quote!(&__spoke_ctx),
            Slot::Param(param) => {
                let ident = &param.ident;
                quote!(#ident)
            }
        });
        let call = match &self.owner {
            Owner::Method(ty) => quote!(<#ty>::#fn_ident(&*__spoke_conn, #(#args),*)),
            Owner::Free(_) => quote!(#fn_ident(&*__spoke_conn, #(#args),*)),
        };
        let (out_ty, encode) = match &self.output {
            Output::Unit => (quote!(()), quote!(#p::encode(&__spoke_ret))),
            Output::Plain(ty) => (
                quote!(#ty),
                quote_spanned!(ty.span()=> #p::encode::<#ty>(&__spoke_ret)),
            ),
            Output::Result(ty) => (
                quote!(#ty),
                quote_spanned!(ty.span()=> #p::encode_result::<#ty, _>(__spoke_ret)),
            ),
        };
        let body = if self.is_async {
            quote!(#p::Box::pin(async move {
                #bind
                let __spoke_ret = #call.await;
                #encode
            }))
        } else {
            quote!(#p::blocking(move || {
                #bind
                let __spoke_ret = #call;
                #encode
            }))
        };
        let items = quote! {
            #(#cfg)*
            #input_def

            #(#cfg)*
            #[allow(non_snake_case, unused_variables, clippy::needless_borrow)]
            fn #invoke_ident(__spoke_conn: #p::AnyConnector, __spoke_input: #p::Input<'_>, __spoke_ctx: #p::Context) -> #p::ActionFuture {
                let __spoke_args: #input_ty = match #p::decode::<#input_ty>(__spoke_input) {
                    ::core::result::Result::Ok(__spoke_v) => __spoke_v,
                    ::core::result::Result::Err(__spoke_e) => return #p::ready(::core::result::Result::Err(__spoke_e)),
                };
                let __spoke_conn = #p::downcast::<#conn_ty>(__spoke_conn);
                #body
            }
        };

        let name = &self.name;
        let description = &self.description;
        let location =
            quote_spanned!(self.name_span=> ::core::concat!(::core::file!(), ":", ::core::line!()));
        let entry = match &self.kind {
            Kind::Action {
                read,
                admin_only,
                hidden,
                timeout_ms,
            } => {
                let mode = if *read {
                    quote!(#p::Mode::Read)
                } else {
                    quote!(#p::Mode::Write)
                };
                let timeout = match timeout_ms {
                    Some(ms) => quote!(::core::option::Option::Some(#ms)),
                    None => quote!(::core::option::Option::None),
                };
                let input_schema = quote!(#p::input_schema_for::<#input_ty>);
                quote! {
                    #(#cfg)*
                    #p::ActionDef {
                        name: #name,
                        description: #description,
                        mode: #mode,
                        admin_only: #admin_only,
                        hidden: #hidden,
                        timeout_ms: #timeout,
                        input_schema: #input_schema,
                        output_schema: #p::output_schema_for::<#out_ty>,
                        invoke: #invoke_ident,
                        location: #location,
                    }
                }
            }
            Kind::Operator {
                attribute,
                value_type,
            } => {
                let vt = match value_type.as_str() {
                    "person" => quote!(#p::ValueType::Person),
                    "datetime" => quote!(#p::ValueType::Datetime),
                    _ => quote!(#p::ValueType::Text),
                };
                quote! {
                    #(#cfg)*
                    #p::SearchOperatorDef {
                        operator: #name,
                        attribute_key: #attribute,
                        value_type: #vt,
                        description: #description,
                        resolve: #invoke_ident,
                        location: #location,
                    }
                }
            }
        };
        (items, entry)
    }

    /// Whether this is a search operator.
    pub fn is_operator(&self) -> bool {
        matches!(self.kind, Kind::Operator { .. })
    }
}
