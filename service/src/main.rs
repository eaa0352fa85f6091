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
mod handoff;
mod load;
mod monitor;
mod output;
mod sdnotify;
mod stats;
mod table;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{CommandFactory, FromArgMatches, Parser};
use tracing_subscriber::EnvFilter;

use crate::bus::{BusTarget, SignalQueue};
use crate::config::cli::SettingArgs;
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
/// Loading the programs needs root (CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN);
/// reading them needs nothing. Three ways to run it:
///
///   --standalone   one process loads and shows (terminal, or --bus/--bus-address)
///
///   load           root: load and attach, hand the objects to systemd's file
///                  descriptor store (or pin them with --pin DIR); nothing to
///                  do when a complete load is already there
///
///   run            no privileges: serve org.leco.Overseer1 from what `load`
///                  handed over (LISTEN_FDS from systemd, or --pin DIR)
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
///   In leco.service:   ExecStartPre=+/usr/bin/leco-service load
///                      ExecStart=/usr/bin/leco-service run
///
///   With pins:   sudo leco-service load --pin /sys/fs/bpf/leco --owner leco
///                sudo -u leco leco-service run --pin /sys/fs/bpf/leco
///
/// The options below go before or after `load`/`run`. Those fixed at load
/// time (update interval, ring buffer, flow table) are `load`'s: `run`
/// warns when asked for others.
///
/// Lines read `MARK HH:MM:SS :: user :: comm [unit] :: address port/proto`,
/// with `:: v RX / TX ^` once traffic passes 5 KiB and `!! error` on
/// failures; MARK is + new, ~ update, - closed, ! failed.
#[derive(Debug, Parser)]
#[command(version, verbatim_doc_comment)]
struct Cli {
    /// The privilege split for systemd (see above); without one, --standalone.
    #[command(subcommand)]
    mode: Option<Mode>,

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

    /// Configuration file (KDL; its `service { }` section). Default:
    /// /etc/leco/config.kdl if it exists, else built-in defaults. The
    /// options below override it.
    #[arg(short, long, value_name = "FILE")]
    config: Option<PathBuf>,

    /// The settings of config.kdl's `service {}` section, one option each.
    #[command(flatten)]
    settings: SettingArgs,

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

#[derive(Debug, clap::Subcommand)]
enum Mode {
    /// As root (ExecStartPre=+): load and attach the eBPF programs and hand
    /// their maps and links to systemd's file descriptor store (or pin them
    /// with --pin), then exit. Does nothing if a complete load is already
    /// there; a half-finished one is removed and done again.
    Load(LoadArgs),
    /// Without any privilege: serve org.leco.Overseer1 (on the system bus
    /// unless --bus/--bus-address) from the objects `load` handed over:
    /// LISTEN_FDS from systemd's file descriptor store, or --pin DIR.
    Run(RunArgs),
}

#[derive(Debug, clap::Args)]
struct LoadArgs {
    /// Pin the objects in this bpffs directory (e.g. /sys/fs/bpf/leco)
    /// instead of handing them to systemd. They stay loaded until the pins
    /// are removed.
    #[arg(long, value_name = "DIR")]
    pin: Option<PathBuf>,

    /// With --pin: the user `run --pin` runs as; the directory and pins
    /// become theirs (otherwise only root may open them).
    #[arg(long, value_name = "USER", requires = "pin")]
    owner: Option<String>,

    /// Without --pin: where to remember what was stored, to know next time
    /// whether the store holds a complete load [default:
    /// $RUNTIME_DIRECTORY/fdstore.state, else /run/leco/fdstore.state].
    #[arg(long, value_name = "FILE", conflicts_with = "pin")]
    state: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// Take the objects from the pins `load --pin DIR` made, instead of
    /// from systemd (LISTEN_FDS).
    #[arg(long, value_name = "DIR")]
    pin: Option<PathBuf>,
}

/// Parses the command line. The shared options may also follow the
/// subcommand (`run --bus-address A`): they are made global here rather
/// than one by one in the definitions above.
fn parse_cli() -> Cli {
    let mut cmd = Cli::command();
    let shared: Vec<String> = cmd
        .get_arguments()
        .filter(|a| !a.is_positional())
        .map(|a| a.get_id().to_string())
        .filter(|id| !matches!(id.as_str(), "standalone" | "json" | "help" | "version"))
        .collect();
    for id in shared {
        cmd = cmd.mut_arg(id, |a| a.global(true));
    }
    let matches = cmd.get_matches();
    Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

fn main() -> ExitCode {
    let cli = parse_cli();
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
    match (&cli.mode, cli.standalone) {
        (Some(_), true) => {
            bail!("--standalone is a mode of its own: give either it or `load`/`run`, not both")
        }
        (Some(Mode::Load(args)), false) => load_mode(cli, args),
        (Some(Mode::Run(args)), false) => run_mode(cli, args),
        (None, true) => standalone(cli),
        (None, false) => bail!(
            "say how to run: `leco-service --standalone` (one process that loads the eBPF \
             programs and prints, or serves --bus/--bus-address), or `leco-service load` as \
             root then `leco-service run` unprivileged (the systemd unit's privilege split); \
             see --help"
        ),
    }
}

/// The load-time settings of the configuration.
fn load_options(cli: &Cli, cfg: &ServiceConfig) -> leco_bpf::Options {
    leco_bpf::Options {
        update_interval: cfg.update_interval,
        max_flows: cfg.max_flows,
        ring_bytes: cfg.ring_buffer_kib * 1024,
        hooks_only: cli.hooks_only,
        ..leco_bpf::Options::default()
    }
}

/// `leco-service load`.
fn load_mode(cli: &Cli, args: &LoadArgs) -> anyhow::Result<()> {
    let cfg = configuration(cli)?;
    let target = match &args.pin {
        Some(dir) => load::Target::Pins {
            dir: dir.clone(),
            owner: args.owner.clone(),
        },
        None => load::Target::Store {
            state: args.state.clone().unwrap_or_else(load::default_state_file),
        },
    };
    let outcome = load::load(&load_options(cli, &cfg), &target)?;
    eprintln!("leco-service: {}", outcome.describe(&target));
    Ok(())
}

/// `leco-service run`.
fn run_mode(cli: &Cli, args: &RunArgs) -> anyhow::Result<()> {
    let source = match &args.pin {
        Some(dir) => handoff::Source::Pins(dir.clone()),
        None => handoff::Source::Inherited,
    };
    // Before anything else: it reads and clears LISTEN_* while this process
    // is still single-threaded.
    let received = handoff::receive(&source)?;
    let cfg = handoff::fixed_at_load(configuration(cli)?, cli.hooks_only, received.settings());
    for d in &received.manifest().degraded {
        tracing::warn!("{d}");
    }
    let baked = received.settings();
    let (maps, _links) = received.into_parts();
    let reader = maps.reader().context("opening the event ring buffer")?;
    let target = bus_target(cli).unwrap_or(BusTarget::System);
    serve(cli, &cfg, maps, reader, baked.wakeup_latency, Some(target))
}

/// `leco-service --standalone`.
fn standalone(cli: &Cli) -> anyhow::Result<()> {
    let cfg = configuration(cli)?;
    let options = load_options(cli, &cfg);
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
    serve(
        cli,
        &cfg,
        maps,
        reader,
        options.wakeup_latency,
        bus_target(cli),
    )?;
    // Dropping the capture detaches every program.
    drop(capture);
    Ok(())
}

/// Reads the kernel's records and prints them (`target` None) or serves
/// them on a bus, until SIGINT/SIGTERM.
fn serve(
    cli: &Cli,
    cfg: &ServiceConfig,
    maps: leco_bpf::KernelMaps,
    reader: leco_bpf::EventReader,
    wakeup_latency: Duration,
    target: Option<BusTarget>,
) -> anyhow::Result<()> {
    let settings = Settings {
        update_interval: cfg.update_interval,
        wakeup_latency,
        limits: Limits {
            max_live: crate::table::MAX_LIVE,
            udp_idle: cfg.udp_idle,
            backlog_age: cfg.backlog,
            max_backlog: cfg.backlog_max,
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
        match target {
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
    cli.settings.apply(&mut cfg);
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
