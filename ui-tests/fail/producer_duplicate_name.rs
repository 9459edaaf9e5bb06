use spoke::prelude::*;

#[connector(name = "chat")]
pub struct Chat {}

#[connector]
impl Chat {
    #[producer]
    async fn listen(&self, ctx: &Context) {
        ctx.cancelled().await;
    }

    #[producer(name = "listen")]
    async fn listen_again(&self, ctx: &Context) {
        ctx.cancelled().await;
    }
}

fn main() {}
