//! `spoke hub`'s flags for the connection limits ([`ConnectionLimits`]).

use std::time::Duration;

use clap::Args;
use spoke_proto::MAX_MESSAGE_BYTES;
use spoke_runtime::duration;

use crate::config::ConnectionLimits;

/// The connection-limit flags of `spoke hub`; each defaults to
/// [`ConnectionLimits::default`].
#[derive(Debug, Args)]
pub(crate) struct ConnectionFlags {
    /// The most connections open at once; more are closed as they arrive.
    #[arg(long, value_name = "N", default_value_t = 1024,
          value_parser = clap::value_parser!(u32).range(1..))]
    max_connections: u32,
    /// How long a new connection has to open its first request (TLS and
    /// HTTP/2 handshakes included) before it is closed.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = positive_duration)]
    handshake_timeout: Duration,
    /// How long a connection with no request open is kept.
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = positive_duration)]
    idle_timeout: Duration,
    /// How often the hub pings each connection (HTTP/2 PING).
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = positive_duration)]
    keepalive: Duration,
    /// How long a ping may go unanswered before its connection is closed.
    #[arg(long, value_name = "DURATION", default_value = "20s", value_parser = positive_duration)]
    keepalive_timeout: Duration,
    /// The most bytes of incoming request messages one connection may have
    /// in flight (at least the 16MiB of the largest message).
    #[arg(long, value_name = "SIZE", default_value = "32MiB", value_parser = message_budget)]
    connection_budget: usize,
    /// The most bytes of incoming request messages over all connections
    /// (at least the 16MiB of the largest message).
    #[arg(long, value_name = "SIZE", default_value = "256MiB", value_parser = message_budget)]
    request_budget: usize,
}

impl ConnectionFlags {
    /// The limits the flags give.
    pub(crate) fn limits(&self) -> ConnectionLimits {
        ConnectionLimits {
            max_connections: self.max_connections as usize,
            handshake_timeout: self.handshake_timeout,
            idle_timeout: self.idle_timeout,
            keepalive_interval: self.keepalive,
            keepalive_timeout: self.keepalive_timeout,
            connection_budget: self.connection_budget,
            request_budget: self.request_budget,
        }
    }
}

fn positive_duration(text: &str) -> Result<Duration, String> {
    let value = duration::parse(text)?;
    if value.is_zero() {
        return Err("must be more than zero".into());
    }
    Ok(value)
}

/// A byte size (`64MiB`, `1GiB`, `500000`), at least one largest message.
fn message_budget(text: &str) -> Result<usize, String> {
    let size: bytesize::ByteSize = text
        .parse()
        .map_err(|e| format!("`{text}` is not a size like 64MiB: {e}"))?;
    let bytes = usize::try_from(size.as_u64())
        .ok()
        .filter(|b| *b <= tokio::sync::Semaphore::MAX_PERMITS)
        .ok_or_else(|| format!("`{text}` is too large"))?;
    if bytes < MAX_MESSAGE_BYTES {
        return Err(format!(
            "{text} is less than the largest message ({}); a budget below it would refuse large messages outright",
            bytesize::ByteSize(MAX_MESSAGE_BYTES as u64).display().iec()
        ));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_take_sizes_and_refuse_less_than_one_message() {
        assert_eq!(message_budget("32MiB"), Ok(32 * 1024 * 1024));
        assert_eq!(message_budget("1GiB"), Ok(1024 * 1024 * 1024));
        let err = message_budget("1MiB").unwrap_err();
        assert!(
            err.contains("less than the largest message (16.0 MiB)"),
            "{err}"
        );
        assert!(
            message_budget("lots")
                .unwrap_err()
                .contains("`lots` is not a size")
        );
    }

    #[test]
    fn the_flag_defaults_are_the_library_defaults() {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            flags: ConnectionFlags,
        }
        let cli = <Cli as clap::Parser>::try_parse_from(["spoke"]).unwrap();
        assert_eq!(cli.flags.limits(), ConnectionLimits::default());
        assert!(positive_duration("0s").is_err());
    }
}
