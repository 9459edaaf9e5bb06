use spoke::prelude::*;

#[connector(name = "chat")]
pub struct Chat {}

#[connector]
impl Chat {
    #[producer]
    async fn listen(&self, ctx: &Context, channel: String) -> Result<(), ActionError> {
        let _ = channel;
        ctx.cancelled().await;
        Ok(())
    }
}

fn main() {}
