//! The loopback workloads section: throughput and CPU time per operation
//! with nothing attached, with leco's hooks only and with leco, against the
//! same run's baseline.

use std::fmt::Write as _;

use super::format::{fmt_list, fmt_ns, fmt_ns_delta, fmt_ns_num, fmt_num, fmt_pct};
use super::stats::{median, slowdown_pct, spread, CpuMedians};
use super::table::{self, Align, Align::Left, Align::Right};
use super::targets::Verdicts;
use super::{Report, DRAIN};

/// One workload measured in every round.
#[derive(Debug, Clone)]
pub struct Throughput {
    /// What ran.
    pub name: String,
    /// Unit of the figures, e.g. `MiB/s`.
    pub unit: &'static str,
    /// Decimals shown.
    pub decimals: usize,
    /// One figure per baseline round.
    pub baseline: Vec<f64>,
    /// One figure per round with leco's programs attached but returning at
    /// once (the cost of the hooks themselves).
    pub hooks_only: Vec<f64>,
    /// One figure per with-leco round.
    pub with_leco: Vec<f64>,
}

/// CPU time per operation of one workload, measured in every round: user
/// plus system time of the workload's own threads, so that leco's eBPF
/// programs running on their socket calls are counted.
#[derive(Debug, Clone)]
pub struct CpuPerOp {
    /// What ran and what one operation is.
    pub name: String,
    /// ns per operation, one figure per baseline round.
    pub baseline: Vec<f64>,
    /// Likewise with leco's programs attached but returning at once.
    pub hooks_only: Vec<f64>,
    /// Likewise with leco.
    pub with_leco: Vec<f64>,
    /// leco-service's own CPU over each with-leco workload, ns per
    /// operation of that workload.
    pub service: Vec<f64>,
    /// ns per operation with the `--against` build attached, one figure
    /// per round; empty without one.
    pub other_build: Vec<f64>,
    /// That build's leco-service CPU, ns per operation, likewise.
    pub other_service: Vec<f64>,
    /// Largest increase of the total (workload and service) CPU per
    /// operation accepted, percent, if there is a target.
    pub target_pct: Option<f64>,
}

impl CpuPerOp {
    /// Medians over the rounds, `None` unless baseline, with-leco and
    /// service figures all exist.
    pub fn medians(&self) -> Option<CpuMedians> {
        Some(CpuMedians {
            baseline: median(&self.baseline)?,
            hooks_only: median(&self.hooks_only),
            with_leco: median(&self.with_leco)?,
            service: median(&self.service)?,
        })
    }
}

/// The columns both tables begin with: the workload and its median in
/// each configuration.
const MEDIAN_COLUMNS: [(&str, Align); 4] = [
    ("workload", Left),
    ("baseline (median)", Right),
    ("hooks only (median)", Right),
    ("with leco (median)", Right),
];

/// Writes the section, if anything was measured.
pub(super) fn section(out: &mut String, r: &Report, verdicts: &mut Verdicts) {
    if r.throughput.is_empty() && r.cpu.is_empty() {
        return;
    }
    let _ = writeln!(out, "## Loopback workloads with and without leco\n");
    let _ = writeln!(
        out,
        "Each round runs the workloads with nothing attached (baseline), with leco's programs \
         attached but returning at once (hooks only: what any eBPF observer on these hooks \
         costs before doing any work), and with leco.\n"
    );
    throughput_table(out, r);
    cpu_table(out, r, verdicts);
    every_round(out, r);
}

/// Medians of throughput, information only: no target.
fn throughput_table(out: &mut String, r: &Report) {
    if r.throughput.is_empty() {
        return;
    }
    let _ = writeln!(out, "Throughput:\n");
    table::head(
        out,
        &[
            &MEDIAN_COLUMNS[..],
            &[("slowdown, hooks only", Right), ("slowdown, leco", Right)],
        ]
        .concat(),
    );
    for t in &r.throughput {
        let (Some(b), Some(w)) = (median(&t.baseline), median(&t.with_leco)) else {
            table::row(out, &[&t.name, "—", "—", "—", "—", "—"]);
            continue;
        };
        let (floor, floor_slow) = match median(&t.hooks_only) {
            Some(h) => (
                format!("{} {}", fmt_num(h, t.decimals), t.unit),
                fmt_pct(slowdown_pct(b, h)),
            ),
            None => ("—".to_owned(), "—".to_owned()),
        };
        table::row(
            out,
            &[
                &t.name,
                &format!("{} {}", fmt_num(b, t.decimals), t.unit),
                &floor,
                &format!("{} {}", fmt_num(w, t.decimals), t.unit),
                &floor_slow,
                &fmt_pct(slowdown_pct(b, w)),
            ],
        );
    }
    out.push('\n');
}

/// Medians of CPU time per operation, judged against the targets.
fn cpu_table(out: &mut String, r: &Report, verdicts: &mut Verdicts) {
    if r.cpu.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "CPU time per operation: wall-clock throughput on this shared machine moves with \
         whatever else runs{}, so the targets are judged on the CPU time the workload's own \
         threads use per operation (leco's eBPF programs run in those threads and count) plus \
         leco-service's own CPU over the same window; the throughput slowdowns above are \
         information only.\n",
        spread_seen(r)
    );
    table::head(
        out,
        &[
            &MEDIAN_COLUMNS[..],
            &[
                ("leco-service (median)", Right),
                ("overhead, hooks only", Right),
                ("leco cost per op", Right),
                ("overhead, leco incl. service", Right),
                ("target", Left),
                ("result", Left),
            ],
        ]
        .concat(),
    );
    for c in &r.cpu {
        match c.medians() {
            Some(m) => cpu_row(out, c, &m, verdicts),
            None => table::row(
                out,
                &[
                    &c.name,
                    "—",
                    "—",
                    "—",
                    "—",
                    "—",
                    "—",
                    "—",
                    "—",
                    "not measured",
                ],
            ),
        }
    }
    let _ = writeln!(
        out,
        "\nThe workload's CPU is user + system time of its client and server (or sender and \
         receiver) threads, read with `CLOCK_THREAD_CPUTIME_ID` at each thread's start and \
         end; network softirq work counts when it runs in those threads, as it mostly does on \
         loopback, but not when the kernel defers it to ksoftirqd. For UDP it is the sender's \
         CPU per datagram sent plus the receiver's per datagram received, so that the share \
         dropped on a full receive buffer does not move it. leco-service's CPU is its \
         utime + stime from /proc over each with-leco workload (plus {} ms for it to drain \
         that workload's events), divided by that workload's operations (datagrams sent for UDP). The leco cost per op \
         is with leco − baseline + leco-service, and the result is judged on it in percent of \
         baseline.\n",
        DRAIN.as_millis()
    );
}

/// How far apart rounds of one configuration were, as a parenthesis for
/// the CPU table's introduction (empty unless both kinds were measured).
fn spread_seen(r: &Report) -> String {
    let wall = spread(r.throughput.iter().flat_map(|t| {
        [
            t.baseline.as_slice(),
            t.hooks_only.as_slice(),
            t.with_leco.as_slice(),
        ]
    }));
    let cpu = spread(r.cpu.iter().flat_map(|c| {
        [
            c.baseline.as_slice(),
            c.hooks_only.as_slice(),
            c.with_leco.as_slice(),
        ]
    }));
    match (wall, cpu) {
        (Some(w), Some(c)) => format!(
            " (in this run, rounds of one configuration differ by up to {w:.2}× in throughput \
             and {c:.2}× in CPU per operation)"
        ),
        _ => String::new(),
    }
}

/// One workload's row of the CPU table, its target judged when it has one.
fn cpu_row(out: &mut String, c: &CpuPerOp, m: &CpuMedians, verdicts: &mut Verdicts) {
    let leco_pct = m.leco_pct();
    let (target, result) = match c.target_pct {
        Some(max) => (format!("≤ {max} %"), verdicts.judge(leco_pct <= max)),
        None => ("—".to_owned(), "—"),
    };
    table::row(
        out,
        &[
            &c.name,
            &fmt_ns(m.baseline),
            &m.hooks_only.map_or("—".to_owned(), fmt_ns),
            &fmt_ns(m.with_leco),
            &fmt_ns(m.service),
            &m.hooks_pct().map_or("—".to_owned(), fmt_pct),
            &fmt_ns_delta(m.leco_cost_ns()),
            &fmt_pct(leco_pct),
            &target,
            result,
        ],
    );
}

/// Every round's figures, not only their medians.
fn every_round(out: &mut String, r: &Report) {
    bullets(
        out,
        "Every round, throughput (baseline / hooks only / with leco):",
        r.throughput.iter().map(|t| {
            let figures = |xs: &[f64]| fmt_list(xs, |x| fmt_num(x, t.decimals));
            format!(
                "{}: {} / {} / {} {}",
                t.name,
                figures(&t.baseline),
                figures(&t.hooks_only),
                figures(&t.with_leco),
                t.unit
            )
        }),
    );
    bullets(
        out,
        "Every round, CPU ns per operation (baseline / hooks only / with leco / leco-service):",
        r.cpu.iter().map(|c| {
            format!(
                "{}: {} / {} / {} / {} ns",
                c.name,
                fmt_list(&c.baseline, fmt_ns_num),
                fmt_list(&c.hooks_only, fmt_ns_num),
                fmt_list(&c.with_leco, fmt_ns_num),
                fmt_list(&c.service, fmt_ns_num),
            )
        }),
    );
}

/// A paragraph `title` over a bulleted list of `items`; nothing when there
/// are none.
fn bullets(out: &mut String, title: &str, items: impl Iterator<Item = String>) {
    let mut items = items.peekable();
    if items.peek().is_none() {
        return;
    }
    let _ = writeln!(out, "{title}\n");
    for item in items {
        let _ = writeln!(out, "- {item}");
    }
    out.push('\n');
}
