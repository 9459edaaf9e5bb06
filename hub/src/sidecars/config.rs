//! The `--sidecars FILE.toml` file: the stdio sidecars the hub supervises.
//!
//! ```toml
//! [[sidecar]]
//! name = "echo"                      # required, unique: the instance id
//! command = "/usr/local/bin/echo"    # required
//! args = ["stdio"]                   # default ["stdio"]
//! env = { ECHO_PREFIX = "> " }       # default {}
//! ready_timeout = "10s"              # default 10s
//! max_failures = 5                   # default 5: consecutive failures before the breaker trips
//! ```

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

/// The default time a sidecar has to send `ready`.
pub const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(10);
/// The default number of consecutive failures before the breaker trips.
pub const DEFAULT_MAX_FAILURES: u32 = 5;

/// One supervised sidecar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SidecarSpec {
    /// Its unique name; also its instance id.
    pub name: String,
    /// The program to run.
    pub command: String,
    /// Its arguments.
    pub args: Vec<String>,
    /// Variables added to its environment.
    pub env: BTreeMap<String, String>,
    /// How long it has to send `ready`.
    pub ready_timeout: Duration,
    /// Consecutive failures after which it is no longer restarted.
    pub max_failures: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    sidecar: Vec<RawSidecar>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSidecar {
    name: String,
    command: String,
    args: Option<Vec<String>>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    ready_timeout: Option<String>,
    max_failures: Option<u32>,
}

/// Reads and checks a sidecars file.
pub fn load(path: &Path) -> Result<Vec<SidecarSpec>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    parse(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// Parses and checks the text of a sidecars file.
pub fn parse(text: &str) -> Result<Vec<SidecarSpec>, String> {
    let raw: RawFile = toml::from_str(text).map_err(|e| e.to_string())?;
    let mut specs: Vec<SidecarSpec> = Vec::new();
    for s in raw.sidecar {
        if s.name.trim().is_empty() {
            return Err("a sidecar has an empty `name`".into());
        }
        if specs.iter().any(|o| o.name == s.name) {
            return Err(format!("sidecar name `{}` is used twice", s.name));
        }
        if s.command.trim().is_empty() {
            return Err(format!("sidecar `{}` has an empty `command`", s.name));
        }
        let ready_timeout = match s.ready_timeout {
            None => DEFAULT_READY_TIMEOUT,
            Some(t) => spoke_runtime::duration::parse(&t)
                .map_err(|e| format!("sidecar `{}`: ready_timeout: {e}", s.name))?,
        };
        if ready_timeout.is_zero() {
            return Err(format!(
                "sidecar `{}`: ready_timeout must be more than zero",
                s.name
            ));
        }
        let max_failures = s.max_failures.unwrap_or(DEFAULT_MAX_FAILURES);
        if max_failures == 0 {
            return Err(format!(
                "sidecar `{}`: max_failures must be at least 1",
                s.name
            ));
        }
        specs.push(SidecarSpec {
            name: s.name,
            command: s.command,
            args: s.args.unwrap_or_else(|| vec!["stdio".to_owned()]),
            env: s.env,
            ready_timeout,
            max_failures,
        });
    }
    Ok(specs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_apply() {
        let specs = parse("[[sidecar]]\nname = \"a\"\ncommand = \"/bin/a\"\n").unwrap();
        assert_eq!(specs.len(), 1);
        assert_eq!(specs[0].args, ["stdio"]);
        assert!(specs[0].env.is_empty());
        assert_eq!(specs[0].ready_timeout, DEFAULT_READY_TIMEOUT);
        assert_eq!(specs[0].max_failures, DEFAULT_MAX_FAILURES);
    }

    #[test]
    fn fields_are_read() {
        let specs = parse(
            "[[sidecar]]\nname = \"a\"\ncommand = \"py\"\nargs = [\"x.py\"]\n\
             env = { K = \"v\" }\nready_timeout = \"500ms\"\nmax_failures = 3\n",
        )
        .unwrap();
        assert_eq!(specs[0].args, ["x.py"]);
        assert_eq!(specs[0].env.get("K").map(String::as_str), Some("v"));
        assert_eq!(specs[0].ready_timeout, Duration::from_millis(500));
        assert_eq!(specs[0].max_failures, 3);
    }

    #[test]
    fn bad_files_are_refused() {
        assert!(parse("[[sidecar]]\ncommand = \"x\"\n").is_err());
        assert!(parse("[[sidecar]]\nname = \"a\"\n").is_err());
        assert!(
            parse("[[sidecar]]\nname = \"a\"\ncommand = \"x\"\n[[sidecar]]\nname = \"a\"\ncommand = \"y\"\n")
                .unwrap_err()
                .contains("twice")
        );
        assert!(parse("[[sidecar]]\nname = \"a\"\ncommand = \"x\"\nmax_failures = 0\n").is_err());
        assert!(
            parse("[[sidecar]]\nname = \"a\"\ncommand = \"x\"\nready_timeout = \"soon\"\n")
                .is_err()
        );
        assert!(parse("[[sidecar]]\nname = \"a\"\ncommand = \"x\"\nbogus = 1\n").is_err());
        assert!(parse("").unwrap().is_empty());
    }
}
