//! Logging: `tracing` to stderr (stdout belongs to protocols and results),
//! filtered by `RUST_LOG`.
//!
//! `RUST_LOG` is a comma-separated list of `target=level` directives and a
//! bare `level` for everything else, e.g. `warn,spoke_runtime::grpc=debug`
//! (levels `trace`, `debug`, `info`, `warn`, `error`, `off`). A value that
//! does not parse is reported on stderr and the default applies. (Span and
//! field filters are not supported: they would cost every connector a
//! regular-expression engine.)

use std::io::IsTerminal;
use std::str::FromStr;

use tracing_subscriber::Layer as _;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Installs the stderr logger once; `RUST_LOG` overrides `default_filter`.
/// Does nothing if a global subscriber is already set.
pub fn init(default_filter: &str) {
    let (filter, problem) = filter(std::env::var("RUST_LOG").ok().as_deref(), default_filter);
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    if tracing_subscriber::registry()
        .with(layer.with_filter(filter))
        .try_init()
        .is_ok()
        && let Some(problem) = problem
    {
        tracing::warn!("{problem}");
    }
}

/// The filter for `RUST_LOG` (unset or empty: `default_filter`), and what
/// was wrong with it when it did not parse.
fn filter(rust_log: Option<&str>, default_filter: &str) -> (Targets, Option<String>) {
    let default = || Targets::from_str(default_filter).unwrap_or_default();
    let Some(value) = rust_log else {
        return (default(), None);
    };
    // Directives trimmed, empty ones dropped (`warn,` is `warn`).
    let directives: Vec<&str> = value
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .collect();
    if directives.is_empty() {
        return (default(), None);
    }
    let why = if directives.iter().any(|d| d.contains(['[', '{'])) {
        Err("span and field filters are not supported".to_owned())
    } else {
        Targets::from_str(&directives.join(",")).map_err(|e| e.to_string())
    };
    match why {
        Ok(targets) => (targets, None),
        Err(e) => (
            default(),
            Some(format!(
                "RUST_LOG={value:?} is not a list of `target=level` directives ({e}); \
                 logging at `{default_filter}`"
            )),
        ),
    }
}

/// An error and its sources, joined with `: `.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        let next = e.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = e.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing::Level;

    #[test]
    fn rust_log_directives_override_the_default() {
        let (f, problem) = filter(Some("warn,spoke_runtime::grpc=debug"), "info");
        assert_eq!(problem, None);
        assert!(f.would_enable("spoke_runtime::grpc::attach", &Level::DEBUG));
        assert!(!f.would_enable("spoke_runtime::stdio", &Level::INFO));
        assert!(f.would_enable("anything", &Level::WARN));

        let (f, problem) = filter(None, "info");
        assert_eq!(problem, None);
        assert!(f.would_enable("x", &Level::INFO));
        assert!(!f.would_enable("x", &Level::DEBUG));
        let (f, _) = filter(Some("  "), "warn");
        assert!(!f.would_enable("x", &Level::INFO));

        // A bare word is a target (everything of it), as in `EnvFilter`.
        let (f, problem) = filter(Some("my_connector"), "info");
        assert_eq!(problem, None);
        assert!(f.would_enable("my_connector::x", &Level::TRACE));
        assert!(!f.would_enable("x", &Level::ERROR));
        // Empty directives and spaces are dropped.
        let (f, problem) = filter(Some("warn, , my_connector=debug,"), "info");
        assert_eq!(problem, None);
        assert!(f.would_enable("my_connector", &Level::DEBUG));
        assert!(!f.would_enable("h2", &Level::INFO));
        // Span filters: the default, and why.
        let (f, problem) = filter(Some("x[span]=debug"), "warn");
        assert!(!f.would_enable("x", &Level::DEBUG));
        assert!(
            problem
                .unwrap()
                .contains("span and field filters are not supported")
        );
        // A level that is none: the default, and why.
        let (f, problem) = filter(Some("x=loud"), "info");
        assert!(f.would_enable("x", &Level::INFO));
        assert!(!f.would_enable("x", &Level::DEBUG));
        let problem = problem.unwrap();
        assert!(
            problem.starts_with("RUST_LOG=\"x=loud\" is not a list"),
            "{problem}"
        );
    }
}
