//! The subjects a connector serves on NATS, and the rule every token of
//! them follows.
//!
//! Everything of one connector for one tenant is under
//! `spoke.<tenant>.<connector>`:
//!
//! | subject | what | who answers |
//! |---|---|---|
//! | `spoke.<tenant>.<connector>.<action>` | call an action | one instance (queue group `q`) |
//! | `spoke.<tenant>.<connector>.operator.<operator>` | resolve a search operator's value | one instance (`q`) |
//! | `spoke.<tenant>.<connector>.describe` | the manifest | one instance (`q`) |
//! | `spoke.<tenant>.<connector>.instance.<id>.<action>` (`.operator.<op>`, `.describe`) | the same, at one instance | that instance |
//! | `spoke.<tenant>.<connector>.sync.<sync>` | start a sync run ([`super::sync`]) | one instance (`q`) |
//! | `spoke.<tenant>.<connector>.cancel.<request id>` | cancel a call or a sync run (published, no answer) | the instance running it |
//!
//! The number of tokens keeps these apart: an action is always the fourth
//! and last token, so an action may be named `instance`, `operator` or
//! `cancel`; only `describe` is taken. Every token is `[A-Za-z0-9_-]+`
//! (the names ADR-32 allows for services and endpoints), checked when the
//! connector starts, so no name can add a token or a wildcard.

use std::fmt;

/// The first token of every Spoke subject.
pub const ROOT: &str = "spoke";

pub use crate::env::DEFAULT_TENANT;

/// The token of the describe endpoint, taken from the action names.
pub const DESCRIBE: &str = "describe";

/// A name that cannot be a subject token: what it is, the name, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} `{name}` cannot be served on NATS: {why}")]
pub struct SubjectError {
    /// What the name is: `action`, `tenant`, `instance id`, ...
    pub kind: &'static str,
    /// The name.
    pub name: String,
    /// Why it cannot be a token.
    pub why: String,
}

/// Checks that `name` can be one subject token: `[A-Za-z0-9_-]+`.
///
/// ```
/// use spoke::nats::subjects::check_token;
/// assert!(check_token("action", "get_issue").is_ok());
/// let err = check_token("action", "get.issue").unwrap_err();
/// assert!(err.to_string().contains("`.`"), "{err}");
/// ```
pub fn check_token(kind: &'static str, name: &str) -> Result<(), SubjectError> {
    let fail = |why: String| SubjectError {
        kind,
        name: name.to_owned(),
        why,
    };
    if name.is_empty() {
        return Err(fail("it is empty".into()));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-')))
    {
        return Err(fail(format!(
            "it contains `{c}`, and a subject token has only letters, digits, `_` and `-`"
        )));
    }
    Ok(())
}

/// The subjects of one connector for one tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subjects {
    base: String,
}

impl Subjects {
    /// `spoke.<tenant>.<connector>`, both names checked ("" is the
    /// [`DEFAULT_TENANT`]).
    ///
    /// ```
    /// use spoke::nats::subjects::Subjects;
    /// let s = Subjects::new("", "files").unwrap();
    /// assert_eq!(s.action("read"), "spoke.default.files.read");
    /// assert_eq!(s.instance("files-1").action("read"), "spoke.default.files.instance.files-1.read");
    /// assert!(Subjects::new("acme", "my files").is_err());
    /// ```
    pub fn new(tenant: &str, connector: &str) -> Result<Subjects, SubjectError> {
        let tenant = if tenant.is_empty() {
            DEFAULT_TENANT
        } else {
            tenant
        };
        check_token("tenant", tenant)?;
        check_token("connector", connector)?;
        Ok(Subjects {
            base: format!("{ROOT}.{tenant}.{connector}"),
        })
    }

    /// `spoke.<tenant>.<connector>`.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// An action's subject.
    pub fn action(&self, action: &str) -> String {
        format!("{}.{action}", self.base)
    }

    /// A search operator's subject.
    pub fn operator(&self, operator: &str) -> String {
        format!("{}.operator.{operator}", self.base)
    }

    /// The describe endpoint's subject.
    pub fn describe(&self) -> String {
        format!("{}.{DESCRIBE}", self.base)
    }

    /// The subjects of one instance: the same names under
    /// `spoke.<tenant>.<connector>.instance.<id>`.
    pub fn instance(&self, id: &str) -> Subjects {
        Subjects {
            base: format!("{}.instance.{id}", self.base),
        }
    }

    /// Everything addressed to one instance: `...instance.<id>.>`.
    pub fn instance_wildcard(&self, id: &str) -> String {
        format!("{}.instance.{id}.>", self.base)
    }

    /// A sync's subject: a request there starts a run.
    pub fn sync(&self, sync: &str) -> String {
        format!("{}.sync.{sync}", self.base)
    }

    /// Every sync of this connector: `...sync.*`.
    pub fn sync_wildcard(&self) -> String {
        format!("{}.sync.*", self.base)
    }

    /// Where a caller cancels the call it sent with `request_id`.
    pub fn cancel(&self, request_id: &str) -> String {
        format!("{}.cancel.{request_id}", self.base)
    }

    /// Every cancel of this connector: `...cancel.*`.
    pub fn cancel_wildcard(&self) -> String {
        format!("{}.cancel.*", self.base)
    }
}

impl fmt::Display for Subjects {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.base)
    }
}

/// What a subject under one instance's prefix asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target<'a> {
    /// An action.
    Action(&'a str),
    /// A search operator.
    Operator(&'a str),
    /// The manifest.
    Describe,
    /// A sync run.
    Sync(&'a str),
}

/// What `rest` (the tokens after `...instance.<id>.`) asks for, or `None`
/// for a subject no endpoint serves.
///
/// ```
/// use spoke::nats::subjects::{Target, target_of};
/// assert_eq!(target_of("echo"), Some(Target::Action("echo")));
/// assert_eq!(target_of("operator.ext"), Some(Target::Operator("ext")));
/// assert_eq!(target_of("describe"), Some(Target::Describe));
/// assert_eq!(target_of("a.b.c"), None);
/// ```
pub fn target_of(rest: &str) -> Option<Target<'_>> {
    let mut tokens = rest.split('.');
    match (tokens.next(), tokens.next(), tokens.next()) {
        (Some(DESCRIBE), None, _) => Some(Target::Describe),
        (Some(action), None, _) if !action.is_empty() => Some(Target::Action(action)),
        (Some("operator"), Some(op), None) if !op.is_empty() => Some(Target::Operator(op)),
        (Some("sync"), Some(sync), None) if !sync.is_empty() => Some(Target::Sync(sync)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens() {
        assert!(check_token("tenant", "acme-eu_1").is_ok());
        for bad in ["", "a b", "a.b", "a*", ">", "é"] {
            let err = check_token("tenant", bad).unwrap_err();
            assert_eq!(err.kind, "tenant");
            assert!(err.to_string().starts_with("tenant `"), "{err}");
        }
    }

    #[test]
    fn layout() {
        let s = Subjects::new("acme", "files").unwrap();
        assert_eq!(s.operator("ext"), "spoke.acme.files.operator.ext");
        assert_eq!(s.describe(), "spoke.acme.files.describe");
        assert_eq!(s.cancel("r1"), "spoke.acme.files.cancel.r1");
        assert_eq!(s.cancel_wildcard(), "spoke.acme.files.cancel.*");
        assert_eq!(s.instance_wildcard("i1"), "spoke.acme.files.instance.i1.>");
        assert_eq!(
            s.instance("i1").operator("ext"),
            "spoke.acme.files.instance.i1.operator.ext"
        );
        assert_eq!(target_of("operator"), Some(Target::Action("operator")));
        assert_eq!(target_of("sync.ledger"), Some(Target::Sync("ledger")));
        assert_eq!(s.sync("ledger"), "spoke.acme.files.sync.ledger");
        assert_eq!(target_of(""), None);
    }
}
