//! SIGINT and SIGTERM for the long-running commands (`serve`, `http`):
//! installed once, at start-up, so that a signal arriving before anyone
//! waits is not lost (nor kills the process).

/// SIGINT and SIGTERM, installed at once so that a signal arriving before
/// anyone waits is not lost (nor kills the process).
#[derive(Debug)]
pub struct Signals {
    #[cfg(unix)]
    unix: Option<tokio::sync::Mutex<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>>,
}

impl Signals {
    /// Installs the handlers (a warning when they cannot be: then only
    /// Ctrl-C is heard).
    pub fn install() -> Signals {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            match (
                signal(SignalKind::interrupt()),
                signal(SignalKind::terminate()),
            ) {
                (Ok(int), Ok(term)) => Signals {
                    unix: Some(tokio::sync::Mutex::new((int, term))),
                },
                (Err(e), _) | (_, Err(e)) => {
                    tracing::warn!(
                        "cannot listen for SIGINT/SIGTERM ({e}); only Ctrl-C stops the connector"
                    );
                    Signals { unix: None }
                }
            }
        }
        #[cfg(not(unix))]
        Signals {}
    }

    /// Waits for the next signal and names it.
    pub async fn next(&self) -> &'static str {
        #[cfg(unix)]
        if let Some(signals) = &self.unix {
            let mut guard = signals.lock().await;
            let (int, term) = &mut *guard;
            return tokio::select! {
                _ = int.recv() => "SIGINT",
                _ = term.recv() => "SIGTERM",
            };
        }
        match tokio::signal::ctrl_c().await {
            Ok(()) => "Ctrl-C",
            Err(e) => {
                tracing::warn!("cannot listen for Ctrl-C ({e})");
                std::future::pending().await
            }
        }
    }
}
