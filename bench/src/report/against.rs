//! The comparison with another leco-service build (`--against`): both
//! builds' cost per operation against the same rounds' baselines, and how
//! far apart they are in percentage points of the baseline.
//!
//! Two builds measured in separate runs on a shared machine differ by more
//! than the change between them; measured in the same rounds, against the
//! same baselines, they can be compared.

use std::fmt::Write as _;

use super::format::{fmt_list, fmt_ns_delta, fmt_pct};
use super::stats::{median, CpuMedians};
use super::table::{self, Align::Left, Align::Right};
use super::{CpuPerOp, Report};

/// Writes the section, if another build was measured.
pub(super) fn section(out: &mut String, r: &Report) {
    let rows: Vec<&CpuPerOp> = r.cpu.iter().filter(|c| !c.other_build.is_empty()).collect();
    if rows.is_empty() {
        return;
    }
    let other = r.header.against.as_deref().unwrap_or("the other build");
    let _ = writeln!(out, "### Against another build\n");
    let _ = writeln!(
        out,
        "Each round also ran the workloads with `{other}` attached (its service's CPU counted \
         alike), this build and that one taking turns at going first. Both builds' cost per \
         operation is with it − baseline + its leco-service, in percent of the same \
         baseline; the difference is this build's minus the other's, in percentage points \
         (pp), from the medians and as the median of each round's own difference (a round's \
         builds share its baseline, so that figure moves less with the machine).\n"
    );
    table::head(
        out,
        &[
            ("workload", Left),
            ("cost per op, this build", Right),
            ("overhead, this build", Right),
            ("cost per op, other build", Right),
            ("overhead, other build", Right),
            ("difference (medians)", Right),
            ("difference (median of rounds)", Right),
            ("each round", Right),
        ],
    );
    for c in rows {
        let (Some(this), Some(that)) = (c.medians(), other_medians(c)) else {
            table::row(out, &[&c.name, "—", "—", "—", "—", "—", "—", "—"]);
            continue;
        };
        let rounds = round_differences_pp(c);
        table::row(
            out,
            &[
                &c.name,
                &fmt_ns_delta(this.leco_cost_ns()),
                &fmt_pct(this.leco_pct()),
                &fmt_ns_delta(that.leco_cost_ns()),
                &fmt_pct(that.leco_pct()),
                &fmt_pp(this.leco_pct() - that.leco_pct()),
                &median(&rounds).map_or("—".to_owned(), fmt_pp),
                &fmt_list(&rounds, fmt_pp),
            ],
        );
    }
    out.push('\n');
}

/// The other build's medians over the rounds, against the same baselines.
fn other_medians(c: &CpuPerOp) -> Option<CpuMedians> {
    Some(CpuMedians {
        baseline: median(&c.baseline)?,
        hooks_only: None,
        with_leco: median(&c.other_build)?,
        service: median(&c.other_service)?,
    })
}

/// Each round's cost of this build minus the other's, in percentage points
/// of that round's baseline; rounds missing a figure are left out.
fn round_differences_pp(c: &CpuPerOp) -> Vec<f64> {
    let rounds = [
        c.baseline.len(),
        c.with_leco.len(),
        c.service.len(),
        c.other_build.len(),
        c.other_service.len(),
    ]
    .into_iter()
    .min()
    .unwrap_or(0);
    (0..rounds)
        .filter(|&i| c.baseline[i] > 0.0)
        .map(|i| {
            let this = c.with_leco[i] + c.service[i];
            let that = c.other_build[i] + c.other_service[i];
            (this - that) / c.baseline[i] * 100.0
        })
        .collect()
}

/// A difference in percentage points, signed.
fn fmt_pp(pp: f64) -> String {
    format!("{pp:+.1} pp")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(with: &[f64], svc: &[f64], other: &[f64], other_svc: &[f64]) -> CpuPerOp {
        CpuPerOp {
            name: "bulk".to_owned(),
            baseline: vec![100.0, 200.0, 100.0],
            hooks_only: vec![],
            with_leco: with.to_vec(),
            service: svc.to_vec(),
            other_build: other.to_vec(),
            other_service: other_svc.to_vec(),
            target_pct: None,
        }
    }

    #[test]
    fn each_round_is_judged_against_its_own_baseline() {
        let c = op(
            &[110.0, 220.0, 112.0],
            &[1.0, 2.0, 1.0],
            &[108.0, 210.0, 111.0],
            &[1.0, 2.0, 2.0],
        );
        let d = round_differences_pp(&c);
        assert_eq!(d.len(), 3);
        assert!((d[0] - 2.0).abs() < 1e-9, "{d:?}");
        assert!((d[1] - 5.0).abs() < 1e-9, "{d:?}");
        assert!((d[2] - 0.0).abs() < 1e-9, "{d:?}");
    }

    #[test]
    fn rounds_missing_a_figure_are_left_out() {
        let c = op(&[110.0, 220.0], &[1.0, 2.0], &[108.0], &[1.0]);
        assert_eq!(round_differences_pp(&c).len(), 1);
        let c = op(&[110.0], &[1.0], &[], &[]);
        assert!(round_differences_pp(&c).is_empty());
    }

    #[test]
    fn the_section_shows_both_builds_and_their_difference() {
        let mut r = Report::default();
        r.header.against = Some("/old/leco-service".to_owned());
        r.cpu.push(op(
            &[110.0, 220.0, 110.0],
            &[0.0, 0.0, 0.0],
            &[105.0, 210.0, 105.0],
            &[0.0, 0.0, 0.0],
        ));
        let mut out = String::new();
        section(&mut out, &r);
        assert!(out.contains("### Against another build"), "{out}");
        assert!(out.contains("`/old/leco-service`"), "{out}");
        assert!(out.contains("| bulk |"), "{out}");
        assert!(
            out.contains("| 10.0 % |") && out.contains("| 5.0 % |"),
            "{out}"
        );
        assert!(out.contains("+5.0 pp"), "{out}");
    }

    #[test]
    fn no_other_build_no_section() {
        let mut r = Report::default();
        r.cpu.push(op(&[110.0], &[1.0], &[], &[]));
        let mut out = String::new();
        section(&mut out, &r);
        assert!(out.is_empty(), "{out}");
    }
}
