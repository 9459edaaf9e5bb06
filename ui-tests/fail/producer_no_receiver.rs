use spoke::prelude::*;

#[connector(name = "chat")]
pub struct Chat {}

#[connector]
impl Chat {
    #[producer]
    async fn listen(ctx: &Context) -> Result<(), ActionError> {
        ctx.cancelled().await;
        Ok(())
    }
}

fn main() {}
