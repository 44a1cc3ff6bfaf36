//! Sample sets and their summaries (median, p90, ...), and the formatting of durations and
//! ratios used in the report.

use std::time::Duration;

/// The timings of one scenario, and the failures seen while taking them.
#[derive(Debug, Clone, Default)]
pub struct Samples {
    /// The successful runs, in the order they were taken.
    pub times: Vec<Duration>,
    /// One message per failed run.
    pub errors: Vec<String>,
}

impl Samples {
    /// Adds one run's result.
    pub fn record(&mut self, result: Result<Duration, String>) {
        match result {
            Ok(t) => self.times.push(t),
            Err(e) => self.errors.push(e),
        }
    }

    /// The summary of the successful runs; `None` when there were none.
    pub fn summary(&self) -> Option<Summary> {
        Summary::of(&self.times)
    }
}

/// Order statistics of a set of durations.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    /// How many samples.
    pub n: usize,
    /// The fastest.
    pub min: Duration,
    /// The median (the mean of the two middle samples for an even count).
    pub median: Duration,
    /// The 90th percentile (nearest rank).
    pub p90: Duration,
    /// The slowest.
    pub max: Duration,
}

impl Summary {
    /// The summary of `times`; `None` when empty.
    pub fn of(times: &[Duration]) -> Option<Summary> {
        if times.is_empty() {
            return None;
        }
        let mut sorted = times.to_vec();
        sorted.sort_unstable();
        let n = sorted.len();
        let median = if n % 2 == 1 {
            sorted[n / 2]
        } else {
            (sorted[n / 2 - 1] + sorted[n / 2]) / 2
        };
        Some(Summary {
            n,
            min: sorted[0],
            median,
            p90: nearest_rank(&sorted, 90),
            max: sorted[n - 1],
        })
    }
}

/// The `p`th percentile of sorted samples, by nearest rank (`p` in 1..=100).
pub fn nearest_rank(sorted: &[Duration], p: usize) -> Duration {
    let n = sorted.len();
    let rank = (p * n).div_ceil(100).clamp(1, n);
    sorted[rank - 1]
}

/// The median of plain numbers (`None` when empty).
pub fn median_f64(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    Some(if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    })
}

/// `a / b` as a plain number.
pub fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64().max(f64::MIN_POSITIVE)
}

/// A duration for humans: `123 ms` above 10 ms, `4.56 ms` below, `789 µs` below 1 ms.
pub fn fmt_duration(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms >= 10.0 {
        format!("{ms:.0} ms")
    } else if ms >= 1.0 {
        format!("{ms:.2} ms")
    } else {
        format!("{:.0} µs", ms * 1000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: &[u64]) -> Vec<Duration> {
        v.iter().map(|m| Duration::from_millis(*m)).collect()
    }

    #[test]
    fn summary_of_odd_and_even_sets() {
        let s = Summary::of(&ms(&[5, 1, 3])).unwrap();
        assert_eq!(s.median, Duration::from_millis(3));
        assert_eq!(s.min, Duration::from_millis(1));
        assert_eq!(s.max, Duration::from_millis(5));
        let s = Summary::of(&ms(&[4, 1, 3, 2])).unwrap();
        assert_eq!(s.median, Duration::from_micros(2500));
        assert!(Summary::of(&[]).is_none());
    }

    #[test]
    fn p90_is_the_nearest_rank() {
        let times = ms(&(1..=10).collect::<Vec<_>>());
        assert_eq!(Summary::of(&times).unwrap().p90, Duration::from_millis(9));
        let times = ms(&(1..=20).collect::<Vec<_>>());
        assert_eq!(Summary::of(&times).unwrap().p90, Duration::from_millis(18));
        assert_eq!(
            Summary::of(&ms(&[7])).unwrap().p90,
            Duration::from_millis(7)
        );
    }

    #[test]
    fn durations_and_medians_print_readably() {
        assert_eq!(fmt_duration(Duration::from_millis(234)), "234 ms");
        assert_eq!(fmt_duration(Duration::from_micros(4560)), "4.56 ms");
        assert_eq!(fmt_duration(Duration::from_micros(789)), "789 µs");
        assert_eq!(median_f64(&[3.0, 1.0, 2.0, 10.0]), Some(2.5));
        assert!((ratio(Duration::from_millis(50), Duration::from_millis(100)) - 0.5).abs() < 1e-9);
    }
}
