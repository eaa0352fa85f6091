//! The targets the report judges its figures against, and the tally of
//! its verdicts.

use std::time::Duration;

/// Largest increase of bulk TCP's CPU time per write accepted, percent.
pub const BULK_TARGET_PCT: f64 = 3.0;
/// Largest increase of connection churn's CPU time per connection
/// accepted, percent.
pub const CHURN_TARGET_PCT: f64 = 5.0;
/// Largest mean cost of one hook run, ns.
pub const HOOK_TARGET_NS: f64 = 160.0;
/// Largest service CPU at the low paced rate, percent of one core.
pub const CPU_TARGET_PCT: f64 = 5.0;
/// Paced rate at which the CPU target applies, connections/s.
pub const CPU_TARGET_RATE: f64 = 1_000.0;
/// Paced rate at which no event may be dropped, connections/s.
pub const DROPS_TARGET_RATE: f64 = 5_000.0;
/// Largest resident set of the service, MiB.
pub const RSS_TARGET_MIB: f64 = 20.0;
/// Largest p99 of connect → `ConnectionEvent` latency accepted.
pub const LATENCY_TARGET: Duration = Duration::from_millis(10);
/// Paced rate at which the latency target applies, connections/s.
pub const LATENCY_TARGET_RATE: f64 = 1_000.0;
/// Paced rate of the storm with `Snapshot()` callers, at which no event
/// may be dropped, connections/s.
pub const STORM_RATE: f64 = 5_000.0;
/// Largest p99 of a `Snapshot()` call during the storm.
pub const SNAPSHOT_P99_TARGET: Duration = Duration::from_secs(2);
/// Largest resident set of the service during the storm with callers,
/// MiB: replies of up to 4 MiB are built and sent while the table fills.
pub const STORM_RSS_TARGET_MIB: f64 = 96.0;

/// A verdict's label.
pub(super) fn verdict(pass: bool) -> &'static str {
    if pass {
        "PASS"
    } else {
        "MISS"
    }
}

/// How many targets passed and missed so far; the header counts them.
#[derive(Debug, Default)]
pub(super) struct Verdicts {
    passed: usize,
    missed: usize,
}

impl Verdicts {
    /// Counts a target as passed or missed, and gives the label of its
    /// result.
    pub(super) fn judge(&mut self, pass: bool) -> &'static str {
        if pass {
            self.passed += 1;
        } else {
            self.missed += 1;
        }
        verdict(pass)
    }

    /// Targets passed.
    pub(super) fn passed(&self) -> usize {
        self.passed
    }

    /// Targets missed.
    pub(super) fn missed(&self) -> usize {
        self.missed
    }
}
