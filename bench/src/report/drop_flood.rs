//! The drop-flood section: SYN floods a firewall drops, without and with
//! leco, what the drop watcher costs per drop, and whether the service's
//! events stay bounded.

use std::fmt::Write as _;
use std::time::Duration;

use super::format::{fmt_list, fmt_ns, fmt_num, fmt_pct};
use super::stats::{increase_pct, median};
use super::table::{self, Align::Left, Align::Right};
use super::targets::Verdicts;
use super::{Report, DRAIN};

/// Events the service may make per 1,000 packets dropped: a flood is
/// aggregated in the kernel, so it makes a handful per second.
pub const EVENTS_PER_1000_DROPS_TARGET: f64 = 1.0;

/// One round: a flood without leco, then one with it.
#[derive(Debug, Clone)]
pub struct DropRound {
    /// SYNs the rule dropped in the flood without leco.
    pub dropped_without: u64,
    /// That flood's wall time.
    pub time_without: Duration,
    /// Likewise with leco attached.
    pub dropped_with: u64,
    /// That flood's wall time.
    pub time_with: Duration,
    /// leco-service's CPU over the flood plus [`DRAIN`].
    pub service_cpu: Duration,
    /// Events the service made in its whole life (its final counters).
    pub events: Option<u64>,
    /// Ring-buffer records lost.
    pub ring_drops: Option<u64>,
    /// Runs of the drop watcher over the flood (counted with statistics
    /// on only: `stats`).
    pub watcher_calls: u64,
    /// Their total run time, ns.
    pub watcher_ns: u64,
    /// Whether statistics were on for this round's flood with leco.
    pub stats: bool,
}

/// The section's rounds.
#[derive(Debug, Clone)]
pub struct DropFlood {
    /// SYNs each flood sends.
    pub packets: u32,
    /// Every round.
    pub rounds: Vec<DropRound>,
}

impl DropRound {
    /// Wall ns per SYN without and with leco.
    fn ns_per_packet(&self) -> (f64, f64) {
        let per = |t: Duration, n: u64| t.as_nanos() as f64 / n.max(1) as f64;
        (
            per(self.time_without, self.dropped_without),
            per(self.time_with, self.dropped_with),
        )
    }

    /// Events per 1,000 packets dropped with leco.
    fn events_per_1000(&self) -> Option<f64> {
        Some(self.events? as f64 * 1000.0 / self.dropped_with.max(1) as f64)
    }
}

/// Writes the section, if it ran.
pub(super) fn section(out: &mut String, r: &Report, verdicts: &mut Verdicts) {
    let Some(d) = &r.drop_flood else {
        return;
    };
    let _ = writeln!(out, "## Drop flood\n");
    let _ = writeln!(
        out,
        "In each round, {} TCP SYNs go from one network namespace to a port the other's \
         nftables input rule drops (a raw socket sending as fast as it can over a veth pair), \
         first with nothing attached, then with leco-service attached. Drops are the rule's \
         own counter. The last round's flood with leco runs with `kernel.bpf_stats_enabled=1` \
         for the drop watcher's cost per call, which slows that flood a little.\n",
        fmt_num(f64::from(d.packets), 0)
    );
    let without: Vec<f64> = d.rounds.iter().map(|x| x.ns_per_packet().0).collect();
    let with: Vec<f64> = d.rounds.iter().map(|x| x.ns_per_packet().1).collect();
    let events: Vec<f64> = d
        .rounds
        .iter()
        .filter_map(DropRound::events_per_1000)
        .collect();
    let cpu: Vec<f64> = d
        .rounds
        .iter()
        .map(|x| x.service_cpu.as_secs_f64() * 1e3)
        .collect();
    table::head(
        out,
        &[("figure", Left), ("median", Right), ("every round", Right)],
    );
    let row = |out: &mut String, name: &str, xs: &[f64], f: fn(f64) -> String| {
        let m = median(xs).map_or("—".to_owned(), f);
        table::row(out, &[name, &m, &fmt_list(xs, f)]);
    };
    row(out, "wall time per SYN, without leco", &without, fmt_ns);
    row(out, "wall time per SYN, with leco", &with, fmt_ns);
    row(out, "leco-service CPU over the flood (ms)", &cpu, |x| {
        fmt_num(x, 1)
    });
    row(out, "events per 1,000 SYNs dropped", &events, |x| {
        fmt_num(x, 2)
    });
    if let (Some(a), Some(b)) = (median(&without), median(&with)) {
        table::row(
            out,
            &["flood slower with leco", &fmt_pct(increase_pct(a, b)), ""],
        );
    }
    if let Some(s) = d.rounds.iter().find(|x| x.stats && x.watcher_calls > 0) {
        table::row(
            out,
            &[
                "`on_kfree_skb` mean per call (statistics on)",
                &fmt_ns(s.watcher_ns as f64 / s.watcher_calls as f64),
                &format!("{} calls", fmt_num(s.watcher_calls as f64, 0)),
            ],
        );
    }
    let lost: u64 = d.rounds.iter().filter_map(|x| x.ring_drops).sum();
    table::row(out, &["ring-buffer records lost", &lost.to_string(), ""]);
    out.push('\n');
    let _ = writeln!(
        out,
        "Events are every event the service made in its life (connections of the rest of the \
         machine included), per 1,000 SYNs dropped; its CPU is utime + stime over the flood \
         plus {} ms.\n",
        DRAIN.as_millis()
    );
    table::checks_head(out);
    let m = median(&events);
    let pass = m.is_some_and(|e| e <= EVENTS_PER_1000_DROPS_TARGET) && lost == 0;
    table::row(
        out,
        &[
            "events per 1,000 SYNs dropped (median), none lost",
            &m.map_or("—".to_owned(), |e| fmt_num(e, 2)),
            &format!("≤ {EVENTS_PER_1000_DROPS_TARGET}"),
            verdicts.judge(pass),
        ],
    );
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round(events: u64) -> DropRound {
        DropRound {
            dropped_without: 100_000,
            time_without: Duration::from_millis(500),
            dropped_with: 100_000,
            time_with: Duration::from_millis(550),
            service_cpu: Duration::from_millis(3),
            events: Some(events),
            ring_drops: Some(0),
            watcher_calls: 100_000,
            watcher_ns: 12_000_000,
            stats: true,
        }
    }

    #[test]
    fn a_bounded_flood_passes_and_a_listed_one_misses() {
        let mut r = Report {
            drop_flood: Some(DropFlood {
                packets: 100_000,
                rounds: vec![round(12), round(9), round(15)],
            }),
            ..Report::default()
        };
        let mut v = Verdicts::default();
        let mut out = String::new();
        section(&mut out, &r, &mut v);
        assert!(out.contains("## Drop flood"), "{out}");
        assert!(
            out.contains("| wall time per SYN, without leco | 5,000 ns |"),
            "{out}"
        );
        assert!(
            out.contains("| flood slower with leco | 10.0 % | |"),
            "{out}"
        );
        assert!(out.contains("120 ns"), "mean per call: {out}");
        assert_eq!((v.passed(), v.missed()), (1, 0), "{out}");

        r.drop_flood = Some(DropFlood {
            packets: 100_000,
            rounds: vec![round(100_000)],
        });
        let mut v = Verdicts::default();
        section(&mut String::new(), &r, &mut v);
        assert_eq!((v.passed(), v.missed()), (0, 1));
    }
}
