use spoke::prelude::*;

#[connector(name = "chat")]
pub struct Chat {}

#[connector]
impl Chat {
    #[producer(restrat = "always")]
    async fn listen(&self, ctx: &Context) -> Result<(), ActionError> {
        ctx.cancelled().await;
        Ok(())
    }
}

fn main() {}
