//! Latency statistics of a benchmark phase: nearest-rank percentiles over every sample (no
//! histogram buckets, so p99 of a short run is an observed value, not an interpolation).

use std::time::Duration;

/// Every latency sample of one phase.
#[derive(Debug, Default, Clone)]
pub struct Samples {
    v: Vec<Duration>,
    sorted: bool,
}

impl Samples {
    /// No samples yet.
    pub fn new() -> Self {
        Samples::default()
    }

    /// Add one sample.
    pub fn push(&mut self, d: Duration) {
        self.v.push(d);
        self.sorted = false;
    }

    /// Add every sample of `other`.
    pub fn extend(&mut self, other: Samples) {
        self.v.extend(other.v);
        self.sorted = false;
    }

    /// How many samples.
    pub fn len(&self) -> usize {
        self.v.len()
    }

    /// No sample at all.
    pub fn is_empty(&self) -> bool {
        self.v.is_empty()
    }

    /// The nearest-rank `q`-quantile (`q` in 0..=1): the smallest sample with at least `q` of the
    /// samples at or below it. `None` without samples.
    pub fn quantile(&mut self, q: f64) -> Option<Duration> {
        if self.v.is_empty() {
            return None;
        }
        if !self.sorted {
            self.v.sort_unstable();
            self.sorted = true;
        }
        let n = self.v.len();
        let rank = (q.clamp(0.0, 1.0) * n as f64).ceil() as usize;
        self.v.get(rank.clamp(1, n) - 1).copied()
    }

    /// The sum of every sample (the elapsed time of sequential operations).
    pub fn total(&self) -> Duration {
        self.v.iter().sum()
    }

    /// The largest sample.
    pub fn max(&self) -> Option<Duration> {
        self.v.iter().max().copied()
    }
}

/// Milliseconds as a float (for tables and JSON).
pub fn ms(d: Option<Duration>) -> Option<f64> {
    d.map(|d| d.as_secs_f64() * 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(ms: &[u64]) -> Samples {
        let mut s = Samples::new();
        for m in ms {
            s.push(Duration::from_millis(*m));
        }
        s
    }

    #[test]
    fn empty_has_no_quantiles() {
        let mut s = Samples::new();
        assert_eq!(s.quantile(0.5), None);
        assert_eq!(s.max(), None);
        assert!(s.is_empty());
    }

    #[test]
    fn nearest_rank_percentiles() {
        // 1..=100 ms in reverse order: p50 = 50, p99 = 99, p100 = max = 100, p0 = min = 1.
        let mut s = of(&(1..=100).rev().collect::<Vec<_>>());
        assert_eq!(s.quantile(0.5), Some(Duration::from_millis(50)));
        assert_eq!(s.quantile(0.99), Some(Duration::from_millis(99)));
        assert_eq!(s.quantile(1.0), Some(Duration::from_millis(100)));
        assert_eq!(s.quantile(0.0), Some(Duration::from_millis(1)));
        assert_eq!(s.max(), Some(Duration::from_millis(100)));
    }

    #[test]
    fn small_sets_and_outliers() {
        let mut one = of(&[7]);
        assert_eq!(one.quantile(0.99), Some(Duration::from_millis(7)));
        // 1 outlier in 10: p50 ignores it, p99 is it (nearest rank of 9.9 is the 10th).
        let mut s = of(&[1, 1, 1, 1, 1, 1, 1, 1, 1, 500]);
        assert_eq!(s.quantile(0.5), Some(Duration::from_millis(1)));
        assert_eq!(s.quantile(0.9), Some(Duration::from_millis(1)));
        assert_eq!(s.quantile(0.99), Some(Duration::from_millis(500)));
        let mut a = of(&[3, 1]);
        a.extend(of(&[2]));
        assert_eq!(a.len(), 3);
        assert_eq!(a.quantile(0.5), Some(Duration::from_millis(2)));
        assert_eq!(ms(Some(Duration::from_micros(1500))), Some(1.5));
    }
}
