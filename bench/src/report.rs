//! The Markdown report, and the small statistics it is made of.

use std::fmt::Write as _;
use std::time::Duration;

use crate::hooks::HookCost;
use crate::service::FinalCounters;

/// Largest bulk TCP slowdown accepted, percent.
pub const BULK_TARGET_PCT: f64 = 3.0;
/// Largest connection churn slowdown accepted, percent.
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

/// How much lower `with` is than `baseline`, in percent of `baseline`
/// (negative when `with` is higher).
pub fn slowdown_pct(baseline: f64, with: f64) -> f64 {
    if baseline == 0.0 {
        return 0.0;
    }
    (baseline - with) / baseline * 100.0
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
    /// Largest slowdown accepted, percent, if there is a target.
    pub target_pct: Option<f64>,
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

/// Everything the report shows.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Run and machine facts.
    pub header: Header,
    /// Throughput section, one row per workload.
    pub throughput: Vec<Throughput>,
    /// Per-hook section.
    pub hooks: Option<Hooks>,
    /// Service cost section, one row per paced rate.
    pub service: Vec<ServiceRun>,
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
    throughput_section(&mut body, r, &mut verdicts);
    hooks_section(&mut body, r, &mut verdicts);
    service_section(&mut body, r, &mut verdicts);

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
        "- Mode: {}{} round(s) of baseline then with leco, {} s per workload, {} s per paced window",
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
         measured in the same run, with baseline and with-leco rounds alternating, and \
         medians are reported. All traffic is on 127.0.0.1. leco-service runs as \
         `--standalone --json` with its events sent to /dev/null.\n"
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

fn throughput_section(out: &mut String, r: &Report, verdicts: &mut Vec<bool>) {
    if r.throughput.is_empty() {
        return;
    }
    let _ = writeln!(out, "## Loopback throughput with and without leco\n");
    let _ = writeln!(
        out,
        "| workload | baseline (median) | hooks only (median) | with leco (median) | \
         slowdown, hooks only | slowdown, leco | target | result |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---|---|");
    for t in &r.throughput {
        let (Some(b), Some(w)) = (median(&t.baseline), median(&t.with_leco)) else {
            let _ = writeln!(out, "| {} | — | — | — | — | — | — | not measured |", t.name);
            continue;
        };
        let slow = slowdown_pct(b, w);
        let (target, result) = match t.target_pct {
            Some(max) => {
                verdicts.push(slow <= max);
                (format!("≤ {max} %"), verdict(slow <= max).to_owned())
            }
            None => ("—".to_owned(), "—".to_owned()),
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
            "| {} | {} {u} | {floor} | {} {u} | {floor_slow} | {} | {target} | {result} |",
            t.name,
            fmt_num(b, t.decimals),
            fmt_num(w, t.decimals),
            fmt_pct(slow),
            u = t.unit,
        );
    }
    let _ = writeln!(out, "\nEvery round (baseline / hooks only / with leco):\n");
    for t in &r.throughput {
        let list = |xs: &[f64]| {
            xs.iter()
                .map(|x| fmt_num(*x, t.decimals))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = writeln!(
            out,
            "- {}: {} / {} / {} {}",
            t.name,
            list(&t.baseline),
            list(&t.hooks_only),
            list(&t.with_leco),
            t.unit
        );
    }
    out.push('\n');
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
                    target_pct: Some(BULK_TARGET_PCT),
                },
                Throughput {
                    name: "churn".into(),
                    unit: "conn/s",
                    decimals: 0,
                    baseline: vec![10_000.0],
                    hooks_only: vec![],
                    with_leco: vec![9_000.0],
                    target_pct: Some(CHURN_TARGET_PCT),
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
            unclean: vec!["round 1/3 baseline: kernel.bpf_stats_enabled=1".into()],
            notes: vec!["something odd".into()],
        }
    }

    #[test]
    fn renders_tables_and_verdicts() {
        let md = render(&sample());
        assert!(
            md.contains(
                "| bulk TCP | 100.0 MiB/s | 99.5 MiB/s | 98.0 MiB/s | 0.5 % | 2.0 % | ≤ 3 % | PASS |"
            ),
            "{md}"
        );
        assert!(
            md.contains("| churn | 10,000 conn/s | — | 9,000 conn/s | — | 10.0 % | ≤ 5 % | MISS |"),
            "{md}"
        );
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
        // bulk, churn, one hook, CPU, RSS: the unknown drops are no verdict.
        assert!(md.contains("- Targets: 4 PASS, 1 MISS"), "{md}");
        assert!(md.contains("## What limits these numbers"));
        assert!(md.contains("- something odd"));
        assert!(md.contains("> - round 1/3 baseline: kernel.bpf_stats_enabled=1"));
    }
}
