//! [`Secret`]: a configuration value that never shows itself.

use std::fmt;
use std::str::FromStr;

use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Deserializer};

/// What a [`Secret`] prints instead of its value.
pub const REDACTED: &str = "[redacted]";

/// A secret value (API key, password, token).
///
/// `Debug` and `Display` print `[redacted]`, it has no `Serialize` impl (so it
/// cannot end up in a manifest, a log line written through serde, or an
/// action's output), and its config schema is marked `writeOnly`. Read the
/// value deliberately with [`Secret::expose`].
///
/// ```
/// use spoke::Secret;
///
/// let token: Secret<String> = "hunter2".parse().unwrap();
/// assert_eq!(format!("{token:?} {token}"), "[redacted] [redacted]");
/// assert_eq!(token.expose(), "hunter2");
/// ```
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    /// Wraps a value.
    pub const fn new(value: T) -> Self {
        Secret(value)
    }

    /// The secret value. Every read is deliberate and easy to grep for.
    pub fn expose(&self) -> &T {
        &self.0
    }

    /// Unwraps the secret value.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl<T> fmt::Display for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl<T> From<T> for Secret<T> {
    fn from(value: T) -> Self {
        Secret(value)
    }
}

impl From<&str> for Secret<String> {
    fn from(value: &str) -> Self {
        Secret(value.to_owned())
    }
}

/// The error of parsing a [`Secret`]: the inner type's error with the value hidden.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretParseError(String);

impl fmt::Display for SecretParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SecretParseError {}

impl<T: FromStr> FromStr for Secret<T>
where
    T::Err: fmt::Display,
{
    type Err = SecretParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // The inner error may quote the input; say only what kind of problem it was.
        T::from_str(s).map(Secret).map_err(|_| {
            SecretParseError(format!(
                "not a valid {} (value hidden)",
                std::any::type_name::<T>()
            ))
        })
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Secret<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        T::deserialize(deserializer).map(Secret)
    }
}

impl<T: JsonSchema> JsonSchema for Secret<T> {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> std::borrow::Cow<'static, str> {
        format!("Secret_{}", T::schema_name()).into()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let mut schema = generator.subschema_for::<T>();
        schema.insert("writeOnly".into(), true.into());
        schema
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_formats_its_value() {
        let s = Secret::new(String::from("topsecret"));
        assert!(!format!("{s:?}").contains("topsecret"));
        assert!(!format!("{s}").contains("topsecret"));
        assert!(!format!("{:?}", Some(&s)).contains("topsecret"));
    }

    #[test]
    fn parse_errors_hide_the_value() {
        let err = "secret-but-not-a-number"
            .parse::<Secret<u32>>()
            .unwrap_err();
        assert!(!err.to_string().contains("secret-but"), "{err}");
    }

    #[test]
    fn schema_is_write_only() {
        let schema = schemars::schema_for!(Secret<String>);
        assert_eq!(
            schema.get("writeOnly"),
            Some(&serde_json::Value::Bool(true))
        );
        assert_eq!(schema.get("type"), Some(&serde_json::json!("string")));
    }
}
