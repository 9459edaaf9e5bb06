//! Actions and search operators: from a fn's signature and attribute to the
//! generated input type, invoke function and table entry.
//!
//! The same model serves methods in a `#[connector]` impl (`&self`) and free
//! functions declared with `#[action(connector = Type)]` (`conn: &Type`).
//!
//! Type rules (inputs `Deserialize + JsonSchema`, outputs `Serialize +
//! JsonSchema`, errors `Into<ActionError>`) are left to the type system: each
//! is one `const _: () = assert_*::<UserType>();` with the user's type tokens,
//! so a broken rule is one error at the user's type with the message of the
//! trait in `__private`. Every other use of those types goes through
//! `__private::Probe`, which falls back silently when a rule is broken, and
//! the named parameters live in a generic struct, so nothing else repeats the
//! error.

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Attribute, FnArg, Ident, LitStr, Pat, ReturnType, Signature, Type};

use crate::attrs::{ActionArgs, SearchOperatorArgs};
use crate::docs::{argument_doc_attr, doc_of, split_arguments};
use crate::errors::Errors;
use crate::params::{self, ParamAttrs};
use crate::spans::respan;
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
// One model per fn, built once per macro call: variant sizes do not matter.
#[allow(clippy::large_enum_variant)]
pub enum Slot {
    Ctx,
    Param(Param),
}

/// One input parameter.
pub struct Param {
    pub ident: Ident,
    pub ty: Type,
    pub doc: Option<String>,
    /// Its property in the input object: its name, or its `rename`.
    pub key: String,
    /// Its `#[schemars(...)]` / `#[serde(...)]`.
    pub attrs: ParamAttrs,
}

/// What the fn returns.
#[allow(clippy::large_enum_variant)]
pub enum Output {
    Unit,
    Plain(Type),
    /// `Result<ok, err>`; `err` is `None` when written through an alias such
    /// as `anyhow::Result<T>`, and then `whole` is checked instead.
    Result {
        whole: Type,
        ok: Type,
        err: Option<Type>,
    },
}

/// Action or search operator specifics.
pub enum Kind {
    Action {
        read: bool,
        admin_only: bool,
        hidden: bool,
        destructive: bool,
        idempotent: bool,
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
    /// `input_arrow_schema = f`: the fn that declares the input batch's columns.
    pub input_columns: Option<syn::Path>,
    /// `output_arrow_schema = f`: the fn that declares the output batch's columns.
    pub output_columns: Option<syn::Path>,
}

const INPUT_ATTR: &str = "input";
const VALUE_TYPES: [&str; 3] = ["text", "person", "datetime"];

/// Parses an action's attribute arguments and signature.
pub fn parse_action(
    errors: &mut Errors,
    args: ActionArgs,
    attrs: &[Attribute],
    sig: &Signature,
    owner: Owner,
) -> Option<ActionFn> {
    if let (true, true) = (args.read.is_present(), args.write.is_present()) {
        errors.at(
            args.write.span(),
            "an action is `read` or `write`, not both: `read` if it only looks, `write` if it changes anything",
        );
    }
    let timeout_ms = args.timeout.as_ref().and_then(|lit| {
        let text = lit.value();
        match crate::duration::parse(&text) {
            Ok(d) if d.is_zero() => {
                errors.spanned(
                    lit,
                    "timeout must be greater than zero, e.g. `timeout = \"30s\"`",
                );
                None
            }
            Ok(d) => Some(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            Err(e) => {
                errors.spanned(lit, duration_error("timeout", &text, &e));
                None
            }
        }
    });
    let read = args.read.is_present();
    if read {
        if let Some(lit) = &args.destructive {
            errors.spanned(
                lit,
                "a `read` action changes nothing, so it cannot be destructive: drop `destructive` (it describes writes)",
            );
        }
        if args.idempotent.is_present() {
            errors.at(
                args.idempotent.span(),
                "a `read` action is idempotent already: drop `idempotent` (it describes writes)",
            );
        }
    }
    let kind = Kind::Action {
        read,
        admin_only: args.admin_only.is_present(),
        hidden: args.hidden.is_present(),
        // A write destroys unless it says otherwise; a read never does.
        destructive: !read && args.destructive.as_ref().is_none_or(syn::LitBool::value),
        idempotent: read || args.idempotent.is_present(),
        timeout_ms,
    };
    let mut action = parse_fn(errors, kind, args.name, args.description, attrs, sig, owner)?;
    action.input_columns = args.input_arrow_schema.map(|p| p.0);
    action.output_columns = args.output_arrow_schema.map(|p| p.0);
    if let Some(path) = action
        .input_columns
        .as_ref()
        .filter(|_| !action.whole_input)
    {
        errors.spanned(
            path,
            "`input_arrow_schema` declares the columns of the whole input, an Arrow batch: take it as the one parameter `#[input] batch: spoke::arrow::RecordBatch`",
        );
    }
    Some(action)
}

/// The message for a duration (`what`: `timeout`, `ttl`) that does not
/// parse, with a fix when one is clear.
pub(crate) fn duration_error(what: &str, text: &str, parse_error: &str) -> String {
    let trimmed = text.trim();
    let digits = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    let (number, unit) = (&trimmed[..digits], trimmed[digits..].trim());
    let known = match unit.to_ascii_lowercase().as_str() {
        "ms" | "msec" | "msecs" | "milli" | "millis" | "millisecond" | "milliseconds" => Some("ms"),
        "s" | "sec" | "secs" | "second" | "seconds" => Some("s"),
        "m" | "min" | "mins" | "minute" | "minutes" => Some("m"),
        "h" | "hr" | "hrs" | "hour" | "hours" => Some("h"),
        _ => None,
    };
    let example = format!(
        "a number and a unit, e.g. `{what} = \"30s\"` (units: ms, s, m, h; combine as `1m30s`)"
    );
    match (number.is_empty(), unit.is_empty(), known) {
        (false, false, Some(unit)) => {
            format!("invalid {what} `{text}`: write `{number}{unit}`")
        }
        (false, false, None) => {
            format!("invalid {what} `{text}`: unknown unit `{unit}`; write {example}")
        }
        (false, true, _) => format!("invalid {what} `{text}`: missing unit; write {example}"),
        _ => {
            let reason = parse_error
                .strip_prefix(&format!("invalid duration `{text}`: "))
                .unwrap_or(parse_error);
            format!("invalid {what} `{text}`: {reason}; write {example}")
        }
    }
}

/// Parses a search operator's attribute arguments and signature.
pub fn parse_operator(
    errors: &mut Errors,
    args: SearchOperatorArgs,
    attr: &Attribute,
    attrs: &[Attribute],
    sig: &Signature,
    owner: Owner,
) -> Option<ActionFn> {
    let attribute = match &args.attribute {
        Some(a) => a.value(),
        None => {
            let keep = match &attr.meta {
                syn::Meta::List(list) if !list.tokens.is_empty() => {
                    let tokens = &list.tokens;
                    format!(", {tokens}")
                }
                _ => String::new(),
            };
            errors.spanned(
                attr,
                format!(
                    "`#[search_operator]` needs the attribute it filters on: `#[search_operator(attribute = \"{}\"{keep})]`",
                    types::unraw(&sig.ident)
                ),
            );
            String::new()
        }
    };
    let value_type = match &args.value_type {
        None => "text".to_owned(),
        Some(lit) => {
            let v = lit.value();
            if !VALUE_TYPES.contains(&v.as_str()) {
                let hint = VALUE_TYPES
                    .into_iter()
                    .min_by_key(|k| strsim::levenshtein(k, &v))
                    .unwrap_or("text");
                errors.spanned(
                    lit,
                    format!(
                        "unknown value_type `{v}`: expected `text`, `person` or `datetime`; did you mean `{hint}`?"
                    ),
                );
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
    if op.params().count() != 1 || op.whole_input {
        errors.at(
            sig.paren_token.span.join(),
            "a search operator takes exactly one value parameter, e.g. `fn ext(&self, value: String)`",
        );
    }
    Some(op)
}

fn parse_fn(
    errors: &mut Errors,
    kind: Kind,
    name: Option<LitStr>,
    description: Option<LitStr>,
    attrs: &[Attribute],
    sig: &Signature,
    owner: Owner,
) -> Option<ActionFn> {
    let (doc_description, arg_docs) = split_arguments(&doc_of(attrs));
    let (name, name_span) = match name {
        Some(lit) => {
            if lit.value().is_empty() {
                errors.spanned(&lit, "the name must not be empty");
            }
            (lit.value(), lit.span())
        }
        None => (types::unraw(&sig.ident), sig.ident.span()),
    };
    if !sig.generics.params.is_empty() {
        errors.spanned(
            &sig.generics,
            "an action cannot be generic: its input and output types must be known to build its schemas",
        );
    }
    if let Some(v) = &sig.variadic {
        errors.spanned(v, "variadic parameters are not supported");
    }

    let mut inputs = sig.inputs.iter();
    match (&owner, inputs.next()) {
        (Owner::Method(_), Some(FnArg::Receiver(r))) => {
            if r.reference.is_none() || r.mutability.is_some() || r.colon_token.is_some() {
                let what = if r.reference.is_some() && r.mutability.is_some() {
                    "`&mut self`"
                } else {
                    "this receiver"
                };
                errors.spanned(
                    r,
                    format!(
                        "{what} is not allowed: actions take `&self`, because one connector serves many calls at once; keep mutable state behind a `Mutex` or an atomic"
                    ),
                );
            }
        }
        (Owner::Method(_), _) => {
            errors.at(
                sig.paren_token.span.join(),
                format!(
                    "`{}` has no `self`: an action in a `#[connector]` impl is a method, so it takes `&self` first: `fn {}(&self, ...)`",
                    sig.ident, sig.ident
                ),
            );
            // Put the first argument back: it is a parameter.
            inputs = sig.inputs.iter();
        }
        (Owner::Free(path), first) => match first {
            Some(FnArg::Typed(pt)) if matches!(&*pt.ty, Type::Reference(r) if r.mutability.is_none()) =>
                {}
            other => {
                let conn = quote!(#path).to_string().replace(' ', "");
                let message = format!(
                    "the first parameter of a free action is its connector: `conn: &{conn}`"
                );
                match other {
                    Some(arg) => errors.spanned(arg, message),
                    None => errors.at(sig.paren_token.span.join(), message),
                }
            }
        },
    }

    let mut slots = Vec::new();
    let mut whole_input = false;
    let mut ctx_seen = false;
    for input in inputs {
        let FnArg::Typed(pt) = input else {
            errors.spanned(input, "`self` must come first");
            continue;
        };
        let is_input = pt.attrs.iter().any(|a| a.path().is_ident(INPUT_ATTR));
        let attrs = params::parse(errors, &pt.attrs);
        if let Type::Reference(r) = &*pt.ty {
            if let Some(attr) = attrs.first() {
                errors.spanned(
                    attr,
                    "`ctx` is not a property of the input object: `#[schemars(...)]` and `#[serde(...)]` go on the named parameters",
                );
            }
            let names_context = matches!(&*r.elem, Type::Path(p) if p.path.segments.last().is_some_and(|s| s.ident == "Context"));
            if !names_context || r.mutability.is_some() {
                errors.spanned(
                    &pt.ty,
                    "inputs are owned values (write `String`, not `&str`); the only reference parameter an action takes is `ctx: &Context`",
                );
            } else if ctx_seen {
                errors.spanned(&pt.ty, "`&Context` is taken twice; keep one");
            }
            ctx_seen = true;
            slots.push(Slot::Ctx);
            continue;
        }
        let ident = match &*pt.pat {
            Pat::Ident(pi) if pi.subpat.is_none() => pi.ident.clone(),
            other => {
                errors.spanned(
                    other,
                    "an action parameter needs a plain name: it becomes a property of the input object",
                );
                continue;
            }
        };
        let key = types::unraw(&ident);
        if let Some(why) = names::reserved_param(&key) {
            errors.spanned(&ident, format!("parameter name `{key}` {why}"));
        }
        if is_input {
            whole_input = true;
            if let Some(attr) = attrs.first() {
                let ty = &pt.ty;
                let ty = quote!(#ty).to_string().replace(' ', "");
                errors.spanned(
                    attr,
                    format!(
                        "`#[input]` takes the whole input object, whose schema is `{ty}`'s own: put `#[schemars(...)]` and `#[serde(...)]` on the fields of `{ty}`"
                    ),
                );
            }
        }
        if let (Kind::Operator { .. }, Some(rename)) = (&kind, &attrs.rename) {
            errors.spanned(
                rename,
                "a search operator's value is always the `value` property: it cannot be renamed",
            );
        }
        // A search operator's one parameter is the `value` property, under
        // either name.
        let is_operator = matches!(kind, Kind::Operator { .. });
        let doc = arg_docs
            .get(&key)
            .or_else(|| arg_docs.get("value").filter(|_| is_operator))
            .cloned();
        if let (Some(_), Some(description)) = (&doc, &attrs.description) {
            errors.spanned(
                description,
                format!(
                    "`{key}` is described twice, here and in the `# Arguments` section of the doc comment: keep one"
                ),
            );
        }
        slots.push(Slot::Param(Param {
            key: if is_operator {
                "value".to_owned()
            } else {
                attrs.rename.as_ref().map_or(key, LitStr::value)
            },
            ident,
            ty: (*pt.ty).clone(),
            doc,
            attrs,
        }));
    }
    check_argument_docs(errors, attrs, sig, &slots, whole_input, arg_docs.keys());
    let params = slots.iter().filter(|s| matches!(s, Slot::Param(_))).count();
    if whole_input && params != 1 {
        errors.at(
            sig.paren_token.span.join(),
            "`#[input]` takes the whole input object, so it must be the only input parameter",
        );
    }

    let output = match &sig.output {
        ReturnType::Default => Output::Unit,
        ReturnType::Type(_, ty) => match types::result_args(ty) {
            Some(args) => Output::Result {
                whole: (**ty).clone(),
                ok: args[0].clone(),
                err: args.get(1).map(|e| (*e).clone()),
            },
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
        input_columns: None,
        output_columns: None,
    })
}

/// Every entry of the `# Arguments` section names a parameter: one that
/// names none would describe nothing, silently. The error is at the doc
/// comment line of the entry and lists the parameters.
fn check_argument_docs<'a>(
    errors: &mut Errors,
    attrs: &[Attribute],
    sig: &Signature,
    slots: &[Slot],
    whole_input: bool,
    documented: impl Iterator<Item = &'a String>,
) {
    let params: Vec<(String, &str)> = slots
        .iter()
        .filter_map(|s| match s {
            Slot::Param(p) => Some((types::unraw(&p.ident), p.key.as_str())),
            Slot::Ctx => None,
        })
        .collect();
    for name in documented {
        let known = params.iter().any(|(rust, key)| rust == name || key == name);
        if known && !whole_input {
            continue;
        }
        let Some(at) = argument_doc_attr(attrs, name) else {
            continue;
        };
        let fn_name = &sig.ident;
        let message = if whole_input {
            format!(
                "`# Arguments` describes `{name}`, but `#[input]` takes the whole input object: describe its properties in the doc comments of its type's fields"
            )
        } else if params.is_empty() {
            format!(
                "`# Arguments` describes `{name}`, but `{fn_name}` has no input parameters: remove the entry"
            )
        } else {
            let list = params
                .iter()
                .map(|(rust, _)| format!("`{rust}`"))
                .collect::<Vec<_>>()
                .join(", ");
            let hint = params
                .iter()
                .map(|(rust, _)| (strsim::levenshtein(rust, name), rust))
                .filter(|(d, _)| *d <= 2)
                .min()
                .map(|(_, rust)| format!("; did you mean `{rust}`?"))
                .unwrap_or_default();
            format!(
                "`# Arguments` describes `{name}`, which is not a parameter of `{fn_name}` (its parameters: {list}){hint}"
            )
        };
        errors.spanned(at, message);
    }
}

/// The imports every block of generated actions starts with: the `Probe`
/// traits the invoke fns and schema fns call through, and `Into` for
/// schemars' derive, which calls `.into()` unqualified (crates with
/// `#![no_implicit_prelude]` have no `Into` in scope otherwise).
pub fn block_imports(krate: &syn::Path) -> TokenStream {
    quote! {
        #[allow(unused_imports)]
        use #krate::__private::{
            FallbackInputLevel as _, FallbackOutputLevel as _, OwnInputLevel as _,
            OwnOutputLevel as _, ProbeResult as _, ProbeResultFallback as _,
            ProtobufInputLevel as _, ProtobufOutputLevel as _, SerdeInputLevel as _,
            SerdeOutputLevel as _,
        };
        #[allow(unused_imports)]
        use ::core::convert::Into as _;
    }
}

/// What schemars' derive calls unqualified for the parameters' attributes
/// of these fns (`(pattern).to_string()` for a `regex`, `Some(...)` for a
/// serde `default`), for crates without the implicit prelude; once per
/// block, after [`block_imports`].
pub fn param_imports<'a>(
    krate: &syn::Path,
    fns: impl IntoIterator<Item = &'a ActionFn>,
) -> TokenStream {
    let (mut pattern, mut default) = (false, false);
    for f in fns {
        for p in f.params() {
            pattern |= p.attrs.pattern.is_some();
            default |= p.attrs.default.is_some();
        }
    }
    let mut imports = TokenStream::new();
    if pattern {
        imports.extend(quote! {
            #[allow(unused_imports)]
            use #krate::__private::ToString as _;
        });
    }
    if default {
        imports.extend(quote! {
            #[allow(unused_imports)]
            use ::core::option::Option::Some;
            #[allow(unused_imports)]
            use ::core::default::Default as _;
        });
    }
    imports
}

/// Removes `#[input]`, `#[schemars]` and `#[serde]` from parameters: they
/// are ours (the last two go on the generated input struct), not rustc's.
pub fn strip_param_attrs(sig: &mut Signature) {
    for input in sig.inputs.iter_mut() {
        if let FnArg::Typed(pt) = input {
            pt.attrs
                .retain(|a| !a.path().is_ident(INPUT_ATTR) && !params::is_param_attr(a));
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

    /// The input type, the items that define and check it, and how to bind
    /// its parts.
    ///
    /// Named parameters become the fields of a struct that is generic over
    /// their types: its derives then hold for exactly the types that follow
    /// the rule, and a parameter that does not is reported once, by its
    /// `assert_input`, instead of by every line of serde's and schemars'
    /// generated code.
    fn input(
        &self,
        p: &TokenStream,
        krate: &syn::Path,
    ) -> (TokenStream, Vec<TokenStream>, TokenStream) {
        if self.whole_input {
            // Any payload kind (serde, bytes, JSON Lines, Protobuf): the
            // `input_payload` call in the table entry checks it, at the type.
            let param = self.params().next().expect("checked: exactly one");
            let (ident, ty) = (&param.ident, &param.ty);
            return (quote!(#ty), Vec::new(), quote!(let #ident = __spoke_args;));
        }
        let checks: Vec<TokenStream> = self
            .params()
            .map(|Param { ty, .. }| quote!(const _: () = #p::assert_input::<#ty>();))
            .collect();
        let input_ident = format_ident!("__SpokeInput_{}", self.fn_ident);
        let serde_crate = format!("{}", quote!(#krate::__private::serde));
        let schemars_crate = format!("{}", quote!(#krate::__private::schemars));
        // A search operator's one parameter is always the `value` property.
        let rename = self
            .is_operator()
            .then(|| quote!(#[serde(rename = "value")]));
        let params: Vec<&Param> = self.params().collect();
        // A parameter with a serde `default` is a field of its own type:
        // serde and schemars call `Default::default()` (or the user's fn)
        // on it, which a bare type parameter would not allow.
        let mut type_params = Vec::new();
        let mut generic_tys = Vec::new();
        let fields = params.iter().map(|param| {
            let Param {
                ident,
                doc,
                ty,
                attrs,
                ..
            } = param;
            let doc = doc.as_ref().map(|d| quote!(#[doc = #d]));
            let forward = &attrs.forward;
            let field_ty = if attrs.default.is_some() {
                quote!(#ty)
            } else {
                let tp = format_ident!("__SpokeT{}", type_params.len());
                type_params.push(tp.clone());
                generic_tys.push(ty);
                quote!(#tp)
            };
            quote!(#doc #rename #(#forward)* #ident: #field_ty)
        });
        let fields: Vec<TokenStream> = fields.collect();
        let idents = params.iter().map(|p| &p.ident);
        let (def_generics, use_generics) = if type_params.is_empty() {
            (quote!(), quote!())
        } else {
            (quote!(<#(#type_params),*>), quote!(<#(#generic_tys),*>))
        };
        let mut items = vec![quote! {
            #[derive(#p::serde::Deserialize, #p::schemars::JsonSchema)]
            #[serde(crate = #serde_crate, deny_unknown_fields)]
            #[schemars(crate = #schemars_crate)]
            #[allow(non_camel_case_types)]
            struct #input_ident #def_generics { #(#fields),* }
        }];
        items.extend(checks);
        (
            quote!(#input_ident #use_generics),
            items,
            quote!(let #input_ident { #(#idents),* } = __spoke_args;),
        )
    }

    /// The output (`Ok`) type, the checks of the error type, the
    /// expression that encodes `__spoke_ret` in `__spoke_enc`, and the one
    /// that says what the output travels as (spanned at the type: a type
    /// of no payload kind is reported there, once). A search operator's
    /// output is JSON: its type is checked to be a serde type.
    fn output(&self, p: &TokenStream) -> (TokenStream, Vec<TokenStream>, TokenStream, TokenStream) {
        let probe = |ty: &TokenStream| quote!((&&&#p::PayloadProbe::<#ty>::new()));
        let operator_check = |assert: TokenStream, ty: &Type| {
            self.is_operator()
                .then(|| quote_spanned!(ty.span()=> const _: () = #p::#assert::<#ty>();))
        };
        match &self.output {
            Output::Unit => {
                let unit = quote!(());
                let probe = probe(&unit);
                (
                    unit.clone(),
                    Vec::new(),
                    self.encode_output(&probe, quote!(__spoke_ret)),
                    self.output_columns(p, &unit, quote!(#probe.output_payload())),
                )
            }
            Output::Plain(ty) => {
                let t = quote!(#ty);
                let probe = probe(&t);
                (
                    t.clone(),
                    operator_check(quote!(assert_plain_output), ty)
                        .into_iter()
                        .collect(),
                    self.encode_output(&probe, quote!(__spoke_ret)),
                    self.output_columns(p, &t, at_type(&probe, ty, quote!(plain_output_payload))),
                )
            }
            Output::Result { whole, ok, err } => {
                let err_check = match err {
                    Some(err) => quote!(const _: () = #p::assert_error::<#err>();),
                    None => quote!(const _: () = #p::assert_result::<#whole>();),
                };
                let t = quote!(#ok);
                let probe = probe(&t);
                let mut checks: Vec<TokenStream> = operator_check(quote!(assert_output), ok)
                    .into_iter()
                    .collect();
                checks.push(err_check);
                let encode = self.encode_output(&probe, quote!(__spoke_v));
                (
                    t.clone(),
                    checks,
                    quote! {
                        match (&#p::probe_of(&__spoke_ret)).split_result(__spoke_ret) {
                            ::core::result::Result::Ok(__spoke_v) => #encode,
                            ::core::result::Result::Err(__spoke_e) => ::core::result::Result::Err(__spoke_e),
                        }
                    },
                    self.output_columns(p, &t, at_type(&probe, ok, quote!(output_payload))),
                )
            }
        }
    }

    /// The expression that encodes the output `value` in `__spoke_enc`,
    /// after checking its columns where the action declares them.
    fn encode_output(&self, probe: &TokenStream, value: TokenStream) -> TokenStream {
        let encode = quote!(#probe.encode_output(#value, __spoke_enc));
        match &self.output_columns {
            None => encode,
            Some(_) => {
                // Declared before the user's parameters are bound (see
                // `expand`): a parameter named as the fn cannot shadow it.
                quote! {
                    match __spoke_output_columns.check_output(&#value) {
                        ::core::result::Result::Ok(()) => #encode,
                        ::core::result::Result::Err(__spoke_e) => ::core::result::Result::Err(__spoke_e),
                    }
                }
            }
        }
    }

    /// `spec` (the output's payload spec) with the declared columns, if any.
    fn output_columns(&self, p: &TokenStream, ty: &TokenStream, spec: TokenStream) -> TokenStream {
        match &self.output_columns {
            None => spec,
            Some(path) => {
                let declared = self.declared(p, ty, path);
                quote!(#declared.describe(#spec))
            }
        }
    }

    /// `__private::declared::<ty, _>(f())`, the declared columns of a
    /// payload of type `ty`, spanned at the user's `f`: a type of no
    /// columns is reported there, once (the manifest's call and the
    /// check's are the same error).
    fn declared(&self, p: &TokenStream, ty: &TokenStream, path: &syn::Path) -> TokenStream {
        let schema = self.columns_fn(path);
        respan(quote!(#p::declared::<#ty, _>(#schema())), path.span())
    }

    /// The output (`Ok`) type.
    fn output_ty(&self) -> TokenStream {
        match &self.output {
            Output::Unit => quote!(()),
            Output::Plain(ty) => quote!(#ty),
            Output::Result { ok, .. } => quote!(#ok),
        }
    }

    /// The fn that declares columns, callable from the generated items,
    /// which are outside the `impl`: a leading `Self` is the connector's
    /// type.
    fn columns_fn(&self, path: &syn::Path) -> TokenStream {
        match (&self.owner, path.segments.first()) {
            (Owner::Method(ty), Some(first))
                if first.ident == "Self" && path.segments.len() > 1 =>
            {
                let rest = path.segments.iter().skip(1);
                let ty = respan(quote!(#ty), first.ident.span());
                quote!(<#ty>#(::#rest)*)
            }
            _ => quote!(#path),
        }
    }

    /// The generated items (input type, checks, invoke fn) and the table
    /// entry. They go in a block that starts with [`block_imports`].
    pub fn expand(&self, krate: &syn::Path) -> (TokenStream, TokenStream) {
        let p = quote!(#krate::__private);
        let cfg = &self.cfg;
        let fn_ident = &self.fn_ident;
        let invoke_ident = format_ident!("__spoke_invoke_{}", fn_ident);
        let conn_ty = self.conn_ty();
        let (input_ty, input_items, bind) = self.input(&p, krate);
        let (out_ty, output_checks, encode, output_payload) = self.output(&p);

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
        let checks = self.checks(&p);
        let body = if self.is_async {
            quote!(#p::Box::pin(async move {
                #bind
                #(#checks)*
                let __spoke_ret = #call.await;
                #encode
            }))
        } else {
            quote!(#p::blocking(move || {
                #bind
                #(#checks)*
                let __spoke_ret = #call;
                #encode
            }))
        };
        let check_input = self.input_columns.as_ref().map(|path| {
            let declared = self.declared(&p, &input_ty, path);
            quote! {
                if let ::core::result::Result::Err(__spoke_e) = #declared.check_input(&__spoke_args) {
                    return #p::ready(::core::result::Result::Err(__spoke_e));
                }
            }
        });
        let declare_output = self.output_columns.as_ref().map(|path| {
            let declared = self.declared(&p, &self.output_ty(), path);
            quote!(let __spoke_output_columns = #declared;)
        });
        // Every generated item carries the fn's `#[cfg]`s.
        let checked = input_items
            .iter()
            .chain(&output_checks)
            .map(|item| quote!(#(#cfg)* #item));
        let items = quote! {
            #(#checked)*

            #(#cfg)*
            #[allow(non_snake_case, unused_variables, clippy::needless_borrow)]
            fn #invoke_ident(__spoke_conn: #p::AnyConnector, __spoke_input: #p::Input<'_>, __spoke_ctx: #p::Context) -> #p::ActionFuture {
                let __spoke_args: #input_ty = match (&&&#p::PayloadProbe::<#input_ty>::new()).decode_input(__spoke_input) {
                    ::core::result::Result::Ok(__spoke_v) => __spoke_v,
                    ::core::result::Result::Err(__spoke_e) => return #p::ready(::core::result::Result::Err(__spoke_e)),
                };
                #check_input
                #declare_output
                let __spoke_enc = __spoke_ctx.output_encoding();
                let __spoke_conn = #p::downcast::<#conn_ty>(__spoke_conn);
                #body
            }
        };

        let input_schema = self.input_schema(&p, &input_ty);
        let input_payload = self.input_payload(&p, &input_ty);
        let name = &self.name;
        let description = &self.description;
        let location = quote::quote_spanned!(self.name_span=> ::core::concat!(::core::file!(), ":", ::core::line!()));
        let entry = match &self.kind {
            Kind::Action {
                read,
                admin_only,
                hidden,
                destructive,
                idempotent,
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
                quote! {
                    #(#cfg)*
                    #p::ActionDef {
                        name: #name,
                        description: #description,
                        mode: #mode,
                        admin_only: #admin_only,
                        hidden: #hidden,
                        destructive: #destructive,
                        idempotent: #idempotent,
                        timeout_ms: #timeout,
                        input_schema: || #input_schema,
                        output_schema: || (&&&#p::PayloadProbe::<#out_ty>::new()).output_schema(),
                        input_payload: || #input_payload,
                        output_payload: || #output_payload,
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

    /// The checks of the parameters' `range`, `length` and `regex`, run on
    /// the decoded values before the fn: a value the published schema
    /// rejects is `invalid_input` at its path, and the fn never sees it.
    /// Each is spanned at its key, so a key on a type it does not apply to
    /// is one error there (the runtime trait's message).
    fn checks(&self, p: &TokenStream) -> Vec<TokenStream> {
        if self.whole_input {
            return Vec::new();
        }
        let mut checks = Vec::new();
        for param in self.params() {
            // The value, named at the key that checks it: a key on a type
            // it does not apply to is reported there alone.
            let at = |span: proc_macro2::Span| {
                let mut ident = param.ident.clone();
                ident.set_span(span);
                ident
            };
            let path = format!("$.{}", param.key);
            let fail = quote! {
                ::core::result::Result::Err(__spoke_e) => return ::core::result::Result::Err(__spoke_e),
                ::core::result::Result::Ok(()) => {}
            };
            let opt = |v: Option<TokenStream>| match v {
                Some(v) => quote!(::core::option::Option::Some(#v)),
                None => quote!(::core::option::Option::None),
            };
            if let Some(range) = &param.attrs.range {
                let bound = |e: &Option<syn::Expr>| {
                    opt(e
                        .as_ref()
                        .map(|e| quote!(<#p::Bound as ::core::convert::From<_>>::from(#e))))
                };
                let (min, max) = (bound(&range.min), bound(&range.max));
                let check = respan(quote!(#p::check_range), range.key.span());
                let ident = at(range.key.span());
                checks.push(quote_spanned! {range.key.span()=>
                    match #check(&#ident, #min, #max, #path) { #fail }
                });
            }
            if let Some(length) = &param.attrs.length {
                let bound = |n: Option<u64>| {
                    opt(n.map(|n| {
                        let n = proc_macro2::Literal::u64_unsuffixed(n);
                        quote!(#n)
                    }))
                };
                let (min, max) = (bound(length.min), bound(length.max));
                let check = respan(quote!(#p::check_length), length.key.span());
                let ident = at(length.key.span());
                checks.push(quote_spanned! {length.key.span()=>
                    match #check(&#ident, #min, #max, #path) { #fail }
                });
            }
            if let Some((key, pattern)) = &param.attrs.pattern {
                let check = respan(quote!(#p::check_pattern), key.span());
                let ident = at(key.span());
                checks.push(quote_spanned! {key.span()=>
                    {
                        static __SPOKE_PATTERN: #p::Pattern = #p::Pattern::new(#pattern);
                        match #check(&#ident, &__SPOKE_PATTERN, #path) { #fail }
                    }
                });
            }
        }
        checks
    }

    /// The input schema expression: the input type's schema, plus what
    /// schemars does not publish of the parameters' constraints (`length`
    /// on a map, as `minProperties`/`maxProperties`).
    fn input_schema(&self, p: &TokenStream, input_ty: &TokenStream) -> TokenStream {
        let schema = quote!((&&&#p::PayloadProbe::<#input_ty>::new()).input_schema());
        let lengths: Vec<TokenStream> = self
            .params()
            .filter(|_| !self.whole_input)
            .filter_map(|param| {
                let length = param.attrs.length.as_ref()?;
                let key = &param.key;
                let opt = |n: Option<u64>| match n {
                    Some(n) => quote!(::core::option::Option::Some(#n)),
                    None => quote!(::core::option::Option::None),
                };
                let (min, max) = (opt(length.min), opt(length.max));
                Some(quote!((#key, #min, #max)))
            })
            .collect();
        if lengths.is_empty() {
            schema
        } else {
            quote!(#p::publish_map_lengths(#schema, &[#(#lengths),*]))
        }
    }

    /// What the input travels as; for an `#[input]` parameter, spanned at
    /// its type (a type of no payload kind is reported there, once).
    fn input_payload(&self, p: &TokenStream, input_ty: &TokenStream) -> TokenStream {
        let probe = quote!((&&&#p::PayloadProbe::<#input_ty>::new()));
        match self.params().next().filter(|_| self.whole_input) {
            Some(param) => {
                let spec = at_type(&probe, &param.ty, quote!(input_payload));
                match &self.input_columns {
                    None => spec,
                    Some(path) => {
                        let declared = self.declared(p, input_ty, path);
                        quote!(#declared.describe(#spec))
                    }
                }
            }
            // Named parameters are an object: a serde type. (Asking the
            // probe would repeat the error of a parameter that is not one.)
            None => quote!(#p::PayloadSpec::SERDE),
        }
    }

    /// Whether this is a search operator.
    pub fn is_operator(&self) -> bool {
        matches!(self.kind, Kind::Operator { .. })
    }
}

/// `probe.method()` spanned at `ty`'s first token (its name: `Vec` of
/// `Vec<Hit>`): an unmet bound of the method is reported there, under the
/// user's type. (A method call's error points at the method's name, one
/// token, so it cannot cover the whole type.)
fn at_type(probe: &TokenStream, ty: &Type, method: TokenStream) -> TokenStream {
    let span = quote!(#ty)
        .into_iter()
        .next()
        .map_or_else(Span::call_site, |t| t.span());
    let probe = respan(probe.clone(), span);
    let method = respan(method, span);
    quote_spanned!(span=> #probe.#method())
}
