use spoke::prelude::*;

#[connector(name = "chat")]
pub struct Chat {}

#[connector]
impl Chat {
    #[producer(restart = "allways")]
    async fn listen(&self, ctx: &Context) {
        ctx.cancelled().await;
    }
}

fn main() {}
