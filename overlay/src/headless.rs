//! `--render-png`: what the surface would show at one moment, written to a
//! PNG. Events come from a file of JSON lines as `leco-service --standalone
//! --json` prints them; they go through the same line model (format, rules,
//! rows, fade) and the same renderer as on screen.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::{bail, Context};
use leco_proto::{Connection, EventKind};

use crate::config::{self, OverlayConfig};
use crate::model::LineModel;
use crate::render::Renderer;

/// When to take the picture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum At {
    /// Realtime microseconds since the epoch (as in `last_seen_us`).
    Micros(u64),
    /// This long after the last event's `last_seen_us` (negative: before).
    AfterLast(i64),
}

/// Why `--at` did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "expected a time as realtime microseconds (1732400000000000) or relative to the last \
     event (+20s, +1.5s, -500ms, +2m), found {0:?}"
)]
pub struct BadAt(pub String);

impl FromStr for At {
    type Err = BadAt;

    fn from_str(s: &str) -> Result<At, BadAt> {
        let bad = || BadAt(s.to_owned());
        let t = s.trim();
        if let Ok(us) = t.parse::<u64>() {
            return Ok(At::Micros(us));
        }
        let (sign, rest) = match t.as_bytes().first() {
            Some(b'+') => (1i64, &t[1..]),
            Some(b'-') => (-1i64, &t[1..]),
            _ => return Err(bad()),
        };
        let split = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let (num, unit) = rest.split_at(split);
        let value: f64 = num.parse().map_err(|_| bad())?;
        let per_unit = match unit {
            "us" | "µs" => 1.0,
            "ms" => 1e3,
            "s" => 1e6,
            "m" | "min" => 60e6,
            "h" => 3600e6,
            _ => return Err(bad()),
        };
        let us = value * per_unit;
        if !us.is_finite() || us > i64::MAX as f64 / 2.0 {
            return Err(bad());
        }
        Ok(At::AfterLast(sign * us.round() as i64))
    }
}

/// What `--render-png` was asked for.
#[derive(Debug, Clone)]
pub struct HeadlessOptions {
    /// The PNG to write.
    pub out: PathBuf,
    /// JSON lines of events.
    pub events: PathBuf,
    /// The moment to draw; `None` is the last event's `last_seen_us`.
    pub at: Option<At>,
    /// Configuration file; `None` looks where the overlay looks
    /// (`$XDG_CONFIG_HOME/leco/config.kdl`, `/etc/leco/config.kdl`), else
    /// the built-in defaults.
    pub config: Option<PathBuf>,
    /// Buffer pixels per logical pixel (HiDPI output), default 1.
    pub scale: f32,
    /// Draw with only these font files instead of the system's (the same
    /// pixels on every machine: tests, documentation pictures).
    pub font_files: Vec<PathBuf>,
}

impl HeadlessOptions {
    /// Options with the defaults: config looked up, scale 1, system fonts,
    /// at the last event.
    pub fn new(out: impl Into<PathBuf>, events: impl Into<PathBuf>) -> HeadlessOptions {
        HeadlessOptions {
            out: out.into(),
            events: events.into(),
            at: None,
            config: None,
            scale: 1.0,
            font_files: Vec::new(),
        }
    }
}

/// Renders what the surface would show and writes it to `opts.out`.
pub fn render_png(opts: &HeadlessOptions) -> anyhow::Result<()> {
    let pixmap = render_pixmap(opts)?;
    pixmap
        .save_png(&opts.out)
        .with_context(|| format!("cannot write {}", opts.out.display()))
}

/// The picture [`render_png`] writes, without writing it.
pub fn render_pixmap(opts: &HeadlessOptions) -> anyhow::Result<tiny_skia::Pixmap> {
    let config = load_config(opts.config.as_deref())?;
    let events = read_events(&opts.events)?;
    let frame = frame_at(&config, &events, opts.at)?;

    if !(opts.scale.is_finite() && opts.scale > 0.0 && opts.scale <= 16.0) {
        bail!("--scale must be a number in (0, 16], found {}", opts.scale);
    }
    let width = (config.surface.width as f32 * opts.scale).round() as u32;
    let height = (config.surface.height as f32 * opts.scale).round() as u32;
    let mut renderer = if opts.font_files.is_empty() {
        Renderer::new(&config.style)?
    } else {
        Renderer::with_font_files(&config.style, &opts.font_files)?
    };
    renderer.set_padding(config.surface.padding);
    renderer
        .render(&frame, width, height, opts.scale)
        .with_context(|| {
            format!(
                "surface {}x{} at scale {}",
                config.surface.width, config.surface.height, opts.scale
            )
        })
}

/// The frame the model shows at `at` after applying `events` in order.
pub fn frame_at(
    config: &OverlayConfig,
    events: &[(EventKind, Connection)],
    at: Option<At>,
) -> anyhow::Result<crate::model::Frame> {
    let last = events.iter().map(|(_, c)| c.last_seen_us).max();
    let now = match (at, last) {
        (Some(At::Micros(us)), _) => us,
        (Some(At::AfterLast(d)), Some(last)) => last.saturating_add_signed(d),
        (Some(At::AfterLast(_)), None) | (None, None) => {
            bail!("no events, so no time to draw at: give --at as realtime microseconds")
        }
        (None, Some(last)) => last,
    };
    let mut model = LineModel::new(config);
    for (kind, conn) in events {
        model.apply(*kind, conn);
    }
    Ok(model.frame(now))
}

/// The `-c` file, else the one the overlay would find, else defaults.
fn load_config(path: Option<&Path>) -> anyhow::Result<OverlayConfig> {
    let path = path.map(Path::to_path_buf).or_else(config::locate);
    match path {
        Some(p) => config::load(&p).map_err(|e| anyhow::anyhow!("{e}")),
        None => Ok(OverlayConfig::default()),
    }
}

/// Events from a JSON-lines file; blank lines are skipped, anything else
/// that does not decode is an error naming its line.
pub fn read_events(path: &Path) -> anyhow::Result<Vec<(EventKind, Connection)>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read events from {}", path.display()))?;
    let mut events = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let event = leco_proto::decode_json_event(line)
            .map_err(|e| anyhow::anyhow!("{}:{}: {e}", path.display(), i + 1))?;
        events.push(event);
    }
    Ok(events)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_parses_absolute_and_relative_times() {
        assert_eq!(
            "1732400000000000".parse(),
            Ok(At::Micros(1_732_400_000_000_000))
        );
        assert_eq!("+20s".parse(), Ok(At::AfterLast(20_000_000)));
        assert_eq!("+1.5s".parse(), Ok(At::AfterLast(1_500_000)));
        assert_eq!("-500ms".parse(), Ok(At::AfterLast(-500_000)));
        assert_eq!("+2m".parse(), Ok(At::AfterLast(120_000_000)));
        for bad in [
            "",
            "+",
            "20s",
            "+s",
            "+1.2.3s",
            "+5 parsecs",
            "+1e400s",
            "-",
        ] {
            assert!(bad.parse::<At>().is_err(), "{bad}");
        }
    }
}
