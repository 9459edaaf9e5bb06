//! Summaries of timed runs: throughput, median and tail latency, medians
//! over rounds.

use std::time::Duration;

/// One timed run: how many calls, how long in all, and each call's latency.
#[derive(Debug, Clone)]
pub struct Run {
    pub calls: u64,
    pub elapsed: Duration,
    pub latencies: Vec<Duration>,
}

impl Run {
    /// The run of a round of `name` that wanted `wanted` calls and got
    /// `latencies` in `elapsed`; says so on stderr when the round stopped
    /// at its time `limit` short of them.
    pub fn of_round(
        name: &str,
        wanted: u64,
        limit: Duration,
        elapsed: Duration,
        latencies: Vec<Duration>,
    ) -> Run {
        if (latencies.len() as u64) < wanted {
            eprintln!(
                "  {name}: stopped after {limit:?} with {} of {wanted} calls answered",
                latencies.len()
            );
        }
        Run {
            calls: latencies.len() as u64,
            elapsed,
            latencies,
        }
    }

    /// Calls per second.
    pub fn throughput(&self) -> f64 {
        self.calls as f64 / self.elapsed.as_secs_f64()
    }

    /// The `p`-th percentile latency (0 < p <= 100), in microseconds.
    pub fn percentile_us(&self, p: f64) -> f64 {
        let mut sorted = self.latencies.clone();
        sorted.sort_unstable();
        percentile(&sorted, p).as_secs_f64() * 1e6
    }
}

/// The `p`-th percentile of sorted values (nearest rank).
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The median of some values (the mean of the middle two for an even count).
pub fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// The median over rounds of a per-run figure.
pub fn median_of(runs: &[Run], figure: impl Fn(&Run) -> f64) -> f64 {
    median(&runs.iter().map(figure).collect::<Vec<_>>())
}

/// CPU time process `pid` has used (user + system), in microseconds, from
/// `/proc/<pid>/stat` (clock-tick resolution).
pub fn cpu_us(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .unwrap_or_else(|e| panic!("cannot read /proc/{pid}/stat: {e}"));
    // The fields after the command name, which is in parentheses; utime
    // and stime are fields 14 and 15 of the whole line.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks: f64 =
        fields[11].parse::<f64>().unwrap_or(0.0) + fields[12].parse::<f64>().unwrap_or(0.0);
    // SAFETY: sysconf has no preconditions.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    ticks / per_second * 1e6
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_percentiles() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        let sorted: Vec<Duration> = (1..=100).map(Duration::from_micros).collect();
        assert_eq!(percentile(&sorted, 50.0), Duration::from_micros(50));
        assert_eq!(percentile(&sorted, 99.0), Duration::from_micros(99));
        assert_eq!(percentile(&sorted, 100.0), Duration::from_micros(100));
        let run = Run {
            calls: 100,
            elapsed: Duration::from_millis(50),
            latencies: sorted,
        };
        assert_eq!(run.throughput(), 2000.0);
        assert_eq!(run.percentile_us(99.0), 99.0);
    }
}
