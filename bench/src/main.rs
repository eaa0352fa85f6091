//! leco-bench: measures, in one run, loopback workloads with and without
//! leco attached, the kernel cost of each leco hook, the CPU and memory of
//! leco-service under paced connection churn, and its D-Bus signals'
//! latency and rate, and whether a connection storm with `Snapshot()`
//! callers makes the kernel reader fall behind, then writes a Markdown
//! report.

mod dbus;
mod dns_flood;
mod drop_flood;
mod hooks;
mod overlay_live;
mod report;
mod service;
mod signals;
mod store;
mod storm_callers;
mod workloads;

use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Parser, ValueEnum};

use crate::hooks::StatsEnabled;
use crate::report::{CpuPerOp, Header, Hooks, Report, ServiceRun, Throughput};
use crate::service::{Service, Stopped};

/// How long leco-service gets to load its programs.
const LOAD_TIMEOUT: Duration = Duration::from_secs(20);
/// Paced churn rates of the service cost section, connections/s.
const PACED_RATES: [f64; 2] = [report::CPU_TARGET_RATE, report::DROPS_TARGET_RATE];
/// Where the report goes when neither `--out` nor `--only` is given.
const DEFAULT_OUT: &str = "bench/RESULTS.md";

/// Benchmark leco on loopback traffic and write a Markdown report.
///
/// Runs bulk TCP, connection churn and small UDP datagrams on 127.0.0.1 in
/// alternating rounds without leco, with its hooks only and with
/// leco-service attached and reports the medians of throughput and of CPU
/// time per operation against the same run's baseline; then the
/// per-hook kernel cost (with kernel.bpf_stats_enabled=1, restored after)
/// and leco-service's CPU, memory and ring-buffer drops under paced
/// connection churn; then, with the service serving org.leco.Overseer1 on
/// a private dbus-daemon, the latency from connect() to its
/// ConnectionEvent signal and the signal rate it sustains before it
/// coalesces; then a storm of 5,000 connections/s with and without 50
/// clients calling Snapshot() 20 times each; last, floods of 100,000 TCP
/// SYNs that a firewall drops, between two network namespaces the bench
/// makes, without and with leco. Needs root, dbus-daemon, ip and nft. A
/// full run takes five to six minutes.
#[derive(Debug, Parser)]
#[command(name = "leco-bench", version)]
struct Cli {
    /// leco-service binary to measure [default: leco-service next to this
    /// executable]
    #[arg(long, value_name = "PATH")]
    service: Option<PathBuf>,

    /// Another leco-service build to compare with in the same rounds (e.g.
    /// the last release, or a checkout of main): each round then also runs
    /// the workloads with it, in alternating order with this build, and the
    /// report's "Against another build" section gives both builds' cost per
    /// operation against the same baselines and the difference in
    /// percentage points. Use 5 rounds or more: the difference is smaller
    /// than one round's noise
    #[arg(long, value_name = "PATH")]
    against: Option<PathBuf>,

    /// Where to write the Markdown report (it is also printed) [default:
    /// bench/RESULTS.md, or nowhere with --only]
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,

    /// Run only these cases, e.g. `--only storm-callers` while working on
    /// one (comma-separated or repeated). Their report has only their
    /// sections, so it is printed but written only where --out says: the
    /// results file stays that of a whole run [default: every case]
    #[arg(long, value_enum, value_name = "CASE", value_delimiter = ',')]
    only: Vec<Case>,

    /// Smoke test: 1 round, 1 s per workload and paced window, the lowest
    /// and highest D-Bus rate steps only, 0.5 s each, a 3 s storm with 10
    /// Snapshot callers × 5; the figures are too short to mean anything
    #[arg(long)]
    quick: bool,

    /// Rounds of baseline, hooks only and with leco [default: 3, or 1 with
    /// --quick]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=20))]
    rounds: Option<u32>,

    /// Measure only the running overlay (leco-overlay next to this
    /// executable, under a headless sway, fed by a fake service): memory
    /// with 100 lines, wake-ups idle and while fading, CPU at 100 events/s.
    /// Its section replaces the "Overlay (live)" one of the report file.
    /// About a minute; needs root, sway and dbus-daemon
    #[arg(long)]
    overlay_live: bool,
}

/// The cases of a run, each a section of the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Case {
    /// Bulk TCP, churn and UDP with and without leco (the rounds)
    Workloads,
    /// Per-hook kernel cost, with kernel.bpf_stats_enabled=1
    Hooks,
    /// leco-service's CPU, memory and drops under paced churn
    Service,
    /// ConnectionEvent latency and signal rate on a private bus
    Dbus,
    /// A 5,000 conn/s storm with and without Snapshot() callers
    StormCallers,
    /// TCP SYN floods a firewall drops, without and with leco
    DropFlood,
    /// DNS answers against plain datagrams: kernel and service cost, memory
    DnsFlood,
    /// The store: service CPU with and without, size, History/Totals latency
    Store,
}

/// Durations and repetitions of one run.
#[derive(Debug, Clone, Copy)]
struct Plan {
    rounds: usize,
    workload: Duration,
    paced: Duration,
    warmup: Option<Duration>,
    /// Pause between the service being attached and a measured window, so
    /// that its start-up work is not billed to the window.
    idle: Duration,
    /// Each paced window of the D-Bus latency measurement.
    bus_window: Duration,
    /// Each churn step of the D-Bus signal rate measurement.
    bus_step: Duration,
    /// A smoke test: the D-Bus steps are cut to the lowest and highest.
    quick: bool,
    /// The connection storm of the Snapshot callers case.
    storm: Duration,
    /// Clients calling `Snapshot()` during it.
    storm_callers: usize,
    /// Calls each of them makes, back to back.
    storm_calls: usize,
}

impl Cli {
    /// Where the report is written, if anywhere.
    fn report_file(&self) -> Option<PathBuf> {
        match (&self.out, self.only.is_empty()) {
            (Some(p), _) => Some(p.clone()),
            (None, true) => Some(PathBuf::from(DEFAULT_OUT)),
            (None, false) => None,
        }
    }

    /// Whether `case` is to run.
    fn runs(&self, case: Case) -> bool {
        self.only.is_empty() || self.only.contains(&case)
    }

    /// The cases `--only` names, as given to it; empty when all run.
    fn only_names(&self) -> String {
        self.only
            .iter()
            .filter_map(|c| c.to_possible_value())
            .map(|v| v.get_name().to_owned())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl Plan {
    fn new(cli: &Cli) -> Plan {
        let mut plan = if cli.quick {
            Plan {
                rounds: 1,
                workload: Duration::from_secs(1),
                paced: Duration::from_secs(1),
                warmup: None,
                idle: Duration::from_millis(200),
                bus_window: Duration::from_secs(1),
                bus_step: Duration::from_millis(500),
                quick: true,
                storm: Duration::from_secs(3),
                storm_callers: 10,
                storm_calls: 5,
            }
        } else {
            Plan {
                rounds: 3,
                workload: Duration::from_secs(3),
                paced: Duration::from_secs(5),
                warmup: Some(Duration::from_millis(500)),
                idle: Duration::from_secs(1),
                bus_window: Duration::from_secs(5),
                bus_step: Duration::from_secs(2),
                quick: false,
                // The issue's case: 50 callers × 20 calls at 5,000 conn/s.
                storm: Duration::from_secs(8),
                storm_callers: 50,
                storm_calls: 20,
            }
        };
        if let Some(n) = cli.rounds {
            plan.rounds = n as usize;
        }
        plan
    }
}

fn main() {
    let cli = Cli::parse();
    if let Err(e) = run(&cli) {
        // {:#} keeps the whole context chain on one line.
        eprintln!("leco-bench: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: &Cli) -> Result<()> {
    if cli.overlay_live {
        return run_overlay_live(cli);
    }
    let started = Instant::now();
    let plan = Plan::new(cli);
    let service = preflight(cli)?;
    signals::install();
    raise_fd_limit();

    let mut r = Report {
        header: Header {
            date: command_line("date", &["-u"]),
            kernel: command_line("uname", &["-r"]),
            nproc: command_line("nproc", &[]),
            service: service.display().to_string(),
            command: std::env::args().collect::<Vec<_>>().join(" "),
            quick: cli.quick,
            rounds: plan.rounds,
            workload: plan.workload,
            paced: plan.paced,
            only: cli.only_names(),
            against: cli.against.as_ref().map(|p| p.display().to_string()),
        },
        ..Report::default()
    };

    // Fail in a second, not after the first baseline round, if the service
    // cannot start.
    let check = start_service(&service, &[], "start check", &mut r.notes)?;
    stop_service(check, "start check", &mut r.notes)?;

    if let Some(other) = &cli.against {
        let check = start_other(other, "start check of the other build")?;
        stop_service(check, "start check of the other build", &mut r.notes)?;
    }
    if cli.runs(Case::Workloads) {
        throughput(&service, cli.against.as_deref(), &plan, &mut r)?;
    }
    if cli.runs(Case::Hooks) {
        r.hooks = Some(hook_costs(&service, &plan, &mut r)?);
    }
    if cli.runs(Case::Service) {
        for rate in PACED_RATES {
            let run = service_cost(&service, &plan, rate, &mut r)?;
            r.service.push(run);
        }
    }
    if cli.runs(Case::Dbus) {
        r.dbus = Some(dbus::phase(&service, &plan, &mut r)?);
    }
    if cli.runs(Case::StormCallers) {
        let t0 = Instant::now();
        r.storm_callers = Some(storm_callers::phase(&service, &plan, &mut r)?);
        eprintln!(
            "leco-bench: storm with callers took {:.0} s",
            t0.elapsed().as_secs_f64()
        );
    }
    if cli.runs(Case::DropFlood) {
        r.drop_flood = Some(drop_flood::phase(&service, &plan, &mut r)?);
    }
    if cli.runs(Case::DnsFlood) {
        r.dns_flood = Some(dns_flood::phase(&service, &plan, &mut r)?);
    }
    if cli.runs(Case::Store) {
        r.store = Some(store::phase(&service, &plan, &mut r)?);
    }
    r.notes.push(format!(
        "The whole bench took {:.0} s.",
        started.elapsed().as_secs_f64()
    ));

    let Some(out) = cli.report_file() else {
        print!("{}", report::render(&r));
        eprintln!("leco-bench: --only without --out: the report was printed only");
        return Ok(());
    };
    let md = overlay_live::keep_section(&out, report::render(&r));
    std::fs::write(&out, &md)
        .with_context(|| format!("cannot write the report to {}", out.display()))?;
    print!("{md}");
    eprintln!("leco-bench: report written to {}", out.display());
    Ok(())
}

/// `--overlay-live`: the overlay's section only, spliced into the report.
fn run_overlay_live(cli: &Cli) -> Result<()> {
    let overlay = std::env::current_exe()
        .context("cannot find the bench's own executable")?
        .with_file_name("leco-overlay");
    let windows = if cli.quick {
        overlay_live::Windows {
            idle: Duration::from_secs(3),
            busy: Duration::from_secs(3),
        }
    } else {
        overlay_live::Windows {
            idle: Duration::from_secs(10),
            busy: Duration::from_secs(10),
        }
    };
    let out = cli
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_OUT));
    let section = overlay_live::run(&overlay, windows)?;
    overlay_live::splice_into(&out, &section)?;
    print!("{section}");
    eprintln!("leco-bench: overlay section written to {}", out.display());
    Ok(())
}

/// Checks everything that would otherwise fail minutes into the run.
fn preflight(cli: &Cli) -> Result<PathBuf> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("must run as root: leco-service loads eBPF programs and the bench sets kernel.bpf_stats_enabled");
    }
    let service = match &cli.service {
        Some(p) => p.clone(),
        None => std::env::current_exe()
            .context("cannot find the bench's own executable")?
            .with_file_name("leco-service"),
    };
    if !service.is_file() {
        bail!(
            "leco-service not found at {}: build it (cargo build --release -p leco-service) or pass --service PATH",
            service.display()
        );
    }
    if let Some(other) = &cli.against {
        if !other.is_file() {
            bail!(
                "--against {}: no such file (give the other build's leco-service binary)",
                other.display()
            );
        }
    }
    if let Some(out) = cli.report_file() {
        let dir = match out.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        if !dir.is_dir() {
            bail!(
                "cannot write the report to {}: no directory {} (run from the workspace root or pass --out FILE)",
                out.display(),
                dir.display()
            );
        }
    }
    // The D-Bus sections come last: fail now, not minutes in, if their bus
    // cannot start.
    drop(
        leco_testkit::bus::TestBus::start()
            .context("the D-Bus section needs a private dbus-daemon (apt install dbus-daemon)")?,
    );
    if cli.runs(Case::DropFlood) {
        for tool in ["ip", "nft"] {
            let ok = Command::new(tool)
                .arg("-V")
                .output()
                .is_ok_and(|o| o.status.success());
            if !ok {
                bail!(
                    "the drop flood needs `{tool}` (apt install iproute2 nftables), or leave it \
                     out with --only"
                );
            }
        }
    }
    let loaded = foreign_leco_progs(&HashSet::new())?;
    if !loaded.is_empty() {
        bail!(
            "leco programs are already loaded (ids {}): stop the other leco first, the baseline would include it",
            report::fmt_ids(&loaded)
        );
    }
    Ok(service)
}

/// Raises the soft limit on open files to the hard one: the unpaced D-Bus
/// steps hold a few thousand sockets open at once.
fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit with a valid rlimit.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// Ids of leco programs loaded now, other than `ours`.
fn foreign_leco_progs(ours: &HashSet<u32>) -> Result<BTreeSet<u32>> {
    Ok(hooks::list_progs()?
        .iter()
        .filter(|p| p.leco_name().is_some() && !ours.contains(&p.id))
        .map(|p| p.id)
        .collect())
}

/// What can make a round unfair: leco programs the bench did not start,
/// and run-time statistics left on by someone else (they slow every eBPF
/// program).
#[derive(Debug, Default)]
struct Interference {
    foreign: BTreeSet<u32>,
    stats_on: bool,
}

impl Interference {
    /// Adds what is visible now, with `ours` being the bench's own programs.
    fn look(&mut self, ours: &HashSet<u32>) -> Result<()> {
        self.foreign.extend(foreign_leco_progs(ours)?);
        self.stats_on |= hooks::stats_enabled() == Some(true);
        Ok(())
    }

    fn note(&self, what: &str, r: &mut Report) {
        let mut seen = Vec::new();
        if !self.foreign.is_empty() {
            seen.push(format!(
                "leco programs not started by the bench (ids {})",
                report::fmt_ids(&self.foreign)
            ));
        }
        if self.stats_on {
            seen.push("kernel.bpf_stats_enabled=1".to_owned());
        }
        if !seen.is_empty() {
            r.unclean.push(format!("{what}: {}", seen.join(" and ")));
        }
    }
}

/// First line of a command's output, or why there is none.
fn command_line(cmd: &str, args: &[&str]) -> String {
    match Command::new(cmd).args(args).output() {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).trim().to_owned(),
        Ok(o) => format!("unknown (`{cmd}` exited with {})", o.status),
        Err(e) => format!("unknown (`{cmd}`: {e})"),
    }
}

/// One figure per workload from one pass over the three.
#[derive(Debug, Clone, Copy)]
struct Figures {
    bulk_mib_s: f64,
    churn_per_s: f64,
    udp_sent_per_s: f64,
    udp_received_per_s: f64,
    /// CPU time of the workloads' threads, ns per operation.
    bulk_cpu_ns: f64,
    churn_cpu_ns: f64,
    udp_cpu_ns: f64,
    /// leco-service's CPU time over each workload, ns per operation, when
    /// a service was measured.
    service: Option<ServiceCpu>,
}

/// leco-service's CPU time per operation of each workload.
#[derive(Debug, Clone, Copy)]
struct ServiceCpu {
    bulk_ns: f64,
    churn_ns: f64,
    udp_ns: f64,
}

impl Figures {
    fn summary(&self) -> String {
        let mut s = format!(
            "bulk {} MiB/s {} ns/write, churn {} conn/s {} ns/conn, udp {} sent/s {} delivered/s {} ns/datagram",
            report::fmt_num(self.bulk_mib_s, 1),
            report::fmt_ns_num(self.bulk_cpu_ns),
            report::fmt_num(self.churn_per_s, 0),
            report::fmt_ns_num(self.churn_cpu_ns),
            report::fmt_num(self.udp_sent_per_s, 0),
            report::fmt_num(self.udp_received_per_s, 0),
            report::fmt_ns_num(self.udp_cpu_ns),
        );
        if let Some(svc) = &self.service {
            s.push_str(&format!(
                "; leco-service {} / {} / {} ns per op",
                report::fmt_ns_num(svc.bulk_ns),
                report::fmt_ns_num(svc.churn_ns),
                report::fmt_ns_num(svc.udp_ns),
            ));
        }
        s
    }
}

/// CPU ns per operation, or an error naming the workload that did
/// nothing (its figures would be meaningless, not merely slow).
fn per_op(cpu: Duration, ops: u64, what: &str) -> Result<f64> {
    workloads::ns_per_op(cpu, ops)
        .with_context(|| format!("{what}: no operation completed in the whole window"))
}

/// leco-service's CPU time over consecutive workloads: each lap ends after
/// the service had [`report::DRAIN`] to read that workload's events, and
/// the next lap starts there.
struct ServiceMeter<'a> {
    svc: &'a Service,
    last: service::ProcSample,
    ticks_per_s: f64,
}

impl<'a> ServiceMeter<'a> {
    fn start(svc: &'a Service) -> Result<Self> {
        Ok(ServiceMeter {
            svc,
            last: svc.sample()?,
            ticks_per_s: service::clock_ticks_per_s(),
        })
    }

    fn lap(&mut self) -> Result<Duration> {
        thread::sleep(report::DRAIN);
        let now = self.svc.sample()?;
        let cpu = service::cpu_between(&self.last, &now, self.ticks_per_s);
        self.last = now;
        Ok(cpu)
    }
}

/// Runs the three workloads for `d` each, measuring `svc`'s CPU time over
/// each of them when given.
fn run_workloads(d: Duration, svc: Option<&Service>) -> Result<Figures> {
    let mut meter = svc.map(ServiceMeter::start).transpose()?;
    let mut lap = || meter.as_mut().map(ServiceMeter::lap).transpose();
    let bulk = workloads::bulk_tcp(d)?;
    let bulk_svc = lap()?;
    let churn = workloads::churn(d, None)?;
    let churn_svc = lap()?;
    let udp = workloads::udp(d)?;
    let udp_svc = lap()?;
    let service = match (bulk_svc, churn_svc, udp_svc) {
        (Some(b), Some(c), Some(u)) => Some(ServiceCpu {
            bulk_ns: per_op(b, bulk.writes(), "bulk")?,
            churn_ns: per_op(c, churn.connections, "churn")?,
            udp_ns: per_op(u, udp.sent, "udp")?,
        }),
        _ => None,
    };
    Ok(Figures {
        bulk_mib_s: bulk.mib_per_s(),
        churn_per_s: churn.per_s(),
        udp_sent_per_s: udp.sent_per_s(),
        udp_received_per_s: udp.received_per_s(),
        bulk_cpu_ns: per_op(bulk.cpu, bulk.writes(), "bulk")?,
        churn_cpu_ns: per_op(churn.cpu, churn.connections, "churn")?,
        udp_cpu_ns: udp
            .cpu_ns_per_datagram()
            .context("udp: no datagram sent or none received in the whole window")?,
        service,
    })
}

/// Starts leco-service and records what about its start is worth noting.
fn start_service(
    path: &Path,
    extra: &[&str],
    what: &str,
    notes: &mut Vec<String>,
) -> Result<Service> {
    eprintln!("leco-bench: {what}: starting leco-service");
    let svc = Service::start(path, extra, LOAD_TIMEOUT).with_context(|| what.to_owned())?;
    Ok(announce(svc, what, notes))
}

/// Starts another build of leco-service (`--against`).
fn start_other(path: &Path, what: &str) -> Result<Service> {
    eprintln!("leco-bench: {what}: starting {}", path.display());
    let svc = Service::start_other(path, &[], LOAD_TIMEOUT).with_context(|| what.to_owned())?;
    eprintln!(
        "leco-bench: {what}: pid {} holds {} programs, stable after {:.1} s",
        svc.pid(),
        svc.progs().len(),
        svc.ready_after().as_secs_f64()
    );
    Ok(svc)
}

/// Starts leco-service serving the bus at `address` and records what about
/// its start is worth noting.
fn start_bus_service(
    path: &Path,
    address: &str,
    extra: &[&str],
    what: &str,
    notes: &mut Vec<String>,
) -> Result<Service> {
    eprintln!("leco-bench: {what}: starting leco-service on the private bus");
    let svc = Service::start_on_bus(path, address, extra, LOAD_TIMEOUT)
        .with_context(|| what.to_owned())?;
    Ok(announce(svc, what, notes))
}

/// Logs a started service and notes the programs it did not load.
fn announce(svc: Service, what: &str, notes: &mut Vec<String>) -> Service {
    eprintln!(
        "leco-bench: {what}: leco-service pid {} has {} programs loaded after {:.1} s",
        svc.pid(),
        svc.progs().len(),
        svc.ready_after().as_secs_f64()
    );
    if !svc.missing().is_empty() {
        notes.push(format!(
            "{what}: leco-service did not load {} within {} s; measured without them.",
            svc.missing().join(", "),
            LOAD_TIMEOUT.as_secs()
        ));
    }
    svc
}

/// Stops leco-service and notes anything other than a clean exit.
fn stop_service(svc: Service, what: &str, notes: &mut Vec<String>) -> Result<Stopped> {
    let stopped = svc
        .stop()
        .with_context(|| format!("{what}: stopping leco-service"))?;
    if stopped.killed {
        notes.push(format!(
            "{what}: leco-service ignored SIGTERM and was killed."
        ));
    } else if !stopped.status.success() {
        notes.push(format!(
            "{what}: leco-service exited with {}.",
            stopped.status
        ));
    }
    match &stopped.counters {
        None => notes.push(format!(
            "{what}: leco-service printed no `final counters` line on stderr; events and drops unknown."
        )),
        Some(c) => match c.ringbuf_drops() {
            Some(0) => {}
            Some(n) => notes.push(format!(
                "{what}: {} ring-buffer drops.",
                report::fmt_num(n as f64, 0)
            )),
            None => notes.push(format!("{what}: the final counters line has no ringbuf_drops.")),
        },
    }
    Ok(stopped)
}

/// Alternating baseline, hooks-only and with-leco rounds of the three
/// workloads, and with the `other` build when there is one.
fn throughput(service: &Path, other: Option<&Path>, plan: &Plan, r: &mut Report) -> Result<()> {
    if let Some(w) = plan.warmup {
        eprintln!("leco-bench: warm-up");
        run_workloads(w, None)?;
    }
    let mut rounds = Rounds::default();
    for round in 1..=plan.rounds {
        let what = |config: &str| format!("round {round}/{} {config}", plan.rounds);
        let f = baseline_round(plan, &what("baseline"), r)?;
        rounds.baseline.push(f);
        let f = hooks_only_round(service, plan, &what("hooks only"), r)?;
        rounds.hooks_only.push(f);
        let Some(other) = other else {
            let f = with_leco_round(service, plan, &what("with leco"), r)?;
            rounds.with_leco.push(f);
            continue;
        };
        // Whichever build runs second finds the machine warmer: take turns.
        if round % 2 == 1 {
            let f = with_leco_round(service, plan, &what("with leco"), r)?;
            rounds.with_leco.push(f);
            let f = other_build_round(other, plan, &what("other build"), r)?;
            rounds.other_build.push(f);
        } else {
            let f = other_build_round(other, plan, &what("other build"), r)?;
            rounds.other_build.push(f);
            let f = with_leco_round(service, plan, &what("with leco"), r)?;
            rounds.with_leco.push(f);
        }
    }
    r.throughput = rounds.throughput();
    r.cpu = rounds.cpu_per_op();
    Ok(())
}

/// One round's figures with nothing attached.
fn baseline_round(plan: &Plan, what: &str, r: &mut Report) -> Result<Figures> {
    let mut seen = Interference::default();
    seen.look(&HashSet::new())?;
    let f = run_workloads(plan.workload, None)?;
    seen.look(&HashSet::new())?;
    seen.note(what, r);
    eprintln!("leco-bench: {what}: {}", f.summary());
    Ok(f)
}

/// One round's figures with the same programs on the same hooks, each
/// returning at once: what any eBPF observer on these hooks costs, before
/// doing any work.
fn hooks_only_round(service: &Path, plan: &Plan, what: &str, r: &mut Report) -> Result<Figures> {
    let svc = start_service(service, &["--hooks-only"], what, &mut r.notes)?;
    // Same pause as with leco, so both see the machine settled alike.
    thread::sleep(plan.idle);
    let f = run_workloads(plan.workload, None)?;
    stop_service(svc, what, &mut r.notes)?;
    eprintln!("leco-bench: {what}: {}", f.summary());
    Ok(f)
}

/// One round's figures with leco attached, the service's own CPU included.
fn with_leco_round(service: &Path, plan: &Plan, what: &str, r: &mut Report) -> Result<Figures> {
    let svc = start_service(service, &[], what, &mut r.notes)?;
    measure_attached(svc, plan, what, r)
}

/// One round's figures with the other build attached, its CPU included.
fn other_build_round(other: &Path, plan: &Plan, what: &str, r: &mut Report) -> Result<Figures> {
    let svc = start_other(other, what)?;
    measure_attached(svc, plan, what, r)
}

/// The workloads' figures with `svc` attached, then stops it.
fn measure_attached(mut svc: Service, plan: &Plan, what: &str, r: &mut Report) -> Result<Figures> {
    let ours: HashSet<u32> = svc.progs().iter().map(|p| p.id).collect();
    thread::sleep(plan.idle);
    let mut seen = Interference::default();
    seen.look(&ours)?;
    let f = run_workloads(plan.workload, Some(&svc))?;
    seen.look(&ours)?;
    seen.note(what, r);
    svc.check_running()?;
    let stopped = stop_service(svc, what, &mut r.notes)?;
    let drops = stopped
        .counters
        .as_ref()
        .and_then(service::FinalCounters::ringbuf_drops);
    if drops.is_some_and(|d| d > 0) {
        // An event never read is work never done: the service column
        // of that round is too low, not leco cheaper.
        r.notes.push(format!(
            "{what}: leco-service's CPU per operation leaves out the work of the events it \
             dropped, so it understates the service's cost in that round."
        ));
    }
    eprintln!("leco-bench: {what}: {}", f.summary());
    Ok(f)
}

/// Every round's figures in each configuration.
#[derive(Debug, Default)]
struct Rounds {
    baseline: Vec<Figures>,
    hooks_only: Vec<Figures>,
    with_leco: Vec<Figures>,
    /// With the `--against` build, when given.
    other_build: Vec<Figures>,
}

impl Rounds {
    /// The throughput rows of the report, one per workload figure.
    fn throughput(&self) -> Vec<Throughput> {
        let row = |name: &str, unit, decimals, get: fn(&Figures) -> f64| Throughput {
            name: name.to_owned(),
            unit,
            decimals,
            baseline: self.baseline.iter().map(get).collect(),
            hooks_only: self.hooks_only.iter().map(get).collect(),
            with_leco: self.with_leco.iter().map(get).collect(),
        };
        vec![
            row(
                &format!("bulk TCP, {} B writes", workloads::BULK_WRITE),
                "MiB/s",
                1,
                |f| f.bulk_mib_s,
            ),
            row(
                "connection churn (connect, accept, close)",
                "conn/s",
                0,
                |f| f.churn_per_s,
            ),
            row(
                &format!("UDP {} B datagrams sent", workloads::DATAGRAM),
                "datagrams/s",
                0,
                |f| f.udp_sent_per_s,
            ),
            row(
                &format!("UDP {} B datagrams delivered", workloads::DATAGRAM),
                "datagrams/s",
                0,
                |f| f.udp_received_per_s,
            ),
        ]
    }

    /// The CPU per operation rows of the report, one per workload, with
    /// their targets.
    fn cpu_per_op(&self) -> Vec<CpuPerOp> {
        let row = |name: String,
                   target_pct,
                   get: fn(&Figures) -> f64,
                   get_svc: fn(&ServiceCpu) -> f64| CpuPerOp {
            name,
            baseline: self.baseline.iter().map(get).collect(),
            hooks_only: self.hooks_only.iter().map(get).collect(),
            with_leco: self.with_leco.iter().map(get).collect(),
            service: self
                .with_leco
                .iter()
                .filter_map(|f| f.service.as_ref().map(get_svc))
                .collect(),
            other_build: self.other_build.iter().map(get).collect(),
            other_service: self
                .other_build
                .iter()
                .filter_map(|f| f.service.as_ref().map(get_svc))
                .collect(),
            target_pct,
        };
        vec![
            row(
                format!("bulk TCP, per {} B write", workloads::BULK_WRITE),
                Some(report::BULK_TARGET_PCT),
                |f| f.bulk_cpu_ns,
                |s| s.bulk_ns,
            ),
            row(
                "connection churn, per connection".to_owned(),
                Some(report::CHURN_TARGET_PCT),
                |f| f.churn_cpu_ns,
                |s| s.churn_ns,
            ),
            row(
                format!(
                    "UDP {} B datagrams, per datagram sent and received",
                    workloads::DATAGRAM
                ),
                None,
                |f| f.udp_cpu_ns,
                |s| s.udp_ns,
            ),
        ]
    }
}

/// Per-program run counts and times over one more pass of the workloads,
/// with kernel statistics on for just that pass.
fn hook_costs(service: &Path, plan: &Plan, r: &mut Report) -> Result<Hooks> {
    let what = "per-hook cost";
    let mut svc = start_service(service, &[], what, &mut r.notes)?;
    let ids: HashSet<u32> = svc.progs().iter().map(|p| p.id).collect();
    let snapshot = || -> Result<Vec<hooks::Prog>> {
        Ok(hooks::list_progs()?
            .into_iter()
            .filter(|p| ids.contains(&p.id))
            .collect())
    };
    let mut seen = Interference::default();
    let (before, after, window) = {
        let _stats = StatsEnabled::enable()?;
        seen.look(&ids)?;
        let before = snapshot()?;
        let t0 = Instant::now();
        run_workloads(plan.workload, None)?;
        let after = snapshot()?;
        seen.look(&ids)?;
        (before, after, t0.elapsed())
    };
    // Statistics are on here on purpose.
    seen.stats_on = false;
    seen.note(what, r);
    svc.check_running()?;
    stop_service(svc, what, &mut r.notes)?;
    let costs = hooks::deltas(&before, &after);
    eprintln!(
        "leco-bench: {what}: {} programs, {} calls in {:.1} s",
        costs.len(),
        costs.iter().map(|c| c.calls).sum::<u64>(),
        window.as_secs_f64()
    );
    Ok(Hooks { costs, window })
}

/// Service CPU and memory while connections are opened at `rate` per
/// second.
fn service_cost(service: &Path, plan: &Plan, rate: f64, r: &mut Report) -> Result<ServiceRun> {
    let what = format!("service cost at {} conn/s", report::fmt_num(rate, 0));
    let mut svc = start_service(service, &[], &what, &mut r.notes)?;
    let ours: HashSet<u32> = svc.progs().iter().map(|p| p.id).collect();
    thread::sleep(plan.idle);
    let mut seen = Interference::default();
    seen.look(&ours)?;
    let from = svc.sample()?;
    let churn = workloads::churn(plan.paced, Some(rate))?;
    // The service may still be draining the window's events.
    thread::sleep(report::DRAIN);
    let to = svc.sample()?;
    seen.look(&ours)?;
    seen.note(&what, r);
    svc.check_running()?;
    let stopped = stop_service(svc, &what, &mut r.notes)?;
    let run = ServiceRun {
        target_rate: rate,
        achieved_rate: churn.per_s(),
        connections: churn.connections,
        cpu_pct: service::cpu_percent(&from, &to, service::clock_ticks_per_s()),
        rss_kib: to.rss_kib,
        hwm_kib: to.hwm_kib,
        counters: stopped.counters,
    };
    eprintln!(
        "leco-bench: {what}: {} conn/s reached, service {} of one core, RSS {} KiB",
        report::fmt_num(run.achieved_rate, 0),
        report::fmt_pct(run.cpu_pct),
        run.rss_kib
    );
    Ok(run)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli(args: &[&str]) -> Cli {
        Cli::try_parse_from([&["leco-bench"], args].concat()).expect("valid arguments")
    }

    #[test]
    fn only_runs_the_cases_it_names_and_writes_nothing_unless_told() {
        let all = cli(&[]);
        assert!(all.runs(Case::Workloads) && all.runs(Case::StormCallers));
        assert_eq!(all.report_file(), Some(PathBuf::from(DEFAULT_OUT)));
        assert_eq!(all.only_names(), "");

        let one = cli(&["--only", "storm-callers"]);
        assert!(one.runs(Case::StormCallers) && !one.runs(Case::Dbus));
        assert_eq!(one.report_file(), None);

        let two = cli(&["--only", "dbus,storm-callers", "--out", "/tmp/x.md"]);
        assert!(two.runs(Case::Dbus) && !two.runs(Case::Hooks));
        assert_eq!(two.report_file(), Some(PathBuf::from("/tmp/x.md")));
        assert_eq!(two.only_names(), "dbus, storm-callers");

        assert!(Cli::try_parse_from(["leco-bench", "--only", "nope"]).is_err());
    }

    #[test]
    fn quick_storms_are_shorter() {
        let full = Plan::new(&cli(&[]));
        let quick = Plan::new(&cli(&["--quick"]));
        assert_eq!(
            (full.storm, full.storm_callers, full.storm_calls),
            (Duration::from_secs(8), 50, 20)
        );
        assert!(quick.storm < full.storm && quick.storm_callers < full.storm_callers);
    }
}
