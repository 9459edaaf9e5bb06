//! Two actions with one name, declared in different places, fail start-up
//! with an error naming both. (Its own test binary: the registry here is
//! invalid on purpose.)

use spoke::prelude::*;
use spoke::{Registry, RegistryError};

#[connector(name = "twice")]
pub struct Twice {}

#[connector]
impl Twice {
    #[action]
    async fn ping(&self) -> String {
        "impl".into()
    }
}

mod elsewhere {
    use super::Twice;
    use spoke::prelude::*;

    #[action(connector = Twice, name = "ping")]
    async fn ping_again(_conn: &Twice) -> String {
        "free".into()
    }
}

#[test]
fn start_up_fails_naming_both_declarations() {
    let err = Registry::from_inventory().unwrap_err();
    let RegistryError::DuplicateAction {
        connector,
        kind,
        name,
        first,
        second,
    } = &err
    else {
        panic!("expected a duplicate action error, got {err}");
    };
    assert_eq!(
        (connector.as_str(), *kind, name.as_str()),
        ("twice", "action", "ping")
    );
    let mut places = [first.as_str(), second.as_str()];
    places.sort();
    assert!(
        places
            .iter()
            .all(|p| p.starts_with("tests/duplicate_actions.rs:")),
        "{places:?}"
    );
    assert_ne!(first, second);
    let text = err.to_string();
    assert!(
        text.contains(first.as_str()) && text.contains(second.as_str()),
        "{text}"
    );
}

#[test]
fn check_manifest_turns_the_duplicate_into_a_failing_test() {
    let problems = spoke::testing::check_manifest().unwrap_err();
    let text = problems.to_string();
    assert_eq!(problems.0.len(), 1, "{text}");
    assert_eq!(problems.0[0].place, "registration");
    assert!(
        text.contains("connector `twice` has two actions named `ping`"),
        "{text}"
    );
    assert!(text.contains("tests/duplicate_actions.rs"), "{text}");
}
