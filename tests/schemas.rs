//! Walks the registry of every example (through its `describe` output) and
//! checks every generated schema: valid JSON Schema 2020-12, and action inputs
//! of parameters self-contained objects (no `$ref`/`$defs`, no top-level
//! combinators).

mod common;

use serde_json::{Value, json};

fn examples() -> Vec<String> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/examples");
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("examples dir")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter_map(|n| n.strip_suffix(".rs").map(str::to_owned))
        .collect();
    names.sort();
    names
}

fn manifest(example: &str) -> Value {
    let out = common::run(common::example(example).arg("describe"));
    assert!(
        out.status.success(),
        "{example} describe failed: {}",
        common::stderr(&out)
    );
    common::stdout_json(&out)
}

fn assert_valid_schema(what: &str, schema: &Value) {
    assert_eq!(schema["$schema"], spoke::schema::DIALECT, "{what}: dialect");
    if let Err(e) = jsonschema::meta::validate(schema) {
        panic!("{what}: not a valid JSON Schema: {e}\n{schema:#}");
    }
}

#[test]
fn every_example_schema_follows_the_rules() {
    let names = examples();
    assert!(
        names.len() >= 2,
        "expected several examples, found {names:?}"
    );
    for example in names {
        let m = manifest(&example);
        assert_eq!(m["spoke"], 1, "{example}");
        assert_valid_schema(&format!("{example} config"), &m["config"]);
        let actions = m["actions"].as_array().expect("actions array");
        assert!(!actions.is_empty(), "{example} has no actions");
        for action in actions {
            let name = format!("{example}.{}", action["name"].as_str().unwrap());
            let input = &action["input_schema"];
            assert_valid_schema(&format!("{name} input"), input);
            assert_valid_schema(&format!("{name} output"), &action["output_schema"]);
            // Bytes, a Protobuf message or JSON Lines in: no parameters.
            if action["input_encodings"][0] != "json" {
                assert!(
                    action["input_encodings"]
                        .as_array()
                        .is_some_and(|e| !e.is_empty()),
                    "{name}: {action}"
                );
                continue;
            }
            let problems = spoke::schema::check_input_schema(input);
            assert!(problems.is_empty(), "{name}: {problems:?}");
            assert_eq!(
                input["additionalProperties"],
                json!(false),
                "{name}: generated inputs reject unknown fields"
            );
        }
    }
}

#[test]
fn the_echo_input_schema_accepts_what_the_action_accepts() {
    let m = manifest("echo");
    let validator =
        jsonschema::draft202012::new(&m["actions"][0]["input_schema"]).expect("compiles");
    assert!(validator.is_valid(&json!({"text": "hi"})));
    assert!(!validator.is_valid(&json!({})));
    assert!(!validator.is_valid(&json!({"text": 1})));
    assert!(!validator.is_valid(&json!({"text": "hi", "extra": true})));
}
