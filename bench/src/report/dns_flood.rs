//! The DNS-flood section: what reading DNS answers costs, in the kernel
//! and in the service, against plain datagrams of the same size in the
//! same run, and how much memory 100,000 new names take.

use std::fmt::Write as _;
use std::time::Duration;

use super::format::{fmt_ns, fmt_num};
use super::table::{self, Align::Left, Align::Right};
use super::targets::Verdicts;
use super::{Report, DRAIN};

/// The service may grow by at most this much however many names come:
/// the name cache is bounded (16,384 names per cgroup and address and as
/// many machine-wide), and so is everything else it keeps.
pub const NAMES_RSS_TARGET_KIB: u64 = 32 * 1024;

/// One flood: plain datagrams (the baseline) or DNS answers.
#[derive(Debug, Clone)]
pub struct DnsLeg {
    /// DNS answers (from port 53), or plain datagrams.
    pub dns: bool,
    /// Datagrams sent.
    pub sent: u64,
    /// The flood's wall time.
    pub time: Duration,
    /// `on_udp_ingress` runs over the flood, and their run time (ns).
    pub hook_calls: u64,
    pub hook_ns: u64,
    /// leco-service's CPU over the flood plus [`DRAIN`].
    pub service_cpu: Duration,
    /// Its resident set before and after.
    pub rss_before_kib: u64,
    pub rss_after_kib: u64,
}

/// The section's figures.
#[derive(Debug, Clone)]
pub struct DnsFlood {
    /// Datagrams each flood sends.
    pub packets: u32,
    /// The plain flood, then the DNS one.
    pub legs: Vec<DnsLeg>,
    /// DNS answers the service read in its life, and names it kept at the
    /// end (its final counters).
    pub answers_read: Option<u64>,
    pub names_kept: Option<u64>,
    /// Ring-buffer records lost.
    pub ring_drops: Option<u64>,
}

impl DnsLeg {
    fn hook_ns_per_call(&self) -> Option<f64> {
        (self.hook_calls > 0).then(|| self.hook_ns as f64 / self.hook_calls as f64)
    }

    fn service_us_per_datagram(&self) -> f64 {
        self.service_cpu.as_secs_f64() * 1e6 / self.sent.max(1) as f64
    }
}

/// Writes the section, if it ran.
pub(super) fn section(out: &mut String, r: &Report, verdicts: &mut Verdicts) {
    let Some(d) = &r.dns_flood else {
        return;
    };
    let (Some(plain), Some(dns)) = (
        d.legs.iter().find(|l| !l.dns),
        d.legs.iter().find(|l| l.dns),
    ) else {
        return;
    };
    let _ = writeln!(out, "## DNS answers\n");
    let _ = writeln!(
        out,
        "A socket in a network namespace asks two servers on its loopback, then each sends it \
         {} datagrams of the same size, paced at about 50,000 a second: first from port 5353 \
         (plain UDP: the baseline), then from port 53 (DNS answers, each for a name and an \
         address not seen before). `kernel.bpf_stats_enabled=1` throughout; the service's CPU \
         is utime + stime over each flood plus {} ms.\n",
        fmt_num(f64::from(d.packets), 0),
        DRAIN.as_millis()
    );
    table::head(
        out,
        &[
            ("figure", Left),
            ("plain datagrams", Right),
            ("DNS answers", Right),
            ("ratio", Right),
        ],
    );
    let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if a > 0.0 => format!("×{:.2}", b / a),
        _ => "—".to_owned(),
    };
    let (hp, hd) = (plain.hook_ns_per_call(), dns.hook_ns_per_call());
    table::row(
        out,
        &[
            "`on_udp_ingress` mean per datagram",
            &hp.map_or("—".to_owned(), fmt_ns),
            &hd.map_or("—".to_owned(), fmt_ns),
            &ratio(hp, hd),
        ],
    );
    let (sp, sd) = (
        plain.service_us_per_datagram(),
        dns.service_us_per_datagram(),
    );
    table::row(
        out,
        &[
            "leco-service CPU per datagram (µs)",
            &fmt_num(sp, 2),
            &fmt_num(sd, 2),
            &ratio(Some(sp), Some(sd)),
        ],
    );
    let (tp, td) = (plain.time.as_secs_f64() * 1e3, dns.time.as_secs_f64() * 1e3);
    table::row(
        out,
        &[
            "the flood's wall time (ms, paced)",
            &fmt_num(tp, 0),
            &fmt_num(td, 0),
            &ratio(Some(tp), Some(td)),
        ],
    );
    let grew = dns.rss_after_kib.saturating_sub(dns.rss_before_kib);
    table::row(
        out,
        &[
            "leco-service RSS growth over the flood (KiB)",
            &plain
                .rss_after_kib
                .saturating_sub(plain.rss_before_kib)
                .to_string(),
            &grew.to_string(),
            "",
        ],
    );
    out.push('\n');
    let opt = |v: Option<u64>| v.map_or("?".to_owned(), |v| v.to_string());
    let _ = writeln!(
        out,
        "The service read {} DNS answers in its life and kept {} names at the end; {} ring-buffer \
         records were lost.\n",
        opt(d.answers_read),
        opt(d.names_kept),
        opt(d.ring_drops)
    );
    table::checks_head(out);
    let pass = grew <= NAMES_RSS_TARGET_KIB;
    table::row(
        out,
        &[
            "RSS growth with new names",
            &format!("{grew} KiB"),
            &format!("≤ {NAMES_RSS_TARGET_KIB} KiB"),
            verdicts.judge(pass),
        ],
    );
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leg(dns: bool, ns: u64, cpu_ms: u64, grew: u64) -> DnsLeg {
        DnsLeg {
            dns,
            sent: 100_000,
            time: Duration::from_secs(2),
            hook_calls: 100_000,
            hook_ns: ns * 100_000,
            service_cpu: Duration::from_millis(cpu_ms),
            rss_before_kib: 10_000,
            rss_after_kib: 10_000 + grew,
        }
    }

    #[test]
    fn renders_the_ratios_and_judges_memory() {
        let mut r = super::super::tests::sample();
        r.dns_flood = Some(DnsFlood {
            packets: 100_000,
            legs: vec![leg(false, 200, 50, 0), leg(true, 900, 300, 4_000)],
            answers_read: Some(100_000),
            names_kept: Some(16_384),
            ring_drops: Some(0),
        });
        let mut out = String::new();
        let mut v = Verdicts::default();
        section(&mut out, &r, &mut v);
        for want in [
            "## DNS answers",
            "| `on_udp_ingress` mean per datagram | 200 ns | 900 ns | ×4.50 |",
            "| leco-service CPU per datagram (µs) | 0.50 | 3.00 | ×6.00 |",
            "kept 16384 names",
            "| RSS growth with new names | 4000 KiB | ≤ 32768 KiB | PASS |",
        ] {
            assert!(out.contains(want), "{want:?} in:\n{out}");
        }
        r.dns_flood.as_mut().expect("set").legs[1].rss_after_kib = 100_000;
        let mut out = String::new();
        section(&mut out, &r, &mut v);
        assert!(out.contains("| MISS |"), "{out}");
    }
}
