//! The storm-with-Snapshot-callers section: a connection storm with and
//! without clients calling `Snapshot()`, what the calls waited, what they
//! cost the service and the bus as a ratio to the storm alone, and the
//! targets on ring drops, call latency and memory.

use std::fmt::Write as _;
use std::time::Duration;

use super::format::{fmt_latency, fmt_num, fmt_pct, fmt_ratio, fmt_wait, mib, rate_label};
use super::table::{self, Align::Left, Align::Right};
use super::targets::{Verdicts, SNAPSHOT_P99_TARGET, STORM_RSS_TARGET_MIB};
use super::{Report, DRAIN};

/// The `Snapshot()` calls of one storm.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SnapshotCalls {
    /// Calls asked for: callers × calls each.
    pub asked: u64,
    /// Calls answered with a reply.
    pub answered: u64,
    /// Calls answered with an error.
    pub failed: u64,
    /// Calls not answered within the wait, and those their callers then
    /// did not make.
    pub timed_out: u64,
    /// Percentiles over every call asked for, `None` when among those not
    /// answered.
    pub p50: Option<Duration>,
    /// 99th percentile, likewise.
    pub p99: Option<Duration>,
    /// Slowest, `None` when any was not answered.
    pub max: Option<Duration>,
    /// The largest reply body, bytes.
    pub largest_reply: usize,
    /// The first error reply, if any.
    pub first_error: Option<String>,
    /// From the storm's start to the first call.
    pub first_call: Duration,
    /// From the storm's start to the last answer.
    pub last_answer: Duration,
}

/// One storm against a fresh service.
#[derive(Debug, Clone)]
pub struct StormRun {
    /// Rate asked for, connections/s.
    pub target_rate: f64,
    /// Rate reached, connections/s.
    pub achieved_rate: f64,
    /// Connections completed.
    pub connections: u64,
    /// Wall time of the storm.
    pub window: Duration,
    /// The callers' calls; `None` for the storm alone.
    pub calls: Option<SnapshotCalls>,
    /// Service CPU over the storm plus [`DRAIN`], percent of one core.
    pub service_cpu_pct: f64,
    /// dbus-daemon's CPU likewise.
    pub daemon_cpu_pct: Option<f64>,
    /// Service VmRSS at the end of the window.
    pub rss_kib: u64,
    /// Service VmHWM once the storm and the calls are over.
    pub hwm_kib: u64,
    /// Change of the `KernelDrops` property over the storm.
    pub kernel_drops: u64,
    /// Change of the `Trimmed` property over the storm; `None` from a
    /// service without it.
    pub trimmed: Option<u64>,
}

/// The section's two storms.
#[derive(Debug, Clone)]
pub struct StormCallers {
    /// How far into the storm the callers start.
    pub callers_after: Duration,
    /// How long one call is waited for.
    pub call_wait: Duration,
    /// The storm alone.
    pub baseline: StormRun,
    /// The storm with callers.
    pub with_callers: StormRun,
    /// Callers, and calls each made back to back.
    pub callers: usize,
    /// Calls each caller makes.
    pub calls_each: usize,
}

/// Writes the section, if the storms were measured.
pub(super) fn section(out: &mut String, r: &Report, verdicts: &mut Verdicts) {
    let Some(s) = &r.storm_callers else {
        return;
    };
    let _ = writeln!(out, "## Connection storm with Snapshot callers\n");
    figures_table(out, s);
    method(out, s);
    shortfalls(out, s);
    checks(out, s, verdicts);
}

/// `with 50 callers × 20`.
fn callers_label(s: &StormCallers) -> String {
    format!("with {} callers × {}", s.callers, s.calls_each)
}

/// One row per figure, the storm alone and with callers side by side.
fn figures_table(out: &mut String, s: &StormCallers) {
    let (b, w) = (&s.baseline, &s.with_callers);
    let calls = w.calls.clone().unwrap_or_default();
    let with = callers_label(s);
    table::head(
        out,
        &[
            ("figure", Left),
            ("without callers", Right),
            (&with, Right),
            ("with / without", Right),
        ],
    );
    let conns = |r: &StormRun| {
        format!(
            "{} ({} conn/s)",
            fmt_num(r.connections as f64, 0),
            fmt_num(r.achieved_rate, 0)
        )
    };
    let mem = |kib: u64| format!("{} MiB", fmt_num(mib(kib), 1));
    let count = |n: u64| fmt_num(n as f64, 0);
    let wait = s.call_wait;
    let rows: [[String; 4]; 10] = [
        [
            format!("connections ({})", rate_label(Some(b.target_rate))),
            conns(b),
            conns(w),
            fmt_ratio(w.achieved_rate, b.achieved_rate),
        ],
        [
            "`Snapshot()` calls answered".to_owned(),
            "—".to_owned(),
            format!("{} of {}", count(calls.answered), count(calls.asked)),
            "—".to_owned(),
        ],
        [
            "call latency p50 / p99 / max".to_owned(),
            "—".to_owned(),
            format!(
                "{} / {} / {}",
                fmt_latency(calls.p50, wait),
                fmt_latency(calls.p99, wait),
                fmt_latency(calls.max, wait)
            ),
            "—".to_owned(),
        ],
        [
            "largest reply".to_owned(),
            "—".to_owned(),
            format!("{} KiB", fmt_num(calls.largest_reply as f64 / 1024.0, 0)),
            "—".to_owned(),
        ],
        [
            "service CPU (% of one core)".to_owned(),
            fmt_pct(b.service_cpu_pct),
            fmt_pct(w.service_cpu_pct),
            fmt_ratio(w.service_cpu_pct, b.service_cpu_pct),
        ],
        [
            "dbus-daemon CPU (% of one core)".to_owned(),
            b.daemon_cpu_pct.map_or("unknown".to_owned(), fmt_pct),
            w.daemon_cpu_pct.map_or("unknown".to_owned(), fmt_pct),
            match (w.daemon_cpu_pct, b.daemon_cpu_pct) {
                (Some(w), Some(b)) => fmt_ratio(w, b),
                _ => "—".to_owned(),
            },
        ],
        [
            "service RSS".to_owned(),
            mem(b.rss_kib),
            mem(w.rss_kib),
            fmt_ratio(w.rss_kib as f64, b.rss_kib as f64),
        ],
        [
            "service peak RSS (VmHWM)".to_owned(),
            mem(b.hwm_kib),
            mem(w.hwm_kib),
            fmt_ratio(w.hwm_kib as f64, b.hwm_kib as f64),
        ],
        [
            "kernel ring drops (`KernelDrops`)".to_owned(),
            count(b.kernel_drops),
            count(w.kernel_drops),
            "—".to_owned(),
        ],
        [
            "connections left out of replies (`Trimmed`)".to_owned(),
            b.trimmed.map_or("unknown".to_owned(), count),
            w.trimmed.map_or("unknown".to_owned(), count),
            "—".to_owned(),
        ],
    ];
    for row in &rows {
        let cells: Vec<&str> = row.iter().map(String::as_str).collect();
        table::row(out, &cells);
    }
}

/// How the storms were made and measured.
fn method(out: &mut String, s: &StormCallers) {
    let _ = writeln!(
        out,
        "\nEach storm has a fresh leco-service on a private dbus-daemon configured like the \
         system bus with the repository's policy (`leco_testkit::bus::TestBus`), and \
         connections (connect, accept, close) paced at {} in 10 ms batches for about {} s. \
         In the second storm, {} s in, {} zbus clients, each on a bus connection of its own and all \
         connected before the first call, call `Snapshot()` {} times each, back to back; a \
         call's latency is from the call to its reply (not decoded), and a call not answered \
         within {} ranks above every other in the percentiles (its caller then stops). CPU is \
         utime + stime from /proc over the storm plus {} ms, the same window in both storms, \
         RSS is VmRSS at its end and peak RSS VmHWM since that service started, read once the \
         storm and the calls are over; kernel drops and trimmed connections are the changes \
         of the `KernelDrops` and `Trimmed` properties over the same span. The ratio column reads what the callers cost: with \
         callers ÷ without.\n",
        rate_label(Some(s.with_callers.target_rate)),
        fmt_num(s.with_callers.window.as_secs_f64(), 0),
        fmt_num(s.callers_after.as_secs_f64(), 0),
        s.callers,
        s.calls_each,
        fmt_wait(s.call_wait),
        DRAIN.as_millis(),
    );
}

/// Calls that failed, and callers outlasting the storm (their work past it
/// is not in the CPU figures).
fn shortfalls(out: &mut String, s: &StormCallers) {
    let Some(c) = &s.with_callers.calls else {
        return;
    };
    if c.failed > 0 {
        let _ = writeln!(
            out,
            "{} calls were answered with an error, the first: `{}`.\n",
            fmt_num(c.failed as f64, 0),
            c.first_error.as_deref().unwrap_or("unknown"),
        );
    }
    if c.timed_out > 0 {
        let _ = writeln!(
            out,
            "{} calls were not answered within {} or not made after such a one.\n",
            fmt_num(c.timed_out as f64, 0),
            fmt_wait(s.call_wait),
        );
    }
    let storm = s.with_callers.window;
    if c.last_answer > storm {
        let _ = writeln!(
            out,
            "The callers' last answer came {} s into a storm of {} s: what they cost after \
             its end is not in the CPU figures.\n",
            fmt_num(c.last_answer.as_secs_f64(), 1),
            fmt_num(storm.as_secs_f64(), 1),
        );
    } else {
        let _ = writeln!(
            out,
            "The callers called from {} s to {} s into the storm of {} s.\n",
            fmt_num(c.first_call.as_secs_f64(), 1),
            fmt_num(c.last_answer.as_secs_f64(), 1),
            fmt_num(storm.as_secs_f64(), 1),
        );
    }
}

/// The targets on drops, call latency and memory, judged on the storm
/// with callers.
fn checks(out: &mut String, s: &StormCallers, verdicts: &mut Verdicts) {
    let w = &s.with_callers;
    let p99 = w.calls.as_ref().and_then(|c| c.p99);
    table::checks_head(out);
    let shortfall = if w.achieved_rate < 0.95 * w.target_rate {
        format!(" (only {} conn/s reached)", fmt_num(w.achieved_rate, 0))
    } else {
        String::new()
    };
    table::row(
        out,
        &[
            &format!(
                "kernel ring drops at {} {}{shortfall}",
                rate_label(Some(w.target_rate)),
                callers_label(s),
            ),
            &fmt_num(w.kernel_drops as f64, 0),
            "0",
            verdicts.judge(w.kernel_drops == 0),
        ],
    );
    table::row(
        out,
        &[
            "`Snapshot()` call latency p99",
            &fmt_latency(p99, s.call_wait),
            &format!("≤ {}", fmt_wait(SNAPSHOT_P99_TARGET)),
            verdicts.judge(p99.is_some_and(|p| p <= SNAPSHOT_P99_TARGET)),
        ],
    );
    let peak = w.hwm_kib.max(w.rss_kib);
    table::row(
        out,
        &[
            "service peak RSS with callers (VmHWM)",
            &format!("{} MiB", fmt_num(mib(peak), 1)),
            &format!("≤ {STORM_RSS_TARGET_MIB} MiB"),
            verdicts.judge(mib(peak) <= STORM_RSS_TARGET_MIB),
        ],
    );
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::render;

    fn run(calls: Option<SnapshotCalls>, cpu: f64, hwm_mib: u64, drops: u64) -> StormRun {
        StormRun {
            target_rate: 5_000.0,
            achieved_rate: 4_990.0,
            connections: 39_920,
            window: Duration::from_secs(8),
            calls,
            service_cpu_pct: cpu,
            daemon_cpu_pct: Some(cpu / 2.0),
            rss_kib: hwm_mib * 1024 - 512,
            hwm_kib: hwm_mib * 1024,
            kernel_drops: drops,
            trimmed: Some(0),
        }
    }

    fn calls(p99: Option<Duration>, timed_out: u64) -> SnapshotCalls {
        let ms = Duration::from_millis;
        SnapshotCalls {
            asked: 1_000,
            answered: 1_000 - timed_out,
            failed: 0,
            timed_out,
            p50: Some(ms(120)),
            p99,
            max: p99.filter(|_| timed_out == 0),
            largest_reply: 1_536 * 1024,
            first_error: None,
            first_call: ms(1_050),
            last_answer: ms(6_400),
        }
    }

    fn storms(with: StormRun) -> Report {
        Report {
            storm_callers: Some(StormCallers {
                callers_after: Duration::from_secs(1),
                call_wait: Duration::from_secs(10),
                baseline: run(None, 6.0, 9, 0),
                with_callers: with,
                callers: 50,
                calls_each: 20,
            }),
            ..Report::default()
        }
    }

    #[test]
    fn renders_both_storms_side_by_side_with_their_ratio() {
        let ms = Duration::from_millis;
        let with = run(Some(calls(Some(ms(450)), 0)), 24.0, 36, 0);
        let md = render(&storms(with));
        for line in [
            "## Connection storm with Snapshot callers",
            "| figure | without callers | with 50 callers × 20 | with / without |",
            "| connections (5,000 conn/s) | 39,920 (4,990 conn/s) | 39,920 (4,990 conn/s) | 1.00× |",
            "| `Snapshot()` calls answered | — | 1,000 of 1,000 | — |",
            "| call latency p50 / p99 / max | — | 120 ms / 450 ms / 450 ms | — |",
            "| largest reply | — | 1,536 KiB | — |",
            "| service CPU (% of one core) | 6.0 % | 24.0 % | 4.00× |",
            "| service peak RSS (VmHWM) | 9.0 MiB | 36.0 MiB | 4.00× |",
            "| kernel ring drops (`KernelDrops`) | 0 | 0 | — |",
            "The callers called from 1.1 s to 6.4 s into the storm of 8.0 s.",
            "| kernel ring drops at 5,000 conn/s with 50 callers × 20 | 0 | 0 | PASS |",
            "| `Snapshot()` call latency p99 | 450 ms | ≤ 2 s | PASS |",
            "| service peak RSS with callers (VmHWM) | 36.0 MiB | ≤ 96 MiB | PASS |",
            "- Targets: 3 PASS, 0 MISS",
        ] {
            assert!(md.contains(line), "{line} not in:\n{md}");
        }
    }

    #[test]
    fn drops_unanswered_calls_and_overruns_miss() {
        let mut c = calls(None, 40);
        c.last_answer = Duration::from_millis(9_500);
        let with = StormRun {
            achieved_rate: 3_000.0,
            ..run(Some(c), 40.0, 120, 8_503)
        };
        let md = render(&storms(with));
        for line in [
            "| call latency p50 / p99 / max | — | 120 ms / > 10 s / > 10 s | — |",
            "40 calls were not answered within 10 s or not made after such a one.",
            "The callers' last answer came 9.5 s into a storm of 8.0 s",
            "| kernel ring drops at 5,000 conn/s with 50 callers × 20 (only 3,000 conn/s reached) | 8,503 | 0 | MISS |",
            "| `Snapshot()` call latency p99 | > 10 s | ≤ 2 s | MISS |",
            "- Targets: 0 PASS, 3 MISS",
        ] {
            assert!(md.contains(line), "{line} not in:\n{md}");
        }
    }
}
