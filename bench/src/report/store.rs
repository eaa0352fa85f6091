//! The store section: the service's CPU at 1,000 new connections a
//! second with its store and without (one run), the rows it wrote a
//! second, and over a month's store its size per 100,000 connections and
//! how long `History()` and `Totals()` take.

use std::fmt::Write as _;
use std::time::Duration;

use super::format::{fmt_ms, fmt_num};
use super::table::{self, Align::Left, Align::Right};
use super::targets::Verdicts;
use super::Report;

/// The busiest question over a month's store answers within this.
pub const QUERY_TARGET: Duration = Duration::from_secs(1);

/// One churn leg.
#[derive(Debug, Clone)]
pub struct StoreLeg {
    /// With `--state-dir`.
    pub with_store: bool,
    /// Connections made, and over how long.
    pub connections: u64,
    pub time: Duration,
    /// leco-service's CPU over the leg.
    pub cpu: Duration,
    /// Ended connections written and dropped (its final counters; with a
    /// store only).
    pub stored: Option<u64>,
    pub dropped: Option<u64>,
    /// The store's files at the end.
    pub bytes: Option<u64>,
}

/// One question's times.
#[derive(Debug, Clone)]
pub struct QueryTime {
    pub name: String,
    pub median: Duration,
    pub max: Duration,
    /// Rows in its answer.
    pub answers: usize,
}

/// The section's figures.
#[derive(Debug, Clone)]
pub struct StoreBench {
    /// New connections a second of the churn legs.
    pub rate: f64,
    /// Without a store, then with one.
    pub legs: Vec<StoreLeg>,
    /// The month's store: ended connections, how long writing them took,
    /// its size.
    pub month_rows: u64,
    pub month_build: Duration,
    pub month_bytes: u64,
    pub queries: Vec<QueryTime>,
    /// Times each question was asked.
    pub calls: usize,
}

impl StoreLeg {
    fn cpu_percent(&self) -> f64 {
        self.cpu.as_secs_f64() * 100.0 / self.time.as_secs_f64().max(1e-9)
    }
}

/// Writes the section, if it ran.
pub(super) fn section(out: &mut String, r: &Report, verdicts: &mut Verdicts) {
    let Some(s) = &r.store else {
        return;
    };
    let (Some(off), Some(on)) = (
        s.legs.iter().find(|l| !l.with_store),
        s.legs.iter().find(|l| l.with_store),
    ) else {
        return;
    };
    let _ = writeln!(out, "## The store\n");
    let _ = writeln!(
        out,
        "Loopback TCP churn paced at {} new connections a second for {:.0} s, through the \
         service without a store, then with one (`--state-dir`, `--warm-up 0`: every \
         connection ends and is written; each is two connections, its two ends). The \
         service's CPU is utime + stime over the churn and 1.25 s after.\n",
        fmt_num(s.rate, 0),
        on.time.as_secs_f64()
    );
    table::head(
        out,
        &[
            ("figure", Left),
            ("without a store", Right),
            ("with a store", Right),
            ("ratio", Right),
        ],
    );
    let (a, b) = (off.cpu_percent(), on.cpu_percent());
    let ratio = if a > 0.0 {
        format!("×{:.2}", b / a)
    } else {
        "—".to_owned()
    };
    table::row(
        out,
        &[
            "leco-service CPU (% of a core)",
            &fmt_num(a, 1),
            &fmt_num(b, 1),
            &ratio,
        ],
    );
    let per_s = |l: &StoreLeg| l.connections as f64 / l.time.as_secs_f64().max(1e-9);
    table::row(
        out,
        &[
            "churn cycles a second",
            &fmt_num(per_s(off), 0),
            &fmt_num(per_s(on), 0),
            "",
        ],
    );
    let opt = |v: Option<u64>| v.map_or("?".to_owned(), |v| fmt_num(v as f64, 0));
    let written = on.stored.unwrap_or(0) as f64 / on.time.as_secs_f64().max(1e-9);
    table::row(
        out,
        &[
            "ended connections written (a second)",
            "—",
            &format!("{} ({})", opt(on.stored), fmt_num(written, 0)),
            "",
        ],
    );
    table::row(out, &["dropped by the store", "—", &opt(on.dropped), ""]);
    let kib = on
        .bytes
        .map_or("?".to_owned(), |b| fmt_num(b as f64 / 1024.0, 0));
    table::row(out, &["the store's files at the end (KiB)", "—", &kib, ""]);
    out.push('\n');

    let per_100k = s.month_bytes as f64 / s.month_rows.max(1) as f64 * 100_000.0;
    let _ = writeln!(
        out,
        "A month's store: {} ended connections spread over 30 days (200 programs, 20,000 \
         remotes by name, 5 users, 50 units), written through leco-store's writer in {:.1} s \
         ({} a second): {} MiB, **{} MiB per 100,000 connections**. The real service serves it \
         on a private bus; each question is asked {} times in a row.\n",
        fmt_num(s.month_rows as f64, 0),
        s.month_build.as_secs_f64(),
        fmt_num(
            s.month_rows as f64 / s.month_build.as_secs_f64().max(1e-9),
            0
        ),
        fmt_num(s.month_bytes as f64 / f64::from(1 << 20), 0),
        fmt_num(per_100k / f64::from(1 << 20), 1),
        s.calls
    );
    table::head(
        out,
        &[
            ("question", Left),
            ("rows", Right),
            ("median", Right),
            ("worst", Right),
        ],
    );
    for q in &s.queries {
        table::row(
            out,
            &[
                &format!("`{}`", q.name),
                &q.answers.to_string(),
                &fmt_ms(q.median),
                &fmt_ms(q.max),
            ],
        );
    }
    out.push('\n');
    table::checks_head(out);
    let dropped = on.dropped.unwrap_or(u64::MAX);
    table::row(
        out,
        &[
            &format!("store drops at {} connections/s", fmt_num(s.rate, 0)),
            &opt(on.dropped),
            "0",
            verdicts.judge(dropped == 0),
        ],
    );
    let worst = s.queries.iter().map(|q| q.median).max().unwrap_or_default();
    table::row(
        out,
        &[
            "slowest question's median over a month",
            &fmt_ms(worst),
            &format!("≤ {}", fmt_ms(QUERY_TARGET)),
            verdicts.judge(worst <= QUERY_TARGET),
        ],
    );
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leg(with_store: bool, cpu_ms: u64, stored: Option<u64>) -> StoreLeg {
        StoreLeg {
            with_store,
            connections: 10_000,
            time: Duration::from_secs(10),
            cpu: Duration::from_millis(cpu_ms),
            stored,
            dropped: stored.map(|_| 0),
            bytes: stored.map(|_| 4 << 20),
        }
    }

    #[test]
    fn renders_the_ratio_the_month_and_judges_drops_and_latency() {
        let mut r = super::super::tests::sample();
        r.store = Some(StoreBench {
            rate: 1_000.0,
            legs: vec![leg(false, 200, None), leg(true, 500, Some(20_000))],
            month_rows: 1_000_000,
            month_build: Duration::from_secs(20),
            month_bytes: 600 << 20,
            queries: vec![
                QueryTime {
                    name: "History(last hour, 100)".into(),
                    median: Duration::from_millis(3),
                    max: Duration::from_millis(5),
                    answers: 100,
                },
                QueryTime {
                    name: "Totals(30 days, remote)".into(),
                    median: Duration::from_millis(1_500),
                    max: Duration::from_millis(1_700),
                    answers: 10_000,
                },
            ],
            calls: 5,
        });
        let mut out = String::new();
        let mut v = Verdicts::default();
        section(&mut out, &r, &mut v);
        for want in [
            "## The store",
            "| leco-service CPU (% of a core) | 2.0 | 5.0 | ×2.50 |",
            "| ended connections written (a second) | — | 20,000 (2,000) | |",
            "**60.0 MiB per 100,000 connections**",
            "| `Totals(30 days, remote)` | 10000 | 1,500 ms |",
            "| store drops at 1,000 connections/s | 0 | 0 | PASS |",
            "| slowest question's median over a month | 1,500 ms | ≤ 1,000 ms | MISS |",
        ] {
            assert!(out.contains(want), "{want:?} in:\n{out}");
        }
    }
}
