//! The per-hook section: what each of leco's eBPF programs costs per call,
//! from the kernel's own run-time statistics.

use std::fmt::Write as _;
use std::time::Duration;

use super::format::{fmt_num, fmt_pct};
use super::table::{self, Align::Left, Align::Right};
use super::targets::{Verdicts, HOOK_TARGET_NS};
use super::Report;
use crate::hooks::HookCost;

/// Per-hook costs over one window with statistics enabled.
#[derive(Debug, Clone)]
pub struct Hooks {
    /// One entry per leco program.
    pub costs: Vec<HookCost>,
    /// Wall time between the two counter snapshots.
    pub window: Duration,
}

/// Sums over every hook.
#[derive(Debug, Default)]
struct Totals {
    calls: u64,
    run_time_ns: u64,
    recursion_misses: u64,
}

/// Writes the section, if hooks were measured.
pub(super) fn section(out: &mut String, r: &Report, verdicts: &mut Verdicts) {
    let Some(h) = &r.hooks else {
        return;
    };
    let _ = writeln!(out, "## Per-hook kernel cost\n");
    let _ = writeln!(
        out,
        "With leco attached and `kernel.bpf_stats_enabled=1`, the three workloads ran once more; \
         counters are the difference between two `bpftool prog show -j` snapshots {} s apart.\n",
        fmt_num(h.window.as_secs_f64(), 1)
    );
    let all = cost_table(out, h, verdicts);
    let window_ns = h.window.as_nanos() as f64;
    if window_ns > 0.0 {
        let _ = writeln!(
            out,
            "All hooks together ran {} of one core over the window.",
            fmt_pct(all.run_time_ns as f64 / window_ns * 100.0)
        );
    }
    let _ = writeln!(
        out,
        "Counts include every other process of the machine, not only the workloads. An \
         empty program on the same hooks costs about 80 ns per call here with statistics \
         on, which is the floor of these means.\n"
    );
    if all.recursion_misses > 0 {
        let _ = writeln!(
            out,
            "A recursion miss is a run the kernel skipped because the same program was already \
             running on that CPU (e.g. interrupted by softirq work on loopback): an event leco \
             did not see.\n"
        );
    }
}

/// One row per program, each judged, then their sum.
fn cost_table(out: &mut String, h: &Hooks, verdicts: &mut Verdicts) -> Totals {
    table::head(
        out,
        &[
            ("program", Left),
            ("calls", Right),
            ("mean ns/call", Right),
            ("total ms", Right),
            ("recursion misses", Right),
            ("target", Left),
            ("result", Left),
        ],
    );
    let mut all = Totals::default();
    for c in &h.costs {
        all.calls += c.calls;
        all.run_time_ns += c.run_time_ns;
        all.recursion_misses += c.recursion_misses;
        let (mean, result) = match c.mean_ns() {
            Some(m) => (fmt_num(m, 0), verdicts.judge(m <= HOOK_TARGET_NS)),
            None => ("—".to_owned(), "not called"),
        };
        table::row(
            out,
            &[
                c.name,
                &fmt_num(c.calls as f64, 0),
                &mean,
                &fmt_num(c.run_time_ns as f64 / 1e6, 1),
                &fmt_num(c.recursion_misses as f64, 0),
                &format!("≤ {HOOK_TARGET_NS} ns"),
                result,
            ],
        );
    }
    let all_mean = if all.calls > 0 {
        fmt_num(all.run_time_ns as f64 / all.calls as f64, 0)
    } else {
        "—".to_owned()
    };
    table::row(
        out,
        &[
            "**all hooks**",
            &fmt_num(all.calls as f64, 0),
            &all_mean,
            &fmt_num(all.run_time_ns as f64 / 1e6, 1),
            &fmt_num(all.recursion_misses as f64, 0),
            "",
            "",
        ],
    );
    out.push('\n');
    all
}
