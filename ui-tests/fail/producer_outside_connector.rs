use spoke::prelude::*;

#[connector(name = "chat")]
pub struct Chat {}

impl Chat {
    #[producer]
    async fn listen(&self, ctx: &Context) -> Result<(), ActionError> {
        ctx.cancelled().await;
        Ok(())
    }
}

fn main() {}
