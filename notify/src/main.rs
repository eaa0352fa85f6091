//! `leco-notify`: desktop notifications of what leco-service finds new.

mod bridge;
mod config;
mod desktop;
mod policy;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use leco_follow::BusAddress;
use tracing_subscriber::EnvFilter;

/// leco-notify — desktop notifications from leco, the Linux eBPF
/// Connection Overseer.
///
/// Follows leco-service on the system bus and tells the desktop's
/// notification server (org.freedesktop.Notifications on the session bus:
/// mako, dunst, GNOME, KDE...) when something never seen before on this
/// machine happens: by default a program using the network for the first
/// time; by setting also a program's new destination, and attempts this
/// machine's firewall or policy blocked. One program is told at most once
/// per cooldown; past max-per-minute, one "+N more" notification counts
/// the rest. Where the server shows actions, "Mute this program" adds the
/// program to `mute` in the user's config.kdl.
///
/// The settings are the `notify { }` section of config.kdl:
/// $XDG_CONFIG_HOME/leco/config.kdl (else ~/.config/leco/config.kdl, else
/// /etc/leco/config.kdl), or -c FILE. Reading the service needs group leco
/// (sudo usermod -aG leco $USER). It runs as a systemd user unit
/// (leco-notify.service) and follows the service and the bus across their
/// restarts.
///
/// Examples:
///
///   leco-notify                       with the user's config.kdl
///
///   leco-notify --check-config        check it and exit
///
///   systemctl --user enable --now leco-notify
#[derive(Debug, Parser)]
#[command(version, verbatim_doc_comment)]
struct Cli {
    /// Configuration file (KDL; its `notify { }` section). Mutes are added
    /// to it.
    #[arg(short, long, value_name = "FILE")]
    config: Option<PathBuf>,

    /// Follow leco-service on the bus at this address instead of the system
    /// bus (tests, development), e.g. `unix:path=/tmp/test-bus`.
    #[arg(long, value_name = "ADDRESS")]
    system_bus_address: Option<String>,

    /// Check the configuration file, print what it sets, and exit.
    #[arg(long)]
    check_config: bool,

    /// Log more (-v: debug, -vv: trace). RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count)]
    verbose: u8,
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
            eprintln!("leco-notify: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: &Cli) -> anyhow::Result<()> {
    let file = cli.config.clone().or_else(leco_kdlconf::locate);
    let config = match &file {
        Some(path) => config::load(path)?,
        None => config::NotifyConfig::default(),
    };
    if cli.check_config {
        let source = file
            .as_ref()
            .map_or("no configuration file: built-in defaults".to_owned(), |p| {
                format!("{}: ok", p.display())
            });
        println!("{source}\n{config:#?}");
        return Ok(());
    }
    // Mutes go to the file named, else the user's own (made on the first
    // mute, from the system's file if that is what was read, so that the
    // other sections it sets still apply).
    let mute_file = cli.config.clone().or_else(leco_kdlconf::user_config);
    let seed = file.clone().filter(|read| Some(read) != mute_file.as_ref());
    let service_bus = match &cli.system_bus_address {
        Some(a) => BusAddress::Address(a.clone()),
        None => BusAddress::System,
    };
    let where_ = match &service_bus {
        BusAddress::System => "the system bus".to_owned(),
        BusAddress::Address(a) => format!("the bus at {a}"),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let setup = bridge::Setup {
        service_bus,
        mute_file,
        seed,
    };
    runtime.block_on(bridge::run(config, setup, || {
        // The readiness line scripts and tests wait for.
        eprintln!("leco-notify: following leco-service on {where_}; Ctrl-C stops");
    }));
    Ok(())
}
