// Generated producer code names everything through absolute paths: it
// compiles without the implicit prelude, and through a re-exported crate.
#![no_implicit_prelude]

extern crate spoke as my_spoke;

#[::spoke::connector(name = "bare")]
pub struct Bare {}

#[::spoke::connector]
impl Bare {
    #[producer]
    async fn listen(
        &self,
        ctx: &::spoke::Context,
    ) -> ::std::result::Result<(), ::spoke::ActionError> {
        ctx.cancelled().await;
        ::std::result::Result::Ok(())
    }

    #[producer(restart = "always")]
    async fn fails(&self) -> ::anyhow::Result<()> {
        ::std::result::Result::Ok(())
    }

    #[producer]
    async fn unit(&self) {}
}

#[my_spoke::connector(crate = my_spoke, name = "renamed")]
pub struct Renamed {}

#[my_spoke::connector(crate = my_spoke)]
impl Renamed {
    #[producer]
    async fn listen(&self, ctx: &my_spoke::Context) {
        ctx.cancelled().await;
    }
}

fn main() {}
