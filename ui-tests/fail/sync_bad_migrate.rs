use spoke::prelude::*;

#[derive(Serialize, Deserialize, JsonSchema, Default)]
pub struct Cursor {
    pub page: u32,
}

pub struct NotDisplay;

#[connector(name = "wiki")]
pub struct Wiki {}

#[connector]
impl Wiki {
    #[sync(version = 2, migrate = Self::upgrade)]
    async fn pages(&self, ctx: &SyncContext<Cursor>) -> Result<(), ActionError> {
        ctx.checkpoint(&Cursor::default()).await
    }

    fn upgrade(_from: u32, _old: serde_json::Value) -> Result<Cursor, NotDisplay> {
        Err(NotDisplay)
    }
}

fn main() {}
