//! Latency samples and their percentiles.

use std::time::Duration;

/// A distribution of latencies, summarised.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Summary {
    pub n: usize,
    pub min: Duration,
    pub p50: Duration,
    pub p90: Duration,
    pub p99: Duration,
    pub max: Duration,
    pub mean: Duration,
}

impl Summary {
    /// Summarises `samples` (any order). `None` when there are none.
    pub fn of(samples: &[Duration]) -> Option<Summary> {
        let mut sorted = samples.to_vec();
        sorted.sort_unstable();
        let total: Duration = sorted.iter().sum();
        let n = u32::try_from(sorted.len()).ok()?;
        Some(Summary {
            n: sorted.len(),
            min: *sorted.first()?,
            p50: percentile(&sorted, 50.0)?,
            p90: percentile(&sorted, 90.0)?,
            p99: percentile(&sorted, 99.0)?,
            max: *sorted.last()?,
            mean: total.checked_div(n)?,
        })
    }
}

/// The `p`th percentile of `sorted` (ascending) by the nearest-rank method: the
/// smallest sample such that at least `p`% of the samples are at or below it.
/// Always an observed value, never an interpolation.
pub fn percentile(sorted: &[Duration], p: f64) -> Option<Duration> {
    if sorted.is_empty() || !(0.0..=100.0).contains(&p) {
        return None;
    }
    // Rank in 1..=n; `as` saturates, and the value is in range anyway.
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

/// Microseconds, for tables.
pub fn micros(d: Duration) -> u128 {
    d.as_micros()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn us(v: u64) -> Duration {
        Duration::from_micros(v)
    }

    #[test]
    fn nearest_rank_percentiles() {
        let sorted: Vec<_> = (1..=100).map(us).collect();
        assert_eq!(percentile(&sorted, 50.0), Some(us(50)));
        assert_eq!(percentile(&sorted, 90.0), Some(us(90)));
        assert_eq!(percentile(&sorted, 99.0), Some(us(99)));
        assert_eq!(percentile(&sorted, 100.0), Some(us(100)));
        assert_eq!(percentile(&sorted, 0.0), Some(us(1)));

        // Ten samples: p99 is the largest, p50 the fifth.
        let ten: Vec<_> = (1..=10).map(us).collect();
        assert_eq!(percentile(&ten, 50.0), Some(us(5)));
        assert_eq!(percentile(&ten, 90.0), Some(us(9)));
        assert_eq!(percentile(&ten, 99.0), Some(us(10)));

        assert_eq!(percentile(&[us(7)], 99.0), Some(us(7)));
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(percentile(&ten, 101.0), None);
    }

    #[test]
    fn summary_sorts_its_input() {
        let samples = [us(30), us(10), us(20), us(40)];
        let s = Summary::of(&samples);
        assert_eq!(
            s,
            Some(Summary {
                n: 4,
                min: us(10),
                p50: us(20),
                p90: us(40),
                p99: us(40),
                max: us(40),
                mean: us(25),
            })
        );
        assert_eq!(Summary::of(&[]), None);
    }
}
