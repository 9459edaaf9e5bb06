//! The figures of a benchmark run: a table for people, JSON for tools, and
//! whether each target is met.

use std::fmt::Write as _;

use serde::Serialize;

use crate::stats::{Run, median_of};

/// What a figure must do to meet its target.
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Target {
    /// `spoke / baseline` at least this (throughput).
    RatioAtLeast { ratio: f64 },
    /// `spoke / baseline` at most this (latency, cost).
    RatioAtMost { ratio: f64 },
    /// `spoke - baseline` at most this, in the figure's unit.
    AddedAtMost { added: f64 },
    /// `spoke` at most this, in the figure's unit.
    AtMost { value: f64 },
}

impl Target {
    fn met(self, spoke: f64, baseline: Option<f64>) -> Option<bool> {
        Some(match self {
            Target::RatioAtLeast { ratio } => spoke / baseline? >= ratio,
            Target::RatioAtMost { ratio } => spoke / baseline? <= ratio,
            Target::AddedAtMost { added } => spoke - baseline? <= added,
            Target::AtMost { value } => spoke <= value,
        })
    }

    fn show(self, unit: &str) -> String {
        match self {
            Target::RatioAtLeast { ratio } => format!(">= {ratio}x"),
            Target::RatioAtMost { ratio } => format!("<= {ratio}x"),
            Target::AddedAtMost { added } => format!("+<= {added} {unit}"),
            Target::AtMost { value } => format!("<= {value} {unit}"),
        }
    }
}

/// One measured figure, with its baseline when it has one.
#[derive(Debug, Clone, Serialize)]
pub struct Figure {
    /// The benchmark: `1 attach dispatch`, `2 end to end`, ...
    pub path: String,
    /// The case: payload size, calls in flight.
    pub case: String,
    /// What is measured: `throughput`, `p50`, `p99`, ...
    pub metric: String,
    /// Its unit: `calls/s`, `us`, `ns`, `ms`, `MiB`, `KiB`, `s`.
    pub unit: String,
    pub spoke: f64,
    pub baseline: Option<f64>,
    /// `spoke / baseline`.
    pub ratio: Option<f64>,
    pub target: Option<Target>,
    /// Whether the target is met (`None`: no target).
    pub met: Option<bool>,
    /// What the baseline is, or anything else worth saying.
    pub note: String,
}

/// Every figure of a run.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    /// `uname -srm`, CPU count, build profile: where the figures come from.
    pub machine: String,
    pub figures: Vec<Figure>,
}

/// A case's closed-loop figures, Spoke's timed runs against the
/// baseline's: throughput, p50 and p99, each the median over rounds.
pub struct Runs<'a> {
    pub spoke: &'a [Run],
    pub baseline: &'a [Run],
    /// The throughput's unit: `calls/s`, `req/s`.
    pub unit: &'a str,
    pub throughput: Option<Target>,
    pub p50: Option<Target>,
    pub p99: Option<Target>,
    /// Said of the throughput figure: what the baseline is, how it ran.
    pub note: String,
}

impl<'a> Runs<'a> {
    /// Spoke's runs against the baseline's, no targets, no note.
    pub fn new(spoke: &'a [Run], baseline: &'a [Run], unit: &'a str) -> Self {
        Runs {
            spoke,
            baseline,
            unit,
            throughput: None,
            p50: None,
            p99: None,
            note: String::new(),
        }
    }
}

/// A figure being described: `report.add(path, case, metric, unit, spoke)`
/// then `.baseline(..)`, `.target(..)`, `.note(..)`.
pub struct Adding<'a> {
    report: &'a mut Report,
    figure: Figure,
}

impl Report {
    /// Adds a figure; finish describing it with the returned builder.
    pub fn add(
        &mut self,
        path: &str,
        case: &str,
        metric: &str,
        unit: &str,
        spoke: f64,
    ) -> Adding<'_> {
        Adding {
            report: self,
            figure: Figure {
                path: path.to_owned(),
                case: case.to_owned(),
                metric: metric.to_owned(),
                unit: unit.to_owned(),
                spoke,
                baseline: None,
                ratio: None,
                target: None,
                met: None,
                note: String::new(),
            },
        }
    }

    /// Adds a case's throughput, p50 and p99 (see [`Runs`]).
    pub fn add_runs(&mut self, path: &str, case: &str, runs: Runs<'_>) {
        // (metric, unit, the figure of one run, its target)
        type Metric<'u> = (&'static str, &'u str, fn(&Run) -> f64, Option<Target>);
        let figures: [Metric<'_>; 3] = [
            ("throughput", runs.unit, Run::throughput, runs.throughput),
            ("p50", "us", |r| r.percentile_us(50.0), runs.p50),
            ("p99", "us", |r| r.percentile_us(99.0), runs.p99),
        ];
        for (i, (metric, unit, figure, target)) in figures.into_iter().enumerate() {
            let mut adding = self
                .add(path, case, metric, unit, median_of(runs.spoke, figure))
                .baseline(median_of(runs.baseline, figure));
            adding.figure.target = target;
            if i == 0 {
                adding.figure.note.clone_from(&runs.note);
            }
        }
    }

    /// The figures as an aligned text table.
    pub fn table(&self) -> String {
        let mut rows = vec![
            [
                "path", "case", "metric", "spoke", "baseline", "ratio", "target", "met",
            ]
            .map(str::to_owned),
        ];
        for f in &self.figures {
            rows.push([
                f.path.clone(),
                f.case.clone(),
                f.metric.clone(),
                format!("{} {}", show(f.spoke), f.unit),
                f.baseline
                    .map_or_else(|| "-".to_owned(), |b| format!("{} {}", show(b), f.unit)),
                f.ratio
                    .map_or_else(|| "-".to_owned(), |r| format!("{r:.3}x")),
                f.target.map_or_else(|| "-".to_owned(), |t| t.show(&f.unit)),
                match f.met {
                    None => "-".to_owned(),
                    Some(true) => "yes".to_owned(),
                    Some(false) => "NO".to_owned(),
                },
            ]);
        }
        let mut widths = [0usize; 8];
        for row in &rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for (i, row) in rows.iter().enumerate() {
            let cells: Vec<String> = row
                .iter()
                .zip(widths)
                .map(|(cell, w)| format!("{cell:<w$}"))
                .collect();
            let _ = writeln!(out, "| {} |", cells.join(" | "));
            if i == 0 {
                let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
                let _ = writeln!(out, "|-{}-|", rule.join("-|-"));
            }
        }
        out
    }
}

impl Adding<'_> {
    pub fn baseline(mut self, baseline: f64) -> Self {
        self.figure.baseline = Some(baseline);
        self.figure.ratio = Some(self.figure.spoke / baseline);
        self
    }

    pub fn target(mut self, target: Target) -> Self {
        self.figure.target = Some(target);
        self
    }

    pub fn note(mut self, note: impl Into<String>) -> Self {
        self.figure.note = note.into();
        self
    }
}

impl Drop for Adding<'_> {
    fn drop(&mut self) {
        let mut figure = self.figure.clone();
        figure.met = figure
            .target
            .and_then(|t| t.met(figure.spoke, figure.baseline));
        eprintln!(
            "  {} / {} / {}: {} {}{}",
            figure.path,
            figure.case,
            figure.metric,
            show(figure.spoke),
            figure.unit,
            figure
                .ratio
                .map_or_else(String::new, |r| format!(" ({r:.3}x baseline)"))
        );
        self.report.figures.push(figure);
    }
}

/// A number with about four significant digits.
fn show(v: f64) -> String {
    let a = v.abs();
    if a >= 1000.0 {
        format!("{v:.0}")
    } else if a >= 100.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_judged_and_shown() {
        let mut report = Report::default();
        report
            .add("1", "64 B", "throughput", "calls/s", 90.0)
            .baseline(100.0)
            .target(Target::RatioAtLeast { ratio: 0.85 });
        report
            .add("1", "64 B", "p50", "us", 120.0)
            .baseline(100.0)
            .target(Target::AddedAtMost { added: 10.0 });
        report
            .add("5", "echo", "wall", "ms", 3.0)
            .target(Target::AtMost { value: 5.0 });
        let met: Vec<Option<bool>> = report.figures.iter().map(|f| f.met).collect();
        assert_eq!(met, [Some(true), Some(false), Some(true)]);
        assert_eq!(report.figures[0].ratio, Some(0.9));
        let table = report.table();
        assert!(table.contains("| 1    | 64 B | throughput"), "{table}");
        assert!(table.contains("NO"), "{table}");
        assert!(table.contains("+<= 10 us"), "{table}");
    }
}
