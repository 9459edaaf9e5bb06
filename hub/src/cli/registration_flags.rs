//! `spoke hub`'s flags for the registration limits ([`RegistrationLimits`]):
//! the caps on instances pending approval, their expiry, and the rate at
//! which one peer address may open Attach streams.

use std::time::Duration;

use clap::Args;
use spoke_runtime::duration;

use crate::config::RegistrationLimits;

/// The registration-limit flags of `spoke hub`; each defaults to
/// [`RegistrationLimits::default`]. They apply to a hub with auth.
#[derive(Debug, Args)]
pub(crate) struct RegistrationFlags {
    /// The most instances pending approval in one tenant; a new instance
    /// beyond it is refused (0: new instances need a registration token).
    #[arg(long, value_name = "N", default_value_t = 100)]
    max_pending_per_tenant: u32,
    /// The most instances pending approval in all tenants together.
    #[arg(long, value_name = "N", default_value_t = 1000)]
    max_pending: u32,
    /// How long after it was first seen a pending instance that is not
    /// attached is forgotten.
    #[arg(long, value_name = "DURATION", default_value = "7d", value_parser = positive_duration)]
    pending_expiry: Duration,
    /// How many Attach streams one peer address (IPv4 address, IPv6 /64)
    /// may open in a burst.
    #[arg(long, value_name = "N", default_value_t = 20,
          value_parser = clap::value_parser!(u32).range(1..))]
    register_burst: u32,
    /// How many Attach streams per second one peer address may open after
    /// its burst; 0 turns the rate limit off.
    #[arg(long, value_name = "N", default_value_t = 5)]
    register_rate: u32,
}

impl RegistrationFlags {
    /// The limits the flags give.
    pub(crate) fn limits(&self) -> RegistrationLimits {
        RegistrationLimits {
            max_pending_per_tenant: self.max_pending_per_tenant as usize,
            max_pending: self.max_pending as usize,
            pending_expiry: self.pending_expiry,
            register_burst: self.register_burst,
            register_rate: self.register_rate,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        flags: RegistrationFlags,
    }

    fn parse(args: &[&str]) -> Result<RegistrationLimits, clap::Error> {
        let mut all = vec!["spoke"];
        all.extend_from_slice(args);
        <Cli as clap::Parser>::try_parse_from(all).map(|cli| cli.flags.limits())
    }

    #[test]
    fn the_flag_defaults_are_the_library_defaults() {
        assert_eq!(parse(&[]).unwrap(), RegistrationLimits::default());
    }

    #[test]
    fn the_flags_set_the_limits_and_refuse_nonsense() {
        let limits = parse(&[
            "--max-pending-per-tenant",
            "3",
            "--max-pending",
            "7",
            "--pending-expiry",
            "90s",
            "--register-burst",
            "2",
            "--register-rate",
            "0",
        ])
        .unwrap();
        assert_eq!(
            limits,
            RegistrationLimits {
                max_pending_per_tenant: 3,
                max_pending: 7,
                pending_expiry: Duration::from_secs(90),
                register_burst: 2,
                register_rate: 0,
            }
        );
        assert!(parse(&["--pending-expiry", "0s"]).is_err());
        assert!(parse(&["--register-burst", "0"]).is_err());
        assert!(parse(&["--max-pending", "-1"]).is_err());
    }
}
