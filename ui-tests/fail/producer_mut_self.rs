use spoke::prelude::*;

#[connector(name = "chat")]
pub struct Chat {
    seen: u64,
}

#[connector]
impl Chat {
    #[producer]
    async fn listen(&mut self, ctx: &Context) -> Result<(), ActionError> {
        self.seen += 1;
        ctx.cancelled().await;
        Ok(())
    }
}

fn main() {}
