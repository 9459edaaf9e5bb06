// `#[cfg]` on actions, operators and config fields is carried to everything
// generated for them: the disabled ones name types that do not exist.
use spoke::prelude::*;

#[connector(name = "cfgs")]
pub struct Cfgs {
    #[config_field(default = 1)]
    always: u32,
    #[cfg(any())]
    #[config_field(env = "NOPE")]
    gone: DoesNotExist,
    #[cfg(all())]
    #[config_field(default = 2)]
    kept: u32,
    #[cfg(any())]
    state: AlsoMissing,
    #[cfg(any())]
    #[config_field(secret)]
    hidden_token: Secret<DoesNotExist>,
    #[cfg(all())]
    #[config_field(secret)]
    token: Option<Secret<String>>,
    #[cfg(any())]
    #[config_field(default = "x")]
    last_one_gone: DoesNotExist,
}

#[connector]
impl Cfgs {
    #[action]
    fn on(&self) -> u32 {
        let _ = &self.token;
        self.always + self.kept
    }

    #[cfg(any())]
    #[action]
    fn off(&self, input: DoesNotExist) -> AlsoMissing {
        unreachable!()
    }

    #[cfg(any())]
    #[action(name = "on")]
    fn would_clash(&self) -> u32 {
        0
    }

    // One name under two exclusive cfgs: never both compiled in.
    #[cfg(unix)]
    #[action(name = "platform")]
    fn platform_unix(&self) -> &'static str {
        "unix"
    }

    #[cfg(not(unix))]
    #[action(name = "platform")]
    fn platform_other(&self) -> &'static str {
        "other"
    }

    #[cfg(any())]
    #[search_operator(attribute = "x")]
    fn off_op(&self, value: DoesNotExist) -> Vec<String> {
        unreachable!()
    }
}

#[cfg(any())]
#[action(connector = Cfgs)]
fn free_off(conn: &Cfgs, x: DoesNotExist) -> AlsoMissing {
    unreachable!()
}

#[cfg(all())]
#[action(connector = Cfgs)]
fn free_on(conn: &Cfgs) -> u32 {
    conn.always
}

fn main() {}
