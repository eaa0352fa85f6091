//! `leco-overlay`: the desktop overlay, and its tools for writing a
//! configuration (`--check-config`, `--rx-test`, `--plot-fade-curve`,
//! `--render-png`).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{ArgAction, Parser};
use leco_overlay::app::{self, Options};
use leco_overlay::client::BusAddress;
use leco_overlay::headless::{At, HeadlessOptions};

/// Shows the network connections leco-service sees as lines of text on the
/// desktop: a transparent, click-through Wayland layer surface (sway,
/// Hyprland, river, labwc, …), newest activity brightest, each line fading
/// away along the configured curve.
///
/// Lines come from leco-service on the D-Bus system bus (you must be in
/// group `leco`: `sudo usermod -aG leco $USER`, then log in again). A short
/// status line says so when the service is not running or access is denied.
///
/// The configuration is the `overlay { }` section and the rules of
/// $XDG_CONFIG_HOME/leco/config.kdl (else ~/.config/leco/config.kdl, else
/// /etc/leco/config.kdl, else built-in defaults); the annotated default is
/// config.kdl in leco's sources. Edits are picked up while running; a
/// broken edit keeps the previous configuration and says why.
///
/// Writing rules: `--rx-test 'LINE'` shows what they do to a line,
/// `--check-config` checks the file, `--plot-fade-curve fade.png` draws the
/// fade curve, `--render-png out.png --events events.jsonl` draws what the
/// overlay would show for events recorded with `leco-service --standalone
/// --json`.
#[derive(Debug, Parser)]
#[command(
    name = "leco-overlay",
    version,
    about,
    long_about,
    verbatim_doc_comment
)]
struct Cli {
    /// Configuration file to read (and watch) instead of the usual places.
    #[arg(short, long, value_name = "FILE")]
    config: Option<PathBuf>,

    /// Find leco-service on this D-Bus address instead of the system bus,
    /// e.g. `unix:path=/tmp/test-bus` (tests, development).
    #[arg(long, value_name = "ADDR")]
    bus_address: Option<String>,

    /// Log every line as it is drawn (when the set of lines changes).
    #[arg(long)]
    debug: bool,

    /// Check the configuration, print a summary and exit: 0 when it is
    /// good, 1 with FILE:LINE:COLUMN and what was expected when not.
    #[arg(long, conflicts_with_all = ["rx_test", "render_png", "plot_fade_curve"])]
    check_config: bool,

    /// Show what the rules do to LINE (written like an overlay line, e.g.
    /// `12:00 :: alice :: firefox [app.scope] :: example.org 443/tcp`): the
    /// result, and whether it was changed, hidden or grouped. Then exit.
    #[arg(long, value_name = "LINE", conflicts_with_all = ["render_png", "plot_fade_curve"])]
    rx_test: Option<String>,

    /// Render what the overlay would show to a PNG and exit (needs
    /// --events).
    #[arg(
        long,
        value_name = "OUT",
        requires = "events",
        conflicts_with = "plot_fade_curve"
    )]
    render_png: Option<PathBuf>,

    /// Events to render: JSON lines as `leco-service --standalone --json`
    /// prints them.
    #[arg(long, value_name = "FILE", requires = "render_png")]
    events: Option<PathBuf>,

    /// The moment to render: relative to the last event (`+20s`, `+1.5s`,
    /// `-500ms`, `+2m`) or realtime microseconds since the epoch (default:
    /// the last event's time).
    #[arg(
        long,
        value_name = "T",
        requires = "render_png",
        allow_hyphen_values = true
    )]
    at: Option<At>,

    /// Scale of the rendered picture (2 for a HiDPI screen).
    #[arg(long, value_name = "S", default_value_t = 1.0, requires = "render_png")]
    scale: f32,

    /// Draw --render-png with only these font files instead of the
    /// system's (repeatable pictures for tests and documentation).
    #[arg(long = "font", value_name = "FILE", requires = "render_png")]
    fonts: Vec<PathBuf>,

    /// Draw the configured fade curve (opacity over the fade time, with its
    /// points) to a PNG and exit.
    #[arg(long, value_name = "OUT")]
    plot_fade_curve: Option<PathBuf>,

    /// More log output (-v debug, -vv trace). RUST_LOG overrides it.
    #[arg(short, long, action = ArgAction::Count)]
    verbose: u8,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("leco-overlay: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let opts = Options {
        config: cli.config.clone(),
        bus: match cli.bus_address.clone() {
            Some(a) => BusAddress::Address(a),
            None => BusAddress::System,
        },
        debug: cli.debug,
    };
    if cli.check_config {
        println!("{}", app::check_config(&opts)?.trim_end());
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(line) = &cli.rx_test {
        let (config, _) = app::initial_config(&opts)?;
        print!("{}", app::rx_test(&config, line)?);
        return Ok(ExitCode::SUCCESS);
    }
    if let (Some(out), Some(events)) = (&cli.render_png, &cli.events) {
        let mut ho = HeadlessOptions::new(out, events);
        ho.at = cli.at;
        ho.config = cli.config.clone();
        ho.scale = cli.scale;
        ho.font_files = cli.fonts.clone();
        leco_overlay::headless::render_png(&ho)?;
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(out) = &cli.plot_fade_curve {
        let (config, _) = app::initial_config(&opts)?;
        leco_overlay::plot::plot_fade_curve(&config.fade, out)?;
        return Ok(ExitCode::SUCCESS);
    }
    app::run(opts)?;
    Ok(ExitCode::SUCCESS)
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "leco_overlay=info,warn",
        1 => "leco_overlay=debug,info",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
}
