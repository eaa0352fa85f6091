//! The service section: leco-service's CPU, memory and ring-buffer drops
//! under paced connection churn, and the targets judged on them.

use std::fmt::Write as _;

use super::format::{fmt_num, fmt_pct, mib};
use super::table::{self, Align::Right};
use super::targets::{
    Verdicts, CPU_TARGET_PCT, CPU_TARGET_RATE, DROPS_TARGET_RATE, RSS_TARGET_MIB,
};
use super::Report;
use crate::service::FinalCounters;

/// One paced churn window with leco attached.
#[derive(Debug, Clone)]
pub struct ServiceRun {
    /// Rate asked for, connections/s.
    pub target_rate: f64,
    /// Rate reached, connections/s.
    pub achieved_rate: f64,
    /// Connections completed.
    pub connections: u64,
    /// Service CPU over the window, percent of one core.
    pub cpu_pct: f64,
    /// VmRSS at the end of the window.
    pub rss_kib: u64,
    /// VmHWM at the end of the window.
    pub hwm_kib: u64,
    /// The service's final counters, if it printed them.
    pub counters: Option<FinalCounters>,
}

/// Writes the section, if the service was measured.
pub(super) fn section(out: &mut String, r: &Report, verdicts: &mut Verdicts) {
    if r.service.is_empty() {
        return;
    }
    let _ = writeln!(out, "## Service cost under paced connection churn\n");
    cost_table(out, &r.service);
    let _ = writeln!(
        out,
        "\nEach loopback connection is two flows for leco (client and server side). Rates are \
         paced in 10 ms batches; the achieved rate is what the client completed. A service \
         was started for each rate, so drops and peak RSS are per rate.\n"
    );
    checks(out, &r.service, verdicts);
}

/// One row per paced rate.
fn cost_table(out: &mut String, runs: &[ServiceRun]) {
    table::head(
        out,
        &[
            ("target rate", Right),
            ("achieved", Right),
            ("connections", Right),
            ("flows/s seen by leco", Right),
            ("events", Right),
            ("service CPU (% of one core)", Right),
            ("RSS", Right),
            ("peak RSS", Right),
            ("ring-buffer drops", Right),
        ],
    );
    for s in runs {
        let counter = |v: Option<u64>| v.map_or("unknown".to_owned(), |v| fmt_num(v as f64, 0));
        table::row(
            out,
            &[
                &format!("{} conn/s", fmt_num(s.target_rate, 0)),
                &format!("{} conn/s", fmt_num(s.achieved_rate, 0)),
                &fmt_num(s.connections as f64, 0),
                &fmt_num(s.achieved_rate * 2.0, 0),
                &counter(s.counters.as_ref().and_then(FinalCounters::events)),
                &fmt_pct(s.cpu_pct),
                &format!("{} MiB", fmt_num(mib(s.rss_kib), 1)),
                &format!("{} MiB", fmt_num(mib(s.hwm_kib), 1)),
                &counter(s.counters.as_ref().and_then(FinalCounters::ringbuf_drops)),
            ],
        );
    }
}

/// The targets on CPU, drops and memory, each judged at the rate it
/// applies to.
fn checks(out: &mut String, runs: &[ServiceRun], verdicts: &mut Verdicts) {
    table::checks_head(out);
    let at = |rate: f64| runs.iter().find(|s| s.target_rate == rate);
    if let Some(s) = at(CPU_TARGET_RATE) {
        let result = verdicts.judge(s.cpu_pct <= CPU_TARGET_PCT);
        table::row(
            out,
            &[
                &format!(
                    "service CPU at {} conn/s{}",
                    fmt_num(CPU_TARGET_RATE, 0),
                    shortfall(s)
                ),
                &fmt_pct(s.cpu_pct),
                &format!("≤ {CPU_TARGET_PCT} % of one core"),
                result,
            ],
        );
    }
    if let Some(s) = at(DROPS_TARGET_RATE) {
        let drops = s.counters.as_ref().and_then(FinalCounters::ringbuf_drops);
        let (measured, result) = match drops {
            Some(d) => (fmt_num(d as f64, 0), verdicts.judge(d == 0)),
            None => ("unknown".to_owned(), "UNKNOWN (no final counters line)"),
        };
        table::row(
            out,
            &[
                &format!(
                    "ring-buffer drops at {} conn/s{}",
                    fmt_num(DROPS_TARGET_RATE, 0),
                    shortfall(s)
                ),
                &measured,
                "0",
                result,
            ],
        );
    }
    if let Some(peak) = runs.iter().map(|s| s.hwm_kib.max(s.rss_kib)).max() {
        let result = verdicts.judge(mib(peak) <= RSS_TARGET_MIB);
        table::row(
            out,
            &[
                "service peak RSS (VmHWM)",
                &format!("{} MiB", fmt_num(mib(peak), 1)),
                &format!("≤ {RSS_TARGET_MIB} MiB"),
                result,
            ],
        );
    }
    out.push('\n');
}

/// Says so when a window fell well short of its rate, whose target then
/// was judged at a lower load.
fn shortfall(s: &ServiceRun) -> String {
    if s.achieved_rate < 0.95 * s.target_rate {
        format!(" (only {} conn/s reached)", fmt_num(s.achieved_rate, 0))
    } else {
        String::new()
    }
}
