// Every form a producer may take: with and without `ctx`, `()` or a
// `Result` (spelled out, or through `anyhow::Result`), renamed, with a
// restart policy, under `#[cfg]`, and sharing a name with an action.
use spoke::prelude::*;

#[connector(name = "chat")]
pub struct Chat {}

#[connector]
impl Chat {
    /// Listens for incoming messages.
    #[producer]
    async fn listen(&self, ctx: &Context) -> Result<(), ActionError> {
        ctx.emit_custom("message", spoke::__private::serde_json::Value::Null)
            .await
            .map_err(|e| ActionError::unavailable(e.to_string()))?;
        ctx.cancelled().await;
        Ok(())
    }

    #[producer(name = "heartbeat", restart = "always")]
    async fn beat(&self) {}

    #[producer(restart = "on_failure", description = "Watches.")]
    async fn watch(&self, _ctx: &Context) -> anyhow::Result<()> {
        Ok(())
    }

    // An action and a producer may share a name.
    #[action(read)]
    fn listen_action(&self) -> &'static str {
        "ok"
    }

    #[action(name = "heartbeat")]
    fn heartbeat_action(&self) {}

    #[cfg(any())]
    #[producer]
    async fn gone(&self) -> DoesNotExist {
        unreachable!()
    }

    #[cfg(any())]
    #[producer(name = "listen")]
    async fn would_clash(&self) {}

    #[cfg(unix)]
    #[producer(name = "platform")]
    async fn platform_unix(&self) {}

    #[cfg(not(unix))]
    #[producer(name = "platform")]
    async fn platform_other(&self) {}
}

#[connector(name = "manual")]
pub struct Manual {}

#[connector(actions = MANUAL_SET)]
impl Manual {
    #[producer]
    async fn tick(&self, ctx: &Context) {
        ctx.cancelled().await;
    }
}

fn main() {
    assert_eq!(Manual::MANUAL_SET.producers.len(), 1);
    assert_eq!(Manual::MANUAL_SET.producers[0].name, "tick");
}
