//! `leco-service`: follows every TCP/UDP connection of this machine with
//! eBPF and shows who makes it.

mod cgroup;
mod clock;
mod convert;
mod enrich;
mod monitor;
mod output;
mod table;

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Parser;
use tracing_subscriber::EnvFilter;

use crate::monitor::{Monitor, Settings};
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
    #[arg(long, requires = "standalone")]
    json: bool,

    /// Minimum seconds between two traffic updates of one connection.
    #[arg(long, value_name = "SECS", default_value = "1", value_parser = seconds)]
    update_interval: Duration,

    /// Seconds without traffic after which a UDP flow counts as ended
    /// (closing its socket ends it at once).
    #[arg(long, value_name = "SECS", default_value = "60", value_parser = seconds)]
    udp_idle: Duration,

    /// Seconds that ended connections stay in the backlog.
    #[arg(long, value_name = "SECS", default_value = "300", value_parser = seconds)]
    backlog: Duration,

    /// Size of the kernel's event ring buffer in KiB (a power of two, at
    /// least 4). Raise it if the service reports dropped records.
    #[arg(long, value_name = "KIB", default_value_t = 256, value_parser = ring_kib)]
    ring_buffer_kib: u32,

    /// Capacity of the kernel's flow table (least recently used flows make
    /// room when it is full).
    #[arg(long, value_name = "N", default_value_t = 32_768)]
    max_flows: u32,

    /// For benchmarks: attach every program but have each return at once, so
    /// that a benchmark can measure what the hooks alone cost. Shows nothing.
    #[arg(long, hide = true)]
    hooks_only: bool,

    /// Log more (-v: debug, -vv: trace, including libbpf). RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count)]
    verbose: u8,
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
            "serving the D-Bus system bus is not built yet; run `leco-service --standalone` \
             to see connections in this terminal"
        );
    }
    let options = leco_bpf::Options {
        update_interval: cli.update_interval,
        max_flows: cli.max_flows,
        ring_bytes: cli.ring_buffer_kib * 1024,
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
        update_interval: cli.update_interval,
        wakeup_latency: options.wakeup_latency,
        limits: Limits {
            udp_idle: cli.udp_idle,
            backlog_age: cli.backlog,
            ..Limits::default()
        },
    };
    // On stderr, so it never mixes with --json output; also the readiness
    // line scripts and tests wait for.
    eprintln!(
        "leco-service: watching TCP and UDP connections \
         (+ new, ~ update, - closed, ! failed); Ctrl-C stops"
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let mut sink = output::Terminal::new(cli.json);
    let monitor = Monitor::new(maps, settings);
    let outcome = runtime.block_on(monitor.run(reader, &mut sink, shutdown_signal()));
    let monitor = match outcome {
        Ok(m) => m,
        // `leco-service --standalone | head`: the reader left, so do we.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
        Err(e) => return Err(e).context("reading kernel events"),
    };
    let c = monitor.counters();
    eprintln!(
        "leco-service: final counters: events={} ringbuf_drops={} decode_errors={} resyncs={} \
         tracked={} backlog={} evicted={}",
        c.events,
        c.ringbuf_drops,
        c.decode_errors,
        c.resyncs,
        monitor.table().live_len(),
        monitor.table().backlog_len(),
        monitor.table().evicted()
    );
    // Dropping the capture detaches every program.
    drop(capture);
    Ok(())
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
