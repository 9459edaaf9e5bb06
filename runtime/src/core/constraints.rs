//! Constraints on named action parameters: `#[schemars(range(...))]`,
//! `#[schemars(length(...))]` and `#[schemars(regex(pattern = ...))]` on a
//! parameter are published in the input schema (schemars, from the same
//! attribute) and checked here after decoding, so a call the schema rejects
//! is never run. Generated code reaches these through `__private`; each
//! check is spanned at the user's key, so a key on a type it does not apply
//! to is one error there, with the trait's message.
#![doc(hidden)]

use crate::error::ActionError;

/// A bound of `range(min = .., max = ..)`, or a number checked against one.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Bound {
    /// A whole number.
    Int(i128),
    /// A number with a fraction.
    Float(f64),
}

macro_rules! bound_from {
    ($variant:ident as $as:ty: $($t:ty),*) => {$(
        impl From<$t> for Bound {
            fn from(n: $t) -> Self {
                Bound::$variant(n as $as)
            }
        }
    )*};
}
bound_from!(Int as i128: i8, i16, i32, i64, i128, isize, u8, u16, u32, u64, usize);
bound_from!(Float as f64: f32, f64);
impl From<u128> for Bound {
    fn from(n: u128) -> Self {
        Bound::Int(i128::try_from(n).unwrap_or(i128::MAX))
    }
}

impl Bound {
    fn partial_cmp(self, other: Bound) -> Option<std::cmp::Ordering> {
        match (self, other) {
            (Bound::Int(a), Bound::Int(b)) => Some(a.cmp(&b)),
            (a, b) => a.as_f64().partial_cmp(&b.as_f64()),
        }
    }

    fn as_f64(self) -> f64 {
        match self {
            Bound::Int(n) => n as f64,
            Bound::Float(x) => x,
        }
    }
}

impl std::fmt::Display for Bound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Bound::Int(n) => write!(f, "{n}"),
            Bound::Float(x) => write!(f, "{x}"),
        }
    }
}

/// Parameter types `range(...)` applies to: numbers, and `Option`s of them
/// (checked when present).
#[diagnostic::on_unimplemented(
    message = "`range` applies to numbers, not to `{Self}`",
    label = "this parameter's type is not a number",
    note = "`range(min = .., max = ..)` bounds a number parameter (`u32`, `i64`, `f64`, ... or an `Option` of one); for strings, lists and maps use `length(min = .., max = ..)`"
)]
pub trait RangeParam {
    /// The number, or `None` when an optional parameter is absent.
    fn number(&self) -> Option<Bound>;
}
macro_rules! range_param {
    ($($t:ty),*) => {$(
        impl RangeParam for $t {
            fn number(&self) -> Option<Bound> {
                Some(Bound::from(*self))
            }
        }
    )*};
}
range_param!(
    i8, i16, i32, i64, i128, isize, u8, u16, u32, u64, u128, usize, f32, f64
);
impl<T: RangeParam> RangeParam for Option<T> {
    fn number(&self) -> Option<Bound> {
        self.as_ref().and_then(T::number)
    }
}

/// Checks `range(min = .., max = ..)` on a parameter (generated code).
pub fn check_range<V: RangeParam + ?Sized>(
    value: &V,
    min: Option<Bound>,
    max: Option<Bound>,
    path: &str,
) -> Result<(), ActionError> {
    use std::cmp::Ordering::{Greater, Less};
    let Some(n) = value.number() else {
        return Ok(());
    };
    if let Some(min) = min
        && !matches!(n.partial_cmp(min), Some(o) if o != Less)
    {
        return Err(ActionError::invalid_input_at(
            path,
            format!("must be at least {min}, got {n}"),
        ));
    }
    if let Some(max) = max
        && !matches!(n.partial_cmp(max), Some(o) if o != Greater)
    {
        return Err(ActionError::invalid_input_at(
            path,
            format!("must be at most {max}, got {n}"),
        ));
    }
    Ok(())
}

/// What a `length(...)` counts, as JSON Schema counts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LengthUnit {
    /// A string's characters (Unicode code points, as `minLength` counts).
    Chars,
    /// A list's items (`minItems`).
    Items,
    /// A map's entries (`minProperties`).
    Entries,
}

impl LengthUnit {
    fn words(self) -> (&'static str, &'static str) {
        match self {
            LengthUnit::Chars => ("character", "characters"),
            LengthUnit::Items => ("item", "items"),
            LengthUnit::Entries => ("entry", "entries"),
        }
    }
}

/// Parameter types `length(...)` applies to: strings, lists, sets and maps,
/// and `Option`s of them (checked when present).
#[diagnostic::on_unimplemented(
    message = "`length` applies to strings, lists and maps, not to `{Self}`",
    label = "this parameter's type has no length",
    note = "`length(min = .., max = ..)` bounds a `String` (in characters), a `Vec`/set (in items) or a map (in entries), or an `Option` of one; for numbers use `range(min = .., max = ..)`"
)]
pub trait LengthParam {
    /// The length and what it counts, or `None` when an optional parameter
    /// is absent.
    fn length(&self) -> Option<(usize, LengthUnit)>;
}
impl LengthParam for String {
    fn length(&self) -> Option<(usize, LengthUnit)> {
        Some((self.chars().count(), LengthUnit::Chars))
    }
}
impl LengthParam for Box<str> {
    fn length(&self) -> Option<(usize, LengthUnit)> {
        Some((self.chars().count(), LengthUnit::Chars))
    }
}
macro_rules! length_param {
    ($unit:ident: $($t:ty),*) => {$(
        impl<T> LengthParam for $t {
            fn length(&self) -> Option<(usize, LengthUnit)> {
                Some((self.len(), LengthUnit::$unit))
            }
        }
    )*};
}
length_param!(Items: Vec<T>, Box<[T]>, std::collections::VecDeque<T>, std::collections::BTreeSet<T>);
impl<T, S> LengthParam for std::collections::HashSet<T, S> {
    fn length(&self) -> Option<(usize, LengthUnit)> {
        Some((self.len(), LengthUnit::Items))
    }
}
impl<K, V> LengthParam for std::collections::BTreeMap<K, V> {
    fn length(&self) -> Option<(usize, LengthUnit)> {
        Some((self.len(), LengthUnit::Entries))
    }
}
impl<K, V, S> LengthParam for std::collections::HashMap<K, V, S> {
    fn length(&self) -> Option<(usize, LengthUnit)> {
        Some((self.len(), LengthUnit::Entries))
    }
}
impl LengthParam for serde_json::Map<String, serde_json::Value> {
    fn length(&self) -> Option<(usize, LengthUnit)> {
        Some((self.len(), LengthUnit::Entries))
    }
}
impl<T: LengthParam> LengthParam for Option<T> {
    fn length(&self) -> Option<(usize, LengthUnit)> {
        self.as_ref().and_then(T::length)
    }
}

/// Checks `length(min = .., max = ..)` on a parameter (generated code).
pub fn check_length<V: LengthParam + ?Sized>(
    value: &V,
    min: Option<usize>,
    max: Option<usize>,
    path: &str,
) -> Result<(), ActionError> {
    let Some((len, unit)) = value.length() else {
        return Ok(());
    };
    let words = |n: usize| {
        let (one, many) = unit.words();
        format!("{n} {}", if n == 1 { one } else { many })
    };
    let verb = match unit {
        LengthUnit::Chars => "be",
        LengthUnit::Items | LengthUnit::Entries => "have",
    };
    let long = match unit {
        LengthUnit::Chars => " long",
        LengthUnit::Items | LengthUnit::Entries => "",
    };
    if let Some(min) = min
        && len < min
    {
        return Err(ActionError::invalid_input_at(
            path,
            format!("must {verb} at least {}{long}, got {len}", words(min)),
        ));
    }
    if let Some(max) = max
        && len > max
    {
        return Err(ActionError::invalid_input_at(
            path,
            format!("must {verb} at most {}{long}, got {len}", words(max)),
        ));
    }
    Ok(())
}

/// The pattern of a `regex(pattern = "...")` on a parameter, compiled on
/// its first use (generated code keeps one per parameter in a `static`).
/// The macro has compiled it already, with the same engine, so it compiles.
pub struct Pattern {
    source: &'static str,
    compiled: std::sync::OnceLock<Result<regex_lite::Regex, String>>,
}

impl Pattern {
    /// A pattern, not compiled yet.
    pub const fn new(source: &'static str) -> Self {
        Pattern {
            source,
            compiled: std::sync::OnceLock::new(),
        }
    }

    /// Whether `text` matches somewhere (JSON Schema's `pattern` is not
    /// anchored; write `^...$` for the whole text).
    pub fn is_match(&self, text: &str) -> Result<bool, String> {
        self.compiled
            .get_or_init(|| regex_lite::Regex::new(self.source).map_err(|e| e.to_string()))
            .as_ref()
            .map(|re| re.is_match(text))
            .map_err(Clone::clone)
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &'static str {
        self.source
    }
}

/// Parameter types `regex(...)` applies to: strings, and `Option`s of them
/// (checked when present).
#[diagnostic::on_unimplemented(
    message = "`regex` applies to strings, not to `{Self}`",
    label = "this parameter's type is not a string",
    note = "`regex(pattern = \"...\")` checks a `String` parameter (or an `Option<String>`)"
)]
pub trait PatternParam {
    /// The text, or `None` when an optional parameter is absent.
    fn text(&self) -> Option<&str>;
}
impl PatternParam for String {
    fn text(&self) -> Option<&str> {
        Some(self)
    }
}
impl PatternParam for Box<str> {
    fn text(&self) -> Option<&str> {
        Some(self)
    }
}
impl<T: PatternParam> PatternParam for Option<T> {
    fn text(&self) -> Option<&str> {
        self.as_ref().and_then(T::text)
    }
}

/// Checks `regex(pattern = "...")` on a parameter (generated code).
pub fn check_pattern<V: PatternParam + ?Sized>(
    value: &V,
    pattern: &Pattern,
    path: &str,
) -> Result<(), ActionError> {
    let Some(text) = value.text() else {
        return Ok(());
    };
    match pattern.is_match(text) {
        Ok(true) => Ok(()),
        Ok(false) => Err(ActionError::invalid_input_at(
            path,
            format!("must match the pattern `{}`", pattern.as_str()),
        )),
        Err(e) => Err(ActionError::internal(format!(
            "the pattern `{}` of {path} does not compile: {e}",
            pattern.as_str()
        ))),
    }
}

/// Publishes `length(...)` on map parameters as `minProperties` /
/// `maxProperties` (schemars publishes it on strings and lists only), so
/// the schema says what [`check_length`] enforces (generated code).
pub fn publish_map_lengths(
    mut schema: schemars::Schema,
    lengths: &[(&str, Option<u64>, Option<u64>)],
) -> schemars::Schema {
    let Some(properties) = schema
        .get_mut("properties")
        .and_then(serde_json::Value::as_object_mut)
    else {
        return schema;
    };
    for (key, min, max) in lengths {
        let Some(property) = properties
            .get_mut(*key)
            .and_then(serde_json::Value::as_object_mut)
        else {
            continue;
        };
        let is_object = match property.get("type") {
            Some(serde_json::Value::String(t)) => t == "object",
            Some(serde_json::Value::Array(ts)) => ts.iter().any(|t| t == "object"),
            _ => false,
        };
        if !is_object {
            continue;
        }
        if let Some(min) = min {
            property.insert("minProperties".into(), (*min).into());
        }
        if let Some(max) = max {
            property.insert("maxProperties".into(), (*max).into());
        }
    }
    schema
}

#[cfg(test)]
mod param_check_tests {
    use super::*;

    fn message(r: Result<(), ActionError>) -> String {
        let e = r.unwrap_err();
        assert_eq!(e.code(), crate::ErrorCode::InvalidInput);
        assert_eq!(e.details().unwrap()["path"], "$.p");
        e.message().to_owned()
    }

    #[test]
    fn ranges_compare_exactly_and_skip_absent_values() {
        let (one, hundred) = (Some(Bound::from(1)), Some(Bound::from(100)));
        assert!(check_range(&1u32, one, hundred, "$.p").is_ok());
        assert!(check_range(&100u64, one, hundred, "$.p").is_ok());
        assert_eq!(
            message(check_range(&0u32, one, hundred, "$.p")),
            "$.p: must be at least 1, got 0"
        );
        assert_eq!(
            message(check_range(&101i64, one, hundred, "$.p")),
            "$.p: must be at most 100, got 101"
        );
        // An integer against a fractional bound, and a float against a whole one.
        assert!(check_range(&1u32, Some(Bound::from(1.5)), None, "$.p").is_err());
        assert!(check_range(&0.5f64, one, None, "$.p").is_err());
        assert!(check_range(&u64::MAX, None, Some(Bound::from(u64::MAX)), "$.p").is_ok());
        assert!(check_range(&None::<u32>, one, hundred, "$.p").is_ok());
        assert!(check_range(&Some(0u32), one, hundred, "$.p").is_err());
    }

    #[test]
    fn lengths_count_characters_items_and_entries() {
        // Four characters, eight bytes: JSON Schema counts characters.
        assert!(check_length(&"żółw".to_owned(), Some(4), Some(4), "$.p").is_ok());
        assert_eq!(
            message(check_length(&String::new(), Some(1), None, "$.p")),
            "$.p: must be at least 1 character long, got 0"
        );
        assert_eq!(
            message(check_length(&vec![1, 2, 3], None, Some(2), "$.p")),
            "$.p: must have at most 2 items, got 3"
        );
        let map: std::collections::BTreeMap<String, u8> = Default::default();
        assert_eq!(
            message(check_length(&map, Some(1), None, "$.p")),
            "$.p: must have at least 1 entry, got 0"
        );
        assert!(check_length(&None::<String>, Some(1), None, "$.p").is_ok());
    }

    #[test]
    fn patterns_search_and_compile_once() {
        static P: Pattern = Pattern::new("^[a-z]+$");
        assert!(check_pattern(&"abc".to_owned(), &P, "$.p").is_ok());
        assert_eq!(
            message(check_pattern(&"ab1".to_owned(), &P, "$.p")),
            "$.p: must match the pattern `^[a-z]+$`"
        );
        assert!(check_pattern(&None::<String>, &P, "$.p").is_ok());
        assert!(P.compiled.get().is_some());
    }

    #[test]
    fn map_lengths_are_published_on_objects_only() {
        let schema = schemars::json_schema!({
            "type": "object",
            "properties": {
                "tags": {"type": ["object", "null"]},
                "name": {"type": "string", "minLength": 1},
            }
        });
        let schema = publish_map_lengths(
            schema,
            &[("tags", Some(1), Some(8)), ("name", Some(1), Some(9))],
        );
        let schema = schema.as_value();
        assert_eq!(schema["properties"]["tags"]["minProperties"], 1);
        assert_eq!(schema["properties"]["tags"]["maxProperties"], 8);
        assert!(schema["properties"]["name"].get("maxProperties").is_none());
    }
}
