// A `Secret<_>` field is secret by its type alone: without the `secret` key,
// through an alias, and inside `Option`. The schema marks each `writeOnly`.
#![deny(warnings)]
use spoke::prelude::*;

type Token = Secret<String>;

/// Talks to an API.
#[connector(name = "api")]
pub struct Api {
    /// No `secret` key.
    #[config_field]
    key: Secret<String>,
    /// Through an alias.
    #[config_field]
    token: Option<Token>,
    /// With the key, as before.
    #[config_field(secret)]
    pin: Option<Secret<u32>>,
    /// Not a secret.
    #[config_field(default = "https://api.example.invalid")]
    url: String,
}

fn main() {
    let fields = <Api as spoke::Connector>::REGISTRATION.config_fields;
    let secret: Vec<(&str, bool)> = fields.iter().map(|f| (f.key, f.secret)).collect();
    assert_eq!(
        secret,
        [("key", true), ("token", true), ("pin", true), ("url", false)]
    );
}
