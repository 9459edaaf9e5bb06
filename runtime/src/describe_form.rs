//! What `describe` prints: the manifest plus LibreFang's `fields` form.
//!
//! LibreFang's dashboard renders a configuration form for a sidecar from the
//! `fields` array of its `--describe` output. Spoke builds it from the
//! connector's `#[config_field]`s, in declaration order:
//!
//! | form key | from the field |
//! |---|---|
//! | `key` | its key |
//! | `label` | its `label`, else the key in Title Case (`api_token` is `Api Token`) |
//! | `type` | `secret` for secret fields; else `select` when its schema has an `enum` (`options` lists the values as strings); else `bool` (boolean), `number` (integer or number), `list` (array) or `text` |
//! | `required` | required (not `Option`, no default) |
//! | `placeholder` | its `placeholder`, `""` when unset |
//! | `advanced` | marked `advanced` |
//! | `options` | `select` only |

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::ConfigFieldDef;
use crate::manifest::Manifest;
use crate::registry::ConnectorType;

/// The kind of input a form shows for a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldType {
    /// `"secret"`: a password box (secret fields). (Not named `Secret`: a
    /// second public item of that name would make rustc spell out
    /// `spoke::Secret` in every diagnostic about `Secret`.)
    #[serde(rename = "secret")]
    Password,
    /// A checkbox.
    Bool,
    /// A number box (integers and numbers).
    Number,
    /// A list of values (arrays).
    List,
    /// A choice among `options` (enums).
    Select,
    /// A text box (everything else).
    Text,
}

/// One entry of LibreFang's `fields` form.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FormField {
    /// The config key.
    pub key: String,
    /// What the form calls it.
    pub label: String,
    /// The input to show.
    #[serde(rename = "type")]
    pub kind: FieldType,
    /// Whether it must be filled.
    pub required: bool,
    /// Placeholder text (`""` when unset).
    pub placeholder: String,
    /// Shown under "advanced".
    pub advanced: bool,
    /// The choices, for `select` fields only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options: Option<Vec<String>>,
}

/// The `fields` form of these config fields, in their order.
pub fn fields(defs: &[ConfigFieldDef]) -> Vec<FormField> {
    let mut generator = crate::schema::input_generator();
    defs.iter()
        .map(|def| {
            let schema = (def.schema)(&mut generator).to_value();
            let (kind, options) = if def.secret {
                (FieldType::Password, None)
            } else {
                kind_of(&schema)
            };
            FormField {
                key: def.key.to_owned(),
                label: def.label.map_or_else(|| title_case(def.key), str::to_owned),
                kind,
                required: def.required,
                placeholder: def.placeholder.unwrap_or("").to_owned(),
                advanced: def.advanced,
                options,
            }
        })
        .collect()
}

/// The `describe` document: every key of the manifest, in order, then
/// `fields`.
#[derive(Debug, Clone, Serialize)]
pub struct Describe<'a> {
    /// The manifest.
    #[serde(flatten)]
    pub manifest: &'a Manifest,
    /// LibreFang's config form.
    pub fields: Vec<FormField>,
}

/// What `describe` prints for a connector type.
pub fn describe(ty: &ConnectorType) -> Describe<'_> {
    Describe {
        manifest: ty.manifest(),
        fields: fields(ty.registration().config_fields),
    }
}

fn kind_of(schema: &Value) -> (FieldType, Option<Vec<String>>) {
    if let Some(values) = enum_values(schema) {
        let options = values
            .iter()
            .map(|v| match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect();
        return (FieldType::Select, Some(options));
    }
    let kind = match primary_type(schema) {
        Some("boolean") => FieldType::Bool,
        Some("integer" | "number") => FieldType::Number,
        Some("array") => FieldType::List,
        _ => FieldType::Text,
    };
    (kind, None)
}

/// The values of an `enum`, or of a `oneOf`/`anyOf` of `const`s and `enum`s
/// (what schemars writes for enums whose variants have doc comments).
fn enum_values(schema: &Value) -> Option<Vec<Value>> {
    if let Some(Value::Array(values)) = schema.get("enum") {
        let values: Vec<Value> = values.iter().filter(|v| !v.is_null()).cloned().collect();
        return (!values.is_empty()).then_some(values);
    }
    for key in ["oneOf", "anyOf"] {
        let Some(Value::Array(branches)) = schema.get(key) else {
            continue;
        };
        let mut values = Vec::new();
        for branch in branches {
            if let Some(c) = branch.get("const") {
                values.push(c.clone());
            } else if let Some(Value::Array(vs)) = branch.get("enum") {
                values.extend(vs.iter().cloned());
            } else if primary_type(branch).is_none() && branch.get("type").is_some() {
                // `{"type": "null"}`: the optional part of an `Option<Enum>`.
            } else {
                return None;
            }
        }
        values.retain(|v| !v.is_null());
        return (!values.is_empty()).then_some(values);
    }
    None
}

/// The schema's `type`, ignoring `"null"` in a list of types.
fn primary_type(schema: &Value) -> Option<&str> {
    match schema.get("type")? {
        Value::String(t) if t != "null" => Some(t),
        Value::Array(types) => types
            .iter()
            .filter_map(Value::as_str)
            .find(|t| *t != "null"),
        _ => None,
    }
}

/// `api_token` to `Api Token`; `-` also separates words.
fn title_case(key: &str) -> String {
    key.split(['_', '-'])
        .filter(|w| !w.is_empty())
        .map(|w| {
            let mut chars = w.chars();
            match chars.next() {
                Some(first) => first.to_uppercase().chain(chars).collect::<String>(),
                None => String::new(),
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use schemars::JsonSchema;
    use serde_json::json;

    #[derive(JsonSchema)]
    #[allow(dead_code)]
    #[serde(rename_all = "lowercase")]
    enum Level {
        /// Everything.
        Debug,
        /// Less.
        Info,
    }

    #[derive(JsonSchema)]
    #[allow(dead_code)]
    enum Plain {
        A,
        B,
    }

    fn def(
        key: &'static str,
        schema: fn(&mut schemars::SchemaGenerator) -> schemars::Schema,
    ) -> ConfigFieldDef {
        ConfigFieldDef {
            key,
            env: "X",
            required: false,
            secret: false,
            description: "",
            label: None,
            placeholder: None,
            example: None,
            advanced: false,
            schema,
            default: || None,
        }
    }

    #[test]
    fn every_kind_of_field() {
        let defs = [
            ConfigFieldDef {
                required: true,
                secret: true,
                placeholder: Some("xoxb-..."),
                ..def("api_token", |g| g.subschema_for::<String>())
            },
            def("verbose", |g| g.subschema_for::<bool>()),
            def("max_items", |g| g.subschema_for::<u32>()),
            def("ratio", |g| g.subschema_for::<f64>()),
            ConfigFieldDef {
                advanced: true,
                label: Some("Tags"),
                ..def("tag-list", |g| g.subschema_for::<Vec<String>>())
            },
            def("level", |g| g.subschema_for::<Level>()),
            def("plain", |g| g.subschema_for::<Plain>()),
            def("root", |g| g.subschema_for::<std::path::PathBuf>()),
        ];
        let form = serde_json::to_value(fields(&defs)).unwrap();
        assert_eq!(
            form,
            json!([
                {"key": "api_token", "label": "Api Token", "type": "secret", "required": true, "placeholder": "xoxb-...", "advanced": false},
                {"key": "verbose", "label": "Verbose", "type": "bool", "required": false, "placeholder": "", "advanced": false},
                {"key": "max_items", "label": "Max Items", "type": "number", "required": false, "placeholder": "", "advanced": false},
                {"key": "ratio", "label": "Ratio", "type": "number", "required": false, "placeholder": "", "advanced": false},
                {"key": "tag-list", "label": "Tags", "type": "list", "required": false, "placeholder": "", "advanced": true},
                {"key": "level", "label": "Level", "type": "select", "required": false, "placeholder": "", "advanced": false, "options": ["debug", "info"]},
                {"key": "plain", "label": "Plain", "type": "select", "required": false, "placeholder": "", "advanced": false, "options": ["A", "B"]},
                {"key": "root", "label": "Root", "type": "text", "required": false, "placeholder": "", "advanced": false},
            ])
        );
    }

    #[test]
    fn numeric_enums_become_string_options() {
        let schema = json!({"type": "integer", "enum": [1, 2, 3]});
        assert_eq!(
            kind_of(&schema),
            (
                FieldType::Select,
                Some(vec!["1".into(), "2".into(), "3".into()])
            )
        );
        let nullable = json!({"type": ["integer", "null"]});
        assert_eq!(kind_of(&nullable), (FieldType::Number, None));
    }
}
