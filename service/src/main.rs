//! `leco-service`: follows every TCP/UDP connection of this machine with
//! eBPF and shows who makes it.

mod bus;
mod cgroup;
mod clock;
mod config;
mod convert;
mod enrich;
#[cfg(test)]
mod fixture;
mod monitor;
mod output;
mod stats;
mod table;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Parser;
use tracing_subscriber::EnvFilter;

use crate::bus::{BusTarget, SignalQueue};
use crate::config::ServiceConfig;
use crate::monitor::{Monitor, Settings};
use crate::stats::Stats;
use crate::table::Limits;

/// leco-service — the Linux eBPF Connection Overseer's system service.
///
/// Loads eBPF tracepoint programs that record every TCP and UDP connection
/// of this machine with its owning process (pid, name, user, cgroup) and
/// its traffic, enriches them from /proc (executable, command line, systemd
/// unit, container, Flatpak app), and shows them.
///
/// Loading the programs needs root (CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN).
///
/// Examples:
///
///   sudo leco-service --standalone              live lines in the terminal
///
///   sudo leco-service --standalone --json | jq 'select(.kind=="new") | .comm'
///
///   sudo leco-service --standalone --bus system  serve org.leco.Overseer1
///                                                (busctl monitor org.leco.Overseer1)
///
/// Lines read `MARK HH:MM:SS :: user :: comm [unit] :: address port/proto`,
/// with `:: v RX / TX ^` once traffic passes 5 KiB and `!! error` on
/// failures; MARK is + new, ~ update, - closed, ! failed.
#[derive(Debug, Parser)]
#[command(version, verbatim_doc_comment)]
struct Cli {
    /// Load the eBPF programs and print connections on stdout, in this one
    /// process (no D-Bus, no systemd needed).
    #[arg(long)]
    standalone: bool,

    /// Print one JSON object per event (`kind` plus the connection keys
    /// documented in leco-proto) instead of human lines.
    #[arg(long, requires = "standalone", conflicts_with_all = ["bus", "bus_address"])]
    json: bool,

    /// Serve org.leco.Overseer1 on this bus instead of printing: `system`
    /// (what the installed service does) or `session` (development).
    #[arg(long, value_enum, value_name = "BUS")]
    bus: Option<BusKind>,

    /// Serve org.leco.Overseer1 on the bus at this address instead of
    /// printing (tests, development), e.g. `unix:path=/tmp/test-bus`.
    #[arg(long, value_name = "ADDRESS", conflicts_with = "bus")]
    bus_address: Option<String>,

    /// Most ConnectionEvent signals per second on the bus; beyond it, each
    /// connection's pending updates merge into its latest state (its `new`
    /// and its end are still signalled) [config: signal-rate, default 5000].
    #[arg(long, value_name = "N")]
    signal_rate: Option<u32>,

    /// Configuration file (KDL; its `service { }` section). Default:
    /// /etc/leco/config.kdl if it exists, else built-in defaults. The
    /// options below override it.
    #[arg(short, long, value_name = "FILE")]
    config: Option<PathBuf>,

    /// Minimum seconds between two traffic updates of one connection
    /// [config: update-interval, default 1].
    #[arg(long, value_name = "SECS", value_parser = seconds)]
    update_interval: Option<Duration>,

    /// Seconds without traffic after which a UDP flow counts as ended
    /// (closing its socket ends it at once) [config: udp-idle, default 60].
    #[arg(long, value_name = "SECS", value_parser = seconds)]
    udp_idle: Option<Duration>,

    /// Seconds that ended connections stay in the backlog that Snapshot()
    /// serves [config: backlog, default 300].
    #[arg(long, value_name = "SECS", value_parser = seconds)]
    backlog: Option<Duration>,

    /// Size of the kernel's event ring buffer in KiB (a power of two, at
    /// least 4). Raise it if the service reports dropped records
    /// [config: ring-buffer-kib, default 256].
    #[arg(long, value_name = "KIB", value_parser = ring_kib)]
    ring_buffer_kib: Option<u32>,

    /// Capacity of the kernel's flow table (least recently used flows make
    /// room when it is full) [config: max-flows, default 32768].
    #[arg(long, value_name = "N")]
    max_flows: Option<u32>,

    /// For benchmarks: attach every program but have each return at once, so
    /// that a benchmark can measure what the hooks alone cost. Shows nothing.
    #[arg(long, hide = true)]
    hooks_only: bool,

    /// Log more (-v: debug, -vv: trace, including libbpf). RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count)]
    verbose: u8,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum BusKind {
    System,
    Session,
}

fn seconds(s: &str) -> Result<Duration, String> {
    let v: f64 = s
        .parse()
        .map_err(|_| format!("`{s}` is not a number of seconds"))?;
    if !(0.01..=86_400.0).contains(&v) {
        return Err(format!("{v} s is out of range (0.01 to 86400)"));
    }
    Ok(Duration::from_secs_f64(v))
}

fn ring_kib(s: &str) -> Result<u32, String> {
    let v: u32 = s
        .parse()
        .map_err(|_| format!("`{s}` is not a number of KiB"))?;
    if !(4..=1 << 20).contains(&v) || !v.is_power_of_two() {
        return Err(format!("{v} KiB: must be a power of two from 4 to 1048576"));
    }
    Ok(v)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let level = match cli.verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level)),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("leco-service: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: &Cli) -> anyhow::Result<()> {
    if !cli.standalone {
        bail!(
            "run `leco-service --standalone` (one process that loads the eBPF programs and \
             serves the bus given by --bus/--bus-address, or prints to this terminal); the \
             privilege-split `load`/`run` modes for systemd are not built yet"
        );
    }
    let cfg = configuration(cli)?;
    let options = leco_bpf::Options {
        update_interval: cfg.update_interval,
        max_flows: cfg.max_flows,
        ring_bytes: cfg.ring_buffer_kib * 1024,
        hooks_only: cli.hooks_only,
        ..leco_bpf::Options::default()
    };
    let capture = leco_bpf::Capture::load(&options)?;
    for d in capture.degraded() {
        tracing::warn!("{d}");
    }
    let ids: Vec<String> = capture
        .program_ids()
        .into_iter()
        .map(|(name, id)| format!("{name}={id}"))
        .collect();
    tracing::debug!("attached programs: {}", ids.join(" "));
    let maps = capture.maps()?;
    let reader = maps.reader().context("opening the event ring buffer")?;
    let settings = Settings {
        update_interval: cfg.update_interval,
        wakeup_latency: options.wakeup_latency,
        limits: Limits {
            udp_idle: cfg.udp_idle,
            backlog_age: cfg.backlog,
            max_backlog: cfg.backlog_max,
            ..Limits::default()
        },
    };
    // The monitor loop runs on this thread (block_on); one worker runs the
    // bus (method calls, snapshot serialisation, signals), so that serving
    // a client never stalls the reading of the kernel's events.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("leco-bus")
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let stats = Arc::new(Stats::default());
    let monitor = Monitor::new(maps, settings, Arc::clone(&stats));
    let outcome = runtime.block_on(async {
        let (requests, asked) = tokio::sync::mpsc::channel(16);
        match bus_target(cli) {
            None => {
                // On stderr, so it never mixes with --json output; also the
                // readiness line scripts and tests wait for.
                eprintln!(
                    "leco-service: watching TCP and UDP connections \
                     (+ new, ~ update, - closed, ! failed); Ctrl-C stops"
                );
                let mut sink = output::Terminal::new(cli.json);
                let result = monitor
                    .run(reader, &mut sink, asked, shutdown_signal())
                    .await;
                drop(requests);
                result.map(drop)
            }
            Some(target) => {
                let conn = bus::serve(&target, requests, Arc::clone(&stats)).await?;
                // The readiness line scripts and tests wait for.
                eprintln!(
                    "leco-service: serving {} on the {} bus",
                    leco_proto::BUS_NAME,
                    target
                );
                let mut queue = SignalQueue::new(Arc::clone(&stats), cfg.signal_rate);
                let mut signals = tokio::spawn(queue.clone().run(conn.clone(), cfg.signal_rate));
                let stop = async {
                    tokio::select! {
                        () = shutdown_signal() => {}
                        ended = &mut signals => {
                            tracing::error!("lost the bus: {ended:?}");
                        }
                    }
                };
                monitor.run(reader, &mut queue, asked, stop).await.map(drop)
            }
        }
        .map_err(anyhow::Error::from)
    });
    match outcome {
        Ok(()) => {}
        // `leco-service --standalone | head`: the reader left, so do we.
        Err(e) if is_broken_pipe(&e) => return Ok(()),
        Err(e) => return Err(e),
    }
    eprintln!("leco-service: final counters: {}", stats.summary());
    // Dropping the capture detaches every program.
    drop(capture);
    Ok(())
}

/// The system configuration file, read when it exists and no `-c` is given.
const SYSTEM_CONFIG: &str = "/etc/leco/config.kdl";

/// The configuration file's settings, overridden by the command line's.
fn configuration(cli: &Cli) -> anyhow::Result<ServiceConfig> {
    let file = match &cli.config {
        Some(path) => Some(path.clone()),
        None => Some(PathBuf::from(SYSTEM_CONFIG)).filter(|p| p.exists()),
    };
    let mut cfg = match &file {
        Some(path) => ServiceConfig::load(path)?,
        None => ServiceConfig::default(),
    };
    if let Some(path) = &file {
        tracing::debug!("configuration from {}", path.display());
    }
    if let Some(v) = cli.update_interval {
        cfg.update_interval = v;
    }
    if let Some(v) = cli.udp_idle {
        cfg.udp_idle = v;
    }
    if let Some(v) = cli.backlog {
        cfg.backlog = v;
    }
    if let Some(v) = cli.ring_buffer_kib {
        cfg.ring_buffer_kib = v;
    }
    if let Some(v) = cli.max_flows {
        cfg.max_flows = v;
    }
    if let Some(v) = cli.signal_rate {
        cfg.signal_rate = v;
    }
    Ok(cfg)
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.downcast_ref::<std::io::Error>()
        .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
}

fn bus_target(cli: &Cli) -> Option<BusTarget> {
    match (&cli.bus_address, cli.bus) {
        (Some(a), _) => Some(BusTarget::Address(a.clone())),
        (None, Some(BusKind::System)) => Some(BusTarget::System),
        (None, Some(BusKind::Session)) => Some(BusTarget::Session),
        (None, None) => None,
    }
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // Without handlers the default action (exit) still stops us.
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
