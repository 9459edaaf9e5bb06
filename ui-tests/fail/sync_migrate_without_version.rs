use spoke::prelude::*;

#[derive(Serialize, Deserialize, JsonSchema, Default)]
pub struct Cursor {
    pub page: u32,
}

#[connector(name = "wiki")]
pub struct Wiki {}

#[connector]
impl Wiki {
    #[sync(migrate = Self::upgrade)]
    async fn pages(&self, ctx: &SyncContext<Cursor>) -> Result<(), ActionError> {
        ctx.checkpoint(&Cursor::default()).await
    }

    fn upgrade(_from: u32, old: serde_json::Value) -> Result<Cursor, String> {
        Err(format!("unknown checkpoint {old}"))
    }
}

fn main() {}
