// Generated code names everything through absolute paths: it compiles in a
// crate without the implicit prelude.
#![no_implicit_prelude]

/// A connector spelled without the prelude.
#[::spoke::connector(name = "bare", init = Self::init)]
pub struct Bare {
    #[config_field(default = 3)]
    retries: u32,
    #[config_field(default = "x")]
    label: ::std::string::String,
    #[config_field]
    tag: ::std::option::Option<::std::string::String>,
    #[config_field(default)]
    list: ::std::vec::Vec<::std::string::String>,
    #[config_field(secret)]
    token: ::std::option::Option<::spoke::Secret<::std::string::String>>,
    state: ::std::sync::Mutex<::std::vec::Vec<u8>>,
}

impl Bare {
    async fn init(&mut self) -> ::std::result::Result<(), ::std::string::String> {
        ::std::result::Result::Ok(())
    }
}

mod types {
    // schemars' own derive needs `Into` in scope (not Spoke's business: our
    // generated code brings what it needs itself, outside this module).
    #[allow(unused_imports)]
    use ::core::convert::Into as _;

    #[derive(::serde::Deserialize, ::serde::Serialize, ::schemars::JsonSchema)]
    #[schemars(crate = "::schemars")]
    pub struct Point {
        x: i64,
        y: i64,
    }
}
use self::types::Point;

#[::spoke::connector]
impl Bare {
    /// Adds.
    #[action(read)]
    fn add(
        &self,
        #[schemars(range(min = 1, max = 10))] a: u32,
        b: ::std::option::Option<u32>,
    ) -> u32 {
        let _ = (&self.label, &self.tag, &self.list, &self.token, &self.state);
        a + b.unwrap_or(self.retries)
    }

    /// Greets.
    #[action(read)]
    fn greet(
        &self,
        #[schemars(length(min = 1), regex(pattern = "^[a-z]+$"), description = "A name.")]
        name: ::std::string::String,
        #[serde(default, rename = "n")]
        #[schemars(range(max = 5))]
        times: u8,
        #[schemars(length(max = 3))] tags: ::std::option::Option<::std::vec::Vec<u8>>,
    ) -> ::std::string::String {
        let _ = (times, tags);
        name
    }

    #[action]
    async fn point(
        &self,
        ctx: &::spoke::Context,
        #[input] p: Point,
    ) -> ::std::result::Result<Point, ::spoke::ActionError> {
        let _ = ctx;
        ::std::result::Result::Ok(p)
    }

    #[action]
    fn fails(&self) -> ::anyhow::Result<()> {
        ::std::result::Result::Ok(())
    }

    #[search_operator(attribute = "name")]
    fn by_name(&self, value: ::std::string::String) -> ::std::vec::Vec<::std::string::String> {
        ::std::vec![value]
    }
}

#[::spoke::action(connector = Bare)]
fn free(conn: &Bare, n: u32) -> u32 {
    conn.retries + n
}

fn main() {}
