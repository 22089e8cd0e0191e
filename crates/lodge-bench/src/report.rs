//! Results as a compact Markdown table.

use crate::stats::{Summary, micros};
use anyhow::Context;
use std::fmt::Write;
use std::time::Duration;

pub struct Row {
    pub metric: String,
    pub lodge: Summary,
    pub baseline: Option<(String, Summary)>,
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
        Ok(Row {
            metric: metric.to_string(),
            lodge: summary(samples)?,
            baseline: match baseline {
                Some((name, s)) => Some((name.to_string(), summary(s)?)),
                None => None,
            },
        })
    }
}

/// One line per measured distribution; a baseline gets its own line after the
/// first row that uses it. Times in microseconds. "added" is p50 minus baseline p50;
/// "ratio" is p50 over baseline p50.
pub fn table(rows: &[Row]) -> String {
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
}
