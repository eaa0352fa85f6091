//! The D-Bus section: the latency from `connect()` to its `new`
//! `ConnectionEvent` signal, what the service and the bus cost meanwhile,
//! and the signal rate the service sustains before it coalesces.

use std::fmt::Write as _;
use std::time::Duration;

use super::format::{fmt_latency, fmt_ms, fmt_num, fmt_pct, fmt_wait, mib, rate_label};
use super::table::{self, Align::Left, Align::Right};
use super::targets::{verdict, Verdicts, LATENCY_TARGET, LATENCY_TARGET_RATE};
use super::{Report, DRAIN};

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

/// Writes the section, if D-Bus was measured.
pub(super) fn section(out: &mut String, r: &Report, verdicts: &mut Verdicts) {
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
    if !d.latency.is_empty() {
        latency_table(out, d, verdicts);
        latency_method(out, d);
        latency_shortfalls(out, d);
        latency_cost_table(out, d);
    }
    if !d.ceilings.is_empty() {
        ceiling_table(out, d);
        ceiling_method(out, d);
        ceiling_summary(out, d);
    }
}

/// A signal rate bound, marked when it is the service's default.
fn bound_label(signal_rate: u32, default_bound: bool) -> String {
    format!(
        "{}{}",
        fmt_num(f64::from(signal_rate), 0),
        if default_bound { " (default)" } else { "" }
    )
}

/// One row per bound and paced rate; the target is judged at its rate.
fn latency_table(out: &mut String, d: &Dbus, verdicts: &mut Verdicts) {
    let _ = writeln!(out, "connect → `new` signal latency:\n");
    let signalled = format!("signalled within {}", fmt_wait(d.wait));
    table::head(
        out,
        &[
            ("signal-rate bound", Right),
            ("target rate", Right),
            ("achieved", Right),
            ("connections", Right),
            (&signalled, Right),
            ("not signalled", Right),
            ("p50", Right),
            ("p99", Right),
            ("max", Right),
            ("target", Left),
            ("result", Left),
        ],
    );
    for l in &d.latency {
        let (target, result) = if l.target_rate == LATENCY_TARGET_RATE {
            let pass = l.latency.p99.is_some_and(|p| p <= LATENCY_TARGET);
            // The target is judged on the service as it ships; a raised
            // bound shows what the rest of the path allows.
            let result = if l.default_bound {
                verdicts.judge(pass).to_owned()
            } else {
                format!("{} (not counted: raised bound)", verdict(pass))
            };
            (format!("p99 ≤ {}", fmt_ms(LATENCY_TARGET)), result)
        } else {
            ("—".to_owned(), "—".to_owned())
        };
        table::row(
            out,
            &[
                &bound_label(l.signal_rate, l.default_bound),
                &rate_label(Some(l.target_rate)),
                &format!("{} conn/s", fmt_num(l.achieved_rate, 0)),
                &fmt_num(l.connections as f64, 0),
                &fmt_num(l.latency.matched as f64, 0),
                &fmt_num(l.latency.missing as f64, 0),
                &fmt_latency(l.latency.p50, d.wait),
                &fmt_latency(l.latency.p99, d.wait),
                &fmt_latency(l.latency.max, d.wait),
                &target,
                &result,
            ],
        );
    }
}

/// How the latency was measured.
fn latency_method(out: &mut String, d: &Dbus) {
    let window = d.latency.iter().map(|l| l.window).max().unwrap_or_default();
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
        fmt_wait(d.wait),
    );
}

/// Why connections went without a signal: a rate beyond the bound, and
/// signals that came too late.
fn latency_shortfalls(out: &mut String, d: &Dbus) {
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
            fmt_wait(d.wait),
        );
    }
}

/// What the service and dbus-daemon cost over the latency windows.
fn latency_cost_table(out: &mut String, d: &Dbus) {
    let _ = writeln!(out, "Service cost over those windows:\n");
    table::head(
        out,
        &[
            ("signal-rate bound", Right),
            ("target rate", Right),
            ("service CPU (% of one core)", Right),
            ("dbus-daemon CPU (% of one core)", Right),
            ("RSS", Right),
            ("peak RSS", Right),
            ("signals sent", Right),
            ("events coalesced", Right),
        ],
    );
    for l in &d.latency {
        table::row(
            out,
            &[
                &bound_label(l.signal_rate, l.default_bound),
                &rate_label(Some(l.target_rate)),
                &fmt_pct(l.service_cpu_pct),
                &l.daemon_cpu_pct.map_or("unknown".to_owned(), fmt_pct),
                &format!("{} MiB", fmt_num(mib(l.rss_kib), 1)),
                &format!("{} MiB", fmt_num(mib(l.hwm_kib), 1)),
                &fmt_num(l.signals as f64, 0),
                &fmt_num(l.coalesced as f64, 0),
            ],
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

/// One row per bound and churn step.
fn ceiling_table(out: &mut String, d: &Dbus) {
    let _ = writeln!(out, "Signal rate before coalescing:\n");
    table::head(
        out,
        &[
            ("signal-rate bound", Right),
            ("connections (target)", Right),
            ("achieved", Right),
            ("events/s made", Right),
            ("signals/s", Right),
            ("coalesced/s", Right),
            ("events counted / made", Right),
            ("signals after the step", Right),
            ("received by the subscriber", Right),
            ("kernel drops", Right),
        ],
    );
    for c in &d.ceilings {
        let bound = bound_label(c.signal_rate, c.default_bound);
        for s in &c.steps {
            table::row(
                out,
                &[
                    &bound,
                    &rate_label(s.target_rate),
                    &format!("{} conn/s", fmt_num(s.achieved_rate, 0)),
                    &fmt_num(s.events_per_s(), 0),
                    &fmt_num(s.signals_per_s(), 0),
                    &fmt_num(s.coalesced_per_s(), 0),
                    &format!(
                        "{} / {}",
                        fmt_num(s.events_counted() as f64, 0),
                        fmt_num(s.connections as f64 * 4.0, 0)
                    ),
                    &fmt_num(s.signals_total.saturating_sub(s.signals) as f64, 0),
                    &format!(
                        "{} of {}",
                        fmt_num(s.received as f64, 0),
                        fmt_num(s.signals_total as f64, 0)
                    ),
                    &fmt_num(s.kernel_drops as f64, 0),
                ],
            );
        }
    }
}

/// How the churn steps were made and counted.
fn ceiling_method(out: &mut String, d: &Dbus) {
    let step = d
        .ceilings
        .iter()
        .flat_map(|c| c.steps.iter().map(|s| s.window))
        .max()
        .unwrap_or_default();
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
}

/// Per bound, the highest step without coalescing and the most signals
/// sustained.
fn ceiling_summary(out: &mut String, d: &Dbus) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::render;

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
