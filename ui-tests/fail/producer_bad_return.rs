use spoke::prelude::*;

#[connector(name = "chat")]
pub struct Chat {}

#[connector]
impl Chat {
    #[producer]
    async fn listen(&self, ctx: &Context) -> Vec<String> {
        ctx.cancelled().await;
        Vec::new()
    }
}

fn main() {}
