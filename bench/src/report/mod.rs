//! The Markdown report, and the small statistics it is made of.

use std::fmt::Write as _;
use std::time::Duration;

use crate::hooks::HookCost;
use crate::service::FinalCounters;

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
/// Time leco-service is given after a workload to read that workload's
/// last events before its CPU time is sampled.
pub const DRAIN: Duration = Duration::from_millis(250);

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

/// Nanoseconds without unit, with a decimal only below 100 ns where it
/// still means something, e.g. `2,812` or `0.4`.
pub fn fmt_ns_num(ns: f64) -> String {
    fmt_num(ns, if ns.abs() < 100.0 { 1 } else { 0 })
}

/// [`fmt_ns_num`] with its unit: `2,812 ns`.
pub fn fmt_ns(ns: f64) -> String {
    format!("{} ns", fmt_ns_num(ns))
}

/// [`fmt_ns`] with an explicit sign, for differences: `+410 ns`.
pub fn fmt_ns_delta(ns: f64) -> String {
    let s = fmt_ns(ns);
    if s.starts_with('-') || s.starts_with("0 ") || s.starts_with("0.0 ") {
        s
    } else {
        format!("+{s}")
    }
}

/// Milliseconds with two significant decimals below 10 ms, e.g. `0.84 ms`,
/// `12.3 ms`, `1,250 ms`.
pub fn fmt_ms(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1e3;
    let decimals = if ms < 10.0 {
        2
    } else if ms < 100.0 {
        1
    } else {
        0
    };
    format!("{} ms", fmt_num(ms, decimals))
}

/// Whole seconds, or milliseconds below one: `2 s`, `300 ms`.
pub fn fmt_wait(d: Duration) -> String {
    if d >= Duration::from_secs(1) {
        format!("{} s", fmt_num(d.as_secs_f64(), 0))
    } else {
        format!("{} ms", d.as_millis())
    }
}

/// A latency, `None` meaning not within `wait`: `> 2 s`.
pub fn fmt_latency(d: Option<Duration>, wait: Duration) -> String {
    match d {
        Some(d) => fmt_ms(d),
        None => format!("> {}", fmt_wait(wait)),
    }
}

/// A percentage with one decimal, e.g. `2.8 %`.
pub fn fmt_pct(pct: f64) -> String {
    // -0.04 would otherwise print as "-0.0 %".
    let pct = if pct.abs() < 0.05 { 0.0 } else { pct };
    format!("{pct:.1} %")
}

/// `x` with `decimals` decimals and thousands separators, e.g. `12,345.6`.
pub fn fmt_num(x: f64, decimals: usize) -> String {
    let s = format!("{:.*}", decimals, x.abs());
    let (int, frac) = s.split_once('.').unwrap_or((&s, ""));
    let mut grouped = String::new();
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    let sign = if x < 0.0 && s.chars().any(|c| c.is_ascii_digit() && c != '0') {
        "-"
    } else {
        ""
    };
    if frac.is_empty() {
        format!("{sign}{grouped}")
    } else {
        format!("{sign}{grouped}.{frac}")
    }
}

/// Sorted ids with runs of consecutive ids shortened, e.g. `3, 7–9`.
pub fn fmt_ids<'a>(ids: impl IntoIterator<Item = &'a u32>) -> String {
    let mut ids: Vec<u32> = ids.into_iter().copied().collect();
    ids.sort_unstable();
    ids.dedup();
    let mut parts = Vec::new();
    let mut i = 0;
    while i < ids.len() {
        let mut j = i;
        while j + 1 < ids.len() && ids[j + 1] == ids[j] + 1 {
            j += 1;
        }
        parts.push(if i == j {
            ids[i].to_string()
        } else {
            format!("{}–{}", ids[i], ids[j])
        });
        i = j + 1;
    }
    parts.join(", ")
}

fn verdict(pass: bool) -> &'static str {
    if pass {
        "PASS"
    } else {
        "MISS"
    }
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Facts about the run and the machine.
#[derive(Debug, Clone, Default)]
pub struct Header {
    /// `date -u`.
    pub date: String,
    /// `uname -r`.
    pub kernel: String,
    /// `nproc`.
    pub nproc: String,
    /// The leco-service binary measured.
    pub service: String,
    /// How the bench was invoked.
    pub command: String,
    /// Whether `--quick` was given.
    pub quick: bool,
    /// Baseline/with-leco round pairs.
    pub rounds: usize,
    /// Duration of each free-running workload.
    pub workload: Duration,
    /// Duration of each paced churn window.
    pub paced: Duration,
}

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

/// Per-hook costs over one window with statistics enabled.
#[derive(Debug, Clone)]
pub struct Hooks {
    /// One entry per leco program.
    pub costs: Vec<HookCost>,
    /// Wall time between the two counter snapshots.
    pub window: Duration,
}

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

/// connect → `new` signal latency over one paced window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LatencySummary {
    /// Connections whose signal came within the wait.
    pub matched: u64,
    /// Connections without one.
    pub missing: u64,
    /// Percentiles over all connections, `None` when among the missing.
    pub p50: Option<Duration>,
    /// 99th percentile, likewise.
    pub p99: Option<Duration>,
    /// Slowest, `None` when any is missing.
    pub max: Option<Duration>,
    /// Signals for a client port that matched no connection still waiting.
    pub stray: u64,
}

/// One paced window of the D-Bus latency measurement.
#[derive(Debug, Clone)]
pub struct BusLatency {
    /// The service's signal rate bound, signals/s.
    pub signal_rate: u32,
    /// Whether it is the service's default (no `--signal-rate`).
    pub default_bound: bool,
    /// Rate asked for, connections/s.
    pub target_rate: f64,
    /// Rate reached, connections/s.
    pub achieved_rate: f64,
    /// Connections made.
    pub connections: u64,
    /// From the first connection's due time to the last one's period end.
    pub window: Duration,
    /// Latency of those connections.
    pub latency: LatencySummary,
    /// Service CPU over the window, percent of one core.
    pub service_cpu_pct: f64,
    /// dbus-daemon's CPU over the window, percent of one core.
    pub daemon_cpu_pct: Option<f64>,
    /// Service VmRSS at the end of the window.
    pub rss_kib: u64,
    /// Service VmHWM at the end of the window.
    pub hwm_kib: u64,
    /// Change of EventsEmitted over the window and the wait.
    pub signals: u64,
    /// Change of Coalesced likewise.
    pub coalesced: u64,
}

/// One step of connection churn against the signal rate bound.
#[derive(Debug, Clone)]
pub struct BusStep {
    /// Rate asked for, connections/s; `None` when unpaced.
    pub target_rate: Option<f64>,
    /// Rate reached, connections/s.
    pub achieved_rate: f64,
    /// Connections completed.
    pub connections: u64,
    /// Wall time between the counter reads around the step.
    pub window: Duration,
    /// Signals sent during the step.
    pub signals: u64,
    /// Signals sent from the step's start until the queue emptied.
    pub signals_total: u64,
    /// Events coalesced from the step's start until the queue emptied.
    pub coalesced: u64,
    /// Kernel ring-buffer drops likewise.
    pub kernel_drops: u64,
    /// Signals the subscriber received likewise.
    pub received: u64,
}

impl BusStep {
    fn per_s(&self, n: u64) -> f64 {
        let s = self.window.as_secs_f64();
        if s > 0.0 {
            n as f64 / s
        } else {
            0.0
        }
    }

    /// Signals per second during the step.
    pub fn signals_per_s(&self) -> f64 {
        self.per_s(self.signals)
    }

    /// Events coalesced per second of the step.
    pub fn coalesced_per_s(&self) -> f64 {
        self.per_s(self.coalesced)
    }

    /// Signals, coalesced events and kernel drops from the step's start
    /// until the queue emptied: every event the service saw, the bench's
    /// and any other program's.
    pub fn events_counted(&self) -> u64 {
        self.signals_total + self.coalesced + self.kernel_drops
    }

    /// Events the step's connections made per second: two flows each (client
    /// and server side), with a `new` and a `closed` event each.
    pub fn events_per_s(&self) -> f64 {
        self.achieved_rate * 4.0
    }
}

/// Churn steps against one service with one signal rate bound.
#[derive(Debug, Clone)]
pub struct BusCeiling {
    /// The bound, signals/s.
    pub signal_rate: u32,
    /// Whether it is the service's default (no `--signal-rate`).
    pub default_bound: bool,
    /// The steps, in order.
    pub steps: Vec<BusStep>,
}

impl BusCeiling {
    /// The step with the highest achieved rate that coalesced nothing.
    pub fn highest_clean(&self) -> Option<&BusStep> {
        self.steps
            .iter()
            .filter(|s| s.coalesced == 0)
            .max_by(|a, b| a.achieved_rate.total_cmp(&b.achieved_rate))
    }

    /// The most signals per second any step sustained.
    pub fn most_signals_per_s(&self) -> Option<f64> {
        self.steps
            .iter()
            .map(BusStep::signals_per_s)
            .max_by(f64::total_cmp)
    }
}

/// The D-Bus section.
#[derive(Debug, Clone)]
pub struct Dbus {
    /// How long the latency workload keeps each connection open.
    pub hold: Duration,
    /// How long a signal is waited for.
    pub wait: Duration,
    /// Latency windows, one per paced rate.
    pub latency: Vec<BusLatency>,
    /// Signal rate steps, one entry per bound.
    pub ceilings: Vec<BusCeiling>,
}

/// Everything the report shows.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Run and machine facts.
    pub header: Header,
    /// Throughput, one row per workload figure.
    pub throughput: Vec<Throughput>,
    /// CPU time per operation, one row per workload.
    pub cpu: Vec<CpuPerOp>,
    /// Per-hook section.
    pub hooks: Option<Hooks>,
    /// Service cost section, one row per paced rate.
    pub service: Vec<ServiceRun>,
    /// D-Bus section.
    pub dbus: Option<Dbus>,
    /// Measurements during which something else could have skewed the
    /// figures, and what.
    pub unclean: Vec<String>,
    /// Anything else unusual seen during the run.
    pub notes: Vec<String>,
}

/// The report as Markdown.
pub fn render(r: &Report) -> String {
    let mut verdicts: Vec<bool> = Vec::new();
    let mut body = String::new();
    workloads_section(&mut body, r, &mut verdicts);
    hooks_section(&mut body, r, &mut verdicts);
    service_section(&mut body, r, &mut verdicts);
    dbus_section(&mut body, r, &mut verdicts);

    let h = &r.header;
    let mut out = String::new();
    let _ = writeln!(out, "# leco benchmark results\n");
    let _ = writeln!(out, "- Date: {}", h.date);
    let _ = writeln!(out, "- Kernel: {}", h.kernel);
    let _ = writeln!(out, "- CPUs (nproc): {}", h.nproc);
    let _ = writeln!(out, "- Service: `{}`", h.service);
    let _ = writeln!(out, "- Command: `{}`", h.command);
    let _ = writeln!(
        out,
        "- Mode: {}{} round(s) of baseline, hooks only and with leco, {} s per workload, {} s per paced window",
        if h.quick { "**quick (smoke test, figures not meaningful)**, " } else { "" },
        h.rounds,
        h.workload.as_secs_f64(),
        h.paced.as_secs_f64(),
    );
    let passed = verdicts.iter().filter(|v| **v).count();
    let _ = writeln!(
        out,
        "- Targets: {passed} PASS, {} MISS\n",
        verdicts.len() - passed
    );
    let _ = writeln!(
        out,
        "The machine is shared and noisy, so every figure is compared with a baseline \
         measured in the same run, with baseline, hooks-only and with-leco rounds \
         alternating, and medians are reported. All traffic is on 127.0.0.1. leco-service runs as \
         `--standalone --json` with its events sent to /dev/null, except in the D-Bus section.\n"
    );
    if !r.unclean.is_empty() {
        let _ = writeln!(
            out,
            "> **Not a clean run.** Something else used eBPF on this machine during these \
             measurements, so their figures are suspect; rerun when the machine is quiet:\n>"
        );
        for u in &r.unclean {
            let _ = writeln!(out, "> - {u}");
        }
        out.push('\n');
    }
    out.push_str(&body);
    let _ = writeln!(out, "## What limits these numbers\n");
    let _ = writeln!(
        out,
        "_To be written by the lead after reading the figures above._\n"
    );
    if !r.notes.is_empty() {
        let _ = writeln!(out, "## Notes from this run\n");
        for n in &r.notes {
            let _ = writeln!(out, "- {n}");
        }
        out.push('\n');
    }
    out
}

fn workloads_section(out: &mut String, r: &Report, verdicts: &mut Vec<bool>) {
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

    if !r.throughput.is_empty() {
        let _ = writeln!(
            out,
            "Every round, throughput (baseline / hooks only / with leco):\n"
        );
        for t in &r.throughput {
            let _ = writeln!(
                out,
                "- {}: {} / {} / {} {}",
                t.name,
                fmt_list(&t.baseline, |x| fmt_num(x, t.decimals)),
                fmt_list(&t.hooks_only, |x| fmt_num(x, t.decimals)),
                fmt_list(&t.with_leco, |x| fmt_num(x, t.decimals)),
                t.unit
            );
        }
        out.push('\n');
    }
    if !r.cpu.is_empty() {
        let _ = writeln!(
            out,
            "Every round, CPU ns per operation (baseline / hooks only / with leco / leco-service):\n"
        );
        for c in &r.cpu {
            let _ = writeln!(
                out,
                "- {}: {} / {} / {} / {} ns",
                c.name,
                fmt_list(&c.baseline, fmt_ns_num),
                fmt_list(&c.hooks_only, fmt_ns_num),
                fmt_list(&c.with_leco, fmt_ns_num),
                fmt_list(&c.service, fmt_ns_num),
            );
        }
        out.push('\n');
    }
}

fn fmt_list(xs: &[f64], fmt: impl Fn(f64) -> String) -> String {
    if xs.is_empty() {
        return "—".to_owned();
    }
    xs.iter().map(|x| fmt(*x)).collect::<Vec<_>>().join(", ")
}

fn throughput_table(out: &mut String, r: &Report) {
    if r.throughput.is_empty() {
        return;
    }
    let _ = writeln!(out, "Throughput:\n");
    let _ = writeln!(
        out,
        "| workload | baseline (median) | hooks only (median) | with leco (median) | \
         slowdown, hooks only | slowdown, leco |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|");
    for t in &r.throughput {
        let (Some(b), Some(w)) = (median(&t.baseline), median(&t.with_leco)) else {
            let _ = writeln!(out, "| {} | — | — | — | — | — |", t.name);
            continue;
        };
        let (floor, floor_slow) = match median(&t.hooks_only) {
            Some(h) => (
                format!("{} {}", fmt_num(h, t.decimals), t.unit),
                fmt_pct(slowdown_pct(b, h)),
            ),
            None => ("—".to_owned(), "—".to_owned()),
        };
        let _ = writeln!(
            out,
            "| {} | {} {u} | {floor} | {} {u} | {floor_slow} | {} |",
            t.name,
            fmt_num(b, t.decimals),
            fmt_num(w, t.decimals),
            fmt_pct(slowdown_pct(b, w)),
            u = t.unit,
        );
    }
    out.push('\n');
}

fn cpu_table(out: &mut String, r: &Report, verdicts: &mut Vec<bool>) {
    if r.cpu.is_empty() {
        return;
    }
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
    let seen = match (wall, cpu) {
        (Some(w), Some(c)) => format!(
            " (in this run, rounds of one configuration differ by up to {w:.2}× in throughput \
             and {c:.2}× in CPU per operation)"
        ),
        _ => String::new(),
    };
    let _ = writeln!(
        out,
        "CPU time per operation: wall-clock throughput on this shared machine moves with \
         whatever else runs{seen}, so the targets are judged on the CPU time the workload's own \
         threads use per operation (leco's eBPF programs run in those threads and count) plus \
         leco-service's own CPU over the same window; the throughput slowdowns above are \
         information only.\n"
    );
    let _ = writeln!(
        out,
        "| workload | baseline (median) | hooks only (median) | with leco (median) | \
         leco-service (median) | overhead, hooks only | leco cost per op | \
         overhead, leco incl. service | target | result |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|---|---|");
    for c in &r.cpu {
        let Some(m) = c.medians() else {
            let _ = writeln!(
                out,
                "| {} | — | — | — | — | — | — | — | — | not measured |",
                c.name
            );
            continue;
        };
        let leco_pct = m.leco_pct();
        let (target, result) = match c.target_pct {
            Some(max) => {
                verdicts.push(leco_pct <= max);
                (format!("≤ {max} %"), verdict(leco_pct <= max))
            }
            None => ("—".to_owned(), "—"),
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {target} | {result} |",
            c.name,
            fmt_ns(m.baseline),
            m.hooks_only.map_or("—".to_owned(), fmt_ns),
            fmt_ns(m.with_leco),
            fmt_ns(m.service),
            m.hooks_pct().map_or("—".to_owned(), fmt_pct),
            fmt_ns_delta(m.leco_cost_ns()),
            fmt_pct(leco_pct),
        );
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

fn hooks_section(out: &mut String, r: &Report, verdicts: &mut Vec<bool>) {
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
    let _ = writeln!(
        out,
        "| program | calls | mean ns/call | total ms | recursion misses | target | result |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---|---|");
    let (mut calls, mut ns, mut misses) = (0u64, 0u64, 0u64);
    for c in &h.costs {
        calls += c.calls;
        ns += c.run_time_ns;
        misses += c.recursion_misses;
        let (mean, result) = match c.mean_ns() {
            Some(m) => {
                verdicts.push(m <= HOOK_TARGET_NS);
                (fmt_num(m, 0), verdict(m <= HOOK_TARGET_NS))
            }
            None => ("—".to_owned(), "not called"),
        };
        let _ = writeln!(
            out,
            "| {} | {} | {mean} | {} | {} | ≤ {HOOK_TARGET_NS} ns | {result} |",
            c.name,
            fmt_num(c.calls as f64, 0),
            fmt_num(c.run_time_ns as f64 / 1e6, 1),
            fmt_num(c.recursion_misses as f64, 0),
        );
    }
    let all_mean = if calls > 0 {
        fmt_num(ns as f64 / calls as f64, 0)
    } else {
        "—".to_owned()
    };
    let _ = writeln!(
        out,
        "| **all hooks** | {} | {all_mean} | {} | {} | | |\n",
        fmt_num(calls as f64, 0),
        fmt_num(ns as f64 / 1e6, 1),
        fmt_num(misses as f64, 0)
    );
    let window_ns = h.window.as_nanos() as f64;
    if window_ns > 0.0 {
        let _ = writeln!(
            out,
            "All hooks together ran {} of one core over the window.",
            fmt_pct(ns as f64 / window_ns * 100.0)
        );
    }
    let _ = writeln!(
        out,
        "Counts include every other process of the machine, not only the workloads. An \
         empty program on the same hooks costs about 80 ns per call here with statistics \
         on, which is the floor of these means.\n"
    );
    if misses > 0 {
        let _ = writeln!(
            out,
            "A recursion miss is a run the kernel skipped because the same program was already \
             running on that CPU (e.g. interrupted by softirq work on loopback): an event leco \
             did not see.\n"
        );
    }
}

fn service_section(out: &mut String, r: &Report, verdicts: &mut Vec<bool>) {
    if r.service.is_empty() {
        return;
    }
    let _ = writeln!(out, "## Service cost under paced connection churn\n");
    let _ = writeln!(
        out,
        "| target rate | achieved | connections | flows/s seen by leco | events | service CPU (% of one core) | RSS | peak RSS | ring-buffer drops |"
    );
    let _ = writeln!(out, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for s in &r.service {
        let counter = |v: Option<u64>| v.map_or("unknown".to_owned(), |v| fmt_num(v as f64, 0));
        let _ = writeln!(
            out,
            "| {} conn/s | {} conn/s | {} | {} | {} | {} | {} MiB | {} MiB | {} |",
            fmt_num(s.target_rate, 0),
            fmt_num(s.achieved_rate, 0),
            fmt_num(s.connections as f64, 0),
            fmt_num(s.achieved_rate * 2.0, 0),
            counter(s.counters.as_ref().and_then(FinalCounters::events)),
            fmt_pct(s.cpu_pct),
            fmt_num(mib(s.rss_kib), 1),
            fmt_num(mib(s.hwm_kib), 1),
            counter(s.counters.as_ref().and_then(FinalCounters::ringbuf_drops)),
        );
    }
    let _ = writeln!(
        out,
        "\nEach loopback connection is two flows for leco (client and server side). Rates are \
         paced in 10 ms batches; the achieved rate is what the client completed. A service \
         was started for each rate, so drops and peak RSS are per rate.\n"
    );

    let _ = writeln!(out, "| check | measured | target | result |");
    let _ = writeln!(out, "|---|---:|---|---|");
    let at = |rate: f64| r.service.iter().find(|s| s.target_rate == rate);
    let shortfall = |s: &ServiceRun| {
        if s.achieved_rate < 0.95 * s.target_rate {
            format!(" (only {} conn/s reached)", fmt_num(s.achieved_rate, 0))
        } else {
            String::new()
        }
    };
    if let Some(s) = at(CPU_TARGET_RATE) {
        let pass = s.cpu_pct <= CPU_TARGET_PCT;
        verdicts.push(pass);
        let _ = writeln!(
            out,
            "| service CPU at {} conn/s{} | {} | ≤ {CPU_TARGET_PCT} % of one core | {} |",
            fmt_num(CPU_TARGET_RATE, 0),
            shortfall(s),
            fmt_pct(s.cpu_pct),
            verdict(pass)
        );
    }
    if let Some(s) = at(DROPS_TARGET_RATE) {
        let drops = s.counters.as_ref().and_then(FinalCounters::ringbuf_drops);
        let (measured, result) = match drops {
            Some(d) => {
                verdicts.push(d == 0);
                (fmt_num(d as f64, 0), verdict(d == 0))
            }
            None => ("unknown".to_owned(), "UNKNOWN (no final counters line)"),
        };
        let _ = writeln!(
            out,
            "| ring-buffer drops at {} conn/s{} | {measured} | 0 | {result} |",
            fmt_num(DROPS_TARGET_RATE, 0),
            shortfall(s),
        );
    }
    if let Some(peak) = r.service.iter().map(|s| s.hwm_kib.max(s.rss_kib)).max() {
        let pass = mib(peak) <= RSS_TARGET_MIB;
        verdicts.push(pass);
        let _ = writeln!(
            out,
            "| service peak RSS (VmHWM) | {} MiB | ≤ {RSS_TARGET_MIB} MiB | {} |",
            fmt_num(mib(peak), 1),
            verdict(pass)
        );
    }
    out.push('\n');
}

pub fn rate_label(rate: Option<f64>) -> String {
    match rate {
        Some(r) => format!("{} conn/s", fmt_num(r, 0)),
        None => "unpaced".to_owned(),
    }
}

fn bound_label(signal_rate: u32, default_bound: bool) -> String {
    format!(
        "{}{}",
        fmt_num(f64::from(signal_rate), 0),
        if default_bound { " (default)" } else { "" }
    )
}

fn dbus_section(out: &mut String, r: &Report, verdicts: &mut Vec<bool>) {
    let Some(d) = &r.dbus else {
        return;
    };
    let _ = writeln!(out, "## D-Bus: ConnectionEvent signals\n");
    let _ = writeln!(
        out,
        "Here leco-service runs as `--standalone --bus-address ADDR` on a private dbus-daemon \
         configured like the system bus with the repository's policy \
         (`leco_testkit::bus::TestBus`), and the bench's zbus clients, running as root, \
         subscribe to `org.leco.Overseer1` and read its properties. All of it shares the \
         machine's two cores with the load generator.\n"
    );
    let wait = d.wait;
    if !d.latency.is_empty() {
        let window = d.latency.iter().map(|l| l.window).max().unwrap_or_default();
        let _ = writeln!(out, "connect → `new` signal latency:\n");
        let _ = writeln!(
            out,
            "| signal-rate bound | target rate | achieved | connections | signalled within {w} | not signalled | p50 | p99 | max | target | result |",
            w = fmt_wait(wait)
        );
        let _ = writeln!(
            out,
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|"
        );
        for l in &d.latency {
            let (target, result) = if l.target_rate == LATENCY_TARGET_RATE {
                let pass = l.latency.p99.is_some_and(|p| p <= LATENCY_TARGET);
                // The target is judged on the service as it ships; a raised
                // bound shows what the rest of the path allows.
                let result = if l.default_bound {
                    verdict(pass).to_owned()
                } else {
                    format!("{} (not counted: raised bound)", verdict(pass))
                };
                if l.default_bound {
                    verdicts.push(pass);
                }
                (format!("p99 ≤ {}", fmt_ms(LATENCY_TARGET)), result)
            } else {
                ("—".to_owned(), "—".to_owned())
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} conn/s | {} | {} | {} | {} | {} | {} | {target} | {result} |",
                bound_label(l.signal_rate, l.default_bound),
                rate_label(Some(l.target_rate)),
                fmt_num(l.achieved_rate, 0),
                fmt_num(l.connections as f64, 0),
                fmt_num(l.latency.matched as f64, 0),
                fmt_num(l.latency.missing as f64, 0),
                fmt_latency(l.latency.p50, wait),
                fmt_latency(l.latency.p99, wait),
                fmt_latency(l.latency.max, wait),
            );
        }
        let _ = writeln!(
            out,
            "\nOne service per bound serves its rates. For about {} s per rate the bench opens loopback TCP connections to its own \
             listener one at a time on an absolute schedule (not in batches); the server closes \
             each {} ms after accepting it and the client {} ms after connecting (short-lived \
             connections, as a browser makes; the service signals a connection's `new` even \
             when it has ended before its turn), and a subscriber on its own thread and runtime (match rule \
             `type='signal',interface='org.leco.Overseer1',member='ConnectionEvent',arg0='new'`) \
             pairs each connection with the `new` signal whose `pid` is the bench's and whose \
             `local_port` is the connection's ephemeral port; latency is the signal's receipt \
             minus the instant just before `connect()`, and a connection with no signal within \
             {} ranks above every other in the percentiles.\n",
            fmt_num(window.as_secs_f64(), 0),
            d.hold.as_millis(),
            2 * d.hold.as_millis(),
            fmt_wait(wait),
        );
        if let Some(l) = d
            .latency
            .iter()
            .filter(|l| l.latency.missing > 0 && l.target_rate * 4.0 > f64::from(l.signal_rate))
            .max_by(|a, b| a.target_rate.total_cmp(&b.target_rate))
        {
            let _ = writeln!(
                out,
                "At {} these connections make {} events/s (two flows each, a `new` and a \
                 `closed` each), more than the bound of {} signals/s: pending signals pile up \
                 and, beyond two seconds' worth, the oldest are given up (counted as \
                 coalesced), so those connections get no `new` signal.\n",
                rate_label(Some(l.target_rate)),
                fmt_num(l.target_rate * 4.0, 0),
                fmt_num(f64::from(l.signal_rate), 0),
            );
        }
        let stray: u64 = d.latency.iter().map(|l| l.latency.stray).sum();
        if stray > 0 {
            let _ = writeln!(
                out,
                "{} `new` signals for the bench's client ports came more than {} after \
                 their connection's `connect()` (counted as not signalled).\n",
                fmt_num(stray as f64, 0),
                fmt_wait(wait),
            );
        }

        let _ = writeln!(out, "Service cost over those windows:\n");
        let _ = writeln!(
            out,
            "| signal-rate bound | target rate | service CPU (% of one core) | dbus-daemon CPU (% of one core) | RSS | peak RSS | signals sent | events coalesced |"
        );
        let _ = writeln!(out, "|---:|---:|---:|---:|---:|---:|---:|---:|");
        for l in &d.latency {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} MiB | {} MiB | {} | {} |",
                bound_label(l.signal_rate, l.default_bound),
                rate_label(Some(l.target_rate)),
                fmt_pct(l.service_cpu_pct),
                l.daemon_cpu_pct.map_or("unknown".to_owned(), fmt_pct),
                fmt_num(mib(l.rss_kib), 1),
                fmt_num(mib(l.hwm_kib), 1),
                fmt_num(l.signals as f64, 0),
                fmt_num(l.coalesced as f64, 0),
            );
        }
        let _ = writeln!(
            out,
            "\nCPU is utime + stime from /proc over each window plus {} ms, RSS is VmRSS at its \
             end and peak RSS is VmHWM since that service started; signals sent and events coalesced are the changes of the `EventsEmitted` \
             and `Coalesced` properties over the window and the wait, for every flow \
             (client and server sides, `new` and `closed`), not only the subscriber's.\n",
            DRAIN.as_millis()
        );
    }

    if !d.ceilings.is_empty() {
        let step = d
            .ceilings
            .iter()
            .flat_map(|c| c.steps.iter().map(|s| s.window))
            .max()
            .unwrap_or_default();
        let _ = writeln!(out, "Signal rate before coalescing:\n");
        let _ = writeln!(
            out,
            "| signal-rate bound | connections (target) | achieved | events/s made | signals/s | coalesced/s | events counted / made | signals after the step | received by the subscriber | kernel drops |"
        );
        let _ = writeln!(out, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        for c in &d.ceilings {
            let bound = bound_label(c.signal_rate, c.default_bound);
            for s in &c.steps {
                let _ = writeln!(
                    out,
                    "| {bound} | {} | {} conn/s | {} | {} | {} | {} / {} | {} | {} of {} | {} |",
                    rate_label(s.target_rate),
                    fmt_num(s.achieved_rate, 0),
                    fmt_num(s.events_per_s(), 0),
                    fmt_num(s.signals_per_s(), 0),
                    fmt_num(s.coalesced_per_s(), 0),
                    fmt_num(s.events_counted() as f64, 0),
                    fmt_num(s.connections as f64 * 4.0, 0),
                    fmt_num(s.signals_total.saturating_sub(s.signals) as f64, 0),
                    fmt_num(s.received as f64, 0),
                    fmt_num(s.signals_total as f64, 0),
                    fmt_num(s.kernel_drops as f64, 0),
                );
            }
        }
        let _ = writeln!(
            out,
            "\nFor each bound a fresh service (`--signal-rate N`, none for the default) and a \
             subscriber to every `ConnectionEvent` see connections made as above, paced or as \
             fast as one client thread can (unpaced), for about {} s per step; each makes 4 \
             events (client and server flows, a `new` and a `closed` each); signals/s is the \
             change of `EventsEmitted` during the step and coalesced/s the change of \
             `Coalesced` from the step's start until the service caught up, both per second \
             of the step; events counted are signals + coalesced + kernel drops over the same \
             span, waited for (up to 4 s after the step) until they reach the events made and \
             then stop moving for 300 ms, and they exceed the events made when other programs \
             of the machine made connections meanwhile.\n",
            fmt_num(step.as_secs_f64(), 1)
        );
        for c in &d.ceilings {
            let clean = match c.highest_clean() {
                Some(s) => format!(
                    "{} ({} conn/s reached, {} events/s)",
                    rate_label(s.target_rate),
                    fmt_num(s.achieved_rate, 0),
                    fmt_num(s.events_per_s(), 0)
                ),
                None => "none of the steps".to_owned(),
            };
            let _ = writeln!(
                out,
                "- Bound {} signals/s: highest step with nothing coalesced: {clean}; most \
                 signals/s sustained in a step: {}.",
                bound_label(c.signal_rate, c.default_bound),
                c.most_signals_per_s()
                    .map_or("—".to_owned(), |v| fmt_num(v, 0)),
            );
        }
        out.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::parse_final_counters;

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
    fn formats_nanoseconds() {
        assert_eq!(fmt_ns(2_812.4), "2,812 ns");
        assert_eq!(fmt_ns(99.94), "99.9 ns");
        assert_eq!(fmt_ns(0.44), "0.4 ns");
        assert_eq!(fmt_ns_num(123_456.7), "123,457");
        assert_eq!(fmt_ns_delta(410.2), "+410 ns");
        assert_eq!(fmt_ns_delta(-20.0), "-20.0 ns");
        assert_eq!(fmt_ns_delta(-150.0), "-150 ns");
        assert_eq!(fmt_ns_delta(0.01), "0.0 ns");
        assert_eq!(fmt_ns_delta(0.5), "+0.5 ns");
    }

    #[test]
    fn formats_percent_and_numbers() {
        assert_eq!(fmt_pct(2.84), "2.8 %");
        assert_eq!(fmt_pct(-0.04), "0.0 %");
        assert_eq!(fmt_pct(-1.25), "-1.2 %");
        assert_eq!(fmt_num(1234567.891, 1), "1,234,567.9");
        assert_eq!(fmt_num(999.0, 0), "999");
        assert_eq!(fmt_num(1000.0, 0), "1,000");
        assert_eq!(fmt_num(-12345.0, 0), "-12,345");
        assert_eq!(fmt_num(-0.01, 1), "0.0");
        assert_eq!(fmt_num(0.0, 2), "0.00");
    }

    #[test]
    fn shortens_id_runs() {
        assert_eq!(fmt_ids(&[9, 3, 7, 8, 8]), "3, 7–9");
        assert_eq!(fmt_ids(&[707, 709, 710, 711]), "707, 709–711");
        assert_eq!(fmt_ids(&[]), "");
    }

    fn sample() -> Report {
        Report {
            header: Header {
                date: "Thu Jan  1 00:00:00 UTC 2026".into(),
                kernel: "6.18".into(),
                nproc: "2".into(),
                rounds: 3,
                workload: Duration::from_secs(3),
                paced: Duration::from_secs(5),
                ..Header::default()
            },
            throughput: vec![
                Throughput {
                    name: "bulk TCP".into(),
                    unit: "MiB/s",
                    decimals: 1,
                    baseline: vec![100.0, 102.0, 98.0],
                    hooks_only: vec![100.0, 99.0, 99.5],
                    with_leco: vec![99.0, 98.0, 97.0],
                },
                Throughput {
                    name: "churn".into(),
                    unit: "conn/s",
                    decimals: 0,
                    baseline: vec![10_000.0],
                    hooks_only: vec![],
                    with_leco: vec![9_000.0],
                },
            ],
            cpu: vec![
                CpuPerOp {
                    name: "bulk TCP, per write".into(),
                    baseline: vec![2_000.0, 2_100.0, 1_900.0],
                    hooks_only: vec![2_010.0, 2_020.0, 2_030.0],
                    with_leco: vec![2_040.0, 2_030.0, 2_050.0],
                    service: vec![0.5, 0.4, 0.6],
                    target_pct: Some(BULK_TARGET_PCT),
                },
                CpuPerOp {
                    name: "churn, per connection".into(),
                    baseline: vec![50_000.0],
                    hooks_only: vec![],
                    with_leco: vec![52_000.0],
                    service: vec![1_000.0],
                    target_pct: Some(CHURN_TARGET_PCT),
                },
                CpuPerOp {
                    name: "udp, per datagram".into(),
                    baseline: vec![],
                    hooks_only: vec![],
                    with_leco: vec![],
                    service: vec![],
                    target_pct: None,
                },
            ],
            hooks: Some(Hooks {
                costs: vec![
                    HookCost {
                        name: "on_getpeername4",
                        calls: 1000,
                        run_time_ns: 90_000,
                        recursion_misses: 4,
                    },
                    HookCost {
                        name: "on_sendmsg6",
                        calls: 0,
                        run_time_ns: 0,
                        recursion_misses: 0,
                    },
                ],
                window: Duration::from_secs(9),
            }),
            service: vec![
                ServiceRun {
                    target_rate: 1000.0,
                    achieved_rate: 998.0,
                    connections: 4990,
                    cpu_pct: 2.5,
                    rss_kib: 8 * 1024,
                    hwm_kib: 9 * 1024,
                    counters: parse_final_counters(
                        "leco-service: final counters: events=20000 ringbuf_drops=0",
                    ),
                },
                ServiceRun {
                    target_rate: 5000.0,
                    achieved_rate: 4000.0,
                    connections: 20000,
                    cpu_pct: 9.0,
                    rss_kib: 10 * 1024,
                    hwm_kib: 11 * 1024,
                    counters: None,
                },
            ],
            dbus: None,
            unclean: vec!["round 1/3 baseline: kernel.bpf_stats_enabled=1".into()],
            notes: vec!["something odd".into()],
        }
    }

    #[test]
    fn renders_tables_and_verdicts() {
        let md = render(&sample());
        // Throughput is information only: no target, no result.
        assert!(
            md.contains("| bulk TCP | 100.0 MiB/s | 99.5 MiB/s | 98.0 MiB/s | 0.5 % | 2.0 % |\n"),
            "{md}"
        );
        assert!(
            md.contains("| churn | 10,000 conn/s | — | 9,000 conn/s | — | 10.0 % |\n"),
            "{md}"
        );
        // 2,040 - 2,000 + 0.5 = 40.5 ns, 2.0 % of the baseline.
        assert!(
            md.contains(
                "| bulk TCP, per write | 2,000 ns | 2,020 ns | 2,040 ns | 0.5 ns | 1.0 % | +40.5 ns | 2.0 % | ≤ 3 % | PASS |"
            ),
            "{md}"
        );
        // 52,000 - 50,000 + 1,000 = 3,000 ns: 6 %, over 5 % although the
        // threads alone would pass.
        assert!(
            md.contains(
                "| churn, per connection | 50,000 ns | — | 52,000 ns | 1,000 ns | — | +3,000 ns | 6.0 % | ≤ 5 % | MISS |"
            ),
            "{md}"
        );
        assert!(
            md.contains("| udp, per datagram | — | — | — | — | — | — | — | — | not measured |"),
            "{md}"
        );
        assert!(
            md.contains("differ by up to 1.04× in throughput and 1.11× in CPU per operation"),
            "{md}"
        );
        assert!(
            md.contains(
                "- bulk TCP: 100.0, 102.0, 98.0 / 100.0, 99.0, 99.5 / 99.0, 98.0, 97.0 MiB/s"
            ),
            "{md}"
        );
        assert!(
            md.contains(
                "- bulk TCP, per write: 2,000, 2,100, 1,900 / 2,010, 2,020, 2,030 / 2,040, 2,030, 2,050 / 0.5, 0.4, 0.6 ns"
            ),
            "{md}"
        );
        assert!(
            md.contains("- churn, per connection: 50,000 / — / 52,000 / 1,000 ns"),
            "{md}"
        );
        // The table order: throughput, then CPU per operation.
        let at = |needle: &str| md.find(needle).expect(needle);
        assert!(at("| bulk TCP | 100.0") < at("CPU time per operation:"));
        assert!(at("CPU time per operation:") < at("| bulk TCP, per write |"));
        assert!(
            md.contains("| on_getpeername4 | 1,000 | 90 | 0.1 | 4 | ≤ 160 ns | PASS |"),
            "{md}"
        );
        assert!(
            md.contains("| on_sendmsg6 | 0 | — | 0.0 | 0 | ≤ 160 ns | not called |"),
            "{md}"
        );
        assert!(
            md.contains("| 5,000 conn/s | 4,000 conn/s | 20,000 | 8,000 | unknown |"),
            "{md}"
        );
        assert!(md.contains("UNKNOWN (no final counters line)"), "{md}");
        assert!(md.contains("(only 4,000 conn/s reached)"), "{md}");
        assert!(
            md.contains("| service peak RSS (VmHWM) | 11.0 MiB | ≤ 20 MiB | PASS |"),
            "{md}"
        );
        // bulk and churn CPU per op, one hook, service CPU, RSS: the
        // unknown drops and the unmeasured UDP row are no verdict.
        assert!(md.contains("- Targets: 4 PASS, 1 MISS"), "{md}");
        assert!(md.contains("## What limits these numbers"));
        assert!(md.contains("- something odd"));
        assert!(md.contains("> - round 1/3 baseline: kernel.bpf_stats_enabled=1"));
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

    #[test]
    fn formats_latencies() {
        let wait = Duration::from_secs(2);
        assert_eq!(fmt_ms(Duration::from_micros(840)), "0.84 ms");
        assert_eq!(fmt_ms(Duration::from_micros(12_340)), "12.3 ms");
        assert_eq!(fmt_ms(Duration::from_millis(1_250)), "1,250 ms");
        assert_eq!(
            fmt_latency(Some(Duration::from_micros(4_410)), wait),
            "4.41 ms"
        );
        assert_eq!(fmt_latency(None, wait), "> 2 s");
        assert_eq!(fmt_wait(wait), "2 s");
        assert_eq!(fmt_wait(Duration::from_millis(300)), "300 ms");
        assert_eq!(rate_label(Some(1_000.0)), "1,000 conn/s");
        assert_eq!(rate_label(None), "unpaced");
    }

    fn step(target: Option<f64>, achieved: f64, signals: u64, coalesced: u64) -> BusStep {
        BusStep {
            target_rate: target,
            achieved_rate: achieved,
            connections: (achieved * 2.0) as u64,
            window: Duration::from_secs(2),
            signals,
            signals_total: signals + 10,
            coalesced,
            kernel_drops: 0,
            received: signals + 10,
        }
    }

    #[test]
    fn bus_steps_report_rates_and_the_highest_clean_one() {
        let s = step(Some(500.0), 498.0, 3_800, 0);
        assert_eq!(s.signals_per_s(), 1_900.0);
        assert_eq!(s.coalesced_per_s(), 0.0);
        assert_eq!(s.events_per_s(), 1_992.0);
        assert_eq!(s.events_counted(), 3_810);
        let c = BusCeiling {
            signal_rate: 2_000,
            default_bound: true,
            steps: vec![
                step(Some(250.0), 250.0, 1_900, 0),
                step(Some(500.0), 498.0, 3_800, 0),
                step(Some(600.0), 597.0, 4_100, 400),
                // A noisy step that reached less than asked and coalesced
                // nothing still counts by what it reached.
                step(Some(1_000.0), 300.0, 2_300, 0),
            ],
        };
        assert_eq!(c.highest_clean().map(|s| s.target_rate), Some(Some(500.0)));
        assert_eq!(c.most_signals_per_s(), Some(2_050.0));
        let none = BusCeiling {
            steps: vec![step(None, 9_000.0, 20_000, 5)],
            ..c
        };
        assert!(none.highest_clean().is_none());
        let zero = BusStep {
            window: Duration::ZERO,
            ..step(None, 0.0, 5, 5)
        };
        assert_eq!(zero.signals_per_s(), 0.0);
    }

    fn latency(
        signal_rate: u32,
        default_bound: bool,
        rate: f64,
        p99: Option<Duration>,
        missing: u64,
    ) -> BusLatency {
        BusLatency {
            signal_rate,
            default_bound,
            target_rate: rate,
            achieved_rate: rate,
            connections: (rate * 5.0) as u64,
            window: Duration::from_secs(5),
            latency: LatencySummary {
                matched: (rate * 5.0) as u64 - missing,
                missing,
                p50: p99.map(|p| p / 2),
                p99,
                max: if missing > 0 { None } else { p99 },
                stray: 0,
            },
            service_cpu_pct: 9.5,
            daemon_cpu_pct: Some(7.25),
            rss_kib: 9 * 1024,
            hwm_kib: 10 * 1024,
            signals: 10_000,
            coalesced: missing,
        }
    }

    #[test]
    fn renders_the_dbus_section() {
        let ms = Duration::from_millis;
        let r = Report {
            dbus: Some(Dbus {
                hold: ms(50),
                wait: Duration::from_secs(2),
                latency: vec![
                    latency(2_000, true, 100.0, Some(ms(3)), 0),
                    latency(2_000, true, 1_000.0, None, 4_700),
                    latency(100_000, false, 1_000.0, Some(ms(4)), 0),
                ],
                ceilings: vec![BusCeiling {
                    signal_rate: 2_000,
                    default_bound: true,
                    steps: vec![
                        step(Some(500.0), 500.0, 3_800, 0),
                        step(Some(600.0), 600.0, 4_100, 454),
                    ],
                }],
            }),
            ..Report::default()
        };
        let md = render(&r);
        assert!(md.contains("## D-Bus: ConnectionEvent signals"), "{md}");
        assert!(
            md.contains(
                "| 2,000 (default) | 100 conn/s | 100 conn/s | 500 | 500 | 0 | 1.50 ms | 3.00 ms | 3.00 ms | — | — |"
            ),
            "{md}"
        );
        assert!(
            md.contains(
                "| 2,000 (default) | 1,000 conn/s | 1,000 conn/s | 5,000 | 300 | 4,700 | > 2 s | > 2 s | > 2 s | p99 ≤ 10.0 ms | MISS |"
            ),
            "{md}"
        );
        assert!(
            md.contains("| 4.00 ms | p99 ≤ 10.0 ms | PASS (not counted: raised bound) |"),
            "{md}"
        );
        assert!(
            md.contains("At 1,000 conn/s these connections make 4,000 events/s"),
            "{md}"
        );
        assert!(
            md.contains("| 2,000 (default) | 100 conn/s | 9.5 % | 7.2 % | 9.0 MiB | 10.0 MiB | 10,000 | 0 |"),
            "{md}"
        );
        assert!(
            md.contains(
                "| 2,000 (default) | 600 conn/s | 600 conn/s | 2,400 | 2,050 | 227 | 4,564 / 4,800 | 10 | 4,110 of 4,110 | 0 |"
            ),
            "{md}"
        );
        assert!(
            md.contains(
                "- Bound 2,000 (default) signals/s: highest step with nothing coalesced: 500 conn/s (500 conn/s reached, 2,000 events/s); most signals/s sustained in a step: 2,050."
            ),
            "{md}"
        );
        // Only the default bound's 1,000 conn/s row is a target.
        assert!(md.contains("- Targets: 0 PASS, 1 MISS"), "{md}");
    }
}
