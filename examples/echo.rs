//! The smallest connector: `cargo run --example echo -- call echo '{"text":"hello"}'`.
use spoke::prelude::*;

/// Echoes text back.
#[connector(name = "echo")]
pub struct Echo {
    /// Prefix added to every reply.
    #[config_field(env = "ECHO_PREFIX", default = "")]
    prefix: String,
}

#[connector]
impl Echo {
    /// Return the text, prefixed.
    #[action(read)]
    async fn echo(&self, text: String) -> Result<String, ActionError> {
        Ok(format!("{}{text}", self.prefix))
    }
}

fn main() -> std::process::ExitCode {
    spoke::main()
}
