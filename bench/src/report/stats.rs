//! The statistics the report is made of: medians and percentiles over
//! rounds, relative changes, spreads, and what leco costs per operation.

use std::time::Duration;

/// Median of `xs`, `None` when empty.
pub fn median(xs: &[f64]) -> Option<f64> {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(v[n / 2]),
        _ => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
    }
}

/// The `p`-th percentile (nearest rank, `p` in 0–100) of `sorted` plus
/// `beyond` more values larger than all of them (e.g. never arrived):
/// `None` when it falls among those, or when there are no values at all.
pub fn percentile(sorted: &[Duration], beyond: u64, p: f64) -> Option<Duration> {
    let n = sorted.len() as u64 + beyond;
    if n == 0 {
        return None;
    }
    let rank = ((p / 100.0 * n as f64).ceil() as u64).clamp(1, n);
    sorted.get(usize::try_from(rank - 1).ok()?).copied()
}

/// How much lower `with` is than `baseline`, in percent of `baseline`
/// (negative when `with` is higher).
pub fn slowdown_pct(baseline: f64, with: f64) -> f64 {
    if baseline == 0.0 {
        return 0.0;
    }
    (baseline - with) / baseline * 100.0
}

/// How much higher `with` is than `baseline`, in percent of `baseline`
/// (negative when `with` is lower).
pub fn increase_pct(baseline: f64, with: f64) -> f64 {
    if baseline == 0.0 {
        return 0.0;
    }
    (with - baseline) / baseline * 100.0
}

/// Largest max/min ratio within any one of `lists` (rounds of one
/// configuration), `None` when no list has two positive figures.
pub fn spread<'a>(lists: impl IntoIterator<Item = &'a [f64]>) -> Option<f64> {
    lists
        .into_iter()
        .filter_map(|xs| {
            let lo = xs.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            (xs.len() >= 2 && lo > 0.0).then(|| hi / lo)
        })
        .max_by(f64::total_cmp)
}

/// Median CPU ns per operation of one workload in each configuration.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CpuMedians {
    /// Nothing attached.
    pub baseline: f64,
    /// Programs attached but returning at once, if measured.
    pub hooks_only: Option<f64>,
    /// The workload's threads with leco attached.
    pub with_leco: f64,
    /// leco-service itself, over the with-leco windows.
    pub service: f64,
}

impl CpuMedians {
    /// What leco costs per operation, all in: the extra CPU of the
    /// workload's threads (kernel hooks included) plus the service's.
    pub fn leco_cost_ns(&self) -> f64 {
        self.with_leco - self.baseline + self.service
    }

    /// [`Self::leco_cost_ns`] in percent of the baseline.
    pub fn leco_pct(&self) -> f64 {
        increase_pct(self.baseline, self.baseline + self.leco_cost_ns())
    }

    /// Extra CPU of the bare hooks, in percent of the baseline.
    pub fn hooks_pct(&self) -> Option<f64> {
        self.hooks_only.map(|h| increase_pct(self.baseline, h))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::CpuPerOp;

    #[test]
    fn median_of_odd_even_and_empty() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[7.0]), Some(7.0));
        assert_eq!(median(&[]), None);
    }

    #[test]
    fn slowdown_is_relative_to_baseline() {
        assert!((slowdown_pct(100.0, 97.0) - 3.0).abs() < 1e-9);
        assert!((slowdown_pct(100.0, 110.0) + 10.0).abs() < 1e-9);
        assert_eq!(slowdown_pct(0.0, 5.0), 0.0);
    }

    #[test]
    fn increase_is_relative_to_baseline() {
        assert!((increase_pct(2_000.0, 2_060.0) - 3.0).abs() < 1e-9);
        assert!((increase_pct(100.0, 90.0) + 10.0).abs() < 1e-9);
        assert_eq!(increase_pct(0.0, 5.0), 0.0);
    }

    #[test]
    fn spread_is_the_widest_list() {
        let a = [100.0, 200.0, 150.0];
        let b = [10.0, 11.0];
        assert_eq!(spread([&a[..], &b[..]]), Some(2.0));
        // One round, or a zero, says nothing about spread.
        assert_eq!(spread([&[5.0][..], &[0.0, 3.0][..], &[][..]]), None);
        assert_eq!(spread(std::iter::empty()), None);
    }

    #[test]
    fn cpu_medians_add_the_service_to_leco() {
        let c = CpuPerOp {
            name: "x".into(),
            baseline: vec![1_000.0, 1_200.0, 1_100.0],
            hooks_only: vec![1_111.0],
            with_leco: vec![1_150.0, 1_160.0],
            service: vec![40.0],
            other_build: vec![],
            other_service: vec![],
            target_pct: None,
        };
        let m = c.medians().expect("all figures present");
        assert_eq!(m.baseline, 1_100.0);
        assert_eq!(m.with_leco, 1_155.0);
        assert!((m.leco_cost_ns() - 95.0).abs() < 1e-9);
        assert!((m.leco_pct() - 95.0 / 11.0).abs() < 1e-9);
        assert!((m.hooks_pct().expect("measured") - 1.0).abs() < 1e-9);
        let no_floor = CpuMedians {
            hooks_only: None,
            ..m
        };
        assert_eq!(no_floor.hooks_pct(), None);
        let no_service = CpuPerOp {
            service: vec![],
            ..c
        };
        assert_eq!(no_service.medians(), None);
    }

    #[test]
    fn percentiles_rank_the_missing_last() {
        let ms = Duration::from_millis;
        let got: Vec<Duration> = (1..=10).map(ms).collect();
        assert_eq!(percentile(&got, 0, 50.0), Some(ms(5)));
        assert_eq!(percentile(&got, 0, 99.0), Some(ms(10)));
        assert_eq!(percentile(&got, 0, 100.0), Some(ms(10)));
        assert_eq!(percentile(&got, 0, 0.0), Some(ms(1)));
        // 10 of 20 arrived: the median is the last that did, p51 is not.
        assert_eq!(percentile(&got, 10, 50.0), Some(ms(10)));
        assert_eq!(percentile(&got, 10, 51.0), None);
        assert_eq!(percentile(&got, 1, 100.0), None);
        assert_eq!(percentile(&[], 3, 50.0), None);
        assert_eq!(percentile(&[], 0, 50.0), None);
        assert_eq!(percentile(&[ms(7)], 0, 99.0), Some(ms(7)));
    }
}
