//! What `describe` prints: the manifest plus LibreFang's `fields` form.
//!
//! LibreFang's dashboard renders a configuration form for a sidecar from the
//! `fields` array of its `--describe` output, and stores each value an
//! operator enters as an environment variable **named by the field's `key`**
//! (secrets in its `secrets.env`, the rest in the channel's
//! `[sidecar_channels.env]`), which the sidecar reads when it is spawned. So
//! `key` is the environment variable the connector reads the field from.
//! Every input but `select` is a text box, and a field left blank is not set
//! at all (the connector's default applies). Spoke builds the form from the
//! connector's `#[config_field]`s, in declaration order:
//!
//! | form key | from the field |
//! |---|---|
//! | `key` | its environment variable: `env = "..."`, else `<CONNECTOR>_<FIELD>` |
//! | `label` | its `label`, else the field's name in Title Case (`api_token` is `Api Token`) |
//! | `type` | `secret` for secret fields (a password box; LibreFang keeps the value in `secrets.env`); else `select` when its schema has an `enum` (`options` lists the values as strings); else `bool` (boolean), `number` (integer or number), `list` (array: typed as `a, b, c`) or `text` |
//! | `required` | required (not `Option`, no default): LibreFang refuses to save the form while it is blank |
//! | `placeholder` | its `placeholder`, else its default as it would be typed (`100`, `a, b`; never a secret's), else its `example`, else `""` |
//! | `advanced` | marked `advanced` (shown under "Show advanced"; a required field cannot be) |
//! | `options` | `select` only |
//!
//! The values typed into such a form parse as the environment's values do
//! (see [`config`](crate::config)): `true`/`yes`/`on`/`1` for booleans, a
//! comma-separated list or a JSON array for lists.

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
    /// The environment variable the field is read from: LibreFang stores
    /// the value entered in the form under this name.
    pub key: String,
    /// What the form calls it: its `label`, else the field's name in Title Case.
    pub label: String,
    /// The input to show.
    #[serde(rename = "type")]
    pub kind: FieldType,
    /// Whether it must be filled.
    pub required: bool,
    /// What an empty box shows: the placeholder, else the default as typed,
    /// else the example (`""` when none).
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
                key: def.env.to_owned(),
                label: def.label.map_or_else(|| title_case(def.key), str::to_owned),
                kind,
                required: def.required,
                placeholder: placeholder(def),
                advanced: def.advanced,
                options,
            }
        })
        .collect()
}

/// What an empty box shows: the field's placeholder, else its default as an
/// operator would type it, else its example.
fn placeholder(def: &ConfigFieldDef) -> String {
    if let Some(placeholder) = def.placeholder {
        return placeholder.to_owned();
    }
    // `default` is never given for secrets.
    if let Some(default) = (def.default)() {
        return as_typed(&default);
    }
    def.example.unwrap_or("").to_owned()
}

/// A value as it is typed into a form or an environment variable: strings
/// bare, lists comma-separated, anything else as JSON.
fn as_typed(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Array(items) if items.iter().all(|v| !v.is_array() && !v.is_object()) => {
            items.iter().map(as_typed).collect::<Vec<_>>().join(", ")
        }
        other => other.to_string(),
    }
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
                env: "SLACK_API_TOKEN",
                required: true,
                secret: true,
                placeholder: Some("xoxb-..."),
                ..def("api_token", |g| g.subschema_for::<String>())
            },
            ConfigFieldDef {
                env: "SLACK_VERBOSE",
                default: || Some(json!(false)),
                ..def("verbose", |g| g.subschema_for::<bool>())
            },
            ConfigFieldDef {
                env: "SLACK_MAX_ITEMS",
                default: || Some(json!(100)),
                ..def("max_items", |g| g.subschema_for::<u32>())
            },
            ConfigFieldDef {
                env: "RATIO",
                example: Some("0.5"),
                ..def("ratio", |g| g.subschema_for::<f64>())
            },
            ConfigFieldDef {
                env: "SLACK_TAGS",
                advanced: true,
                label: Some("Tags"),
                default: || Some(json!(["a", "b c", 3])),
                ..def("tag-list", |g| g.subschema_for::<Vec<String>>())
            },
            ConfigFieldDef {
                env: "SLACK_LEVEL",
                default: || Some(json!("info")),
                ..def("level", |g| g.subschema_for::<Level>())
            },
            def("plain", |g| g.subschema_for::<Plain>()),
            ConfigFieldDef {
                default: || Some(json!({"a": [1]})),
                ..def("root", |g| g.subschema_for::<std::path::PathBuf>())
            },
        ];
        let form = serde_json::to_value(fields(&defs)).unwrap();
        assert_eq!(
            form,
            json!([
                {"key": "SLACK_API_TOKEN", "label": "Api Token", "type": "secret", "required": true, "placeholder": "xoxb-...", "advanced": false},
                {"key": "SLACK_VERBOSE", "label": "Verbose", "type": "bool", "required": false, "placeholder": "false", "advanced": false},
                {"key": "SLACK_MAX_ITEMS", "label": "Max Items", "type": "number", "required": false, "placeholder": "100", "advanced": false},
                {"key": "RATIO", "label": "Ratio", "type": "number", "required": false, "placeholder": "0.5", "advanced": false},
                {"key": "SLACK_TAGS", "label": "Tags", "type": "list", "required": false, "placeholder": "a, b c, 3", "advanced": true},
                {"key": "SLACK_LEVEL", "label": "Level", "type": "select", "required": false, "placeholder": "info", "advanced": false, "options": ["debug", "info"]},
                {"key": "X", "label": "Plain", "type": "select", "required": false, "placeholder": "", "advanced": false, "options": ["A", "B"]},
                {"key": "X", "label": "Root", "type": "text", "required": false, "placeholder": "{\"a\":[1]}", "advanced": false},
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
