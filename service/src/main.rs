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
mod memory;
mod mode;
mod monitor;
mod names;
mod output;
mod program;
mod ring;
mod stats;
mod table;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::bail;
use clap::{CommandFactory, FromArgMatches, Parser};
use tracing_subscriber::EnvFilter;

use crate::bus::BusTarget;
use crate::config::cli::SettingArgs;
use crate::config::ServiceConfig;
use crate::memory::MemorySettings;

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
/// Lines read `MARK HH:MM:SS :: user :: program [unit] :: address port/proto`
/// (program: the script an interpreter runs, else the executable), with
/// `:: v RX / TX ^` once traffic passes 5 KiB, `!! error` on failures and
/// `!! blocked by firewall` (cgroup policy, security module) on attempts
/// this machine's policy stopped, `×N` counting repeats; an incoming
/// connection reads `address → :local-port/proto`. MARK is:
/// `+` new, `~` update, `-` closed, `!` failed (refused, reset,
/// unreachable, timed out, no reply), `x` blocked. With a store
/// (--state-dir), a `+` line of something never seen before on this machine
/// ends in `** new program` or `** new destination` (after a first hour
/// of quiet learning: the warm-up setting).
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

    /// Remember what was seen in this directory (a SQLite file, leco.sqlite):
    /// what is new (`novelty`), the connections that ended (History(),
    /// Totals(), and the backlog after a restart). Default:
    /// $STATE_DIRECTORY (systemd's StateDirectory=, /var/lib/leco for the
    /// unit); without either, nothing is remembered and nothing is told as
    /// new.
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,

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
            exit_code(&e)
        }
    }
}

/// Exit status after losing the bus (EX_TEMPFAIL of sysexits.h): a new
/// start will do. The unit restarts the service after it
/// (RestartForceExitStatus=) and after nothing else that exits normally:
/// a load that fails fails the same way every time.
const EXIT_TRY_AGAIN: u8 = 75;

fn exit_code(e: &anyhow::Error) -> ExitCode {
    if e.chain().any(|c| c.is::<mode::LostBus>()) {
        ExitCode::from(EXIT_TRY_AGAIN)
    } else {
        ExitCode::FAILURE
    }
}

fn run(cli: &Cli) -> anyhow::Result<()> {
    match (&cli.mode, cli.standalone) {
        (Some(_), true) => {
            bail!("--standalone is a mode of its own: give either it or `load`/`run`, not both")
        }
        (Some(Mode::Load(args)), false) => {
            let cfg = configuration(cli)?;
            mode::load::run(&load_options(cli, &cfg), &load_target(args))
        }
        (Some(Mode::Run(args)), false) => {
            let source = match &args.pin {
                Some(dir) => mode::run::Source::Pins(dir.clone()),
                None => mode::run::Source::Inherited,
            };
            let bus = bus_target(cli).unwrap_or(BusTarget::System);
            let configure = || {
                let cfg = configuration(cli)?;
                let state = state_dir(cli).map(|dir| MemorySettings::new(dir, &cfg));
                Ok((cfg, state))
            };
            mode::run::run(&source, configure, cli.hooks_only, bus)
        }
        (None, true) => {
            let cfg = configuration(cli)?;
            let output = match bus_target(cli) {
                Some(target) => mode::Output::Bus(target),
                None => mode::Output::Terminal { json: cli.json },
            };
            let state = state_dir(cli).map(|dir| MemorySettings::new(dir, &cfg));
            mode::standalone::run(&cfg, &load_options(cli, &cfg), output, state)
        }
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

/// Where `load` hands the objects over to.
fn load_target(args: &LoadArgs) -> mode::load::Target {
    match &args.pin {
        Some(dir) => mode::load::Target::Pins {
            dir: dir.clone(),
            owner: args.owner.clone(),
        },
        None => mode::load::Target::Store {
            state: args
                .state
                .clone()
                .unwrap_or_else(mode::load::default_state_file),
        },
    }
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

/// Where to remember: --state-dir, else systemd's StateDirectory= (the
/// first, if it lists several).
fn state_dir(cli: &Cli) -> Option<PathBuf> {
    cli.state_dir.clone().or_else(|| {
        std::env::var_os("STATE_DIRECTORY")
            .and_then(|v| {
                v.to_str()
                    .and_then(|s| s.split(':').next())
                    .map(PathBuf::from)
            })
            .filter(|p| !p.as_os_str().is_empty())
    })
}

fn bus_target(cli: &Cli) -> Option<BusTarget> {
    match (&cli.bus_address, cli.bus) {
        (Some(a), _) => Some(BusTarget::Address(a.clone())),
        (None, Some(BusKind::System)) => Some(BusTarget::System),
        (None, Some(BusKind::Session)) => Some(BusTarget::Session),
        (None, None) => None,
    }
}
