//! Results as compact Markdown tables: latency distributions in one, rates and sizes
//! (calls/s, sessions/s, KiB per session) in another.

use crate::stats::{Summary, micros};
use anyhow::Context;
use std::fmt::Write;
use std::time::Duration;

/// One line of the report: a latency distribution, or a single rate or size.
pub enum Row {
    Latency(Latency),
    Figure(Figure),
}

/// Latency samples, summarised, with the baseline they were interleaved with.
pub struct Latency {
    pub metric: String,
    pub lodge: Summary,
    pub baseline: Option<(String, Summary)>,
}

/// One number (a rate or a size) with the baseline measured in the same run, and
/// the target where it sets one.
#[derive(Clone, Debug, PartialEq)]
pub struct Figure {
    pub metric: String,
    /// `None` when it could not be measured (the metric says why).
    pub value: Option<f64>,
    pub unit: String,
    pub baseline: Option<(String, f64)>,
    pub target: Option<Target>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Target {
    /// value ÷ baseline at least this (throughput against direct).
    RatioAtLeast(f64),
    /// value at most this, in the figure's unit (memory per session, error counts).
    AtMost(f64),
}

impl Row {
    pub fn new(
        metric: &str,
        samples: &[Duration],
        baseline: Option<(&str, &[Duration])>,
    ) -> anyhow::Result<Row> {
        let summary = |s: &[Duration]| {
            Summary::of(s).with_context(|| format!("{metric}: no samples (iterations = 0?)"))
        };
        Ok(Row::Latency(Latency {
            metric: metric.to_string(),
            lodge: summary(samples)?,
            baseline: match baseline {
                Some((name, s)) => Some((name.to_string(), summary(s)?)),
                None => None,
            },
        }))
    }

    /// A rate or size; add a baseline and a target with [`Figure`]'s builders.
    pub fn figure(metric: &str, value: Option<f64>, unit: &str) -> Figure {
        Figure {
            metric: metric.to_string(),
            value,
            unit: unit.to_string(),
            baseline: None,
            target: None,
        }
    }
}

impl Figure {
    pub fn baseline(mut self, name: &str, value: f64) -> Figure {
        self.baseline = Some((name.to_string(), value));
        self
    }

    pub fn target(mut self, target: Target) -> Figure {
        self.target = Some(target);
        self
    }

    pub fn row(self) -> Row {
        Row::Figure(self)
    }

    fn ratio(&self) -> Option<f64> {
        match (self.value, &self.baseline) {
            (Some(v), Some((_, b))) if *b > 0.0 => Some(v / b),
            _ => None,
        }
    }

    /// `None` without a target; not met when the value (or the ratio) is missing.
    fn met(&self) -> Option<bool> {
        Some(match self.target? {
            Target::RatioAtLeast(min) => self.ratio().is_some_and(|r| r >= min),
            Target::AtMost(max) => self.value.is_some_and(|v| v <= max),
        })
    }
}

/// The latency table, then (if any) the table of rates and sizes.
pub fn table(rows: &[Row]) -> String {
    let latencies: Vec<&Latency> = rows
        .iter()
        .filter_map(|r| match r {
            Row::Latency(l) => Some(l),
            Row::Figure(_) => None,
        })
        .collect();
    let figures: Vec<&Figure> = rows
        .iter()
        .filter_map(|r| match r {
            Row::Figure(f) => Some(f),
            Row::Latency(_) => None,
        })
        .collect();
    let mut out = String::new();
    if !latencies.is_empty() {
        out.push_str(&latency_table(&latencies));
    }
    if !figures.is_empty() {
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(&figure_table(&figures));
    }
    out
}

/// One line per measured distribution; a baseline gets its own line after the
/// first row that uses it. Times in microseconds. "added" is p50 minus baseline p50;
/// "ratio" is p50 over baseline p50.
fn latency_table(rows: &[&Latency]) -> String {
    let mut out = String::new();
    let mut pending_baseline: Option<&(String, Summary)> = None;
    let flush = |out: &mut String, baseline: Option<&(String, Summary)>| {
        if let Some((name, b)) = baseline {
            let _ = writeln!(
                out,
                "| ↳ baseline: {name} | {} | {} | {} | {} | — | — | — |",
                b.n,
                micros(b.p50),
                micros(b.p90),
                micros(b.p99)
            );
        }
    };
    out.push_str(
        "| metric | n | p50 µs | p90 µs | p99 µs | baseline p50 µs | added p50 µs | ratio p50 |\n",
    );
    out.push_str("|---|--:|--:|--:|--:|--:|--:|--:|\n");
    for row in rows {
        // A baseline shared by consecutive rows is listed once, after the last of them.
        if pending_baseline.map(|b| &b.0) != row.baseline.as_ref().map(|b| &b.0) {
            flush(&mut out, pending_baseline.take());
        }
        let s = &row.lodge;
        let (base, added, ratio) = match &row.baseline {
            Some((_, b)) => (
                micros(b.p50).to_string(),
                (micros(s.p50) as i128 - micros(b.p50) as i128).to_string(),
                format!(
                    "{:.2}×",
                    s.p50.as_secs_f64() / b.p50.as_secs_f64().max(1e-9)
                ),
            ),
            None => ("—".into(), "—".into(), "—".into()),
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {base} | {added} | {ratio} |",
            row.metric,
            s.n,
            micros(s.p50),
            micros(s.p90),
            micros(s.p99)
        );
        pending_baseline = row.baseline.as_ref();
    }
    flush(&mut out, pending_baseline);
    out
}

/// One line per figure, its baseline on its own line after the last consecutive
/// figure that uses it (as in the latency table). "ratio" is value over baseline.
fn figure_table(rows: &[&Figure]) -> String {
    let mut out = String::new();
    out.push_str("| metric | value | unit | baseline | ratio | target | |\n");
    out.push_str("|---|--:|---|--:|--:|---|---|\n");
    let mut pending: Option<(&(String, f64), &str)> = None;
    let flush = |out: &mut String, pending: Option<(&(String, f64), &str)>| {
        if let Some(((name, value), unit)) = pending {
            let _ = writeln!(
                out,
                "| ↳ baseline: {name} | {} | {unit} | — | — | — | |",
                number(*value)
            );
        }
    };
    for row in rows {
        let this = row.baseline.as_ref().map(|b| (b, row.unit.as_str()));
        if pending != this {
            flush(&mut out, pending.take());
        }
        let value = row.value.map_or_else(|| "—".to_string(), number);
        let base = row
            .baseline
            .as_ref()
            .map_or_else(|| "—".to_string(), |(_, b)| number(*b));
        let ratio = row
            .ratio()
            .map_or_else(|| "—".to_string(), |r| format!("{r:.2}×"));
        let target = match row.target {
            Some(Target::RatioAtLeast(min)) => format!("≥ {min:.2}× baseline"),
            Some(Target::AtMost(max)) => format!("≤ {} {}", number(max), row.unit),
            None => "—".to_string(),
        };
        let met = match row.met() {
            Some(true) => "met",
            Some(false) => "**not met**",
            None => "",
        };
        let _ = writeln!(
            out,
            "| {} | {value} | {} | {base} | {ratio} | {target} | {met} |",
            row.metric, row.unit
        );
        pending = this;
    }
    flush(&mut out, pending);
    out
}

/// Enough digits to read, not more: 12345, 123.4, 1.23.
fn number(v: f64) -> String {
    if v == v.trunc() || v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn us(v: u64) -> Duration {
        Duration::from_micros(v)
    }

    #[test]
    fn shared_baseline_listed_once_after_its_rows() -> anyhow::Result<()> {
        let base: &[Duration] = &[us(100), us(100)];
        let rows = [
            Row::new("a", &[us(300), us(300)], Some(("direct", base)))?,
            Row::new("b", &[us(150), us(150)], Some(("direct", base)))?,
            Row::new("floor", &[us(50), us(50)], None)?,
        ];
        let table = table(&rows);
        let lines: Vec<_> = table.lines().skip(2).collect();
        assert_eq!(
            lines,
            [
                "| a | 2 | 300 | 300 | 300 | 100 | 200 | 3.00× |",
                "| b | 2 | 150 | 150 | 150 | 100 | 50 | 1.50× |",
                "| ↳ baseline: direct | 2 | 100 | 100 | 100 | — | — | — |",
                "| floor | 2 | 50 | 50 | 50 | — | — | — |",
            ]
        );
        Ok(())
    }

    #[test]
    fn figures_get_their_own_table_with_targets() -> anyhow::Result<()> {
        let rows = [
            Row::new("latency", &[us(10)], None)?,
            Row::figure("calls via Lodge", Some(7000.0), "calls/s")
                .baseline("direct", 10000.0)
                .target(Target::RatioAtLeast(0.7))
                .row(),
            Row::figure("calls via Lodge, JSON", Some(6000.0), "calls/s")
                .baseline("direct", 10000.0)
                .target(Target::RatioAtLeast(0.7))
                .row(),
            Row::figure("Lodge RSS per session", Some(48.25), "KiB")
                .target(Target::AtMost(64.0))
                .row(),
            Row::figure("not measured: no backend", None, "KiB")
                .target(Target::AtMost(64.0))
                .row(),
        ];
        let table = table(&rows);
        let lines: Vec<_> = table.lines().collect();
        assert_eq!(lines[2], "| latency | 1 | 10 | 10 | 10 | — | — | — |");
        assert_eq!(lines[3], "");
        assert_eq!(
            lines[6..],
            [
                "| calls via Lodge | 7000 | calls/s | 10000 | 0.70× | ≥ 0.70× baseline | met |",
                "| calls via Lodge, JSON | 6000 | calls/s | 10000 | 0.60× | ≥ 0.70× baseline | **not met** |",
                "| ↳ baseline: direct | 10000 | calls/s | — | — | — | |",
                "| Lodge RSS per session | 48.2 | KiB | — | — | ≤ 64 KiB | met |",
                "| not measured: no backend | — | KiB | — | — | ≤ 64 KiB | **not met** |",
            ]
        );
        Ok(())
    }
}
