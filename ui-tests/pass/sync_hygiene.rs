// Generated sync code names everything through absolute paths: it compiles
// without the implicit prelude, and through a re-exported crate.
#![no_implicit_prelude]

extern crate spoke as my_spoke;

fn upgrade(
    _from: u32,
    old: ::spoke::serde_json::Value,
) -> ::std::result::Result<::std::string::String, &'static str> {
    old.as_str().map(::std::string::ToString::to_string).ok_or("not a string")
}

#[::spoke::connector(name = "bare")]
pub struct Bare {}

#[::spoke::connector]
impl Bare {
    #[sync(modes = "full, incremental", version = 2, migrate = upgrade, error_budget = "1%", sweep)]
    async fn pages(
        &self,
        ctx: &::spoke::SyncContext<::std::string::String>,
    ) -> ::std::result::Result<(), ::spoke::ActionError> {
        ctx.checkpoint(&::std::string::String::new()).await
    }

    #[sync(version = 2, migrate = Self::keep)]
    async fn fails(&self, _ctx: &::spoke::SyncContext<u32>) -> ::anyhow::Result<()> {
        ::std::result::Result::Ok(())
    }

    fn keep(from: u32, _old: ::spoke::serde_json::Value) -> ::std::result::Result<u32, ::std::string::String> {
        ::std::result::Result::Ok(from)
    }

    #[sync]
    async fn unit(&self, _ctx: &::spoke::SyncContext) {}
}

#[my_spoke::connector(crate = my_spoke, name = "renamed")]
pub struct Renamed {}

#[my_spoke::connector(crate = my_spoke)]
impl Renamed {
    #[sync]
    async fn pages(&self, ctx: &my_spoke::SyncContext) {
        ctx.cancelled().await;
    }
}

fn main() {}
