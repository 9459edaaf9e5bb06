use spoke::prelude::*;

#[connector(name = "chat")]
pub struct Chat {}

#[connector]
impl Chat {
    #[producer]
    fn listen(&self, ctx: &Context) -> Result<(), ActionError> {
        let _ = ctx;
        Ok(())
    }
}

fn main() {}
